//! Crash safety: `candlekeep run` is killed with SIGKILL in the middle of
//! capture and started again. The store stays intact with no duplicates, and
//! the trades missed while it was down (the mock is paced like a live venue:
//! what falls due while no one listens is gone) are backfilled over REST;
//! the candles spanning the restart hold every trade. SIGTERM then stops
//! the second run cleanly.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ck_mock::binance::{MockBinance, MockOptions};
use ck_model::{GapState, TradeId};
use ck_sources::recordings::Recording;

use crate::support::{binance_messages, btc, eventually, everything};

/// A child process killed if the test ends early (a failed assertion).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &Path, data: &Path) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_candlekeep"))
            .arg("--config")
            .arg(config)
            .args(["run", "--listen", "127.0.0.1:0"])
            .env("CANDLEKEEP_DATA_DIR", data)
            .env("CANDLEKEEP_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start candlekeep run"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_capture_then_restart_loses_nothing() {
    let recording = binance_messages(usize::MAX);
    // About six recorded minutes in about twelve seconds.
    let mock = MockBinance::start(
        &recording,
        MockOptions {
            speed: Some(30.0),
            ..MockOptions::default()
        },
    )
    .await
    .expect("mock");
    let all: BTreeSet<u64> = mock.trades("BTCUSDT").iter().map(|t| t.id).collect();

    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("candlekeep.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nkind = \"binance\"\ninstruments = [\"BTC-USDT\"]\nws_url = \"{}\"\nrest_url = \"{}\"\n",
            mock.ws_url(),
            mock.rest_url()
        ),
    )
    .expect("config");
    let data = dir.path().join("data");

    let mut first = start(&config, &data);
    let db = data.join("candlekeep.sqlite");
    let reached = eventually(Duration::from_secs(60), || {
        let db = db.clone();
        async move { stored_trades(&db).is_some_and(|n| n >= 1_500) }
    })
    .await;
    assert!(reached, "the first run captured trades");
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reaped");
    let at_kill = stored_trades(&db).expect("readable after SIGKILL");
    assert!(at_kill < all.len(), "killed mid-capture: {at_kill}");
    // Down for a while: the venue moves on without us.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let mut second = start(&config, &data);
    let store = {
        let env = vec![("CANDLEKEEP_DATA_DIR".to_owned(), data.display().to_string())];
        let settings = ck_app::config::AppConfig::load(None, env)
            .expect("config")
            .settings()
            .expect("settings");
        ck_app::open_store(&settings).await.expect("store")
    };
    let q = everything(btc());
    let expected = all.len();
    let complete = eventually(Duration::from_secs(90), || {
        let (store, q, mock) = (store.clone(), q.clone(), &mock);
        async move {
            let n = store.trades(&q).await.map(|t| t.len()).unwrap_or(0);
            let open = store
                .gaps(None, None, 1_000)
                .await
                .map(|g| g.iter().any(|g| g.state == GapState::Open))
                .unwrap_or(true);
            mock.finished() && n == expected && !open
        }
    })
    .await;
    // SIGTERM, as systemd, Docker and Kubernetes stop a service.
    let status = crate::support::signal_and_wait(&mut second.0, "TERM");
    assert!(complete, "every trade is stored after the restart");
    assert!(status.success(), "SIGTERM stops cleanly: {status}");

    // Intact, every trade once, nothing else.
    let conn = rusqlite::Connection::open(&db).expect("open db");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
    let trades = store.trades(&q).await.expect("trades");
    let ids: BTreeSet<u64> = trades
        .iter()
        .map(|t| match t.trade_id {
            TradeId::Num(id) => id,
            TradeId::Str(_) => panic!("numeric ids"),
        })
        .collect();
    assert_eq!(trades.len(), ids.len(), "no duplicates");
    assert_eq!(ids, all);

    // The downtime is in the gap log, found by ids continuing from the last
    // stored trade, and filled over REST.
    let gaps = store.gaps(None, None, 1_000).await.expect("gaps");
    assert!(
        gaps.iter()
            .any(|g| g.first_missing_id.is_some() && g.state == GapState::Filled),
        "{gaps:#?}"
    );
    assert!(
        gaps.iter().all(|g| g.state == GapState::Filled),
        "{gaps:#?}"
    );

    // Candles spanning the restart hold every trade: the second run warmed
    // its aggregator up from the stored trades before going live.
    let env = vec![("CANDLEKEEP_DATA_DIR".to_owned(), data.display().to_string())];
    let settings = ck_app::config::AppConfig::load(None, env)
        .expect("config")
        .settings()
        .expect("settings");
    for interval in [
        ck_model::Interval::M1,
        ck_model::Interval::H1,
        ck_model::Interval::D1,
    ] {
        let expected = crate::support::expected_candles(&settings, &trades, interval);
        crate::support::assert_candles_match(store.as_ref(), &expected, interval).await;
    }

    // Both runs' tapes read back: the killed one up to its last flush.
    let tapes: Vec<PathBuf> = std::fs::read_dir(data.join("tapes").join("binance"))
        .expect("tapes")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(tapes.len(), 2, "a segment per run: {tapes:?}");
    for tape in &tapes {
        let readable = Recording::open(tape)
            .expect("open tape")
            .filter(Result::is_ok)
            .count();
        assert!(readable > 100, "{}: {readable} records", tape.display());
    }
}

/// Trades in the store, read with a plain connection (the writer may be mid-commit).
fn stored_trades(db: &Path) -> Option<usize> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    conn.query_row("SELECT COUNT(*) FROM trades", [], |r| r.get::<_, i64>(0))
        .ok()
        .and_then(|n| usize::try_from(n).ok())
}
