//! The PostgreSQL backend against the real server on loopback.
//!
//! `CK_TEST_POSTGRES_URL` overrides the server (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test works in a schema
//! of its own and drops it at the end.

use ck_store::Store;
use ck_store::postgres::{Extension, PgOptions, PgStore};

pub(crate) use ck_testkit::postgres_url as url;

/// A store in a fresh schema; panics with how to start the server if it is down.
pub(crate) async fn fresh(name: &str) -> (PgStore, Schema) {
    fresh_at(&url(), name).await
}

/// A store in a fresh schema of the server at `url`.
pub(crate) async fn fresh_at(url: &str, name: &str) -> (PgStore, Schema) {
    let schema = format!("ck_{name}_{}", std::process::id());
    let admin = admin_at(url).await;
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .expect("drop old schema");
    let mut options = PgOptions::new(url);
    options.schema = Some(schema.clone());
    let store = PgStore::open(options)
        .await
        .expect("open the PostgreSQL store");
    (
        store,
        Schema {
            name: schema,
            url: url.to_owned(),
        },
    )
}

async fn admin() -> tokio_postgres::Client {
    admin_at(&url()).await
}

pub(crate) use ck_testkit::postgres_client as admin_at;

/// Drops its schema when the test ends.
pub(crate) struct Schema {
    pub(crate) name: String,
    url: String,
}

impl Schema {
    pub(crate) async fn drop_now(self) {
        admin_at(&self.url)
            .await
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await
            .expect("drop schema");
    }
}

/// Packed days answer exactly as their rows (see `crate::packed`).
#[tokio::test]
async fn postgres_packed_candle_days_read_exactly_as_their_rows() {
    let (store, schema) = fresh("packed").await;
    let raw = admin().await;
    raw.batch_execute(&format!("SET search_path TO {}", schema.name))
        .await
        .expect("search path");
    crate::packed::packed_days_answer_as_their_rows(&store, &crate::packed::Raw::Postgres(raw))
        .await;
    schema.drop_now().await;
}

#[tokio::test]
async fn postgres_passes_the_store_contract() {
    let (store, schema) = fresh("contract").await;
    ck_testkit::store_contract(&store).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn postgres_with_an_archive_passes_the_tiered_contract() {
    let (store, schema) = fresh("tiered").await;
    let dir = tempfile::tempdir().expect("tempdir");
    ck_testkit::tiered_contract(std::sync::Arc::new(store), &dir.path().join("archive")).await;
    schema.drop_now().await;
}

#[tokio::test]
async fn postgres_with_an_archive_passes_the_direct_import_contract() {
    let (store, schema) = fresh("direct").await;
    let dir = tempfile::tempdir().expect("tempdir");
    ck_testkit::direct_import_contract(std::sync::Arc::new(store), &dir.path().join("archive"))
        .await;
    schema.drop_now().await;
}

#[tokio::test]
async fn postgres_migrates_once_and_reports_its_extension() {
    let (store, schema) = fresh("migrate").await;
    assert!(
        matches!(store.extension(), Extension::None | Extension::Timescale(_)),
        "detected at open"
    );
    assert!(
        store.backend().starts_with("postgresql"),
        "{}",
        store.backend()
    );
    let mut options = PgOptions::new(&url());
    options.schema = Some(schema.name.clone());
    // Several processes open one database at once: each finds it migrated.
    let opened = futures_join(options.clone(), options).await;
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    let admin = admin().await;
    let versions: i64 = admin
        .query_one(
            &format!("SELECT count(*) FROM {}.schema_migrations", schema.name),
            &[],
        )
        .await
        .expect("migrations")
        .get(0);
    assert_eq!(versions, 4, "each migration applied once");
    assert_eq!(store.counts().await.expect("counts").trades, 0);

    // A store from before packed days (version 1) holding candles: the
    // upgrade marks their days stale, and packing packs them.
    let mut batch = ck_store::WriteBatch::default();
    let day = 19_000 * 86_400 * 1_000_000_000_i64;
    for (n, (interval, at)) in [
        (ck_model::Interval::M1, day),
        (
            ck_model::Interval::M1,
            day + 86_400 * 1_000_000_000 + 60_000_000_000,
        ),
        (ck_model::Interval::D1, day),
    ]
    .into_iter()
    .enumerate()
    {
        batch
            .candles
            .push(crate::packed::candle(interval, at, n as i64 + 1));
    }
    store
        .write(std::sync::Arc::new(batch))
        .await
        .expect("write");
    admin
        .batch_execute(&format!(
            "SET search_path TO {}; DROP TABLE candle_days; DROP INDEX gaps_unique; \
             ALTER TABLE gaps DROP COLUMN kind; \
             CREATE UNIQUE INDEX gaps_unique ON gaps \
                 (instrument_id, from_ts, to_ts, coalesce(from_trade_id, -1), coalesce(to_trade_id, -1)); \
             DELETE FROM schema_migrations WHERE version >= 2",
            schema.name
        ))
        .await
        .expect("back to version 1");
    let mut options = PgOptions::new(&url());
    options.schema = Some(schema.name.clone());
    let upgraded = PgStore::open(options).await.expect("upgrade");
    let stale: i64 = admin
        .query_one(
            "SELECT count(*) FROM candle_days WHERE records IS NULL",
            &[],
        )
        .await
        .expect("stale days")
        .get(0);
    assert_eq!(stale, 2, "the two days of 1m candles (1d is not packed)");
    let report = upgraded
        .pack_candle_days(ck_model::Ts(day + 7 * 86_400 * 1_000_000_000))
        .await
        .expect("pack");
    assert_eq!((report.days_packed, report.candles), (2, 2), "{report:?}");
    schema.drop_now().await;
}

async fn futures_join(a: PgOptions, b: PgOptions) -> Vec<Result<PgStore, ck_store::Error>> {
    let (x, y) = tokio::join!(PgStore::open(a), PgStore::open(b));
    vec![x, y]
}

#[tokio::test]
async fn postgres_store_survives_a_lost_connection() {
    let (store, schema) = fresh("reconnect").await;
    store.ping().await.expect("ping");
    // Kill every connection of this schema's store from outside.
    let admin = admin().await;
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'candlekeep/{}'",
            schema.name
        ))
        .await
        .expect("terminate");
    // The first use after the loss may fail; the next one reconnects.
    let mut ok = false;
    for _ in 0..3 {
        if store.ping().await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "the store opens a new connection after losing one");
    let write = std::sync::Arc::new(ck_store::WriteBatch {
        trades: ck_testkit::bench_data::binance_trades()
            .into_iter()
            .take(10)
            .collect(),
        ..ck_store::WriteBatch::default()
    });
    let mut written = None;
    for _ in 0..3 {
        if let Ok(s) = store.write(write.clone()).await {
            written = Some(s);
            break;
        }
    }
    assert_eq!(written.map(|s| s.trades_inserted), Some(10));
    schema.drop_now().await;
}

/// Two processes, one revising a day's candles while the other packs that
/// day over and over: after each revision, once the packer has been round
/// twice, the day reads exactly as its rows. (The packer reads 1,440 rows
/// while a revision writes one, so revisions commit while a pack of the
/// state before them is being built; without the day's row lock that pack
/// would land after them as current.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_packing_races_no_write() {
    use ck_model::{Interval, Ts};
    use ck_store::{CandleSource, RangeQuery};
    const DAY: i64 = 86_400 * 1_000_000_000;
    const MIN: i64 = 60_000_000_000;
    let (writer, schema) = fresh("pack_race").await;
    let mut options = PgOptions::new(&url());
    options.schema = Some(schema.name.clone());
    let packer = PgStore::open(options).await.expect("second process");
    let day = 19_000 * DAY;
    let mut batch = ck_store::WriteBatch::default();
    for m in 0..1_440 {
        batch
            .candles
            .push(crate::packed::candle(Interval::M1, day + m * MIN, m));
    }
    writer
        .write(std::sync::Arc::new(batch))
        .await
        .expect("write");
    let (rounds_tx, mut rounds) = tokio::sync::watch::channel(0_u64);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let packing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut packed = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                packed += packer
                    .pack_candle_days(Ts(day + 2 * DAY))
                    .await
                    .expect("pack")
                    .days_packed;
                rounds_tx.send_modify(|n| *n += 1);
            }
            packed
        })
    };
    let q = RangeQuery {
        exchange: ck_model::Exchange::Coinbase,
        instrument: "BTC-USD".parse().expect("i"),
        from: Ts(day),
        to: Ts(day + DAY),
        limit: 10_000,
    };
    for round in 1..=40 {
        // Two revisions back to back: the packer (polling) takes the day
        // up after the first, and the second commits while it reads.
        for k in 0..2 {
            let mut batch = ck_store::WriteBatch::default();
            batch.candles.push(crate::packed::candle(
                Interval::M1,
                day + ((round * 37 + k * 500) % 1_440) * MIN,
                10_000 + 2 * round + k,
            ));
            writer
                .write(std::sync::Arc::new(batch))
                .await
                .expect("revise");
        }
        let seen = *rounds.borrow_and_update();
        rounds
            .wait_for(|n| *n >= seen + 2)
            .await
            .expect("packer running");
        let rows = writer
            .candles(&q, Interval::M1, CandleSource::Ours)
            .await
            .expect("rows");
        assert_eq!(rows.len(), 1_440);
        for form in [ck_store::RecordForm::Json, ck_store::RecordForm::Csv] {
            let got = writer
                .candle_records(&q, Interval::M1, CandleSource::Ours, false, form)
                .await
                .expect("records");
            let mut want = ck_store::CandleRecords::new(form, 0);
            for c in &rows {
                want.push_candle(c);
            }
            assert!(
                got == want,
                "round {round}: the day does not read as its rows in {form:?}"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let packed = packing.await.expect("packer");
    assert!(
        packed >= 40,
        "the day was packed after each revision: {packed}"
    );
    schema.drop_now().await;
}
