//! Decode throughput: real Binance `@trade` combined-stream messages, raw JSON
//! to normalized `Trade`, on one core. The baseline in the same run parses the
//! same messages into a generic `serde_json::Value` and reads the fields from it.

use std::hint::black_box;

use ck_bus::Event;
use ck_model::Decimal;
use ck_sources::binance::BinanceParser;
use ck_sources::parse::Parser;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let messages = ck_testkit::bench_data::binance_trade_messages();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("binance_trade_to_normalized", |b| {
        let mut parser = BinanceParser::new();
        let mut out: Vec<Event> = Vec::with_capacity(messages.len());
        b.iter(|| {
            out.clear();
            for m in &messages {
                let _ = black_box(parser.parse(m, &mut out));
            }
            black_box(out.len())
        });
    });
    group.bench_function("baseline_serde_json_value", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for m in &messages {
                let v: serde_json::Value = serde_json::from_str(&m.data).expect("json");
                let d = &v["data"];
                let p = Decimal::parse(d["p"].as_str().unwrap_or("0")).unwrap_or_default();
                let q = Decimal::parse(d["q"].as_str().unwrap_or("0")).unwrap_or_default();
                n += usize::from(!p.is_zero() && !q.is_zero())
                    + d["t"].as_u64().unwrap_or(0) as usize % 2;
            }
            black_box(n)
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
