//! The archive in operation.
//!
//! - `import` moves the settled days it stored to Parquet when it
//!   finishes, and every read sees them.
//! - `candlekeep archive`, killed with SIGKILL again and again while it
//!   moves days (while a day's file is half-written, and just after one is
//!   renamed into place), loses and doubles nothing: every read between the
//!   kills sees each trade once, and a last pass leaves each trade in the
//!   archive exactly once and none in the store.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ck_model::Trade;
use ck_store::Store;

use crate::support::{btc, candlekeep, everything, settings, text};

/// 2024-01-01.
const FIRST_DAY_MS: i64 = 19_723 * 86_400_000;
const DAYS: i64 = 12;
const PER_DAY: i64 = 3_000;

/// `DAYS` days of Binance BTC-USDT trades in candlekeep's CSV.
fn write_days(file: &Path) {
    let mut csv = String::from("ts,trade_id,price,qty,side\n");
    for n in 0..DAYS * PER_DAY {
        let ts = FIRST_DAY_MS + n * (86_400_000 / PER_DAY);
        let price = 42_000 + (n * 7919) % 900;
        let side = if n % 3 == 0 { "buy" } else { "sell" };
        csv.push_str(&format!(
            "{ts},{},{price}.{:02},0.00{},{side}\n",
            5_000_000 + n,
            n % 100,
            1 + n % 9
        ));
    }
    std::fs::write(file, csv).expect("write the CSV");
}

/// `candlekeep import` of `csv` as Binance BTC-USDT trades, building 1m,
/// 1h and 1d candles only (twelve days of flat 1s candles would be most of
/// the work), with the archive on or off.
fn import(dir: &Path, csv: &Path, archive: bool) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--log",
            "warn",
            "import",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
        ])
        .arg(csv)
        .env("CANDLEKEEP_CANDLES__INTERVALS", r#"["1m", "1h", "1d"]"#)
        .env("CANDLEKEEP_ARCHIVE__ENABLED", archive.to_string())
        .env_remove("CANDLEKEEP_CONFIG")
        .output()
        .expect("import")
}

async fn stored(dir: &Path) -> Vec<Trade> {
    let store = ck_app::open_existing_store(&settings(dir))
        .await
        .expect("store");
    store.trades(&everything(btc())).await.expect("trades")
}

/// Trades in the SQLite store itself, not counting the archive.
async fn trades_in_sqlite(dir: &Path) -> u64 {
    let raw = ck_store::sqlite::SqliteStore::open(
        &dir.join("candlekeep.sqlite"),
        ck_store::sqlite::Durability::Normal,
    )
    .expect("sqlite");
    raw.counts().await.expect("counts").trades
}

/// The pages of the SQLite database, as its write-ahead log has them (the
/// file shrinks only at a checkpoint).
fn pages_in_use(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("page count")
}

/// The stored 1m candles (ours).
async fn stored_candles(dir: &Path) -> Vec<ck_model::Candle> {
    let store = ck_app::open_existing_store(&settings(dir))
        .await
        .expect("store");
    store
        .candles(
            &everything(btc()),
            ck_model::Interval::M1,
            ck_store::CandleSource::Ours,
        )
        .await
        .expect("candles")
}

/// The archive's files, day files and half-written ones.
fn files(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut days, mut partial) = (Vec::new(), Vec::new());
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name == "data.parquet" {
                days.push(path);
            } else if name.contains(".partial-") {
                partial.push(path);
            }
        }
    }
    (days, partial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_archives_the_settled_days_it_stored() {
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("trades.csv");
    write_days(&csv);
    let imported = import(dir.path(), &csv, true);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(
        text(&imported.stderr).contains(&format!(
            "archived {} settled day file(s) of one instrument each: {} trades, 0 quotes",
            2 * DAYS,
            DAYS * PER_DAY
        )),
        "{}",
        text(&imported.stderr)
    );
    let root = dir.path().join("archive");
    let (days, partial) = files(&root.join("trades"));
    assert_eq!(days.len() as i64, DAYS);
    assert!(partial.is_empty());
    assert_eq!(
        files(&root.join("candles")).0.len() as i64,
        DAYS,
        "a file of candles a day"
    );
    assert_eq!(
        trades_in_sqlite(dir.path()).await,
        0,
        "the store keeps none"
    );
    let trades = stored(dir.path()).await;
    assert_eq!(trades.len() as i64, DAYS * PER_DAY);
    assert!(
        trades
            .windows(2)
            .all(|w| w[0].ts_exchange < w[1].ts_exchange)
    );
    // The candles were built before: the archive does not change them.
    let candles = candlekeep(
        dir.path(),
        &[
            "candles",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--interval",
            "1d",
        ],
    );
    assert!(candles.status.success(), "{}", text(&candles.stderr));
    let candles: serde_json::Value = serde_json::from_slice(&candles.stdout).expect("json");
    assert_eq!(candles.as_array().map(Vec::len), Some(DAYS as usize));
    // Importing the same file again finds every trade stored.
    let again = import(dir.path(), &csv, true);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains(&format!("0 new trades ({} already stored)", DAYS * PER_DAY)),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(stored(dir.path()).await.len() as i64, DAYS * PER_DAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_moving_days_nothing_is_lost_or_doubled() {
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("trades.csv");
    write_days(&csv);
    let imported = import(dir.path(), &csv, false);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let root = dir.path().join("archive");
    assert!(
        files(&root).0.is_empty(),
        "nothing archived with the archive off"
    );
    let expected = stored(dir.path()).await;
    assert_eq!(expected.len() as i64, DAYS * PER_DAY);
    let db = dir.path().join("candlekeep.sqlite");
    let db_before = pages_in_use(&db);
    let expected_candles = stored_candles(dir.path()).await;
    assert_eq!(expected_candles.len() as i64, DAYS * 1_440);

    let (mut while_partial, mut after_rename) = (0, 0);
    for attempt in 0..10 {
        let days_before = files(&root).0.len();
        let mut child = Command::new(env!("CARGO_BIN_EXE_candlekeep"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--log", "warn", "archive"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start archive");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut killed = false;
        while Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            let (days, partial) = files(&root);
            let moment = if attempt % 2 == 0 {
                !partial.is_empty()
            } else {
                days.len() > days_before
            };
            if moment {
                child.kill().expect("SIGKILL");
                killed = true;
                if attempt % 2 == 0 {
                    while_partial += 1;
                } else {
                    after_rename += 1;
                }
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.wait();
        if !killed {
            break;
        }
        assert_eq!(
            stored(dir.path()).await,
            expected,
            "after kill {attempt}: each trade once"
        );
        assert_eq!(
            stored_candles(dir.path()).await,
            expected_candles,
            "after kill {attempt}: each candle once"
        );
    }
    assert!(
        while_partial >= 1,
        "killed while a day's file was half-written"
    );
    assert!(
        after_rename >= 1,
        "killed just after a day's file was renamed"
    );

    let last = candlekeep(dir.path(), &["archive"]);
    assert!(last.status.success(), "{}", text(&last.stderr));
    let (days, partial) = files(&root.join("trades"));
    assert_eq!(days.len() as i64, DAYS, "every day archived");
    assert!(files(&root).1.is_empty(), "half-written files swept");
    assert!(partial.is_empty());
    let mut in_files = 0;
    for day in &days {
        let trades = ck_archive::trades::read_trades(day).expect("read").trades;
        assert!(trades.windows(2).all(|w| w[0].trade_id != w[1].trade_id));
        in_files += trades.len();
    }
    assert_eq!(
        in_files as i64,
        DAYS * PER_DAY,
        "each trade in one file once"
    );
    assert_eq!(
        trades_in_sqlite(dir.path()).await,
        0,
        "none left in the store"
    );
    assert_eq!(stored(dir.path()).await, expected);
    assert_eq!(stored_candles(dir.path()).await, expected_candles);
    let db_after = pages_in_use(&db);
    assert!(
        db_after * 2 < db_before,
        "the store gave the space back: {db_before} pages before, {db_after} after"
    );
}
