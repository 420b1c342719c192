//! Reading a day of trades: from SQLite (the baseline, in the same run)
//! and from the archive once the day has moved there through the tiered
//! store. A million real Binance trades (repeated, see
//! `ck_testkit::bench_data`) spread over one UTC day, read whole as the
//! API, `export` and candle rebuilds read them. Also prints the bytes a
//! trade takes in each tier.

use std::sync::Arc;

use ck_model::{Exchange, Instrument, Ts};
use ck_store::sqlite::{Durability, SqliteStore};
use ck_store::tiered::TieredStore;
use ck_store::{RangeQuery, Store, WriteBatch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TRADES: usize = 1_000_000;
const DAY: i64 = 86_400 * 1_000_000_000;
/// 2024-08-08.
const FIRST: i64 = 19_943 * DAY;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut trades = ck_testkit::bench_data::repeated_binance_trades(TRADES);
    let step = DAY / TRADES as i64;
    for (i, t) in trades.iter_mut().enumerate() {
        t.ts_exchange = Ts(FIRST + i as i64 * step);
        t.ts_received = Ts(t.ts_exchange.0 + 1_000_000);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.sqlite");
    let sqlite = Arc::new(SqliteStore::open(&db, Durability::Normal).expect("open"));
    for chunk in trades.chunks(50_000) {
        sqlite
            .write_blocking(&WriteBatch {
                trades: chunk.to_vec(),
                ..WriteBatch::default()
            })
            .expect("write");
    }
    let day = RangeQuery {
        exchange: Exchange::Binance,
        instrument: Instrument::parse("BTC-USDT").expect("instrument"),
        from: Ts(FIRST),
        to: Ts(FIRST + DAY),
        limit: usize::MAX,
    };
    let hour = RangeQuery {
        to: Ts(FIRST + DAY / 24),
        ..day.clone()
    };
    let sqlite_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);

    let mut group = c.benchmark_group("archive_read");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TRADES as u64));
    group.bench_function("baseline_sqlite_day_of_trades", |b| {
        b.iter(|| {
            let got = runtime.block_on(sqlite.trades(&day)).expect("read");
            assert_eq!(got.len(), TRADES);
        });
    });
    group.throughput(Throughput::Elements(TRADES as u64 / 24));
    group.bench_function("baseline_sqlite_hour_of_trades", |b| {
        b.iter(|| {
            let got = runtime.block_on(sqlite.trades(&hour)).expect("read");
            assert_eq!(got.len(), TRADES / 24);
        });
    });
    group.throughput(Throughput::Elements(TRADES as u64));

    let archive = dir.path().join("archive");
    let tiered = TieredStore::new(sqlite.clone(), &archive);
    let report = runtime
        .block_on(tiered.archive_settled(Ts(FIRST + DAY)))
        .expect("archive");
    assert_eq!(report.trades as usize, TRADES);
    let file = ck_archive::layout::day_file(
        &archive,
        ck_archive::layout::Kind::Trades,
        Exchange::Binance,
        &day.instrument,
        FIRST / DAY,
    );
    let archive_bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "bytes per trade: SQLite {:.1} (the whole file), archive {:.1} (repeated trades compress better than real ones)",
        sqlite_bytes as f64 / TRADES as f64,
        archive_bytes as f64 / TRADES as f64
    );
    group.bench_function("archive_day_of_trades", |b| {
        b.iter(|| {
            let got = runtime.block_on(tiered.trades(&day)).expect("read");
            assert_eq!(got.len(), TRADES);
        });
    });
    group.throughput(Throughput::Elements(TRADES as u64 / 24));
    group.bench_function("archive_hour_of_trades", |b| {
        b.iter(|| {
            let got = runtime.block_on(tiered.trades(&hour)).expect("read");
            assert_eq!(got.len(), TRADES / 24);
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
