//! The PostgreSQL backend on TimescaleDB: hypertables, compression,
//! retention policies, and pruning by whole chunks.
//!
//! The server is `ck_testkit::timescale_url()`: by default the PGlite build
//! of TimescaleDB from `tools/timescaledb` (Debian has no TimescaleDB
//! package), or a real server named by `CK_TEST_TIMESCALE_URL`.

use std::sync::Arc;

use ck_model::{Trade, Ts};
use ck_store::postgres::{Extension, PgOptions, PgStore, TimescalePolicies};
use ck_store::{PrunePlan, RangeQuery, Store, WriteBatch};

use crate::postgres::{admin_at, fresh_at};

const DAY: i64 = 86_400_000_000_000;

#[tokio::test]
async fn timescale_passes_the_store_contract() {
    let (store, schema) = fresh_at(&ck_testkit::timescale_url(), "tsdb_contract").await;
    assert!(
        matches!(store.extension(), Extension::Timescale(_)),
        "TimescaleDB is detected at open: {:?}",
        store.extension()
    );
    assert!(
        store.backend().starts_with("postgresql+timescaledb 2."),
        "and reported: {}",
        store.backend()
    );
    ck_testkit::store_contract(&store).await;
    schema.drop_now().await;
}

/// `(table, policy, its config's time)` of the schema's TimescaleDB jobs.
async fn policies(admin: &tokio_postgres::Client, schema: &str) -> Vec<(String, String, i64)> {
    let rows = admin
        .query(
            "SELECT hypertable_name::TEXT, proc_name::TEXT,
                    COALESCE(config->>'compress_after', config->>'drop_after')::BIGINT
             FROM timescaledb_information.jobs
             WHERE hypertable_schema = $1 ORDER BY 1, 2",
            &[&schema],
        )
        .await
        .expect("jobs");
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn timescale_hypertables_are_compressed_with_retention_policies() {
    let url = ck_testkit::timescale_url();
    let (store, schema) = fresh_at(&url, "tsdb_layout").await;
    let admin = admin_at(&url).await;
    let hypertables: Vec<(String, bool)> = admin
        .query(
            "SELECT hypertable_name::TEXT, compression_enabled
             FROM timescaledb_information.hypertables
             WHERE hypertable_schema = $1 ORDER BY 1",
            &[&schema.name],
        )
        .await
        .expect("hypertables")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        hypertables,
        [("quotes".to_owned(), true), ("trades".to_owned(), true)],
        "trades and quotes are compressed hypertables"
    );
    let week = 7 * DAY;
    assert_eq!(
        policies(&admin, &schema.name).await,
        [
            ("quotes".to_owned(), "policy_compression".to_owned(), week),
            ("trades".to_owned(), "policy_compression".to_owned(), week),
        ],
        "compression after the default 7 days; no retention by default"
    );
    drop(store);

    // Opened again with retention: the policies follow the options.
    let mut options = PgOptions::new(&url);
    options.schema = Some(schema.name.clone());
    options.policies = Some(TimescalePolicies {
        compress_after_days: 2,
        drop_trades_after: Some(30 * DAY),
        drop_quotes_after: Some(10 * DAY),
    });
    let store = PgStore::open(options.clone()).await.expect("reopen");
    assert!(matches!(store.extension(), Extension::Timescale(_)));
    assert_eq!(
        policies(&admin, &schema.name).await,
        [
            (
                "quotes".to_owned(),
                "policy_compression".to_owned(),
                2 * DAY
            ),
            ("quotes".to_owned(), "policy_retention".to_owned(), 10 * DAY),
            (
                "trades".to_owned(),
                "policy_compression".to_owned(),
                2 * DAY
            ),
            ("trades".to_owned(), "policy_retention".to_owned(), 30 * DAY),
        ],
        "retention policies as configured"
    );
    drop(store);

    // Opened without policies (as `migrate` opens a target): left alone.
    let mut untouched = options.clone();
    untouched.policies = None;
    drop(PgStore::open(untouched).await.expect("reopen"));
    assert_eq!(policies(&admin, &schema.name).await.len(), 4);

    // And dropped again when retention goes back to forever.
    if let Some(p) = options.policies.as_mut() {
        p.drop_quotes_after = None;
    }
    let _store = PgStore::open(options).await.expect("reopen");
    assert_eq!(
        policies(&admin, &schema.name)
            .await
            .iter()
            .filter(|p| p.1 == "policy_retention")
            .map(|p| p.0.as_str())
            .collect::<Vec<_>>(),
        ["trades"],
        "the quote retention policy is removed"
    );
    schema.drop_now().await;
}

/// Recorded trades spread over six days: trade `i` moves to day `i % 6`.
fn trades_over_six_days() -> Vec<Trade> {
    let recorded = ck_testkit::bench_data::binance_trades();
    assert!(recorded.len() >= 600, "the recording has enough trades");
    let start = Ts(recorded[0].ts_exchange.0.div_euclid(DAY) * DAY);
    recorded
        .into_iter()
        .take(600)
        .enumerate()
        .map(|(i, mut t)| {
            let day = i64::try_from(i % 6).expect("small");
            let within = t.ts_exchange.0 - start.0;
            assert!(
                (0..DAY).contains(&within),
                "the first 600 trades share a day"
            );
            t.ts_exchange = Ts(start.0 + day * DAY + within);
            t
        })
        .collect()
}

#[tokio::test]
async fn timescale_compressed_chunks_deduplicate_and_prune_drops_whole_chunks() {
    let url = ck_testkit::timescale_url();
    let (store, schema) = fresh_at(&url, "tsdb_prune").await;
    let admin = admin_at(&url).await;
    let trades = trades_over_six_days();
    let start = Ts(trades[0].ts_exchange.0.div_euclid(DAY) * DAY);
    let write = |trades: Vec<Trade>| {
        let store = store.clone();
        async move {
            store
                .write(Arc::new(WriteBatch {
                    trades,
                    ..WriteBatch::default()
                }))
                .await
                .expect("write")
        }
    };
    write(trades.clone()).await;
    let chunk_count = async |admin: &tokio_postgres::Client| -> i64 {
        admin
            .query_one(
                &format!("SELECT count(*) FROM show_chunks('{}.trades')", schema.name),
                &[],
            )
            .await
            .expect("chunks")
            .get(0)
    };
    assert_eq!(chunk_count(&admin).await, 6, "one chunk a day");

    // Compress every chunk; the same trades written again change nothing.
    admin
        .batch_execute(&format!(
            "SELECT compress_chunk(c) FROM show_chunks('{}.trades') c",
            schema.name
        ))
        .await
        .expect("compress");
    write(trades.clone()).await;
    assert_eq!(
        store.counts().await.expect("counts").trades,
        600,
        "trades in compressed chunks deduplicate by id"
    );
    let everything = RangeQuery {
        exchange: trades[0].exchange,
        instrument: trades[0].instrument.clone(),
        from: start,
        to: Ts(start.0 + 6 * DAY),
        limit: 10_000,
    };
    let mut expected = trades.clone();
    expected.sort_by_key(|t| t.ts_exchange);
    let stored = store.trades(&everything).await.expect("read");
    assert_eq!(
        stored
            .iter()
            .map(|t| (&t.trade_id, t.ts_exchange, &t.price))
            .collect::<Vec<_>>(),
        expected
            .iter()
            .map(|t| (&t.trade_id, t.ts_exchange, &t.price))
            .collect::<Vec<_>>(),
        "compressed chunks read back exactly"
    );

    // Prune at noon of the fourth day: three whole chunks go at once, then
    // the morning of the fourth day in batches of 7 rows.
    let cut = Ts(start.0 + 3 * DAY + DAY / 2);
    let older = expected.iter().filter(|t| t.ts_exchange < cut).count() as u64;
    let plan = PrunePlan {
        trades_before: Some(cut),
        batch_rows: 7,
        dry_run: true,
        ..PrunePlan::default()
    };
    assert_eq!(store.prune(&plan).await.expect("dry run").trades, older);
    let report = store
        .prune(&PrunePlan {
            dry_run: false,
            ..plan
        })
        .await
        .expect("prune");
    assert_eq!(report.trades, older, "the prune removes what it counted");
    assert_eq!(
        chunk_count(&admin).await,
        3,
        "days one to three dropped whole"
    );
    let kept = store.trades(&everything).await.expect("read");
    let newer: Vec<_> = expected.iter().filter(|t| t.ts_exchange >= cut).collect();
    assert_eq!(
        kept.iter()
            .map(|t| (&t.trade_id, t.ts_exchange))
            .collect::<Vec<_>>(),
        newer
            .iter()
            .map(|t| (&t.trade_id, t.ts_exchange))
            .collect::<Vec<_>>(),
        "exactly the trades before the cutoff are gone, in every chunk"
    );
    assert!(report.bytes_before > report.bytes_after, "{report:?}");
    schema.drop_now().await;
}
