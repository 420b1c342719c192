//! Bitfinex v2 REST trades (`GET /v2/trades/{symbol}/hist`), served from the
//! trades of a WebSocket recording (snapshots and `te` updates; `tu` repeats
//! them): `start` (ms, inclusive), `limit` up to 10,000, `sort=1` (oldest
//! first; the only order this mock serves), rows `[ID, MTS, AMOUNT, PRICE]`
//! with the recorded number text, errors in Bitfinex's `["error", code, msg]`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ck_bus::{Origin, RawMessage};
use serde_json::value::RawValue;

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
        let app = Router::new()
            .route("/v2/trades/{symbol}/hist", get(trades_page))
            .with_state(Arc::new(book));
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
