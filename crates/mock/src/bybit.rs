//! Bybit v5 REST recent trades (`GET /v5/market/recent-trade?category=spot&symbol=&limit=`),
//! served from the `publicTrade` frames of a spot WebSocket recording: the
//! `limit` (1 to 60, default 60) most recent trades of the symbol, newest
//! first, as `{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[...]}}`
//! with Bybit's field names (`execId` is the WebSocket `i`). Bybit keeps
//! no older history, and neither does this mock. Errors come as a non-zero
//! `retCode`.
//!
//! Klines (`GET /v5/market/kline?category=spot&symbol=&interval=&start=&end=&limit=`)
//! come from the same trades: rows `[start, open, high, low, close, volume,
//! turnover]` as strings, newest first, flat at the previous close for
//! intervals without trades (Bybit's behaviour there is unverified; this is
//! what candlekeep assumes for it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ck_bus::{Origin, RawMessage};

use crate::bars::{Fill, Fills, SEC, bars, fills_of};

use futures_util::future::BoxFuture;

use crate::route::{Product, json_of, last_part, names_in, upper};
use crate::venues::{DemoRecording, Ids, MockSpec, Products, TimeUnit, Wire};

/// Rows by symbol, by (time ms, arrival), as row JSON.
type Book = HashMap<String, BTreeMap<(i64, usize), String>>;

/// The mock's constructor (it returns a [`crate::RestMock`]).
pub struct MockBybitRest;

impl MockBybitRest {
    /// Serves the trades in `recording` on `127.0.0.1` (any port); with
    /// `shift_to`, times move as a [`crate::venue::MockVenue`] started with
    /// the same `shift_to` moves them.
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
        let mut book = Book::new();
        let mut arrival = 0;
        for m in recording.iter().filter(|m| m.origin == Origin::Ws) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&m.data) else {
                continue;
            };
            if !v["topic"]
                .as_str()
                .is_some_and(|t| t.starts_with("publicTrade."))
            {
                continue;
            }
            for t in v["data"].as_array().into_iter().flatten() {
                let (Some(symbol), Some(time)) = (t["s"].as_str(), t["T"].as_i64()) else {
                    continue;
                };
                let time = time + shift_ms;
                arrival += 1;
                let row = serde_json::json!({
                    "execId": t["i"], "symbol": symbol, "price": t["p"], "size": t["v"],
                    "side": t["S"], "time": time.to_string(), "isBlockTrade": t["BT"],
                });
                book.entry(symbol.to_owned())
                    .or_default()
                    .insert((time, arrival), row.to_string());
            }
        }
        let trades = book.values().map(BTreeMap::len).sum();
        let fills = fills_of(&book, |&(time_ms, _), text| {
            let row: serde_json::Value = serde_json::from_str(text).ok()?;
            Fill::parse(
                time_ms * 1_000_000,
                row["price"].as_str()?,
                row["size"].as_str()?,
                row["side"] == "Buy",
            )
        });
        let app = Router::new()
            .route("/v5/market/recent-trade", get(recent_trades))
            .with_state(Arc::new(book))
            .merge(
                Router::new()
                    .route("/v5/market/kline", get(klines))
                    .with_state(Arc::new(fills)),
            );
        crate::RestMock::serve(app, trades).await
    }
}

fn refusal(code: u32, text: &str) -> Response {
    (
        [("content-type", "application/json")],
        format!("{{\"retCode\":{code},\"retMsg\":\"{text}\",\"result\":{{}}}}"),
    )
        .into_response()
}

async fn recent_trades(
    State(book): State<Arc<Book>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("category").map(String::as_str) != Some("spot") {
        return refusal(10001, "this mock serves category=spot only");
    }
    let Some(rows) = q.get("symbol").and_then(|s| book.get(s)) else {
        return refusal(10001, "params error: symbol invalid");
    };
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 60,
        Some(Ok(l)) if (1..=60).contains(&l) => l,
        Some(_) => return refusal(10001, "params error: limit invalid"),
    };
    let list: Vec<&str> = rows
        .values()
        .rev()
        .take(limit)
        .map(String::as_str)
        .collect();
    (
        [("content-type", "application/json")],
        format!(
            "{{\"retCode\":0,\"retMsg\":\"OK\",\"result\":{{\"category\":\"spot\",\"list\":[{}]}},\"time\":0}}",
            list.join(",")
        ),
    )
        .into_response()
}

/// Bybit's kline interval codes, in ns.
fn kline_nanos(code: &str) -> Option<i64> {
    Some(match code {
        "D" => 86_400 * SEC,
        minutes => match minutes.parse::<i64>().ok()? {
            m @ (1 | 3 | 5 | 15 | 30 | 60 | 120 | 240 | 360 | 720) => m * 60 * SEC,
            _ => return None,
        },
    })
}

async fn klines(
    State(fills): State<Arc<Fills>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("category").map(String::as_str) != Some("spot") {
        return refusal(10001, "this mock serves category=spot only");
    }
    let Some(trades) = q.get("symbol").and_then(|s| fills.get(s)) else {
        return refusal(10001, "params error: symbol invalid");
    };
    let Some(step) = q.get("interval").and_then(|i| kline_nanos(i)) else {
        return refusal(10001, "params error: interval invalid");
    };
    let number = |name: &str, default: i64| -> Option<i64> {
        q.get(name).map_or(Some(default), |v| v.parse().ok())
    };
    let (Some(start), Some(end), Some(limit)) = (
        number("start", 0),
        number("end", i64::MAX),
        number("limit", 200),
    ) else {
        return refusal(10001, "params error");
    };
    if !(1..=1_000).contains(&limit) {
        return refusal(10001, "params error: limit invalid");
    }
    let rows: Vec<String> = bars(trades, step, true)
        .iter()
        .rev()
        .filter(|b| (start..=end).contains(&b.open_ms()))
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|b| {
            format!(
                "[\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\"]",
                b.open_ms(),
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume,
                b.quote
            )
        })
        .collect();
    (
        [("content-type", "application/json")],
        format!(
            "{{\"retCode\":0,\"retMsg\":\"OK\",\"result\":{{\"category\":\"spot\",\"list\":[{}]}},\"time\":0}}",
            rows.join(",")
        ),
    )
        .into_response()
}

/// `publicTrade.BTCUSDT` is about `BTCUSDT`.
fn topic_product(topic: &str) -> Product {
    upper(last_part(topic, '.'))
}

fn subscribed(text: &str) -> HashSet<Product> {
    let mut out = HashSet::new();
    if let Some(v) = json_of(text) {
        names_in(&v["args"], &topic_product, &mut out);
    }
    out
}

fn rest(
    recording: &[RawMessage],
    shift_to: Option<ck_model::Ts>,
) -> BoxFuture<'_, std::io::Result<crate::RestMock>> {
    Box::pin(MockBybitRest::start(recording, shift_to))
}

/// Bybit in the mock registry ([`crate::venues`]).
pub const SPEC: MockSpec = MockSpec {
    exchange: ck_model::Exchange::Bybit,
    wire: Wire {
        time_fields: &[("T", TimeUnit::Millis), ("ts", TimeUnit::Millis)],
        shift_rows: None,
        ids: Ids::Suffix("i"),
        products: Products::InFrame(|v| v["topic"].as_str().map(topic_product)),
        subscribed,
        pong: crate::venues::common_pong,
        book: Some(crate::books::bybit),
        sequence: None,
    },
    rest: Some(rest),
    custom_start: None,
    demo: Some(DemoRecording {
        file: "BYBIT.jsonl.zst",
        api: None,
        note: None,
    }),
};
