//! Bitstamp REST trades (`GET /api/v2/transactions/{pair}/?time=minute|hour|day`),
//! served from the `live_trades_<pair>` frames of a WebSocket recording:
//! every trade of the last minute, hour (the default) or day by the clock
//! of the machine, newest first, as
//! `[{"date":"<s>","tid":"<id>","price":"...","amount":"...","type":"0"|"1"}]`.
//! Start it with `shift_to` near now, or the recorded trades are too old to
//! be served, as they would be on Bitstamp.
//!
//! Candles (`GET /api/v2/ohlc/{pair}/?step=&limit=&start=&end=`) come from
//! the same trades, flat at the previous close for intervals without trades
//! (what candlekeep assumes for Bitstamp; unverified): the `limit` candles
//! up to `end` when it is given (Bitstamp then ignores `start`), else from
//! `start`, else the newest; `{"data":{"pair":..,"ohlc":[{..}]}}`, oldest first.

use std::collections::{BTreeMap, HashMap, HashSet};
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

use crate::route::{Product, json_of, last_part, names_in, upper};
use crate::venues::{DemoRecording, Ids, MockSpec, Products, TimeUnit, Wire};

/// Rows by pair, by (time µs, id), as row JSON.
type Book = HashMap<String, BTreeMap<(i64, u64), String>>;

/// The mock's constructor (it returns a [`crate::RestMock`]).
pub struct MockBitstampRest;

impl MockBitstampRest {
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
        MockBitstampRest::start_with(recording, shift_to, false).await
    }

    /// As [`MockBitstampRest::start`]; with `stale_book`, the first order
    /// book each pair is asked for is an hour older than recorded (older
    /// than every diff of the recording: a stale snapshot).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start_with(
        recording: &[RawMessage],
        shift_to: Option<ck_model::Ts>,
        stale_book: bool,
    ) -> std::io::Result<crate::RestMock> {
        let shift_us = match (shift_to, recording.iter().find(|m| m.origin == Origin::Ws)) {
            (Some(at), Some(first)) => (at.0 - first.ts_received.0) / 1_000,
            _ => 0,
        };
        let mut book = Book::new();
        for m in recording.iter().filter(|m| m.origin == Origin::Ws) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&m.data) else {
                continue;
            };
            let (Some(pair), "trade") = (
                v["channel"]
                    .as_str()
                    .and_then(|c| c.strip_prefix("live_trades_")),
                v["event"].as_str().unwrap_or_default(),
            ) else {
                continue;
            };
            let t = &v["data"];
            let (Some(id), Some(micros)) = (
                t["id"].as_u64(),
                t["microtimestamp"]
                    .as_str()
                    .and_then(|s| s.parse::<i64>().ok()),
            ) else {
                continue;
            };
            let micros = micros + shift_us;
            let row = serde_json::json!({
                "date": micros.div_euclid(1_000_000).to_string(), "tid": id.to_string(),
                "price": t["price_str"], "amount": t["amount_str"],
                "type": t["type"].as_u64().unwrap_or(0).to_string(),
            });
            book.entry(pair.to_owned())
                .or_default()
                .insert((micros, id), row.to_string());
        }
        let trades = book.values().map(BTreeMap::len).sum();
        let fills = fills_of(&book, |&(micros, _), text| {
            let row: serde_json::Value = serde_json::from_str(text).ok()?;
            Fill::parse(
                micros * 1_000,
                row["price"].as_str()?,
                row["amount"].as_str()?,
                row["type"] == "0",
            )
        });
        let books = OrderBooks {
            bodies: order_books(recording, shift_us),
            stale: std::sync::Mutex::new(if stale_book { HashSet::new() } else { HashSet::from(["*".to_owned()]) }),
        };
        let app = Router::new()
            .route("/api/v2/order_book/{pair}/", get(order_book))
            .with_state(Arc::new(books))
            .merge(Router::new().route("/api/v2/transactions/{pair}/", get(transactions)))
            .with_state(Arc::new(book))
            .merge(
                Router::new()
                    .route("/api/v2/ohlc/{pair}/", get(ohlc))
                    .with_state(Arc::new(fills)),
            );
        crate::RestMock::serve(app, trades).await
    }
}

/// The recorded order books, and the pairs already answered stale.
struct OrderBooks {
    /// Per pair: the first recorded `order_book` answer, its times moved.
    bodies: HashMap<String, Value>,
    /// Pairs answered stale once (`*`: none is).
    stale: std::sync::Mutex<HashSet<String>>,
}

/// The first recorded `GET /api/v2/order_book/<pair>/` answer of each pair,
/// with `timestamp` and `microtimestamp` moved by `shift_us`.
fn order_books(recording: &[RawMessage], shift_us: i64) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for m in recording {
        let Origin::Rest { url } = &m.origin else {
            continue;
        };
        let Some(pair) = url
            .split_once("/api/v2/order_book/")
            .and_then(|(_, rest)| rest.split(['/', '?']).next())
            .filter(|p| !p.is_empty())
        else {
            continue;
        };
        let Ok(mut v) = serde_json::from_str::<Value>(&m.data) else {
            continue;
        };
        if let Some(micros) = v["microtimestamp"].as_str().and_then(|t| t.parse::<i64>().ok()) {
            let micros = micros + shift_us;
            v["microtimestamp"] = micros.to_string().into();
            v["timestamp"] = micros.div_euclid(1_000_000).to_string().into();
        }
        out.entry(pair.to_owned()).or_insert(v);
    }
    out
}

/// `GET /api/v2/order_book/<pair>/`: the recorded book (once an hour old,
/// under the stale fault).
async fn order_book(State(books): State<Arc<OrderBooks>>, Path(pair): Path<String>) -> Response {
    let Some(body) = books.bodies.get(&pair) else {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            "{\"status\":\"error\",\"reason\":\"Invalid currency pair\"}",
        )
            .into_response();
    };
    let mut body = body.clone();
    let stale = {
        let mut seen = books.stale.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        !seen.contains("*") && seen.insert(pair)
    };
    if stale
        && let Some(micros) = body["microtimestamp"].as_str().and_then(|t| t.parse::<i64>().ok())
    {
        let micros = micros - 3_600_000_000;
        body["microtimestamp"] = micros.to_string().into();
        body["timestamp"] = micros.div_euclid(1_000_000).to_string().into();
    }
    ([("content-type", "application/json")], body.to_string()).into_response()
}

async fn transactions(
    State(book): State<Arc<Book>>,
    Path(pair): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let refuse = |reason: &str| {
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            format!("{{\"status\":\"error\",\"reason\":\"{reason}\"}}"),
        )
            .into_response()
    };
    let span_secs: i64 = match q.get("time").map(String::as_str) {
        Some("minute") => 60,
        None | Some("hour") => 3_600,
        Some("day") => 86_400,
        Some(_) => return refuse("Invalid time"),
    };
    let Some(rows) = book.get(&pair) else {
        return refuse("Invalid pair");
    };
    let since_us = (ck_model::Ts::now().0 / 1_000) - span_secs * 1_000_000;
    let list: Vec<&str> = rows
        .range((since_us, 0)..)
        .rev()
        .map(|(_, r)| r.as_str())
        .collect();
    (
        [("content-type", "application/json")],
        format!("[{}]", list.join(",")),
    )
        .into_response()
}

async fn ohlc(
    State(fills): State<Arc<Fills>>,
    Path(pair): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let refuse = |reason: &str| {
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            format!("{{\"status\":\"error\",\"reason\":\"{reason}\"}}"),
        )
            .into_response()
    };
    let Some(trades) = fills.get(&pair) else {
        return refuse("Invalid pair");
    };
    let number = |name: &str| -> Result<Option<i64>, ()> {
        q.get(name)
            .map(|v| v.parse::<i64>())
            .transpose()
            .map_err(|_| ())
    };
    let (Ok(Some(step)), Ok(Some(limit)), Ok(start), Ok(end)) = (
        number("step"),
        number("limit"),
        number("start"),
        number("end"),
    ) else {
        return refuse("Invalid step, limit, start or end");
    };
    if ![
        60, 180, 300, 900, 1_800, 3_600, 7_200, 14_400, 21_600, 43_200, 86_400, 259_200,
    ]
    .contains(&step)
        || !(1..=1_000).contains(&limit)
    {
        return refuse("Invalid step or limit");
    }
    let all = bars(trades, step * SEC, true);
    let limit = usize::try_from(limit).unwrap_or(0);
    let chosen: Vec<&crate::bars::Bar> = match (start, end) {
        (_, Some(end)) => {
            let upto: Vec<_> = all.iter().filter(|b| b.open_secs() <= end).collect();
            upto[upto.len().saturating_sub(limit)..].to_vec()
        }
        (Some(start), None) => all
            .iter()
            .filter(|b| b.open_secs() >= start)
            .take(limit)
            .collect(),
        (None, None) => all[all.len().saturating_sub(limit)..].iter().collect(),
    };
    let rows: Vec<serde_json::Value> = chosen
        .iter()
        .map(|b| {
            serde_json::json!({
                "timestamp": b.open_secs().to_string(), "open": b.open.to_string(),
                "high": b.high.to_string(), "low": b.low.to_string(),
                "close": b.close.to_string(), "volume": b.volume.to_string(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({"data": {"pair": pair, "ohlc": rows}})).into_response()
}

/// `live_trades_ethusd` is about `ETHUSD`.
fn channel_product(channel: &str) -> Product {
    upper(last_part(channel, '_'))
}

fn frame_product(v: &Value) -> Option<Product> {
    v["channel"]
        .as_str()
        .filter(|c| c.contains('_'))
        .map(channel_product)
}

fn subscribed(text: &str) -> HashSet<Product> {
    let mut out = HashSet::new();
    if let Some(v) = json_of(text) {
        names_in(&v["data"]["channel"], &channel_product, &mut out);
    }
    out
}

fn rest(
    recording: &[RawMessage],
    shift_to: Option<ck_model::Ts>,
) -> BoxFuture<'_, std::io::Result<crate::RestMock>> {
    Box::pin(MockBitstampRest::start(recording, shift_to))
}

/// Bitstamp in the mock registry ([`crate::venues`]).
pub const SPEC: MockSpec = MockSpec {
    exchange: ck_model::Exchange::Bitstamp,
    wire: Wire {
        time_fields: &[
            ("timestamp", TimeUnit::Secs),
            ("microtimestamp", TimeUnit::Micros),
        ],
        shift_rows: None,
        ids: Ids::Field("id", None),
        products: Products::InFrame(frame_product),
        subscribed,
        pong: crate::venues::common_pong,
        book: None,
        sequence: None,
    },
    rest: Some(rest),
    custom_start: None,
    demo: Some(DemoRecording {
        file: "BITSTAMP.jsonl.zst",
        api: None,
        note: None,
    }),
};
