//! The archive in operation.
//!
//! - `import` writes the settled days it brings to Parquet, and every
//!   read sees them; DuckDB reads the same counts and sums from the files.
//! - An import killed midway and run again loses and doubles nothing.
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
    import_command(dir, csv, archive).output().expect("import")
}

/// The command [`import`] runs.
fn import_command(dir: &Path, csv: &Path, archive: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_candlekeep"));
    command
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
        .env_remove("CANDLEKEEP_CONFIG");
    command
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
    let candles_of = |interval: &str, format: &str| {
        candlekeep(
            dir.path(),
            &[
                "candles",
                "--exchange",
                "binance",
                "--instrument",
                "BTC-USDT",
                "--interval",
                interval,
                "--limit",
                "100000",
                "--format",
                format,
            ],
        )
    };
    let candles = candles_of("1d", "json");
    assert!(candles.status.success(), "{}", text(&candles.stderr));
    let candles: serde_json::Value = serde_json::from_slice(&candles.stdout).expect("json");
    assert_eq!(candles.as_array().map(Vec::len), Some(DAYS as usize));
    // CSV from the archived days is the JSON's records, row for row as the
    // `csv` crate writes them.
    let json = candles_of("1m", "json");
    let csv_out = candles_of("1m", "csv");
    assert!(csv_out.status.success(), "{}", text(&csv_out.stderr));
    let records: Vec<ck_model::CandleRecord> =
        serde_json::from_slice(&json.stdout).expect("json records");
    assert!(records.len() > 1_440, "{}", records.len());
    let mut want = csv::Writer::from_writer(Vec::new());
    for r in &records {
        want.serialize(r).expect("row");
    }
    assert_eq!(
        text(&csv_out.stdout),
        String::from_utf8(want.into_inner().expect("csv")).expect("utf8")
    );
    // An outside reader sees in the files what candlekeep reads.
    duckdb_agrees(&root, &trades, &stored_candles(dir.path()).await);
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

/// DuckDB's `read_parquet` over the archive (Hive partitions) counts and
/// sums each day's trades and 1m candles as candlekeep's reads do.
fn duckdb_agrees(root: &Path, trades: &[Trade], candles: &[ck_model::Candle]) {
    use std::collections::BTreeMap;
    let date = |t: ck_model::Ts| ck_archive::layout::date_text(ck_archive::layout::day_of(t));
    let mut ours: BTreeMap<String, (u64, ck_model::Decimal, ck_model::Decimal)> = BTreeMap::new();
    let rows = trades
        .iter()
        .map(|t| ("trades", t.ts_exchange, t.price, t.size))
        .chain(
            candles
                .iter()
                .map(|c| ("candles", c.open_time, c.close, c.volume)),
        );
    for (kind, at, price, size) in rows {
        let e = ours.entry(format!("{kind}|{}", date(at))).or_insert((
            0,
            ck_model::Decimal::ZERO,
            ck_model::Decimal::ZERO,
        ));
        e.0 += 1;
        e.1 = e.1.checked_add(price).expect("sum");
        e.2 = e.2.checked_add(size).expect("sum");
    }
    let script = r#"
import duckdb, sys
root = sys.argv[1]
for kind, price, size, only in [("trades", "price", "size", ""),
                                ("candles", "close", "volume", "WHERE interval = '1m'")]:
    q = f'''SELECT CAST(date AS VARCHAR), count(*), CAST(sum({price}) AS VARCHAR), CAST(sum({size}) AS VARCHAR)
            FROM read_parquet('{root}/{kind}/*/*/*/*.parquet', hive_partitioning = true)
            {only} GROUP BY ALL ORDER BY ALL'''
    for row in duckdb.sql(q).fetchall():
        print(kind + "|" + "|".join(str(v) for v in row))
"#;
    let out = Command::new(ck_testkit::python_with_duckdb())
        .args(["-c", script])
        .arg(root)
        .output()
        .expect("run python");
    assert!(out.status.success(), "duckdb failed: {}", text(&out.stderr));
    let norm = |s: &str| ck_model::Decimal::parse(s).expect("a decimal").normalize();
    let theirs: BTreeMap<String, (u64, ck_model::Decimal, ck_model::Decimal)> = text(&out.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            (
                format!("{}|{}", f[0], f[1]),
                (f[2].parse().expect("count"), norm(f[3]), norm(f[4])),
            )
        })
        .collect();
    let ours: BTreeMap<_, _> = ours
        .into_iter()
        .map(|(k, (n, p, s))| (k, (n, p.normalize(), s.normalize())))
        .collect();
    assert_eq!(theirs.len() as i64, 2 * DAYS, "{theirs:?}");
    assert_eq!(theirs, ours);
}

/// An import killed (SIGKILL) while it writes days straight to the archive,
/// then run again: every trade and every 1m candle reads exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_and_run_again_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("trades.csv");
    write_days(&csv);
    let trades_dir = dir.path().join("archive").join("trades");
    let mut child = import_command(dir.path(), &csv, true)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Killed once the first day is in place and before the last.
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed = loop {
        let installed = files(&trades_dir).0.len() as i64;
        if (1..DAYS).contains(&installed) {
            child.kill().expect("kill");
            break true;
        }
        if child.try_wait().expect("wait").is_some() || Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = child.wait();
    assert!(
        killed,
        "the import was killed between its first and its last day"
    );
    let before = files(&trades_dir).0.len() as i64;
    assert!((1..DAYS).contains(&before), "{before} days installed");
    // What was installed reads once; the rest was never committed.
    let partial = stored(dir.path()).await;
    assert_eq!(partial.len() as i64 % PER_DAY, 0, "whole days only");
    let again = import(dir.path(), &csv, true);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let trades = stored(dir.path()).await;
    assert_eq!(trades.len() as i64, DAYS * PER_DAY);
    assert!(
        trades
            .windows(2)
            .all(|w| w[0].ts_exchange < w[1].ts_exchange),
        "each trade once, in order"
    );
    let candles = stored_candles(dir.path()).await;
    assert_eq!(candles.len() as i64, DAYS * 1_440, "every minute once");
    let volume = candles
        .iter()
        .try_fold(ck_model::Decimal::ZERO, |v, c| v.checked_add(c.volume))
        .expect("sum");
    let traded = trades
        .iter()
        .try_fold(ck_model::Decimal::ZERO, |v, t| v.checked_add(t.size))
        .expect("sum");
    assert_eq!(volume, traded, "the candles hold every trade once");
    assert_eq!(files(&dir.path().join("archive")).1, Vec::<PathBuf>::new());
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
