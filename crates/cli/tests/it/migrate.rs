//! `candlekeep migrate`: a store filled from the real Binance and Coinbase
//! recordings (plus gaps, job positions, alert rules and firings) is copied
//! from SQLite into the real PostgreSQL on loopback, and into TimescaleDB
//! (`ck_testkit::timescale_url`). Counts and every candle of every
//! interval are equal afterwards, and a second run adds nothing.

use std::sync::Arc;

use ck_app::config::StoreLocation;
use ck_app::pipeline::Source;
use ck_model::{Interval, Ts};
use ck_sources::replay::ReplayOptions;
use ck_store::{CandleSource, RangeQuery, WriteBatch};

use crate::support::{postgres_admin_at, postgres_url, settings, spawn_pipeline};

/// `candlekeep migrate` with the source's data folder (where its archive is).
fn migrate(data_dir: &std::path::Path, from: &str, to: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["migrate", "--from", from, "--to", to])
        .env("CANDLEKEEP_LOG", "warn")
        .output()
        .expect("run candlekeep migrate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_sqlite_into_postgres_with_no_loss() {
    let url = postgres_url();
    let schema = copies_sqlite_with_no_loss(&url, "ckm").await;
    postgres_admin_at(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_sqlite_into_timescaledb_hypertables_with_no_loss() {
    let url = ck_testkit::timescale_url();
    let schema = copies_sqlite_with_no_loss(&url, "ckmt").await;
    let admin = postgres_admin_at(&url, "SELECT 1").await;
    let hypertables: Vec<String> = admin
        .query(
            "SELECT hypertable_name::TEXT FROM timescaledb_information.hypertables
             WHERE hypertable_schema = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .expect("hypertables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(hypertables, ["quotes", "trades"], "copied into hypertables");
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop");
}

/// Fills SQLite, migrates it twice into a new schema of the server at
/// `server`, checks that nothing was lost or doubled, and returns the schema
/// (for the caller to look further and drop).
async fn copies_sqlite_with_no_loss(server: &str, prefix: &str) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let sqlite = ck_app::open_store(&settings).await.expect("sqlite");
    let files = vec![
        ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz"),
        ck_testkit::fixture("cryptofeed/COINBASE.jsonl.zst"),
    ];
    let (_token, pipeline) = spawn_pipeline(
        &settings,
        &sqlite,
        Source::Replay {
            files,
            options: ReplayOptions::default(),
        },
    );
    pipeline.await.expect("join").expect("replay");
    let gap = ck_model::Gap {
        exchange: ck_model::Exchange::Binance,
        instrument: crate::support::btc(),
        from_ts: Ts::from_secs(1_723_075_200),
        to_ts: Ts::from_secs(1_723_075_260),
        first_missing_id: Some(7),
        last_missing_id: Some(9),
        state: ck_model::GapState::Filled,
        reason: "filled: 3 trades over REST".into(),
        detected_at: Ts::from_secs(1_723_075_261),
        kind: ck_model::GapKind::Trades,
    };
    let job = ck_model::BackfillProgress {
        job: "binance BTC-USDT trades x".into(),
        cursor: "42".into(),
        done: true,
        updated_at: Ts::from_secs(9),
    };
    sqlite
        .write(Arc::new(WriteBatch {
            gaps: vec![gap.clone()],
            progress: vec![job.clone()],
            ..WriteBatch::default()
        }))
        .await
        .expect("extras");
    let rule = sqlite
        .put_alert_rule(None, r#"{"kind":"stale_feed"}"#)
        .await
        .expect("rule")
        .expect("id");
    let firing = sqlite
        .record_firing(&rule.to_string(), Ts::from_secs(11), r#"{"n":1}"#)
        .await
        .expect("firing");
    sqlite
        .set_firing_deliveries(firing, r#"[{"ok":true}]"#)
        .await
        .expect("deliveries");

    // An empty schema of this test's own.
    let schema = format!("{prefix}{}", std::process::id());
    postgres_admin_at(
        server,
        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
    )
    .await;
    let target_url = format!("{server}?options=-csearch_path%3D{schema}");
    let source_url = format!("sqlite:{}", dir.path().join("candlekeep.sqlite").display());

    let trades = sqlite.counts().await.expect("counts").trades;
    for run in 0..2 {
        let out = migrate(dir.path(), &source_url, &target_url);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "migrate run {run} failed: {stderr}");
        // The first run inserts every trade; the second finds them there.
        let (inserted, present) = if run == 0 { (trades, 0) } else { (0, trades) };
        assert!(
            stderr.contains(&format!(
                "{trades} trades ({inserted} inserted, {present} already present)"
            )),
            "run {run}: {stderr}"
        );
    }
    let pg = ck_app::open_location(&StoreLocation::Postgres(target_url), settings.durability)
        .await
        .expect("postgres");
    let (a, b) = (
        sqlite.counts().await.expect("counts"),
        pg.counts().await.expect("counts"),
    );
    assert_eq!(a, b, "every row copied once, even after a second run");
    assert!(
        a.trades > 10_000 && a.quotes > 1_000 && a.candles > 100,
        "{a:?}"
    );

    let instruments = sqlite.instruments().await.expect("instruments");
    assert_eq!(pg.instruments().await.expect("instruments"), instruments);
    let mut compared = 0;
    for stored in &instruments {
        let q = RangeQuery {
            exchange: stored.info.exchange,
            instrument: stored.info.instrument.clone(),
            from: Ts(i64::MIN),
            to: Ts(i64::MAX),
            limit: usize::MAX >> 1,
        };
        for interval in Interval::ALL {
            let (x, y) = (
                sqlite
                    .candles(&q, interval, CandleSource::Ours)
                    .await
                    .expect("candles"),
                pg.candles(&q, interval, CandleSource::Ours)
                    .await
                    .expect("candles"),
            );
            assert_eq!(x, y, "{} {} {interval}", q.exchange, q.instrument);
            compared += x.len();
        }
        assert_eq!(
            sqlite.trades(&q).await.expect("trades"),
            pg.trades(&q).await.expect("trades"),
            "trades of {} {}",
            q.exchange,
            q.instrument
        );
        assert_eq!(
            sqlite.quotes(&q).await.expect("quotes"),
            pg.quotes(&q).await.expect("quotes")
        );
    }
    assert!(compared as u64 >= a.candles, "every candle compared");
    assert_eq!(pg.gaps(None, None, 100).await.expect("gaps"), vec![gap]);
    assert_eq!(pg.backfill_jobs().await.expect("jobs"), vec![job]);
    assert_eq!(
        pg.alert_rules().await.expect("rules"),
        sqlite.alert_rules().await.expect("rules")
    );
    let firings = pg.firings(10).await.expect("firings");
    assert_eq!(firings.len(), 1, "copied once over two runs");
    assert_eq!(firings[0].deliveries.as_deref(), Some(r#"[{"ok":true}]"#));
    schema
}
