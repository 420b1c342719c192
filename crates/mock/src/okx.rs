//! OKX v5 REST candles (`GET /api/v5/market/history-candles?instId=&bar=&after=&before=&limit=`),
//! computed from the `trades` frames of a WebSocket recording: rows
//! `[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]` as strings, newest
//! first, with `ts` after `before` and before `after` (both exclusive, ms),
//! `limit` up to 100, in `{"code":"0","msg":"","data":[...]}`. Intervals
//! without trades get a flat candle at the previous close (what candlekeep
//! assumes for OKX; unverified). Errors come as a non-zero `code`.
//!
//! Tickers: `GET /api/v5/market/ticker?instId=`, the last recorded
//! `tickers` row (for the polling source); code 51001 for an unknown id.
//!
//! Trades: `GET /api/v5/market/history-trades?instId=&type=1|2&after=&before=&limit=`,
//! the recorded `trades` rows (times moved), newest first; `type=1` (the
//! default) bounds ids, `type=2` times in ms, `after` from above and
//! `before` from below, both exclusive; of more rows than `limit` in range,
//! the newest (as OKX pages backwards from the present).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ck_bus::{Origin, RawMessage};

use crate::bars::{Fill, Fills, SEC, bars};

use futures_util::future::BoxFuture;

use crate::route::{Product, json_of, names_in, upper, upper_of};
use crate::venues::{DemoRecording, Ids, MockSpec, Products, TimeUnit, Wire};

/// The last recorded `tickers` row by `instId`.
type Tickers = HashMap<String, String>;

/// Recorded trade rows by `instId`: id to (time in ms, row).
type Book = HashMap<String, BTreeMap<u64, (i64, String)>>;

/// The mock's constructor (it returns a [`crate::RestMock`]).
pub struct MockOkxRest;

impl MockOkxRest {
    /// Serves candles of the trades in `recording` on `127.0.0.1` (any
    /// port); with `shift_to`, times move as a [`crate::venue::MockVenue`]
    /// started with the same `shift_to` moves them.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(
        recording: &[RawMessage],
        shift_to: Option<ck_model::Ts>,
    ) -> std::io::Result<crate::RestMock> {
        MockOkxRest::start_with(recording, shift_to, false).await
    }

    /// As [`MockOkxRest::start`]; with `aggregate`, `history-trades`
    /// serves the trades as the `trades` channel pushes them since 2023:
    /// consecutive fills of one instrument at one time, price and side as
    /// one row of their summed size, with the last fill's id and `count`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start_with(
        recording: &[RawMessage],
        shift_to: Option<ck_model::Ts>,
        aggregate: bool,
    ) -> std::io::Result<crate::RestMock> {
        let shift = match (shift_to, recording.iter().find(|m| m.origin == Origin::Ws)) {
            (Some(at), Some(first)) => at.0 - first.ts_received.0,
            _ => 0,
        };
        let mut fills = Fills::new();
        let mut book = Book::new();
        let mut tickers: Tickers = HashMap::new();
        for m in recording.iter().filter(|m| m.origin == Origin::Ws) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&m.data) else {
                continue;
            };
            if v["arg"]["channel"] == "tickers" {
                for t in v["data"].as_array().into_iter().flatten() {
                    if let Some(inst) = t["instId"].as_str() {
                        let mut row = t.clone();
                        if let Some(ms) = t["ts"].as_str().and_then(|s| s.parse::<i64>().ok()) {
                            let moved = ms + shift.div_euclid(1_000_000);
                            row["ts"] = serde_json::Value::String(moved.to_string());
                        }
                        tickers.insert(inst.to_owned(), row.to_string());
                    }
                }
                continue;
            }
            if v["arg"]["channel"] != "trades" {
                continue;
            }
            for t in v["data"].as_array().into_iter().flatten() {
                let (Some(inst), Some(ms), Some(px), Some(sz)) = (
                    t["instId"].as_str(),
                    t["ts"].as_str().and_then(|s| s.parse::<i64>().ok()),
                    t["px"].as_str(),
                    t["sz"].as_str(),
                ) else {
                    continue;
                };
                if let Some(f) = Fill::parse(ms * 1_000_000 + shift, px, sz, t["side"] == "buy") {
                    fills.entry(inst.to_owned()).or_default().push(f);
                }
                if let Some(id) = t["tradeId"].as_str().and_then(|s| s.parse::<u64>().ok()) {
                    let moved = ms + shift.div_euclid(1_000_000);
                    let mut row = t.clone();
                    row["ts"] = serde_json::Value::String(moved.to_string());
                    book.entry(inst.to_owned())
                        .or_default()
                        .insert(id, (moved, row.to_string()));
                }
            }
        }
        for f in fills.values_mut() {
            f.sort_by_key(|f| f.time_ns);
        }
        if aggregate {
            for rows in book.values_mut() {
                *rows = aggregated(std::mem::take(rows));
            }
        }
        let trades = book.values().map(BTreeMap::len).sum();
        let app = Router::new()
            .route("/api/v5/market/history-candles", get(candles))
            .with_state(Arc::new(fills))
            .merge(
                Router::new()
                    .route("/api/v5/market/history-trades", get(history_trades))
                    .with_state(Arc::new(book)),
            )
            .merge(
                Router::new()
                    .route("/api/v5/market/ticker", get(ticker))
                    .with_state(Arc::new(tickers)),
            );
        crate::RestMock::serve(app, trades).await
    }
}

/// An aggregate being built: last id, time (ms), first row, summed size, fills.
type Run = (u64, i64, serde_json::Value, ck_model::Decimal, u32);

/// Ends `run`, writing its row (summed size, `count`) under its last id.
fn close(run: Option<Run>, out: &mut BTreeMap<u64, (i64, String)>) {
    if let Some((id, ms, mut row, size, count)) = run {
        row["tradeId"] = serde_json::Value::String(id.to_string());
        row["sz"] = serde_json::Value::String(size.to_string());
        row["count"] = serde_json::Value::String(count.to_string());
        out.insert(id, (ms, row.to_string()));
    }
}

/// Consecutive rows at one time, price and side as one row: the summed
/// size, the last id, and `count`.
fn aggregated(rows: BTreeMap<u64, (i64, String)>) -> BTreeMap<u64, (i64, String)> {
    let mut out: BTreeMap<u64, (i64, String)> = BTreeMap::new();
    let mut run: Option<Run> = None;
    for (id, (ms, text)) in rows {
        let Ok(row) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(size) = row["sz"]
            .as_str()
            .and_then(|s| ck_model::Decimal::parse(s).ok())
        else {
            continue;
        };
        let joins = run.as_ref().is_some_and(|(last, at, r, _, _)| {
            *last + 1 == id && *at == ms && r["px"] == row["px"] && r["side"] == row["side"]
        });
        if joins && let Some((last, _, _, sum, count)) = run.as_mut() {
            *last = id;
            *sum = sum.checked_add(size).unwrap_or(*sum);
            *count += 1;
        } else {
            close(run.take(), &mut out);
            run = Some((id, ms, row, size, 1));
        }
    }
    close(run, &mut out);
    out
}

fn refusal(code: &str, msg: &str) -> Response {
    (
        [("content-type", "application/json")],
        format!("{{\"code\":\"{code}\",\"msg\":\"{msg}\",\"data\":[]}}"),
    )
        .into_response()
}

/// A request's `after` and `before` (exclusive bounds, open when absent)
/// and `limit` (1 to 100, default 100), or OKX's refusal (code, message).
fn bounds(q: &HashMap<String, String>) -> Result<(i64, i64, i64), (&'static str, &'static str)> {
    let number = |name: &str, default: i64| -> Option<i64> {
        q.get(name).map_or(Some(default), |v| v.parse().ok())
    };
    let (Some(after), Some(before), Some(limit)) = (
        number("after", i64::MAX),
        number("before", i64::MIN),
        number("limit", 100),
    ) else {
        return Err(("51000", "Parameter error"));
    };
    if !(1..=100).contains(&limit) {
        return Err(("51000", "Parameter limit error"));
    }
    Ok((after, before, limit))
}

/// The length of an OKX `bar`, in ns (UTC variants from 6 hours up).
fn bar_nanos(bar: &str) -> Option<i64> {
    Some(match bar {
        "1m" => 60 * SEC,
        "3m" => 180 * SEC,
        "5m" => 300 * SEC,
        "15m" => 900 * SEC,
        "30m" => 1_800 * SEC,
        "1H" => 3_600 * SEC,
        "2H" => 7_200 * SEC,
        "4H" => 14_400 * SEC,
        "6Hutc" => 21_600 * SEC,
        "12Hutc" => 43_200 * SEC,
        "1Dutc" => 86_400 * SEC,
        _ => return None,
    })
}

async fn candles(
    State(fills): State<Arc<Fills>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(trades) = q.get("instId").and_then(|i| fills.get(i)) else {
        return refusal("51001", "Instrument ID does not exist");
    };
    let Some(step) = q.get("bar").map_or(Some(60 * SEC), |b| bar_nanos(b)) else {
        return refusal("51000", "Parameter bar error");
    };
    let (after, before, limit) = match bounds(&q) {
        Ok(b) => b,
        Err((code, msg)) => return refusal(code, msg),
    };
    let now_ms = ck_model::Ts::now().as_millis();
    let step_ms = step / 1_000_000;
    let rows: Vec<String> = bars(trades, step, true)
        .iter()
        .rev()
        .filter(|b| b.open_ms() > before && b.open_ms() < after)
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|b| {
            let confirm = if b.open_ms() + step_ms > now_ms {
                "0"
            } else {
                "1"
            };
            format!(
                "[\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{confirm}\"]",
                b.open_ms(),
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume,
                b.volume,
                b.quote
            )
        })
        .collect();
    (
        [("content-type", "application/json")],
        format!(
            "{{\"code\":\"0\",\"msg\":\"\",\"data\":[{}]}}",
            rows.join(",")
        ),
    )
        .into_response()
}

async fn history_trades(
    State(book): State<Arc<Book>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(rows) = q.get("instId").and_then(|i| book.get(i)) else {
        return refusal("51001", "Instrument ID does not exist");
    };
    let (after, before, limit) = match bounds(&q) {
        Ok(b) => b,
        Err((code, msg)) => return refusal(code, msg),
    };
    let by_time = match q.get("type").map(String::as_str) {
        None | Some("1") => false,
        Some("2") => true,
        Some(_) => return refusal("51000", "Parameter type error"),
    };
    let inside = |v: i64| v > before && v < after;
    let list: Vec<&str> = rows
        .iter()
        .rev()
        .filter(|(id, (ms, _))| {
            if by_time {
                inside(*ms)
            } else {
                i64::try_from(**id).is_ok_and(inside)
            }
        })
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|(_, (_, row))| row.as_str())
        .collect();
    (
        [("content-type", "application/json")],
        format!(
            "{{\"code\":\"0\",\"msg\":\"\",\"data\":[{}]}}",
            list.join(",")
        ),
    )
        .into_response()
}

async fn ticker(
    State(tickers): State<Arc<Tickers>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(row) = q.get("instId").and_then(|i| tickers.get(i)) else {
        return refusal("51001", "Instrument ID does not exist");
    };
    (
        [("content-type", "application/json")],
        format!("{{\"code\":\"0\",\"msg\":\"\",\"data\":[{row}]}}"),
    )
        .into_response()
}

fn subscribed(text: &str) -> HashSet<Product> {
    let mut out = HashSet::new();
    if let Some(v) = json_of(text) {
        for a in v["args"].as_array().into_iter().flatten() {
            names_in(&a["instId"], &upper, &mut out);
        }
    }
    out
}

fn rest(
    recording: &[RawMessage],
    shift_to: Option<ck_model::Ts>,
) -> BoxFuture<'_, std::io::Result<crate::RestMock>> {
    Box::pin(MockOkxRest::start(recording, shift_to))
}

/// OKX in the mock registry ([`crate::venues`]).
pub const SPEC: MockSpec = MockSpec {
    exchange: ck_model::Exchange::Okx,
    wire: Wire {
        time_fields: &[("ts", TimeUnit::Millis)],
        shift_rows: None,
        ids: Ids::Field("tradeId", Some("instId")),
        products: Products::InFrame(|v| upper_of(&v["arg"]["instId"])),
        subscribed,
        pong: crate::venues::common_pong,
        book: Some(crate::books::okx),
        sequence: None,
    },
    rest: Some(rest),
    custom_start: None,
    demo: Some(DemoRecording {
        file: "OKX.jsonl.zst",
        api: None,
        note: None,
    }),
};
