//! Aggregator tests: no runtime, exchange time only unless a test ticks.

use std::collections::BTreeMap;

use ck_model::{
    Candle, CandleState, Decimal, EmptyIntervalPolicy, Exchange, Instrument, Interval, Side, Trade,
    TradeId, Ts,
};

use super::{AggregatorConfig, CandleAggregator, TradeOutcome};

const SEC: i64 = 1_000_000_000;

fn d(s: &str) -> Decimal {
    Decimal::parse(s).expect("decimal")
}

fn trade(exchange: Exchange, id: u64, secs: f64, price: &str, size: &str, side: Side) -> Trade {
    let ts = Ts((secs * 1e9).round() as i64);
    Trade {
        exchange,
        instrument: Instrument::parse("BTC-USDT").expect("instrument"),
        trade_id: TradeId::Num(id),
        price: d(price),
        size: d(size),
        side,
        ts_exchange: ts,
        ts_received: ts,
        fills: 1,
    }
}

fn bin(id: u64, secs: f64, price: &str, size: &str) -> Trade {
    trade(Exchange::Binance, id, secs, price, size, Side::Buy)
}

fn only(intervals: &[Interval]) -> AggregatorConfig {
    AggregatorConfig {
        intervals: intervals.to_vec(),
        ..AggregatorConfig::default()
    }
}

fn closed(out: &[Candle], iv: Interval) -> Vec<&Candle> {
    out.iter()
        .filter(|c| c.interval == iv && c.state != CandleState::Provisional)
        .collect()
}

#[test]
fn ohlc_follows_trade_ids_not_arrival() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1]));
    let mut out = Vec::new();
    // Ids 3, 1, 2 arrive in that order within one minute.
    agg.on_trade(&bin(3, 10.0, "103", "1"), &mut out);
    agg.on_trade(&bin(1, 10.0, "100", "2"), &mut out);
    agg.on_trade(&bin(2, 10.0, "99", "1.5"), &mut out);
    agg.on_trade(&bin(4, 100.0, "101", "1"), &mut out); // closes [0, 60) at 62 s
    let c = closed(&out, Interval::M1);
    assert_eq!(c.len(), 1);
    let c = c[0];
    assert_eq!(
        (c.open, c.high, c.low, c.close),
        (d("100"), d("103"), d("99"), d("103"))
    );
    assert_eq!(c.volume, d("4.5"));
    assert_eq!(c.quote_volume, d("451.5"));
    assert_eq!(c.vwap, d("100.3333"));
    assert_eq!(c.trades, 3);
    assert_eq!(c.first_trade_id, Some(TradeId::Num(1)));
    assert_eq!(c.last_trade_id, Some(TradeId::Num(3)));
    assert_eq!(c.state, CandleState::Closed);
}

#[test]
fn duplicates_change_nothing() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1]));
    let mut out = Vec::new();
    assert_eq!(
        agg.on_trade(&bin(1, 1.0, "10", "1"), &mut out),
        TradeOutcome::Applied
    );
    assert_eq!(
        agg.on_trade(&bin(1, 1.0, "10", "1"), &mut out),
        TradeOutcome::Duplicate
    );
    assert_eq!(
        agg.on_trade(&bin(2, 2.0, "11", "1"), &mut out),
        TradeOutcome::Applied
    );
    assert_eq!(
        agg.on_trade(&bin(1, 1.0, "10", "1"), &mut out),
        TradeOutcome::Duplicate
    );
    agg.flush(&mut out);
    let c = out
        .iter()
        .find(|c| c.interval == Interval::M1)
        .expect("candle");
    assert_eq!((c.volume, c.trades), (d("2"), 2));
    assert_eq!(agg.stats().duplicates, 2);
}

#[test]
fn watermark_and_grace_close_candles() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1]));
    let mut out = Vec::new();
    agg.on_trade(&bin(1, 30.0, "10", "1"), &mut out);
    agg.on_trade(&bin(2, 61.0, "11", "1"), &mut out); // past the end, within grace
    assert!(closed(&out, Interval::M1).is_empty(), "grace keeps it open");
    agg.on_trade(&bin(3, 62.0, "12", "1"), &mut out); // end + 2 s grace
    assert_eq!(closed(&out, Interval::M1).len(), 1);
}

#[test]
fn timer_closes_quiet_instruments() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1]));
    let mut out = Vec::new();
    agg.on_trade(&bin(1, 30.0, "10", "1"), &mut out);
    agg.on_tick(61 * SEC, &mut out);
    assert!(closed(&out, Interval::M1).is_empty());
    agg.on_tick(62 * SEC, &mut out);
    let c = closed(&out, Interval::M1);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].close, d("10"));
}

#[test]
fn late_trade_revises_closed_candles_and_is_counted() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1, Interval::H1]));
    let mut out = Vec::new();
    agg.on_trade(&bin(1, 10.0, "100", "1"), &mut out);
    agg.on_trade(&bin(3, 70.0, "105", "1"), &mut out); // closes minute 0
    out.clear();
    assert_eq!(
        agg.on_trade(&bin(2, 20.0, "90", "2"), &mut out),
        TradeOutcome::Revised
    );
    let revised: Vec<_> = out
        .iter()
        .filter(|c| c.state == CandleState::Revised)
        .collect();
    assert_eq!(
        revised.len(),
        1,
        "the hour is still open, so only the minute is revised"
    );
    let m = revised[0];
    assert_eq!(
        (m.open, m.low, m.close, m.volume, m.trades),
        (d("100"), d("90"), d("90"), d("3"), 2)
    );
    agg.flush(&mut out);
    let h = out
        .iter()
        .rev()
        .find(|c| c.interval == Interval::H1)
        .expect("hour");
    assert_eq!(
        (h.volume, h.trades, h.low),
        (d("4"), 3, d("90")),
        "the open hour holds it too"
    );
    assert_eq!(agg.stats().late_trades, 1);
    assert_eq!(agg.stats().candles_revised, 1);
}

#[test]
fn a_finite_run_settles_candles_past_the_lateness_window_by_the_wall_clock() {
    let config = AggregatorConfig {
        lateness_nanos: 60 * SEC,
        ..only(&[Interval::M1, Interval::H1])
    };
    let mut agg = CandleAggregator::new(config);
    let mut out = Vec::new();
    agg.on_trade(&bin(1, 10.0, "100", "1"), &mut out);
    agg.on_trade(&bin(2, 61.0, "101", "1"), &mut out);
    assert!(closed(&out, Interval::M1).is_empty(), "exchange time: 61 s");
    // Wall clock at 200 s: minute 0 (ends 60 s) and minute 1 (ends 120 s)
    // are past end + grace + 60 s of lateness; the hour is not.
    agg.settle(200 * SEC, &mut out);
    let m1 = closed(&out, Interval::M1);
    assert_eq!(m1.len(), 2, "no flat minute after the last trade: {m1:?}");
    assert!(m1.iter().all(|c| c.state == CandleState::Closed));
    assert!(closed(&out, Interval::H1).is_empty());
    out.clear();
    agg.flush(&mut out);
    assert!(
        out.iter()
            .all(|c| c.interval == Interval::H1 && c.state == CandleState::Provisional),
        "only the hour is left open: {out:?}"
    );
    // At 3,700 s the hour too is settled.
    let mut agg2 = CandleAggregator::new(AggregatorConfig {
        lateness_nanos: 60 * SEC,
        ..only(&[Interval::H1])
    });
    let mut out = Vec::new();
    agg2.on_trade(&bin(1, 10.0, "100", "1"), &mut out);
    agg2.settle(3_700 * SEC, &mut out);
    assert_eq!(closed(&out, Interval::H1).len(), 1);
}

#[test]
fn trades_past_the_lateness_window_are_counted_not_applied() {
    let config = AggregatorConfig {
        lateness_nanos: 60 * SEC,
        ..only(&[Interval::M1])
    };
    let mut agg = CandleAggregator::new(config);
    let mut out = Vec::new();
    agg.on_trade(&bin(1, 10.0, "100", "1"), &mut out);
    agg.on_trade(&bin(3, 300.0, "105", "1"), &mut out);
    assert_eq!(
        agg.on_trade(&bin(2, 20.0, "1", "1"), &mut out),
        TradeOutcome::TooLate
    );
    assert_eq!(agg.stats().too_late, 1);
    assert!(out.iter().all(|c| c.low != d("1")));
}

#[test]
fn empty_intervals_flat_for_binance_skip_for_coinbase() {
    for (exchange, expect_flat) in [(Exchange::Binance, true), (Exchange::Coinbase, false)] {
        let mut agg = CandleAggregator::new(only(&[Interval::M1]));
        let mut out = Vec::new();
        agg.on_trade(&trade(exchange, 1, 10.0, "100", "1", Side::Sell), &mut out);
        agg.on_trade(&trade(exchange, 2, 200.0, "101", "1", Side::Sell), &mut out);
        let c = closed(&out, Interval::M1);
        if expect_flat {
            assert_eq!(c.len(), 3, "{exchange}: minute 0 and flat minutes 1 and 2");
            for flat in &c[1..] {
                assert_eq!(
                    (flat.open, flat.high, flat.low, flat.close),
                    (d("100"), d("100"), d("100"), d("100"))
                );
                assert_eq!(
                    (flat.volume, flat.trades, flat.first_trade_id.clone()),
                    (d("0"), 0, None)
                );
            }
        } else {
            assert_eq!(c.len(), 1, "{exchange}: no candle for empty minutes");
        }
    }
}

#[test]
fn policy_override_from_config() {
    let mut config = only(&[Interval::M1]);
    config
        .empty_policy
        .insert(Exchange::Binance, EmptyIntervalPolicy::Skip);
    let mut agg = CandleAggregator::new(config);
    let mut out = Vec::new();
    agg.on_trade(&bin(1, 10.0, "100", "1"), &mut out);
    agg.on_trade(&bin(2, 200.0, "101", "1"), &mut out);
    assert_eq!(closed(&out, Interval::M1).len(), 1);
}

#[test]
fn late_trade_in_a_flat_minute_replaces_it_and_moves_later_flats() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1]));
    let mut out = Vec::new();
    agg.on_trade(&bin(1, 10.0, "100", "1"), &mut out);
    agg.on_trade(&bin(5, 250.0, "110", "1"), &mut out); // minutes 1..3 flat at 100
    out.clear();
    agg.on_trade(&bin(2, 70.0, "104", "2"), &mut out); // lands in minute 1
    let revised: Vec<_> = out.iter().filter(|c| c.interval == Interval::M1).collect();
    assert_eq!(
        revised.len(),
        3,
        "minute 1 gets the trade; flats 2 and 3 move to 104"
    );
    assert_eq!(
        (revised[0].open_time, revised[0].volume, revised[0].open),
        (Ts(60 * SEC), d("2"), d("104"))
    );
    for flat in &revised[1..] {
        assert_eq!(
            (flat.close, flat.trades, flat.state),
            (d("104"), 0, CandleState::Revised)
        );
    }
}

#[test]
fn week_and_month_candles() {
    let mut agg = CandleAggregator::new(only(&[Interval::W1, Interval::Mo1]));
    let mut out = Vec::new();
    let t = |s: &str| Ts::parse(s).expect("time").0 as f64 / 1e9;
    agg.on_trade(&bin(1, t("2024-02-29T23:00:00Z"), "1", "1"), &mut out); // Thursday
    agg.on_trade(&bin(2, t("2024-03-03T23:00:00Z"), "2", "1"), &mut out); // Sunday
    agg.on_trade(&bin(3, t("2024-03-05T00:00:00Z"), "3", "1"), &mut out); // Tuesday
    let w = closed(&out, Interval::W1);
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].open_time, w[0].trades),
        (Ts::parse("2024-02-26").expect("t"), 2)
    );
    let m = closed(&out, Interval::Mo1);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].open_time, m[0].trades),
        (Ts::parse("2024-02-01").expect("t"), 1)
    );
}

#[test]
fn more_digits_mid_stream_raise_the_scale_exactly() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1]));
    let mut out = Vec::new();
    agg.on_trade(&bin(1, 1.0, "100.5", "2"), &mut out);
    agg.on_trade(&bin(2, 2.0, "100.25", "0.001"), &mut out);
    agg.flush(&mut out);
    let c = out
        .iter()
        .find(|c| c.interval == Interval::M1)
        .expect("candle");
    assert_eq!(
        (c.open, c.close, c.volume),
        (d("100.5"), d("100.25"), d("2.001"))
    );
    assert_eq!(c.quote_volume, d("201.10025"));
}

#[test]
fn string_ids_order_by_time_then_arrival() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1]));
    let mut out = Vec::new();
    let mut t1 = trade(Exchange::Bybit, 0, 5.0, "10", "1", Side::Buy);
    t1.trade_id = TradeId::Str("b-uuid".into());
    let mut t0 = trade(Exchange::Bybit, 0, 4.0, "9", "1", Side::Sell);
    t0.trade_id = TradeId::Str("a-uuid".into());
    agg.on_trade(&t1, &mut out);
    agg.on_trade(&t0, &mut out);
    assert_eq!(agg.on_trade(&t0, &mut out), TradeOutcome::Duplicate);
    agg.flush(&mut out);
    let c = out
        .iter()
        .find(|c| c.interval == Interval::M1)
        .expect("candle");
    assert_eq!(
        (c.open, c.close, c.taker_buy_volume),
        (d("9"), d("10"), d("1"))
    );
}

/// A naive recomputation over random trades, locally shuffled and duplicated,
/// must equal the aggregator's final candles (closed or revised), for every interval.
#[test]
fn equals_naive_recomputation_on_random_trades() {
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut trades = Vec::new();
    let mut ts = Ts::parse("2024-01-31T22:00:00Z").expect("t").0;
    for id in 0..20_000u64 {
        ts += i64::try_from(next() % 3_000_000_000).expect("small");
        let price = format!("{}.{:02}", 1000 + next() % 50, next() % 100);
        let size = format!("0.{:04}", 1 + next() % 9999);
        let side = if next() % 2 == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let mut t = trade(Exchange::Coinbase, id, 0.0, &price, &size, side);
        t.ts_exchange = Ts(ts);
        trades.push(t);
    }
    // Local disorder and duplicates, within the grace period.
    let mut feed = trades.clone();
    for i in (1..feed.len()).step_by(7) {
        feed.swap(i - 1, i);
    }
    for i in (0..feed.len()).step_by(13) {
        let dup = feed[i].clone();
        feed.insert(i, dup);
    }
    let mut agg = CandleAggregator::new(AggregatorConfig::default());
    let mut out = Vec::new();
    for t in &feed {
        agg.on_trade(t, &mut out);
    }
    let last = trades.last().expect("trades").ts_exchange.0;
    agg.on_tick(last + 40 * 86_400 * SEC, &mut out);
    // Some swapped trades land after their second closed: those revise candles.
    assert!(
        agg.stats().late_trades > 0,
        "the revision path is exercised"
    );

    let mut ours: BTreeMap<(Interval, Ts), Candle> = BTreeMap::new();
    for c in out {
        ours.insert((c.interval, c.open_time), c);
    }
    for iv in Interval::ALL {
        let mut naive: BTreeMap<Ts, Vec<&Trade>> = BTreeMap::new();
        for t in &trades {
            naive
                .entry(iv.bucket_start(t.ts_exchange))
                .or_default()
                .push(t);
        }
        for (open, ts) in naive {
            let c = ours
                .get(&(iv, open))
                .unwrap_or_else(|| panic!("{iv} {open} missing"));
            let sum = |f: &dyn Fn(&Trade) -> Decimal| {
                ts.iter()
                    .fold(Decimal::ZERO, |a, t| a.checked_add(f(t)).expect("sum"))
            };
            assert_eq!(c.open, ts[0].price, "{iv} {open}");
            assert_eq!(c.close, ts[ts.len() - 1].price, "{iv} {open}");
            assert_eq!(c.high, ts.iter().map(|t| t.price).max().expect("max"));
            assert_eq!(c.low, ts.iter().map(|t| t.price).min().expect("min"));
            assert_eq!(c.volume, sum(&|t| t.size));
            assert_eq!(
                c.quote_volume,
                sum(&|t| t.price.checked_mul(t.size).expect("mul"))
            );
            assert_eq!(
                c.taker_buy_volume,
                sum(&|t| if t.side == Side::Buy {
                    t.size
                } else {
                    Decimal::ZERO
                })
            );
            assert_eq!(c.trades, ts.len() as u64);
            assert_ne!(c.state, CandleState::Provisional);
        }
    }
}

#[test]
fn long_silences_get_no_flat_candles() {
    let config = AggregatorConfig {
        max_flat_span_nanos: 180 * SEC,
        ..only(&[Interval::M1])
    };
    let mut agg = CandleAggregator::new(config);
    let mut out = Vec::new();
    agg.on_trade(&bin(1, 10.0, "100", "1"), &mut out);
    agg.on_trade(&bin(2, 3_600.0 * 24.0 * 365.0, "101", "1"), &mut out);
    let c = closed(&out, Interval::M1);
    assert_eq!(
        c.len(),
        4,
        "minute 0, then flats only for the 3 minutes after it"
    );
    assert_eq!(agg.stats().flat_candles, 3);
}

#[test]
fn flush_emits_every_open_bucket() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1, Interval::D1]));
    let mut out = Vec::new();
    let midnight = 86_400.0;
    agg.on_trade(&bin(1, midnight - 30.0, "1", "1"), &mut out);
    agg.on_trade(&bin(2, midnight - 0.5, "2", "1"), &mut out);
    agg.on_trade(&bin(3, midnight + 0.5, "3", "1"), &mut out);
    out.clear();
    agg.flush(&mut out);
    let opens: Vec<(Interval, i64, u64)> = out
        .iter()
        .map(|c| (c.interval, c.open_time.as_secs(), c.trades))
        .collect();
    assert_eq!(
        opens,
        vec![
            (Interval::M1, 86_340, 2),
            (Interval::M1, 86_400, 1),
            (Interval::D1, 0, 2),
            (Interval::D1, 86_400, 1)
        ]
    );
}

#[test]
fn too_many_digits_are_refused_not_a_panic() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1]));
    let mut out = Vec::new();
    let t = bin(1, 1.0, "1.000000000000000001", "0.000000000000000001");
    assert_eq!(agg.on_trade(&t, &mut out), TradeOutcome::OutOfRange);
    let mut far = bin(3, 0.0, "1", "1");
    far.ts_exchange = Ts(i64::MAX);
    assert_eq!(
        agg.on_trade(&far, &mut out),
        TradeOutcome::OutOfRange,
        "absurd times are refused"
    );
    assert_eq!(
        agg.on_trade(&bin(2, 2.0, "1.5", "2"), &mut out),
        TradeOutcome::Applied
    );
    agg.flush(&mut out);
    assert_eq!(agg.stats().out_of_range, 2);
    assert_eq!(
        out.iter()
            .find(|c| c.interval == Interval::M1)
            .map(|c| c.trades),
        Some(1)
    );
}

#[test]
fn a_forgotten_instrument_starts_afresh_and_the_others_keep_their_candles() {
    let mut agg = CandleAggregator::new(only(&[Interval::M1]));
    let mut out = Vec::new();
    let eth = |id: u64, secs: f64, price: &str| Trade {
        instrument: Instrument::parse("ETH-USDT").expect("instrument"),
        ..bin(id, secs, price, "1")
    };
    agg.on_trade(&bin(1, 1.0, "100", "1"), &mut out);
    agg.on_trade(&eth(1, 2.0, "10"), &mut out);
    // BTC-USDT goes to another processor: its open minute is dropped, not
    // emitted, and ETH-USDT (moved to BTC-USDT's slot) keeps its minute.
    agg.forget(
        Exchange::Binance,
        &Instrument::parse("BTC-USDT").expect("instrument"),
    );
    agg.forget(
        Exchange::Binance,
        &Instrument::parse("XRP-USDT").expect("instrument"),
    );
    agg.flush(&mut out);
    let open: Vec<(String, Decimal)> = out
        .iter()
        .map(|c| (c.instrument.to_string(), c.open))
        .collect();
    assert_eq!(open, vec![("ETH-USDT".to_owned(), d("10"))]);
    // Back again, id 1 is new to it (no duplicate), and ETH-USDT's id 2 goes on.
    out.clear();
    assert_eq!(
        agg.on_trade(&bin(1, 3.0, "105", "1"), &mut out),
        TradeOutcome::Applied
    );
    assert_eq!(
        agg.on_trade(&eth(2, 4.0, "11"), &mut out),
        TradeOutcome::Applied
    );
    assert_eq!(
        agg.on_trade(&eth(1, 2.0, "10"), &mut out),
        TradeOutcome::Duplicate
    );
    agg.flush(&mut out);
    let mut closes: Vec<(String, Decimal, u64)> = out
        .iter()
        .map(|c| (c.instrument.to_string(), c.close, c.trades))
        .collect();
    closes.sort();
    assert_eq!(
        closes,
        vec![
            ("BTC-USDT".to_owned(), d("105"), 1),
            ("ETH-USDT".to_owned(), d("11"), 2)
        ]
    );
}
