//! Coinbase Advanced Trade public REST trades and candles, from the
//! `market_trades` frames of a WebSocket recording (snapshot and update
//! trades, once each by `trade_id`):
//! - `GET /api/v3/brokerage/market/products/{id}/ticker?limit=&start=&end=`:
//!   the trades with `start <= time <= end` (UNIX seconds, optional), the
//!   newest `limit` (1 to 1,000) of them, newest first, as
//!   `{"trades":[...],"best_bid":"","best_ask":""}` with the recorded
//!   fields (`side` the maker's, as on the WebSocket).
//! - `GET /api/v3/brokerage/market/products/{id}/candles?start=&end=&granularity=`:
//!   `start` and `end` are UNIX seconds, both required, both inclusive
//!   bucket starts, at most 350 buckets; rows
//!   `{"start","low","high","open","close","volume"}` as strings, newest
//!   first, none for intervals without trades.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ck_bus::{Origin, RawMessage};

use crate::bars::{Fill, Fills, SEC, bars, fills_of};

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::route::{Product, upper_of};
use crate::venues::{DemoRecording, Ids, MockSpec, Products, TimeUnit, Wire};

/// Trade rows by product, by (time ns, zero-padded id), as JSON text.
type Rows = HashMap<String, BTreeMap<(i64, String), String>>;

/// The mock's constructor (it returns a [`crate::RestMock`]).
pub struct MockCoinbaseAdvancedRest;

impl MockCoinbaseAdvancedRest {
    /// Serves the trades in `recording`, and their candles, on `127.0.0.1`
    /// (any port); with `shift_to`, times move as a
    /// [`crate::venue::MockVenue`] started with the same `shift_to` moves
    /// them.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(
        recording: &[RawMessage],
        shift_to: Option<ck_model::Ts>,
    ) -> std::io::Result<crate::RestMock> {
        let shift = match (shift_to, recording.iter().find(|m| m.origin == Origin::Ws)) {
            (Some(at), Some(first)) => at.0 - first.ts_received.0,
            _ => 0,
        };
        // Trades by product, by (time, id): snapshots repeat trades.
        let mut book: HashMap<String, BTreeMap<(i64, String), Fill>> = HashMap::new();
        let mut rows: Rows = HashMap::new();
        for m in recording.iter().filter(|m| m.origin == Origin::Ws) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&m.data) else {
                continue;
            };
            if v["channel"] != "market_trades" {
                continue;
            }
            let events = v["events"].as_array().into_iter().flatten();
            for t in events.flat_map(|e| e["trades"].as_array().into_iter().flatten()) {
                let (Some(product), Some(id), Some(time), Some(price), Some(size)) = (
                    t["product_id"].as_str(),
                    t["trade_id"].as_str(),
                    t["time"]
                        .as_str()
                        .and_then(|s| ck_model::Ts::parse(s).ok())
                        .map(|t| ck_model::Ts(t.0 + shift)),
                    t["price"].as_str(),
                    t["size"].as_str(),
                ) else {
                    continue;
                };
                // The side is the maker's: a maker sell is a taker buy.
                if let Some(f) = Fill::parse(time.0, price, size, t["side"] == "SELL") {
                    let key = (time.0, format!("{id:0>20}"));
                    book.entry(product.to_owned())
                        .or_default()
                        .insert(key.clone(), f);
                    let row = serde_json::json!({
                        "trade_id": id, "product_id": product, "price": price, "size": size,
                        "time": time.to_string(), "side": t["side"], "bid": "", "ask": "", "exchange": "",
                    });
                    rows.entry(product.to_owned())
                        .or_default()
                        .insert(key, row.to_string());
                }
            }
        }
        let fills = fills_of(&book, |_, f| Some(f.clone()));
        let trades = fills.values().map(Vec::len).sum();
        let app = Router::new()
            .route(
                "/api/v3/brokerage/market/products/{product}/candles",
                get(candles),
            )
            .with_state(Arc::new(fills))
            .merge(
                Router::new()
                    .route(
                        "/api/v3/brokerage/market/products/{product}/ticker",
                        get(ticker),
                    )
                    .with_state(Arc::new(rows)),
            );
        crate::RestMock::serve(app, trades).await
    }
}

fn refusal(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        format!("{{\"error\":\"INVALID_ARGUMENT\",\"message\":\"{message}\"}}"),
    )
        .into_response()
}

async fn candles(
    State(fills): State<Arc<Fills>>,
    Path(product): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(trades) = fills.get(&product) else {
        return refusal(StatusCode::NOT_FOUND, "product not found");
    };
    let step = match q.get("granularity").map(String::as_str) {
        Some("ONE_MINUTE") => 60,
        Some("FIVE_MINUTE") => 300,
        Some("FIFTEEN_MINUTE") => 900,
        Some("THIRTY_MINUTE") => 1_800,
        Some("ONE_HOUR") => 3_600,
        Some("TWO_HOUR") => 7_200,
        Some("SIX_HOUR") => 21_600,
        Some("ONE_DAY") => 86_400,
        _ => return refusal(StatusCode::BAD_REQUEST, "invalid granularity"),
    };
    let secs = |name: &str| q.get(name).and_then(|v| v.parse::<i64>().ok());
    let (Some(start), Some(end)) = (secs("start"), secs("end")) else {
        return refusal(StatusCode::BAD_REQUEST, "start and end are required");
    };
    if end < start || (end - start) / step + 1 > 350 {
        return refusal(
            StatusCode::BAD_REQUEST,
            "number of candles requested should be less than 350",
        );
    }
    let rows: Vec<serde_json::Value> = bars(trades, step * SEC, false)
        .iter()
        .rev()
        .filter(|b| (start..=end).contains(&b.open_secs()))
        .map(|b| {
            serde_json::json!({
                "start": b.open_secs().to_string(), "low": b.low.to_string(),
                "high": b.high.to_string(), "open": b.open.to_string(),
                "close": b.close.to_string(), "volume": b.volume.to_string(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "candles": rows })).into_response()
}

async fn ticker(
    State(rows): State<Arc<Rows>>,
    Path(product): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(trades) = rows.get(&product) else {
        return refusal(StatusCode::NOT_FOUND, "product not found");
    };
    let Some(limit) = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| (1..=1_000).contains(l))
    else {
        return refusal(StatusCode::BAD_REQUEST, "limit is required, 1 to 1000");
    };
    let secs = |name: &str, default: i64| -> Option<i64> {
        q.get(name).map_or(Some(default), |v| v.parse().ok())
    };
    let (Some(start), Some(end)) = (secs("start", i64::MIN / SEC), secs("end", i64::MAX / SEC))
    else {
        return refusal(StatusCode::BAD_REQUEST, "start and end are UNIX seconds");
    };
    let list: Vec<&str> = trades
        .range((start.saturating_mul(SEC), String::new())..)
        .take_while(|((t, _), _)| *t <= end.saturating_mul(SEC))
        .map(|(_, row)| row.as_str())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take(limit)
        .collect();
    (
        [("content-type", "application/json")],
        format!(
            "{{\"trades\":[{}],\"best_bid\":\"\",\"best_ask\":\"\"}}",
            list.join(",")
        ),
    )
        .into_response()
}

fn frame_product(v: &Value) -> Option<Product> {
    let event = &v["events"][0];
    upper_of(&event["product_id"])
        .or_else(|| upper_of(&event["trades"][0]["product_id"]))
        .or_else(|| upper_of(&event["tickers"][0]["product_id"]))
        .or_else(|| upper_of(&event["candles"][0]["product_id"]))
}

fn rest(
    recording: &[RawMessage],
    shift_to: Option<ck_model::Ts>,
) -> BoxFuture<'_, std::io::Result<crate::RestMock>> {
    Box::pin(MockCoinbaseAdvancedRest::start(recording, shift_to))
}

/// Coinbase Advanced Trade in the mock registry ([`crate::venues`]).
pub const SPEC: MockSpec = MockSpec {
    exchange: ck_model::Exchange::Coinbase,
    wire: Wire {
        time_fields: &[("time", TimeUnit::Iso), ("timestamp", TimeUnit::Iso)],
        shift_rows: None,
        ids: Ids::Field("trade_id", None),
        products: Products::InFrame(frame_product),
        subscribed: crate::coinbase_exchange::coinbase_subscribed,
        pong: crate::venues::common_pong,
        book: Some(crate::books::coinbase_advanced),
        sequence: Some("sequence_num"),
    },
    rest: Some(rest),
    custom_start: None,
    demo: Some(DemoRecording {
        file: "COINBASE.jsonl.zst",
        api: None,
        note: None,
    }),
};
