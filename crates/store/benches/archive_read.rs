//! Reading settled history: from SQLite (the baseline, in the same run)
//! and from the archive once it has moved there through the tiered store.
//!
//! - A day of trades: a million real Binance trades (repeated, see
//!   `ck_testkit::bench_data`) spread over one UTC day, read whole as the
//!   API, `export` and candle rebuilds read them, and an hour of them.
//! - A year of 1m candles as the API's large answers read them
//!   (`candle_records`): SQLite's packed days against the archive's files.
//!
//! Also prints the bytes a trade and a candle take in each tier.

use std::sync::Arc;

use ck_model::{Candle, CandleState, Decimal, Exchange, Instrument, Interval, TradeId, Ts};
use ck_store::sqlite::{Durability, SqliteStore};
use ck_store::tiered::TieredStore;
use ck_store::{CandleSource, RangeQuery, RecordForm, Store, WriteBatch};
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
    let in_hour = trades.iter().filter(|t| t.ts_exchange < hour.to).count();

    let mut group = c.benchmark_group("archive_read");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TRADES as u64));
    group.bench_function("baseline_sqlite_day_of_trades", |b| {
        b.iter(|| {
            let got = runtime.block_on(sqlite.trades(&day)).expect("read");
            assert_eq!(got.len(), TRADES);
        });
    });
    group.throughput(Throughput::Elements(in_hour as u64));
    group.bench_function("baseline_sqlite_hour_of_trades", |b| {
        b.iter(|| {
            let got = runtime.block_on(sqlite.trades(&hour)).expect("read");
            assert_eq!(got.len(), in_hour);
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
    group.throughput(Throughput::Elements(in_hour as u64));
    group.bench_function("archive_hour_of_trades", |b| {
        b.iter(|| {
            let got = runtime.block_on(tiered.trades(&hour)).expect("read");
            assert_eq!(got.len(), in_hour);
        });
    });
    group.finish();
}

/// A year of 1m candles, prices walking.
fn year_of_candles(start: i64) -> Vec<Candle> {
    let minute = 60 * 1_000_000_000;
    let instrument = Instrument::parse("ETH-USDT").expect("instrument");
    (0..365 * 1_440)
        .map(|m: i64| {
            let price = 250_000 + (m * 7_919) % 5_000;
            let d = |cents: i64| Decimal::new(i128::from(cents), 2);
            Candle {
                exchange: Exchange::Binance,
                instrument: instrument.clone(),
                interval: Interval::M1,
                open_time: Ts(start + m * minute),
                open: d(price),
                high: d(price + 150),
                low: d(price - 125),
                close: d(price + 25),
                volume: Decimal::new(i128::from(1_000 + m % 977), 4),
                quote_volume: Decimal::new(i128::from(price) * i128::from(1_000 + m % 977), 6),
                vwap: d(price + 10),
                taker_buy_volume: Decimal::new(i128::from(500 + m % 331), 4),
                trades: 40 + (m % 60) as u64,
                first_trade_id: Some(TradeId::Num(1_000_000 + m as u64 * 100)),
                last_trade_id: Some(TradeId::Num(1_000_099 + m as u64 * 100)),
                state: CandleState::Closed,
            }
        })
        .collect()
}

fn bench_candles(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // 2023-08-09 to 2024-08-07.
    let start = (19_943 - 365) * DAY;
    let candles = year_of_candles(start);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("candles.sqlite");
    let sqlite = Arc::new(SqliteStore::open(&db, Durability::Normal).expect("open"));
    for chunk in candles.chunks(50_000) {
        sqlite
            .write_blocking(&WriteBatch {
                candles: chunk.to_vec(),
                ..WriteBatch::default()
            })
            .expect("write");
    }
    runtime
        .block_on(sqlite.pack_candle_days(Ts(start + 365 * DAY)))
        .expect("pack");
    let year = RangeQuery {
        exchange: Exchange::Binance,
        instrument: Instrument::parse("ETH-USDT").expect("instrument"),
        from: Ts(start),
        to: Ts(start + 365 * DAY),
        limit: usize::MAX,
    };
    let sqlite_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let n = candles.len();
    let mut group = c.benchmark_group("archive_read");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("baseline_sqlite_packed_year_of_1m_candles", |b| {
        b.iter(|| {
            let got = runtime
                .block_on(sqlite.candle_records(
                    &year,
                    Interval::M1,
                    CandleSource::Ours,
                    false,
                    RecordForm::Json,
                ))
                .expect("read");
            assert_eq!(got.len(), n);
        });
    });
    let archive = dir.path().join("archive");
    let tiered = TieredStore::new(sqlite.clone(), &archive);
    let report = runtime
        .block_on(tiered.archive_settled(Ts(start + 365 * DAY)))
        .expect("archive");
    assert_eq!(report.candles as usize, n);
    let archive_bytes: u64 = walk(&archive);
    eprintln!(
        "bytes per 1m candle: SQLite {:.1} (rows and packed days), archive {:.1}",
        sqlite_bytes as f64 / n as f64,
        archive_bytes as f64 / n as f64
    );
    // The first read decodes every day's file (the records cache is
    // empty); the measured reads find them cached, as a server does.
    let cold = TieredStore::new(sqlite.clone(), &archive);
    let started = std::time::Instant::now();
    let first = runtime
        .block_on(cold.candle_records(
            &year,
            Interval::M1,
            CandleSource::Ours,
            false,
            RecordForm::Json,
        ))
        .expect("read");
    assert_eq!(first.len(), n);
    eprintln!(
        "first (uncached) read of the year from the archive: {:?}",
        started.elapsed()
    );
    group.bench_function("archive_year_of_1m_candles", |b| {
        b.iter(|| {
            let got = runtime
                .block_on(tiered.candle_records(
                    &year,
                    Interval::M1,
                    CandleSource::Ours,
                    false,
                    RecordForm::Json,
                ))
                .expect("read");
            assert_eq!(got.len(), n);
        });
    });
    group.finish();
}

/// Bytes of the files under `dir`.
fn walk(dir: &std::path::Path) -> u64 {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            bytes += walk(&path);
        } else {
            bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    bytes
}

criterion_group!(benches, bench, bench_candles);
criterion_main!(benches);
