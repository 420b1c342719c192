//! Bitfinex v2 REST trades (`GET /v2/trades/{symbol}/hist`), served from the
//! trades of a WebSocket recording (snapshots and `te` updates; `tu` repeats
//! them): `start` (ms, inclusive), `limit` up to 10,000, `sort=1` (oldest
//! first; the only order this mock serves), rows `[ID, MTS, AMOUNT, PRICE]`
//! with the recorded number text, errors in Bitfinex's `["error", code, msg]`;
//! and candles (`GET /v2/candles/trade:{tf}:{symbol}/hist`) computed from the
//! same trades, with none for intervals without trades, as Bitfinex does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ck_bus::{Origin, RawMessage};
use serde_json::value::RawValue;

use crate::bars::{Fill, Fills, SEC, bars, fills_of};

use futures_util::future::BoxFuture;
use serde_json::Value;
use serde_json::json;

use crate::route::{Product, json_of, names_in, upper};
use crate::venues::{DemoRecording, Ids, MockSpec, Products, TimeUnit, Wire};

/// Rows by symbol, by (MTS, ID), as `[ID,MTS,AMOUNT,PRICE]` text.
type Book = HashMap<String, BTreeMap<(i64, u64), String>>;

/// The mock's constructor (it returns a [`crate::RestMock`]).
pub struct MockBitfinexRest;

/// Reads one `[ID,MTS,AMOUNT,PRICE]` row, its time moved by `shift_ms`.
fn row(raw: &RawValue, shift_ms: i64) -> Option<((i64, u64), String)> {
    let (id, mts, amount, price): (u64, i64, &RawValue, &RawValue) =
        serde_json::from_str(raw.get()).ok()?;
    let mts = mts + shift_ms;
    Some((
        (mts, id),
        format!("[{id},{mts},{},{}]", amount.get(), price.get()),
    ))
}

impl MockBitfinexRest {
    /// Serves the trades in `recording` on `127.0.0.1` (any port); with
    /// `shift_to`, times move as a [`crate::venue::MockVenue`] started with
    /// the same `shift_to` moves them (the first frame's receive time becomes
    /// that time).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(
        recording: &[RawMessage],
        shift_to: Option<ck_model::Ts>,
    ) -> std::io::Result<crate::RestMock> {
        let shift_ms = match (shift_to, recording.iter().find(|m| m.origin == Origin::Ws)) {
            (Some(at), Some(first)) => at.as_millis() - first.ts_received.as_millis(),
            _ => 0,
        };
        let mut channels: HashMap<u64, String> = HashMap::new();
        let mut book = Book::new();
        for m in recording.iter().filter(|m| m.origin == Origin::Ws) {
            if m.data.starts_with('{') {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&m.data) else {
                    continue;
                };
                if v["event"] == "subscribed"
                    && v["channel"] == "trades"
                    && let (Some(id), Some(symbol)) = (v["chanId"].as_u64(), v["symbol"].as_str())
                {
                    channels.insert(id, symbol.to_owned());
                }
                continue;
            }
            let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(&m.data) else {
                continue;
            };
            let Some(symbol) = parts
                .first()
                .and_then(|c| c.get().parse::<u64>().ok())
                .and_then(|c| channels.get(&c))
            else {
                continue;
            };
            let rows = book.entry(symbol.clone()).or_default();
            match (parts.get(1).map(|p| p.get()), parts.get(2)) {
                (Some("\"te\""), Some(r)) => {
                    if let Some((k, v)) = row(r, shift_ms) {
                        rows.insert(k, v);
                    }
                }
                // (With the `TIMESTAMP` flag a frame ends with its time.)
                (Some(snapshot), _) if snapshot.starts_with("[[") => {
                    let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(snapshot) else {
                        continue;
                    };
                    for r in list {
                        if let Some((k, v)) = row(r, shift_ms) {
                            rows.insert(k, v);
                        }
                    }
                }
                _ => {}
            }
        }
        let trades = book.values().map(BTreeMap::len).sum();
        let fills = fills_of(&book, |&(mts, _), text| {
            let (_, _, amount, price): (u64, i64, &RawValue, &RawValue) =
                serde_json::from_str(text).ok()?;
            let amount = amount.get();
            Fill::parse(
                mts * 1_000_000,
                price.get(),
                amount,
                !amount.starts_with('-'),
            )
        });
        let app = Router::new()
            .route("/v2/trades/{symbol}/hist", get(trades_page))
            .with_state(Arc::new(book))
            .merge(
                Router::new()
                    .route("/v2/candles/{key}/hist", get(candles_page))
                    .with_state(Arc::new(fills)),
            );
        crate::RestMock::serve(app, trades).await
    }
}

fn error(status: StatusCode, code: u32, text: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        format!("[\"error\",{code},\"{text}\"]"),
    )
        .into_response()
}

async fn trades_page(
    State(book): State<Arc<Book>>,
    Path(symbol): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let number = |name: &str, default: i64| -> Result<i64, String> {
        q.get(name).map_or(Ok(default), |v| {
            v.parse::<i64>().map_err(|_| format!("{name}: invalid"))
        })
    };
    let (start, limit, sort) = match (number("start", 0), number("limit", 125), number("sort", -1))
    {
        (Ok(s), Ok(l), Ok(o)) => (s, l, o),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return error(StatusCode::BAD_REQUEST, 10020, &e);
        }
    };
    if !(1..=10_000).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, 10020, "limit: invalid");
    }
    if sort != 1 {
        return error(
            StatusCode::BAD_REQUEST,
            10020,
            "sort: this mock serves sort=1 only",
        );
    }
    let rows: Vec<&str> = book.get(&symbol).map_or_else(Vec::new, |rows| {
        rows.range((start, 0)..)
            .take(usize::try_from(limit).unwrap_or(0))
            .map(|(_, v)| v.as_str())
            .collect()
    });
    (
        [("content-type", "application/json")],
        format!("[{}]", rows.join(",")),
    )
        .into_response()
}

/// The length of a Bitfinex timeframe (`1m` ... `1D`), in ns.
fn timeframe_nanos(tf: &str) -> Option<i64> {
    Some(match tf {
        "1m" => 60 * SEC,
        "5m" => 300 * SEC,
        "15m" => 900 * SEC,
        "30m" => 1_800 * SEC,
        "1h" => 3_600 * SEC,
        "3h" => 10_800 * SEC,
        "6h" => 21_600 * SEC,
        "12h" => 43_200 * SEC,
        "1D" => 86_400 * SEC,
        _ => return None,
    })
}

/// `GET /v2/candles/trade:{tf}:{symbol}/hist?start=&end=&limit=&sort=`:
/// rows `[MTS, OPEN, CLOSE, HIGH, LOW, VOLUME]`, `start` and `end` (ms)
/// inclusive, no candle for an interval without trades.
async fn candles_page(
    State(fills): State<Arc<Fills>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // Symbols of long names hold a colon themselves: `tTESTBTC:TESTUSD`.
    let mut parts = key.splitn(3, ':');
    let (Some("trade"), Some(step), Some(symbol)) = (
        parts.next(),
        parts.next().and_then(timeframe_nanos),
        parts.next(),
    ) else {
        return error(StatusCode::BAD_REQUEST, 10020, "key: invalid");
    };
    let number = |name: &str, default: i64| -> Result<i64, String> {
        q.get(name).map_or(Ok(default), |v| {
            v.parse::<i64>().map_err(|_| format!("{name}: invalid"))
        })
    };
    let (start, end, limit, sort) = match (
        number("start", 0),
        number("end", i64::MAX / 1_000_000),
        number("limit", 100),
        number("sort", -1),
    ) {
        (Ok(s), Ok(e), Ok(l), Ok(o)) => (s, e, l, o),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return error(StatusCode::BAD_REQUEST, 10020, &e);
        }
    };
    if !(1..=10_000).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, 10020, "limit: invalid");
    }
    let all = fills
        .get(symbol)
        .map_or_else(Vec::new, |f| bars(f, step, false));
    let mut rows: Vec<String> = all
        .iter()
        .filter(|b| (start..=end).contains(&b.open_ms()))
        .map(|b| {
            format!(
                "[{},{},{},{},{},{}]",
                b.open_ms(),
                b.open,
                b.close,
                b.high,
                b.low,
                b.volume
            )
        })
        .collect();
    if sort != 1 {
        rows.reverse();
    }
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    (
        [("content-type", "application/json")],
        format!("[{}]", rows.join(",")),
    )
        .into_response()
}

/// Trade frames by position: `[CHAN, [[ID, MTS, AMOUNT, PRICE], ...]]` and
/// `[CHAN, "te"|"tu", [ID, MTS, AMOUNT, PRICE]]`, each of which may end
/// with a sequence number (the connection's `SEQ_ALL` flag).
fn shift_rows(frame: &str, offset: i64) -> Option<String> {
    use crate::shift::{Raw, shift_one_row_at, shift_rows_at};
    let top: Vec<Raw<'_>> = serde_json::from_str(frame).ok()?;
    match top.as_slice() {
        [_, rows] | [_, rows, _] if rows.get().starts_with("[[") => {
            shift_rows_at(&top, 1, 1, 4, TimeUnit::Millis, offset)
        }
        [_, kind, _] | [_, kind, _, _] if matches!(kind.get(), "\"te\"" | "\"tu\"") => {
            shift_one_row_at(&top, 2, 1, 4, TimeUnit::Millis, offset)
        }
        _ => None,
    }
}

fn subscribed(text: &str) -> HashSet<Product> {
    let mut out = HashSet::new();
    if let Some(v) = json_of(text) {
        names_in(&v["symbol"], &upper, &mut out);
    }
    out
}

/// Bitfinex answers `{"event":"ping","cid":N}` with its `cid`.
fn pong(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    (v["event"] == "ping").then(|| json!({"event": "pong", "cid": v["cid"]}).to_string())
}

fn rest(
    recording: &[RawMessage],
    shift_to: Option<ck_model::Ts>,
) -> BoxFuture<'_, std::io::Result<crate::RestMock>> {
    Box::pin(MockBitfinexRest::start(recording, shift_to))
}

/// Bitfinex in the mock registry ([`crate::venues`]).
pub const SPEC: MockSpec = MockSpec {
    exchange: ck_model::Exchange::Bitfinex,
    wire: Wire {
        time_fields: &[],
        shift_rows: Some(shift_rows),
        ids: Ids::FirstOfRows,
        products: Products::ByChannel,
        subscribed,
        pong,
        // Channel ids name a frame's book; resync is a new connection.
        book: None,
        sequence: None,
    },
    rest: Some(rest),
    custom_start: None,
    demo: Some(DemoRecording {
        file: "BITFINEX.jsonl.zst",
        api: None,
        note: None,
    }),
};
