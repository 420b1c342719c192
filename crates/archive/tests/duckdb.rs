//! The archive read by an outside reader: DuckDB's `read_parquet` with
//! Hive partitioning (DuckDB from PyPI, in `target/ci-venv`, which `.ci/run`
//! installs; `CK_TEST_PYTHON` names another Python that has it) counts and
//! sums every day of every instrument exactly as candlekeep does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use ck_archive::layout::{Kind, day_file, day_of};
use ck_archive::trades::write_trades;
use ck_model::{Decimal, Trade};

/// What candlekeep says of each day: count, sums, first and last times.
fn ours(trades: &[Trade]) -> BTreeMap<String, String> {
    let mut days: BTreeMap<String, (u64, Decimal, Decimal, i64, i64, u64)> = BTreeMap::new();
    for t in trades {
        let key = format!(
            "{}|{}|{}",
            t.exchange.as_str(),
            t.instrument.as_str(),
            ck_archive::layout::date_text(day_of(t.ts_exchange))
        );
        let e = days
            .entry(key)
            .or_insert((0, Decimal::ZERO, Decimal::ZERO, i64::MAX, i64::MIN, 0));
        e.0 += 1;
        e.1 = e.1.checked_add(t.price).expect("sum");
        e.2 = e.2.checked_add(t.size).expect("sum");
        e.3 = e.3.min(t.ts_received.0);
        e.4 = e.4.max(t.ts_received.0);
        e.5 += u64::from(t.fills);
    }
    days.into_iter()
        .map(|(k, (n, p, s, first, last, fills))| {
            (
                k,
                format!(
                    "{n} {} {} {first} {last} {fills}",
                    p.normalize(),
                    s.normalize()
                ),
            )
        })
        .collect()
}

#[test]
fn duckdb_reads_every_day_exactly_as_candlekeep_does() {
    let binance = ck_testkit::bench_data::binance_trades();
    let coinbase = ck_testkit::bench_data::recorded_trades("cryptofeed/COINBASE.jsonl.zst");
    let mut all: Vec<Trade> = binance.clone();
    all.extend(coinbase.iter().cloned());
    // A second Binance day: the recording moved forward by one day.
    all.extend(binance.iter().map(|t| Trade {
        ts_exchange: ck_model::Ts(t.ts_exchange.0 + ck_archive::layout::DAY_NANOS),
        ts_received: ck_model::Ts(t.ts_received.0 + ck_archive::layout::DAY_NANOS),
        ..t.clone()
    }));

    let root = tempfile::tempdir().expect("dir");
    let mut files: BTreeMap<PathBuf, Vec<Trade>> = BTreeMap::new();
    for t in &all {
        let path = day_file(
            root.path(),
            Kind::Trades,
            t.exchange,
            &t.instrument,
            day_of(t.ts_exchange),
        );
        files.entry(path).or_default().push(t.clone());
    }
    assert!(files.len() >= 4, "{} day files", files.len());
    for (path, trades) in &files {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        write_trades(path, trades[0].exchange, &trades[0].instrument, trades).expect("written");
    }

    // Numeric and string ids are different column types: DuckDB reads each
    // kind of file with its own glob (union_by_name would do too).
    let script = r#"
import duckdb, sys
root = sys.argv[1]
q = f"""
SELECT exchange, instrument, CAST(date AS VARCHAR), count(*), CAST(sum(price) AS VARCHAR),
       CAST(sum(size) AS VARCHAR), min(epoch_ns(ts_received)), max(epoch_ns(ts_received)), sum(fills)
FROM read_parquet('{root}/trades/*/*/*/*.parquet', hive_partitioning = true, union_by_name = true)
GROUP BY ALL ORDER BY ALL
"""
for row in duckdb.sql(q).fetchall():
    print("|".join(str(v) for v in row))
"#;
    let out = Command::new(ck_testkit::python_with_duckdb())
        .args(["-c", script])
        .arg(root.path().join(""))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            // DuckDB prints sums at the column's scale: normalize as ours.
            let norm = |s: &str| {
                Decimal::parse(s)
                    .expect("a decimal")
                    .normalize()
                    .to_string()
            };
            (
                format!("{}|{}|{}", f[0], f[1], f[2]),
                format!(
                    "{} {} {} {} {} {}",
                    f[3],
                    norm(f[4]),
                    norm(f[5]),
                    f[6],
                    f[7],
                    f[8]
                ),
            )
        })
        .collect();
    assert_eq!(theirs, ours(&all));
}
