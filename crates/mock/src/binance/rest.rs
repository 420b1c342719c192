//! The mock's REST API: `exchangeInfo`, `historicalTrades`, `aggTrades` and
//! `klines`, answered from the same trades the WebSocket replays, in
//! Binance's own shapes and error format, with the REST faults (429 with
//! `Retry-After`, slow responses).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ck_model::{Decimal, Interval};
use serde_json::json;

use super::{MockTrade, Shared};
use crate::bars::{Fill, bars};

type Params = Query<HashMap<String, String>>;

pub(super) async fn serve(listener: crate::Listening, shared: Arc<super::Lazy>) {
    let app = Router::new()
        .route("/api/v3/exchangeInfo", get(exchange_info))
        .route("/api/v3/historicalTrades", get(historical_trades))
        .route("/api/v3/aggTrades", get(agg_trades))
        .route("/api/v3/klines", get(klines))
        .route("/api/v3/ticker/bookTicker", get(book_ticker))
        .route("/api/v3/depth", get(depth))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "mock REST server stopped");
    }
}

/// Binance's error body: `{"code":-1121,"msg":"Invalid symbol."}`.
fn error(status: StatusCode, code: i64, msg: &str) -> Response {
    (status, axum::Json(json!({"code": code, "msg": msg}))).into_response()
}

/// A refused request, answered in Binance's error format.
struct Refused(StatusCode, i64, String);

impl Refused {
    fn bad(code: i64, msg: impl Into<String>) -> Refused {
        Refused(StatusCode::BAD_REQUEST, code, msg.into())
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, self.1, &self.2)
    }
}

/// The REST faults, applied before every answer.
async fn gate(shared: &Shared) -> Option<Response> {
    let n = shared.rest_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let faults = &shared.options.faults;
    if let Some(delay) = faults.rest_delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(every) = faults.rest_429_every
        && every > 0
        && n.is_multiple_of(every)
    {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            -1003,
            "Too many requests; current limit is 6000 request weight per 1 MINUTE.",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Some(r);
    }
    None
}

fn symbol<'a>(shared: &Shared, q: &'a HashMap<String, String>) -> Result<&'a str, Refused> {
    let Some(s) = q.get("symbol") else {
        return Err(Refused::bad(
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        ));
    };
    if !shared.listings.contains_key(s.as_str()) {
        return Err(Refused::bad(-1121, "Invalid symbol."));
    }
    Ok(s)
}

fn number<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>, Refused> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Refused::bad(
                -1100,
                format!("Illegal characters found in parameter '{key}'; legal range is '^[0-9]{{1,20}}$'."),
            )
        }),
    }
}

fn limit(q: &HashMap<String, String>) -> Result<usize, Refused> {
    Ok(number::<usize>(q, "limit")?.unwrap_or(500).clamp(1, 1000))
}

async fn exchange_info(State(lazy): State<Arc<super::Lazy>>) -> Response {
    let shared = lazy.get();
    if let Some(r) = gate(shared).await {
        return r;
    }
    let symbols: Vec<_> = shared
        .listings
        .iter()
        .map(|(s, (base, quote))| {
            json!({"symbol": s, "status": "TRADING", "baseAsset": base, "quoteAsset": quote})
        })
        .collect();
    axum::Json(json!({
        "timezone": "UTC",
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
        "symbols": symbols,
    }))
    .into_response()
}

async fn historical_trades(
    State(lazy): State<Arc<super::Lazy>>,
    headers: axum::http::HeaderMap,
    Query(q): Params,
) -> Response {
    let shared = lazy.get();
    if let Some(r) = gate(shared).await {
        return r;
    }
    // Binance.US: a MARKET_DATA endpoint, which wants an API key.
    if shared.options.require_api_key
        && headers
            .get("x-mbx-apikey")
            .is_none_or(|k| k.as_bytes().is_empty())
    {
        return error(StatusCode::UNAUTHORIZED, -2014, "API-key format invalid.");
    }
    let answer = || -> Result<Response, Refused> {
        let s = symbol(shared, &q)?;
        let limit = limit(&q)?;
        let laps = shared.laps();
        let trades = match number::<u64>(&q, "fromId")? {
            Some(from) => shared.book.trades_from_id(s, from, limit, laps),
            None => shared.book.latest(s, limit, laps),
        };
        let rows: Vec<_> = trades.iter().map(trade_json).collect();
        Ok(axum::Json(rows).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

fn trade_json(t: &MockTrade) -> serde_json::Value {
    let quote = Decimal::parse(&t.price)
        .ok()
        .zip(Decimal::parse(&t.qty).ok())
        .and_then(|(p, q)| p.checked_mul(q))
        .map(|d| d.normalize().to_string())
        .unwrap_or_default();
    json!({
        "id": t.id, "price": t.price, "qty": t.qty, "quoteQty": quote,
        "time": t.time_ms, "isBuyerMaker": t.buyer_is_maker, "isBestMatch": true,
    })
}

/// The best bid/ask as of the replay's position: the last `bookTicker`
/// message sent (or, before any, the first recorded).
async fn book_ticker(State(lazy): State<Arc<super::Lazy>>, Query(q): Params) -> Response {
    let shared = lazy.get();
    if let Some(r) = gate(shared).await {
        return r;
    }
    let answer = || -> Result<Response, Refused> {
        let s = symbol(shared, &q)?;
        let cursor = usize::try_from(shared.cursor.load(Ordering::SeqCst)).unwrap_or(usize::MAX);
        let tickers = shared
            .messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.symbol == s && m.stream.ends_with("@bookTicker"));
        let mut chosen = None;
        for (i, m) in tickers {
            if chosen.is_none() || i < cursor {
                chosen = Some(m);
            }
            if i >= cursor {
                break;
            }
        }
        let Some(m) = chosen else {
            return Err(Refused::bad(-1121, "Invalid symbol."));
        };
        let d = &m.value_or_text()["data"];
        Ok(axum::Json(json!({
            "symbol": s, "bidPrice": d["b"], "bidQty": d["B"], "askPrice": d["a"], "askQty": d["A"],
        }))
        .into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

/// A depth snapshot as Binance answers it: the recording's first snapshot
/// of the symbol, with every recorded diff the furthest connection has
/// passed applied (so it is current, as Binance's is), cut to `limit`
/// levels a side (default 100, at most 5,000).
async fn depth(State(lazy): State<Arc<super::Lazy>>, Query(q): Params) -> Response {
    let shared = lazy.get();
    if let Some(r) = gate(shared).await {
        return r;
    }
    let answer = || -> Result<Response, Refused> {
        let s = symbol(shared, &q)?;
        let limit = match q.get("limit") {
            None => 100,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=5_000).contains(l))
                .ok_or_else(|| Refused::bad(-1100, format!("Illegal characters found in parameter 'limit'; legal range is '1..5000': {l}")))?,
        };
        let snapshot: serde_json::Value = shared
            .depths
            .get(s)
            .and_then(|b| serde_json::from_str(b).ok())
            .ok_or_else(|| Refused::bad(-1121, "Invalid symbol."))?;
        let mut last = snapshot["lastUpdateId"].as_u64().unwrap_or(0);
        let mut sides: [BTreeMap<Decimal, (String, String)>; 2] = [BTreeMap::new(), BTreeMap::new()];
        let set = |side: &mut BTreeMap<Decimal, (String, String)>, rows: &serde_json::Value| {
            for r in rows.as_array().into_iter().flatten() {
                let (Some(p), Some(q)) = (r[0].as_str(), r[1].as_str()) else {
                    continue;
                };
                let (Ok(price), Ok(size)) = (Decimal::parse(p), Decimal::parse(q)) else {
                    continue;
                };
                if size.is_zero() {
                    side.remove(&price);
                } else {
                    side.insert(price, (p.to_owned(), q.to_owned()));
                }
            }
        };
        set(&mut sides[0], &snapshot["bids"]);
        set(&mut sides[1], &snapshot["asks"]);
        // Looped, a later lap's diffs carry update ids moved on by the
        // recording's span: so does the snapshot (its levels are the
        // recording's, at the same place in the lap).
        let len = shared.messages.len().max(1);
        let passed = usize::try_from(shared.cursor.load(Ordering::SeqCst)).unwrap_or(usize::MAX);
        let (lap, cursor) = if shared.options.looped {
            (passed / len, passed % len)
        } else {
            (0, passed.min(shared.messages.len()))
        };
        for m in shared.messages[..cursor]
            .iter()
            .filter(|m| m.symbol == s && m.stream.contains("@depth"))
        {
            let v = m.value_or_text();
            let d = &v["data"];
            let Some(u) = d["u"].as_u64().filter(|u| *u > last) else {
                continue;
            };
            set(&mut sides[0], &d["b"]);
            set(&mut sides[1], &d["a"]);
            last = u;
        }
        let span = shared.id_spans.get(&(s.to_owned(), "u")).copied().unwrap_or(0);
        last += u64::try_from(lap).unwrap_or(0).saturating_mul(span);
        let stale = shared.options.faults.stale_depth_once
            && shared
                .stale_depths
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(s.to_owned());
        if stale {
            last = last.saturating_sub(1_000_000);
        }
        let rows = |levels: Vec<&(String, String)>| -> Vec<[String; 2]> {
            levels.into_iter().map(|(p, q)| [p.clone(), q.clone()]).collect()
        };
        Ok(axum::Json(json!({
            "lastUpdateId": last,
            "bids": rows(sides[0].values().rev().take(limit).collect()),
            "asks": rows(sides[1].values().take(limit).collect()),
        }))
        .into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

/// One aggregate per trade: the recording has single trades, and an
/// aggregate of one is what Binance serves for a lone fill.
async fn agg_trades(State(lazy): State<Arc<super::Lazy>>, Query(q): Params) -> Response {
    let shared = lazy.get();
    if let Some(r) = gate(shared).await {
        return r;
    }
    let answer = || -> Result<Response, Refused> {
        let s = symbol(shared, &q)?;
        let limit = limit(&q)?;
        let laps = shared.laps();
        let trades = match (
            number::<u64>(&q, "fromId")?,
            number::<i64>(&q, "startTime")?,
            number::<i64>(&q, "endTime")?,
        ) {
            (Some(from), _, _) => shared.book.trades_from_id(s, from, limit, laps),
            (None, Some(start), end) => {
                shared
                    .book
                    .in_time(s, start, end.unwrap_or(i64::MAX), limit, laps)
            }
            (None, None, Some(end)) => {
                let mut all = shared.book.in_time(s, i64::MIN, end, usize::MAX, laps);
                let keep = all.len().saturating_sub(limit);
                all.drain(..keep);
                all
            }
            (None, None, None) => shared.book.latest(s, limit, laps),
        };
        let rows: Vec<_> = trades
            .iter()
            .map(|t| {
                json!({"a": t.id, "p": t.price, "q": t.qty, "f": t.id, "l": t.id,
                       "T": t.time_ms, "m": t.buyer_is_maker, "M": true})
            })
            .collect();
        Ok(axum::Json(rows).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

/// Klines computed from the trades, with flat klines (previous close, no
/// volume) for quiet intervals, as Binance generates them.
async fn klines(State(lazy): State<Arc<super::Lazy>>, Query(q): Params) -> Response {
    let shared = lazy.get();
    if let Some(r) = gate(shared).await {
        return r;
    }
    let answer = || -> Result<Response, Refused> {
        let s = symbol(shared, &q)?;
        let interval: Interval = q
            .get("interval")
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| Refused::bad(-1120, "Invalid interval."))?;
        let Some(step_ns) = interval.fixed_nanos() else {
            return Err(Refused::bad(
                -1120,
                "Invalid interval (the mock serves fixed-length intervals only).",
            ));
        };
        let step = step_ns / 1_000_000;
        let limit = limit(&q)?;
        let start = number::<i64>(&q, "startTime")?.unwrap_or(i64::MIN);
        let end = number::<i64>(&q, "endTime")?.unwrap_or(i64::MAX);
        let trades = shared
            .book
            .in_time(s, i64::MIN, i64::MAX, usize::MAX, shared.laps());
        Ok(axum::Json(kline_rows(&trades, step, start, end, limit)).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

fn kline_rows(
    trades: &[MockTrade],
    step: i64,
    start: i64,
    end: i64,
    limit: usize,
) -> Vec<serde_json::Value> {
    let fills: Vec<Fill> = trades
        .iter()
        .filter_map(|t| Fill::parse(t.time_ms * 1_000_000, &t.price, &t.qty, !t.buyer_is_maker))
        .collect();
    // Quiet intervals between trades are flat at the previous close.
    let bars = bars(&fills, step * 1_000_000, true);
    bars.iter()
        .filter(|b| b.open_ms() >= start && b.open_ms() <= end)
        .take(limit)
        .map(|b| {
            json!([
                b.open_ms(),
                b.open.to_string(),
                b.high.to_string(),
                b.low.to_string(),
                b.close.to_string(),
                b.volume.to_string(),
                b.open_ms() + step - 1,
                b.quote.normalize().to_string(),
                b.trades,
                b.taker_base.to_string(),
                b.taker_quote.normalize().to_string(),
                "0"
            ])
        })
        .collect()
}
