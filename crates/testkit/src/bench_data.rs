//! Large, realistic data sets for benchmarks, made from real recorded trades.
//!
//! The base is the hftbacktest recording of Binance BTCUSDT
//! (`hftbacktest/binance_spot_btcusdt_20240808.gz`): 9,757 real trades with
//! contiguous ids over about six minutes. A data set of `n` trades repeats that
//! sequence; copy `k` has every exchange and receive time shifted forward by
//! `k` times the recording's span (plus one second), and every trade id by `k`
//! times the id span, so ids stay contiguous and times increase. Prices, sizes,
//! sides and the spacing between trades are the recorded ones.

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Trade, TradeId, Ts};
use ck_sources::normalize::Normalizer;
use ck_sources::recordings::Recording;

/// The raw `@trade` messages of the recording, exactly as received.
///
/// # Panics
/// Panics if the fixture is missing or unreadable.
#[must_use]
pub fn binance_trade_messages() -> Vec<RawMessage> {
    let path = crate::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    Recording::open(&path)
        .expect("open recording")
        .map(|r| r.expect("readable line"))
        .filter(|m| m.origin == Origin::Ws && m.data.contains("@trade\""))
        .collect()
}

/// The recorded trades, normalized.
///
/// # Panics
/// Panics if the fixture is missing or a message does not parse.
#[must_use]
pub fn binance_trades() -> Vec<Trade> {
    let mut normalizer = Normalizer::new();
    let mut out = Vec::new();
    for m in binance_trade_messages() {
        normalizer.handle(&m, &|| "fixture".into(), &mut out);
    }
    out.into_iter()
        .map(|e| match e {
            Event::Trade(t) => t,
            other => panic!("unexpected event from a trade message: {other:?}"),
        })
        .collect()
}

/// The events of any recording under `../shared/fixtures` (its WebSocket
/// messages, normalized), in the order received.
///
/// # Panics
/// Panics if the fixture is missing or unreadable.
#[must_use]
pub fn recorded_events(relative: &str) -> Vec<Event> {
    let path = crate::fixture(relative);
    let mut normalizer = Normalizer::new();
    let mut out = Vec::new();
    for m in Recording::open(&path).expect("open recording") {
        let m = m.expect("readable line");
        if m.origin == Origin::Ws {
            normalizer.handle(&m, &|| "fixture".into(), &mut out);
        }
    }
    out
}

/// The trades of a recording ([`recorded_events`]).
///
/// # Panics
/// Panics if the fixture is missing or unreadable.
#[must_use]
pub fn recorded_trades(relative: &str) -> Vec<Trade> {
    recorded_events(relative)
        .into_iter()
        .filter_map(|e| match e {
            Event::Trade(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// The best bids and asks of a recording ([`recorded_events`]).
///
/// # Panics
/// Panics if the fixture is missing or unreadable.
#[must_use]
pub fn recorded_quotes(relative: &str) -> Vec<ck_model::Quote> {
    recorded_events(relative)
        .into_iter()
        .filter_map(|e| match e {
            Event::Quote(q) => Some(q),
            _ => None,
        })
        .collect()
}

/// `n` trades: the recorded ones repeated with times and ids shifted forward.
///
/// # Panics
/// Panics if the fixture is missing.
#[must_use]
pub fn repeated_binance_trades(n: usize) -> Vec<Trade> {
    let base = binance_trades();
    let first = base.first().expect("trades").clone();
    let last = base.last().expect("trades").clone();
    let time_span = last.ts_exchange.0 - first.ts_exchange.0 + 1_000_000_000;
    let (TradeId::Num(id0), TradeId::Num(id1)) = (&first.trade_id, &last.trade_id) else {
        panic!("Binance trade ids are numeric")
    };
    let id_span = id1 - id0 + 1;
    (0..n)
        .map(|i| {
            let copy = i / base.len();
            let mut t = base[i % base.len()].clone();
            let shift = i64::try_from(copy).expect("small") * time_span;
            t.ts_exchange = Ts(t.ts_exchange.0 + shift);
            t.ts_received = Ts(t.ts_received.0 + shift);
            if let TradeId::Num(id) = &mut t.trade_id {
                *id += copy as u64 * id_span;
            }
            t
        })
        .collect()
}

/// `n` trades as Binance combined-stream `@trade` messages, spread round-robin
/// over `symbols` instruments (`BTCUSDT` when 1, else `S000USDT`, `S001USDT`,
/// …, each with its own contiguous ids), received when recorded (shifted as
/// in [`repeated_binance_trades`]).
///
/// # Panics
/// Panics if the fixture is missing.
#[must_use]
pub fn repeated_binance_trade_messages(n: usize, symbols: usize) -> Vec<RawMessage> {
    let symbols = symbols.max(1);
    let names: Vec<String> = if symbols == 1 {
        vec!["BTCUSDT".to_owned()]
    } else {
        (0..symbols).map(|i| format!("S{i:03}USDT")).collect()
    };
    repeated_binance_trades(n)
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let symbol = &names[i % symbols];
            let id = t.trade_id.as_u64().expect("numeric") / symbols as u64;
            let ms = t.ts_exchange.as_millis();
            let data = format!(
                r#"{{"stream":"{}@trade","data":{{"e":"trade","E":{ms},"s":"{symbol}","t":{id},"p":"{}","q":"{}","T":{ms},"m":{},"M":true}}}}"#,
                symbol.to_ascii_lowercase(),
                t.price,
                t.size,
                t.side == ck_model::Side::Sell
            );
            RawMessage {
                exchange: ck_model::Exchange::Binance,
                ts_received: t.ts_received,
                origin: Origin::Ws,
                data,
            }
        })
        .collect()
}
