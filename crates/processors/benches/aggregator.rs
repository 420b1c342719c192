//! Aggregator throughput: trades/s building all 15 intervals at once, on one
//! core, over real Binance trades repeated (see `ck_testkit::bench_data`).
//! The baseline in the same run is a straightforward aggregator that updates
//! every interval per trade with exact decimal arithmetic.

use std::collections::HashMap;
use std::hint::black_box;

use ck_model::{Decimal, Interval, Trade, Ts};
use ck_processors::candles::{AggregatorConfig, CandleAggregator};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TRADES: usize = 1_000_000;

/// The straightforward approach: one map entry per (interval, bucket), every
/// interval updated on every trade, decimals added as decimals.
fn naive(trades: &[Trade]) -> usize {
    #[derive(Clone)]
    struct Bar {
        open: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        volume: Decimal,
        quote: Decimal,
        count: u64,
    }
    let mut bars: Vec<HashMap<Ts, Bar>> = vec![HashMap::new(); Interval::ALL.len()];
    for t in trades {
        let quote = t.price.checked_mul(t.size).unwrap_or_default();
        for (i, iv) in Interval::ALL.iter().enumerate() {
            let b = bars[i]
                .entry(iv.bucket_start(t.ts_exchange))
                .or_insert_with(|| Bar {
                    open: t.price,
                    high: t.price,
                    low: t.price,
                    close: t.price,
                    volume: Decimal::ZERO,
                    quote: Decimal::ZERO,
                    count: 0,
                });
            b.high = b.high.max(t.price);
            b.low = b.low.min(t.price);
            b.close = t.price;
            b.volume = b.volume.checked_add(t.size).unwrap_or_default();
            b.quote = b.quote.checked_add(quote).unwrap_or_default();
            b.count += 1;
        }
    }
    // Read every field, so the work cannot be optimised away.
    bars.iter()
        .flat_map(HashMap::values)
        .map(|b| {
            usize::from(
                b.low <= b.open && b.open <= b.high && b.low <= b.close && b.close <= b.high,
            ) + usize::from(!b.volume.is_zero() && !b.quote.is_zero())
                + b.count as usize
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let trades = ck_testkit::bench_data::repeated_binance_trades(TRADES);
    let mut group = c.benchmark_group("aggregator");
    group.throughput(Throughput::Elements(trades.len() as u64));
    group.sample_size(10);
    group.bench_function("candlekeep_all_15_intervals", |b| {
        b.iter(|| {
            let mut agg = CandleAggregator::new(AggregatorConfig::default());
            let mut out = Vec::with_capacity(1024);
            let mut emitted = 0usize;
            for t in &trades {
                agg.on_trade(t, &mut out);
                // As the candle stage does: hand the candles on after each trade.
                emitted += out.len();
                out.clear();
            }
            agg.flush(&mut out);
            black_box(emitted + out.len())
        });
    });
    group.bench_function("baseline_naive_decimal_15_intervals", |b| {
        b.iter(|| black_box(naive(&trades)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
