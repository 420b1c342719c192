//! `import` of history against DuckDB doing the same job, whole processes,
//! side by side in one run (issue 23).
//!
//! The input is `CK_BENCH_TRADES` (default 2,000,000) real Binance BTCUSDT
//! trades, repeated ([`ck_testkit::bench_data::repeated_binance_trades`]),
//! as a candlekeep import CSV (`ts,trade_id,price,qty,side`, milliseconds).
//! Each round, alternating:
//!
//! - candlekeep: `candlekeep --data-dir <fresh> import --exchange binance
//!   --instrument BTC-USDT <csv>` with the default configuration: durable
//!   SQLite, candles of all 15 intervals, the settled days written to the
//!   Parquet archive (the file's days are all settled);
//! - the baseline: the same import with the archive off (everything into
//!   the durable SQLite store, as imports wrote before);
//! - DuckDB (`tools/bench/duckdb_import.py`, DuckDB from PyPI): the CSV into
//!   a durable database file with exact decimals, one GROUP BY per interval
//!   (the same 15), checkpointed.
//!
//! Each process is timed from start to exit, and its peak resident memory
//! read (`tools/bench/measure.py`). The rounds' medians and the ratio
//! (candlekeep's time over DuckDB's, per round, then the median) are
//! printed.
//!
//! `cargo bench -p candlekeep --bench import`; `CK_BENCH_RUNS` (default 3)
//! rounds; `CK_BENCH_CSV=path` keeps the input file there for other runs; `CK_PYTHON` is the Python with `duckdb` (default
//! `target/ci-venv/bin/python`, else `python3`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CK_PYTHON") {
        return p.into();
    }
    let venv = root().join("target/ci-venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        "python3".into()
    }
}

/// Wall seconds and peak RSS (MiB) of `cmd`, run under `measure.py`.
fn measured(cmd: &[&std::ffi::OsStr]) -> (f64, f64, String) {
    let out = Command::new(python())
        .arg(root().join("tools/bench/measure.py"))
        .args(cmd)
        .output()
        .expect("running measure.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    let line = stderr.lines().last().expect("measure.py's line");
    let field = |name: &str| -> f64 {
        let at = line.find(name).expect("field") + name.len() + 3;
        line[at..]
            .split([',', '}'])
            .next()
            .and_then(|v| v.trim().parse().ok())
            .expect("number")
    };
    (
        field("secs"),
        field("max_rss_kib") / 1024.0,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn write_csv(path: &Path, n: usize) {
    let trades = ck_testkit::bench_data::repeated_binance_trades(n);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("csv"));
    writeln!(out, "ts,trade_id,price,qty,side").expect("write");
    for t in &trades {
        writeln!(
            out,
            "{},{},{},{},{}",
            t.ts_exchange.0 / 1_000_000,
            t.trade_id,
            t.price,
            t.size,
            t.side.as_str()
        )
        .expect("write");
    }
    out.flush().expect("flush");
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("import: bench");
        return;
    }
    let n: usize = std::env::var("CK_BENCH_TRADES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let runs: usize = std::env::var("CK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let work = tempfile::tempdir().expect("temp dir");
    // `CK_BENCH_CSV=path` keeps the input there (written when absent).
    let csv = std::env::var_os("CK_BENCH_CSV")
        .map_or_else(|| work.path().join("BTCUSDT-trades.csv"), PathBuf::from);
    if !csv.is_file() {
        write_csv(&csv, n);
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_candlekeep"));
    let script = root().join("tools/bench/duckdb_import.py");
    let python = python();
    let (mut ours, mut peer, mut ratios, mut rss, mut peer_rss) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut baseline = Vec::new();
    let mut bytes = (0, 0);
    for round in 0..runs {
        // `candlekeep import` into `data`, with the archive on or off.
        let import = |data: &Path, archive: bool| {
            let archive = format!("CANDLEKEEP_ARCHIVE__ENABLED={archive}");
            measured(&[
                "env".as_ref(),
                archive.as_ref(),
                bin.as_os_str(),
                "--data-dir".as_ref(),
                data.as_os_str(),
                "import".as_ref(),
                "--exchange".as_ref(),
                "binance".as_ref(),
                "--instrument".as_ref(),
                "BTC-USDT".as_ref(),
                csv.as_os_str(),
            ])
        };
        let data = work.path().join(format!("ck-{round}"));
        let (ck, ck_rss, _) = import(&data, true);
        // Baseline: the same import into the store alone (archive off).
        let plain = work.path().join(format!("plain-{round}"));
        let (store_only, _, _) = import(&plain, false);
        let _ = std::fs::remove_dir_all(&plain);
        baseline.push(store_only);
        let database = work.path().join(format!("duck-{round}.duckdb"));
        let (duck, duck_rss, said) = measured(&[
            python.as_os_str(),
            script.as_os_str(),
            csv.as_os_str(),
            database.as_os_str(),
        ]);
        assert!(said.contains(&format!("trades {n} ")), "DuckDB said {said}");
        bytes = (
            dir_size(&data),
            std::fs::metadata(&database).map_or(0, |m| m.len()),
        );
        println!(
            "round {}: candlekeep {ck:.2} s ({:.0} K trades/s, peak {ck_rss:.0} MiB; store alone {store_only:.2} s), DuckDB {duck:.2} s ({:.0} K/s, peak {duck_rss:.0} MiB), ratio {:.2}",
            round + 1,
            n as f64 / ck / 1e3,
            n as f64 / duck / 1e3,
            ck / duck
        );
        ours.push(ck);
        peer.push(duck);
        ratios.push(ck / duck);
        rss.push(ck_rss);
        peer_rss.push(duck_rss);
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_file(&database);
    }
    println!(
        "import of {n} trades, all 15 intervals, durable; median of {runs}: candlekeep {:.2} s ({:.0} K trades/s, peak RSS {:.0} MiB, {} bytes on disk; into the store alone, archive off: {:.2} s), DuckDB {:.2} s ({:.0} K/s, peak RSS {:.0} MiB, {} bytes), ratio {:.2}",
        median(ours.clone()),
        n as f64 / median(ours) / 1e3,
        median(rss),
        bytes.0,
        median(baseline),
        median(peer.clone()),
        n as f64 / median(peer) / 1e3,
        median(peer_rss),
        bytes.1,
        median(ratios)
    );
}
