//! Kraken REST trades (`GET /0/public/Trades?pair=&since=&count=`), served
//! from the trades of a WebSocket recording: v1 frames
//! `[channelID, [[price, volume, time, side, type, misc], ...], "trade", "XBT/USD"]`
//! and v2 `{"channel":"trade","data":[{...,"trade_id":...}]}`. v1 trades carry
//! no id; this mock numbers them per pair from 1 in recording order, as
//! Kraken numbers trades per pair. Pairs take their REST names (`XBTUSD`).
//! `since` is nanoseconds and exclusive; `count` is 1 to 1,000 (default
//! 1,000); rows are `[price, volume, time, side, type, misc, trade_id]` with
//! the time in seconds as a JSON number; `last` is the last row's time in
//! nanoseconds, as a string. Errors come in Kraken's `error` array.
//!
//! Candles: `GET /0/public/OHLC?pair=&interval=<minutes>&since=<s>`, rows
//! `[time, open, high, low, close, vwap, volume, count]` after `since`, of
//! the 720 most recent candles only, flat at the previous close for
//! intervals without trades, as Kraken serves them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ck_bus::{Origin, RawMessage};
use serde_json::value::RawValue;

use crate::bars::{Fill, Fills, SEC, bars, fills_of};

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::route::{Product, json_of, names_in, upper, upper_of};
use crate::venues::{DemoRecording, Ids, MockSpec, Products, TimeUnit, Wire};

/// Rows by REST pair, by (time ns, id), as row text.
type Book = HashMap<String, BTreeMap<(i64, u64), String>>;

/// The mock's constructor (it returns a [`crate::RestMock`]).
pub struct MockKrakenRest;

/// `XBT/USD` or `BTC/USD` as REST names it: `XBTUSD`.
fn rest_pair(ws_pair: &str) -> String {
    ws_pair
        .split('/')
        .map(|a| match a {
            "BTC" => "XBT",
            "DOGE" => "XDG",
            other => other,
        })
        .collect()
}

/// Seconds as Kraken's REST writes them: `1618678142.557535`.
fn seconds(ns: i64) -> String {
    let (s, frac) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let frac = format!("{frac:09}");
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        s.to_string()
    } else {
        format!("{s}.{frac}")
    }
}

/// Nanoseconds from seconds text (`1618678142.557535`).
fn nanos(text: &str) -> Option<i64> {
    let (s, frac) = text.split_once('.').unwrap_or((text, ""));
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    s.parse::<i64>()
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(frac.parse::<i64>().ok()?)
}

struct Row<'a> {
    price: &'a str,
    volume: &'a str,
    time_ns: i64,
    side: &'a str,
    kind: &'a str,
}

fn row_text(r: &Row<'_>, id: u64) -> String {
    format!(
        "[\"{}\",\"{}\",{},\"{}\",\"{}\",\"\",{id}]",
        r.price,
        r.volume,
        seconds(r.time_ns),
        r.side,
        r.kind
    )
}

impl MockKrakenRest {
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
        let shift = match (shift_to, recording.iter().find(|m| m.origin == Origin::Ws)) {
            (Some(at), Some(first)) => at.0 - first.ts_received.0,
            _ => 0,
        };
        let mut book = Book::new();
        let mut next_id: HashMap<String, u64> = HashMap::new();
        for m in recording.iter().filter(|m| m.origin == Origin::Ws) {
            if m.data.starts_with('[') {
                v1_frame(&m.data, shift, &mut book, &mut next_id);
            } else if m.data.contains("\"trade\"") {
                v2_frame(&m.data, shift, &mut book);
            }
        }
        let trades = book.values().map(BTreeMap::len).sum();
        let fills = fills_of(&book, |&(time_ns, _), text| {
            let row: Vec<serde_json::Value> = serde_json::from_str(text).ok()?;
            Fill::parse(
                time_ns,
                row.first()?.as_str()?,
                row.get(1)?.as_str()?,
                row.get(3)? == "b",
            )
        });
        let app = Router::new()
            .route("/0/public/Trades", get(trades_page))
            .with_state(Arc::new(book))
            .merge(
                Router::new()
                    .route("/0/public/OHLC", get(ohlc_page))
                    .with_state(Arc::new(fills)),
            );
        crate::RestMock::serve(app, trades).await
    }
}

fn v1_frame(data: &str, shift: i64, book: &mut Book, next_id: &mut HashMap<String, u64>) {
    let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(data) else {
        return;
    };
    let n = parts.len();
    if n < 4 || parts[n - 2].get() != "\"trade\"" {
        return;
    }
    let Ok(pair) = serde_json::from_str::<&str>(parts[n - 1].get()) else {
        return;
    };
    let Ok(rows) = serde_json::from_str::<Vec<Vec<&str>>>(parts[1].get()) else {
        return;
    };
    let pair = rest_pair(pair);
    for r in rows {
        let (Some(price), Some(volume), Some(time), Some(side)) =
            (r.first(), r.get(1), r.get(2), r.get(3))
        else {
            continue;
        };
        let Some(time_ns) = nanos(time) else { continue };
        let id = next_id.entry(pair.clone()).or_insert(0);
        *id += 1;
        let row = Row {
            price,
            volume,
            time_ns: time_ns + shift,
            side,
            kind: r.get(4).copied().unwrap_or("l"),
        };
        book.entry(pair.clone())
            .or_default()
            .insert((row.time_ns, *id), row_text(&row, *id));
    }
}

fn v2_frame(data: &str, shift: i64, book: &mut Book) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
        return;
    };
    if v["channel"] != "trade" {
        return;
    }
    for t in v["data"].as_array().into_iter().flatten() {
        let (Some(pair), Some(id), Some(time)) = (
            t["symbol"].as_str(),
            t["trade_id"].as_u64(),
            t["timestamp"]
                .as_str()
                .and_then(|s| ck_model::Ts::parse(s).ok()),
        ) else {
            continue;
        };
        let (price, volume) = (t["price"].to_string(), t["qty"].to_string());
        let side = if t["side"] == "buy" { "b" } else { "s" };
        let kind = if t["ord_type"] == "market" { "m" } else { "l" };
        let row = Row {
            price: price.trim_matches('"'),
            volume: volume.trim_matches('"'),
            time_ns: time.0 + shift,
            side,
            kind,
        };
        book.entry(rest_pair(pair))
            .or_default()
            .insert((row.time_ns, id), row_text(&row, id));
    }
}

fn error(text: &str) -> Response {
    (
        [("content-type", "application/json")],
        format!("{{\"error\":[\"{text}\"]}}"),
    )
        .into_response()
}

async fn trades_page(
    State(book): State<Arc<Book>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(pair) = q.get("pair") else {
        return error("EGeneral:Invalid arguments");
    };
    let since = match q.get("since").map(|s| s.parse::<i64>()) {
        None => 0,
        Some(Ok(s)) => s,
        Some(Err(_)) => return error("EGeneral:Invalid arguments:since"),
    };
    let count = match q.get("count").map(|s| s.parse::<usize>()) {
        None => 1_000,
        Some(Ok(c)) if (1..=1_000).contains(&c) => c,
        Some(_) => return error("EGeneral:Invalid arguments:count"),
    };
    let Some(rows) = book.get(pair) else {
        return error("EQuery:Unknown asset pair");
    };
    let page: Vec<(&(i64, u64), &String)> = rows
        .range((since.saturating_add(1), 0)..)
        .take(count)
        .collect();
    let last = page.last().map_or(since, |((t, _), _)| *t);
    let body = format!(
        "{{\"error\":[],\"result\":{{\"{pair}\":[{}],\"last\":\"{last}\"}}}}",
        page.iter()
            .map(|(_, r)| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    ([("content-type", "application/json")], body).into_response()
}

/// Candles Kraken keeps per interval.
const OHLC_KEPT: usize = 720;

async fn ohlc_page(
    State(fills): State<Arc<Fills>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(pair) = q.get("pair") else {
        return error("EGeneral:Invalid arguments");
    };
    let minutes = match q.get("interval").map(|s| s.parse::<i64>()) {
        None => 1,
        Some(Ok(m)) if [1, 5, 15, 30, 60, 240, 1_440, 10_080, 21_600].contains(&m) => m,
        Some(_) => return error("EGeneral:Invalid arguments:interval"),
    };
    let since = match q.get("since").map(|s| s.parse::<i64>()) {
        None => i64::MIN,
        Some(Ok(s)) => s,
        Some(Err(_)) => return error("EGeneral:Invalid arguments:since"),
    };
    let Some(trades) = fills.get(pair) else {
        return error("EQuery:Unknown asset pair");
    };
    let all = bars(trades, minutes * 60 * SEC, true);
    let kept = &all[all.len().saturating_sub(OHLC_KEPT)..];
    let rows: Vec<String> = kept
        .iter()
        .filter(|b| b.open_secs() > since)
        .map(|b| {
            let vwap = b
                .quote
                .checked_div(b.volume, b.close.scale().saturating_add(4))
                .map_or_else(|| "0.0".to_owned(), |v| v.to_string());
            format!(
                "[{},\"{}\",\"{}\",\"{}\",\"{}\",\"{vwap}\",\"{}\",{}]",
                b.open_secs(),
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume,
                b.trades
            )
        })
        .collect();
    let last = kept.last().map_or(0, crate::bars::Bar::open_secs);
    let body = format!(
        "{{\"error\":[],\"result\":{{\"{pair}\":[{}],\"last\":{last}}}}}",
        rows.join(",")
    );
    ([("content-type", "application/json")], body).into_response()
}

/// v1 trade frames by position: `[CHAN, [["price", "volume", "secs.frac",
/// side, type, misc], ...], "trade", PAIR]`, moved by whole seconds so the
/// fraction keeps its digits.
fn shift_rows(frame: &str, offset: i64) -> Option<String> {
    use crate::shift::{Raw, shift_rows_at};
    let top: Vec<Raw<'_>> = serde_json::from_str(frame).ok()?;
    match top.as_slice() {
        [_, _, kind, _] if kind.get() == "\"trade\"" => {
            shift_rows_at(&top, 1, 2, 6, TimeUnit::Secs, offset)
        }
        _ => None,
    }
}

fn frame_product(v: &Value) -> Option<Product> {
    match v {
        // v1: [channelID, data, channelName, pair]
        Value::Array(parts) => parts.last().and_then(upper_of),
        // v1 events name `pair`; v2 data names `symbol`.
        _ => upper_of(&v["pair"])
            .or_else(|| upper_of(&v["data"][0]["symbol"]))
            .or_else(|| upper_of(&v["result"]["symbol"])),
    }
}

fn subscribed(text: &str) -> HashSet<Product> {
    let mut out = HashSet::new();
    if let Some(v) = json_of(text) {
        names_in(&v["pair"], &upper, &mut out);
        names_in(&v["params"]["symbol"], &upper, &mut out);
    }
    out
}

fn rest(
    recording: &[RawMessage],
    shift_to: Option<ck_model::Ts>,
) -> BoxFuture<'_, std::io::Result<crate::RestMock>> {
    Box::pin(MockKrakenRest::start(recording, shift_to))
}

/// Kraken in the mock registry ([`crate::venues`]).
pub const SPEC: MockSpec = MockSpec {
    exchange: ck_model::Exchange::Kraken,
    wire: Wire {
        time_fields: &[("timestamp", TimeUnit::Iso)],
        shift_rows: Some(shift_rows),
        ids: Ids::Field("trade_id", Some("symbol")),
        products: Products::InFrame(frame_product),
        subscribed,
        pong: crate::venues::common_pong,
        book: Some(crate::books::kraken),
        sequence: None,
    },
    rest: Some(rest),
    custom_start: None,
    demo: Some(DemoRecording {
        file: "KRAKEN.jsonl.zst",
        api: Some("v1"),
        note: None,
    }),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_every_digit() {
        assert_eq!(nanos("1618678142.557535"), Some(1_618_678_142_557_535_000));
        assert_eq!(seconds(1_618_678_142_557_535_000), "1618678142.557535");
        assert_eq!(seconds(1_618_678_142_000_000_000), "1618678142");
        assert_eq!(rest_pair("BTC/USD"), "XBTUSD");
        assert_eq!(rest_pair("XBT/CHF"), "XBTCHF");
    }
}
