//! Replay end to end: the hftbacktest recording (41,249 real Binance messages,
//! 9,757 trades) from the gzip file through parsing, the candle stage and the
//! store writer, to committed trades, quotes and candles in a fresh SQLite
//! database (durability full). Throughput is counted in trades.

use std::time::{Duration, Instant};

use ck_app::config::AppConfig;
use ck_app::pipeline::{Source, run_pipeline};
use ck_sources::replay::ReplayOptions;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;

fn once(rt: &tokio::runtime::Runtime) -> Duration {
    let file = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![(
        "CANDLEKEEP_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    )];
    let settings = AppConfig::load(None, env)
        .expect("config")
        .settings()
        .expect("settings");
    let store = rt.block_on(ck_app::open_store(&settings)).expect("store");
    let start = Instant::now();
    let source = Source::Replay {
        files: vec![file],
        options: ReplayOptions::default(),
    };
    let report = rt
        .block_on(run_pipeline(
            &settings,
            store,
            vec![source],
            None,
            CancellationToken::new(),
        ))
        .expect("replay");
    let elapsed = start.elapsed();
    assert_eq!(report.writer.written.trades_inserted, 9_757);
    elapsed
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(9_757));
    group.sample_size(10);
    group.bench_function("hftbacktest_fixture_to_committed_candles", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| once(&rt)).sum());
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
