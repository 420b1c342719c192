//! Coinbase Exchange's REST trades (`GET /products/{id}/trades`), served
//! from the `match` frames of a recording: newest first, paged by trade id
//! with `after` (older) and `before` (newer), `limit` up to 1000, the page
//! cursors in `CB-AFTER` / `CB-BEFORE`, and Coinbase's error shape; and
//! candles (`GET /products/{id}/candles`) computed from the same trades.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ck_bus::{Origin, RawMessage};
use serde_json::{Value, json};

use crate::bars::{Fill, Fills, SEC, bars, fills_of};

use futures_util::future::BoxFuture;

use crate::route::{Product, json_of, names_in, upper, upper_of};
use crate::venues::{DemoRecording, Ids, MockSpec, Products, TimeUnit, Wire};

/// Trades by product, by id.
type Book = HashMap<String, BTreeMap<u64, Value>>;

/// The mock's constructor (it returns a [`crate::RestMock`]).
pub struct MockCoinbaseRest;

impl MockCoinbaseRest {
    /// Serves the trades in `recording` on `127.0.0.1` (any port).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(recording: &[RawMessage]) -> std::io::Result<crate::RestMock> {
        let mut book = Book::new();
        for m in recording.iter().filter(|m| m.origin == Origin::Ws) {
            let Ok(v) = serde_json::from_str::<Value>(&m.data) else {
                continue;
            };
            if !matches!(v["type"].as_str(), Some("match" | "last_match")) {
                continue;
            }
            let (Some(product), Some(id)) = (v["product_id"].as_str(), v["trade_id"].as_u64())
            else {
                continue;
            };
            let row = json!({
                "time": v["time"], "trade_id": id, "price": v["price"],
                "size": v["size"], "side": v["side"],
            });
            book.entry(product.to_owned()).or_default().insert(id, row);
        }
        let trades = book.values().map(BTreeMap::len).sum();
        let fills = fills_of(&book, |_, row| {
            let time = ck_model::Ts::parse(row["time"].as_str()?).ok()?;
            // The side is the maker's: a maker sell is a taker buy.
            Fill::parse(
                time.0,
                row["price"].as_str()?,
                row["size"].as_str()?,
                row["side"] == "sell",
            )
        });
        let app = Router::new()
            .route("/products/{product}/trades", get(trades_page))
            .with_state(Arc::new(book))
            .merge(
                Router::new()
                    .route("/products/{product}/candles", get(candles_page))
                    .with_state(Arc::new(fills)),
            );
        crate::RestMock::serve(app, trades).await
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

async fn trades_page(
    State(book): State<Arc<Book>>,
    Path(product): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(trades) = book.get(&product) else {
        return message(StatusCode::NOT_FOUND, "NotFound");
    };
    let number = |name: &str| -> Result<Option<u64>, String> {
        q.get(name)
            .map(|v| v.parse::<u64>())
            .transpose()
            .map_err(|_| format!("invalid {name}"))
    };
    let (after, before, limit) = match (number("after"), number("before"), number("limit")) {
        (Ok(a), Ok(b), Ok(l)) => (a, b, l.unwrap_or(1_000)),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return message(StatusCode::BAD_REQUEST, &e);
        }
    };
    if !(1..=1_000).contains(&limit) {
        return message(StatusCode::BAD_REQUEST, "limit must be between 1 and 1000");
    }
    let upper = after.map_or(u64::MAX, |a| a.saturating_sub(1));
    let lower = before.map_or(0, |b| b.saturating_add(1));
    let page: Vec<(&u64, &Value)> = if lower > upper {
        Vec::new()
    } else if before.is_some() && after.is_none() {
        // `before`: the page of newer trades just above the cursor.
        let mut newer: Vec<_> = trades.range(lower..).take(limit as usize).collect();
        newer.reverse();
        newer
    } else {
        trades
            .range(lower..=upper)
            .rev()
            .take(limit as usize)
            .collect()
    };
    let rows: Vec<&Value> = page.iter().map(|(_, v)| *v).collect();
    let mut response = axum::Json(rows).into_response();
    if let (Some((newest, _)), Some((oldest, _))) = (page.first(), page.last()) {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&newest.to_string()) {
            headers.insert("cb-before", v);
        }
        if let Ok(v) = HeaderValue::from_str(&oldest.to_string()) {
            headers.insert("cb-after", v);
        }
    }
    response
}

/// `GET /products/{id}/candles?granularity=&start=&end=` (RFC 3339, both
/// ends inclusive bucket starts): rows `[time, low, high, open, close,
/// volume]` as numbers, newest first, none for intervals without trades; a
/// range of more than 300 buckets is refused, as Coinbase refuses it.
async fn candles_page(
    State(fills): State<Arc<Fills>>,
    Path(product): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(trades) = fills.get(&product) else {
        return message(StatusCode::NOT_FOUND, "NotFound");
    };
    let granularity = match q.get("granularity").map(|g| g.parse::<i64>()) {
        Some(Ok(g)) if [60, 300, 900, 3_600, 21_600, 86_400].contains(&g) => g,
        _ => return message(StatusCode::BAD_REQUEST, "Unsupported granularity"),
    };
    let time = |name: &str| -> Result<Option<i64>, String> {
        q.get(name)
            .map(|v| ck_model::Ts::parse(v).map(|t| t.0 / SEC))
            .transpose()
            .map_err(|_| format!("invalid {name}"))
    };
    let bars = bars(trades, granularity * SEC, false);
    let (start, end) = match (time("start"), time("end")) {
        (Ok(Some(s)), Ok(Some(e))) => (s, e),
        (Ok(None), Ok(None)) => {
            let newest = bars.last().map_or(0, crate::bars::Bar::open_secs);
            (newest - 299 * granularity, newest)
        }
        (Err(e), _) | (_, Err(e)) => return message(StatusCode::BAD_REQUEST, &e),
        _ => return message(StatusCode::BAD_REQUEST, "start and end go together"),
    };
    if end < start || (end - start) / granularity + 1 > 300 {
        return message(
            StatusCode::BAD_REQUEST,
            "granularity too small for the requested time range. Count of aggregations requested exceeds 300",
        );
    }
    let rows: Vec<String> = bars
        .iter()
        .rev()
        .filter(|b| (start..=end).contains(&b.open_secs()))
        .map(|b| {
            format!(
                "[{},{},{},{},{},{}]",
                b.open_secs(),
                b.low,
                b.high,
                b.open,
                b.close,
                b.volume
            )
        })
        .collect();
    (
        [("content-type", "application/json")],
        format!("[{}]", rows.join(",")),
    )
        .into_response()
}

/// Products named in a Coinbase subscribe message: `product_ids`, at the top
/// or per channel (Coinbase Exchange and Advanced Trade alike).
pub(crate) fn coinbase_subscribed(text: &str) -> HashSet<Product> {
    let mut out = HashSet::new();
    if let Some(v) = json_of(text) {
        names_in(&v["product_ids"], &upper, &mut out);
        for c in v["channels"].as_array().into_iter().flatten() {
            names_in(&c["product_ids"], &upper, &mut out);
        }
    }
    out
}

fn rest(
    recording: &[RawMessage],
    _shift_to: Option<ck_model::Ts>,
) -> BoxFuture<'_, std::io::Result<crate::RestMock>> {
    Box::pin(MockCoinbaseRest::start(recording))
}

/// Coinbase Exchange in the mock registry ([`crate::venues`]).
pub const SPEC: MockSpec = MockSpec {
    exchange: ck_model::Exchange::CoinbaseExchange,
    wire: Wire {
        time_fields: &[("time", TimeUnit::Iso)],
        shift_rows: None,
        ids: Ids::Field("trade_id", Some("product_id")),
        products: Products::InFrame(|v| upper_of(&v["product_id"])),
        subscribed: coinbase_subscribed,
        pong: crate::venues::common_pong,
        book: Some(crate::books::coinbase_exchange),
        sequence: None,
    },
    rest: Some(rest),
    custom_start: None,
    demo: Some(DemoRecording {
        file: "COINBASE_EXCHANGE.ws.28.0",
        api: None,
        note: None,
    }),
};
