//! SQLite ingest: real Binance trades (repeated, see `ck_testkit::bench_data`)
//! committed in batches of 20,000, into a fresh WAL database each iteration.
//! `full` fsyncs every commit (the default, durable against power loss);
//! `normal` is the baseline in the same run (durable against a process crash).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ck_store::WriteBatch;
use ck_store::sqlite::{Durability, SqliteStore};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TRADES: usize = 200_000;
const BATCH: usize = 20_000;

fn ingest(durability: Durability, batches: &[Arc<WriteBatch>]) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("bench.sqlite"), durability).expect("open");
    let start = Instant::now();
    for b in batches {
        let s = store.write_blocking(b).expect("write");
        assert_eq!(s.trades_inserted as usize, b.trades.len());
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let trades = ck_testkit::bench_data::repeated_binance_trades(TRADES);
    let batches: Vec<Arc<WriteBatch>> = trades
        .chunks(BATCH)
        .map(|chunk| {
            Arc::new(WriteBatch {
                trades: chunk.to_vec(),
                ..WriteBatch::default()
            })
        })
        .collect();
    let mut group = c.benchmark_group("sqlite_ingest");
    group.throughput(Throughput::Elements(TRADES as u64));
    group.sample_size(10);
    group.bench_function("trades_batched_durability_full", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| ingest(Durability::Full, &batches)).sum());
    });
    group.bench_function("baseline_trades_batched_durability_normal", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| ingest(Durability::Normal, &batches))
                .sum()
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
