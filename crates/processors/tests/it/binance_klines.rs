//! The must-show check: our 1m candles equal Binance's own `kline_1m` updates
//! wherever the recorded trades fully cover the kline.

use std::collections::BTreeMap;

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Decimal, Exchange, Instrument, Interval, Trade, TradeId};
use ck_processors::candles::{AggregatorConfig, CandleAggregator};
use ck_sources::binance::BinanceKlineEvent;
use ck_sources::normalize::Normalizer;
use ck_sources::recordings::Recording;

struct Kline {
    symbol: String,
    open_ms: i64,
    first: u64,
    last: u64,
    ohlcv: [Decimal; 5],
    trades: u64,
}

fn read_recording(path: &std::path::Path) -> (Vec<RawMessage>, Vec<Trade>) {
    let mut normalizer = Normalizer::new();
    let mut messages = Vec::new();
    let mut trades = Vec::new();
    let mut out = Vec::new();
    for record in Recording::open(path).expect("open recording") {
        let msg = record.expect("every recorded line reads");
        let origin = || "fixture".to_owned();
        normalizer.handle(&msg, &origin, &mut out);
        for e in out.drain(..) {
            match e {
                Event::Trade(t) => trades.push(t),
                Event::IngestError(e) => panic!("the recording parses cleanly: {e:?}"),
                _ => {}
            }
        }
        messages.push(msg);
    }
    (messages, trades)
}

fn klines(messages: &[RawMessage]) -> Vec<Kline> {
    let mut found = Vec::new();
    for m in messages
        .iter()
        .filter(|m| m.origin == Origin::Ws && m.data.contains("@kline_1m"))
    {
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            data: BinanceKlineEvent<'a>,
        }
        let e: Envelope<'_> = serde_json::from_str(&m.data).expect("kline parses");
        let k = e.data.kline;
        assert_eq!(k.interval, "1m");
        let d = |s: &str| Decimal::parse(s).expect("decimal");
        found.push(Kline {
            symbol: k.symbol.to_owned(),
            open_ms: k.open_time_ms,
            first: u64::try_from(k.first_trade).expect("id"),
            last: u64::try_from(k.last_trade).expect("id"),
            ohlcv: [d(k.open), d(k.high), d(k.low), d(k.close), d(k.volume)],
            trades: k.trades,
        });
    }
    found
}

/// The underlying fill-id range `[f, l]` of each aggTrade, by instrument and agg id.
fn fill_ranges(messages: &[RawMessage]) -> BTreeMap<(String, u64), (u64, u64)> {
    let mut ranges = BTreeMap::new();
    for m in messages.iter().filter(|m| m.data.contains("@aggTrade")) {
        let v: serde_json::Value = serde_json::from_str(&m.data).expect("json");
        let d = &v["data"];
        let key = (
            d["s"].as_str().expect("s").to_owned(),
            d["a"].as_u64().expect("a"),
        );
        ranges.insert(
            key,
            (d["f"].as_u64().expect("f"), d["l"].as_u64().expect("l")),
        );
    }
    ranges
}

#[test]
fn candles_equal_binance_klines_where_trades_cover_them() {
    let path = ck_testkit::fixture("cryptofeed/BINANCE.jsonl.zst");
    let (messages, trades) = read_recording(&path);
    let klines = klines(&messages);
    assert!(!klines.is_empty(), "the recording has kline_1m updates");
    let ranges = fill_ranges(&messages);

    let mut checked = 0;
    for k in &klines {
        // The recorded aggTrades inside this kline's fill-id range.
        let inside: Vec<&Trade> = trades
            .iter()
            .filter(|t| {
                let native = t.instrument.as_str().replace('-', "");
                let Some(TradeId::Num(a)) = Some(&t.trade_id) else {
                    return false;
                };
                native == k.symbol
                    && ranges
                        .get(&(k.symbol.clone(), *a))
                        .is_some_and(|(f, l)| *f >= k.first && *l <= k.last)
            })
            .collect();
        let covered: u64 = inside
            .iter()
            .map(|t| {
                let TradeId::Num(a) = &t.trade_id else {
                    return 0;
                };
                let (f, l) = ranges[&(k.symbol.clone(), *a)];
                l - f + 1
            })
            .sum();
        if covered != k.last - k.first + 1 {
            continue; // the recording started after this kline's first fill
        }
        let mut agg = CandleAggregator::new(AggregatorConfig {
            intervals: vec![Interval::M1],
            ..AggregatorConfig::default()
        });
        let mut out = Vec::new();
        for t in &inside {
            agg.on_trade(t, &mut out);
        }
        agg.flush(&mut out);
        let ours = out
            .iter()
            .find(|c| c.interval == Interval::M1 && c.open_time.as_millis() == k.open_ms)
            .unwrap_or_else(|| panic!("no candle for kline {} at {}", k.symbol, k.open_ms));
        assert_eq!(
            ours.instrument,
            Instrument::parse(&format!("{}-{}", &k.symbol[..3], &k.symbol[3..])).expect("i")
        );
        assert_eq!(
            [ours.open, ours.high, ours.low, ours.close, ours.volume],
            k.ohlcv,
            "{} {}",
            k.symbol,
            k.open_ms
        );
        assert_eq!(
            ours.trades, k.trades,
            "fill count of {} {}",
            k.symbol, k.open_ms
        );
        assert_eq!(ours.exchange, Exchange::Binance);
        checked += 1;
    }
    assert!(
        checked >= 1,
        "at least one kline is fully covered by recorded trades; checked {checked} of {}",
        klines.len()
    );
}

/// Every recorded trade lands in exactly one candle of every interval, once the
/// open candles are flushed at the end (a regression: the flush once dropped a
/// coarse candle when the next one had begun).
#[test]
fn every_real_trade_is_in_one_candle_per_interval() {
    let trades = ck_testkit::bench_data::binance_trades();
    let mut agg = CandleAggregator::new(AggregatorConfig::default());
    let mut out = Vec::new();
    for t in &trades {
        agg.on_trade(t, &mut out);
    }
    agg.flush(&mut out);
    let mut latest: BTreeMap<(Interval, i64), u64> = BTreeMap::new();
    for c in &out {
        latest.insert((c.interval, c.open_time.0), c.trades);
    }
    for iv in Interval::ALL {
        let total: u64 = latest
            .iter()
            .filter(|(k, _)| k.0 == iv)
            .map(|(_, n)| *n)
            .sum();
        assert_eq!(total, trades.len() as u64, "{iv}");
    }
}
