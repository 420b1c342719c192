//! `candlekeep export`: the replayed Binance recording's trades, quotes and
//! candles to Parquet, CSV and JSON lines, each read back and compared with
//! what the store holds.

use ck_model::{Exchange, Interval};
use ck_store::CandleSource;

use crate::support::{btc, candlekeep, everything, text};

fn export(dir: &std::path::Path, kind: &str, format: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join(format!("{kind}.{format}"));
    let mut args = vec![
        "export",
        "--kind",
        kind,
        "--exchange",
        "binance",
        "--instrument",
        "BTC-USDT",
        "--format",
        format,
        "--out",
        out.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    let run = candlekeep(dir, &args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("exported "),
        "{}",
        text(&run.stderr)
    );
    assert!(
        !dir.join(format!("{kind}.{format}.partial")).exists(),
        "no partial file left"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_exact_in_every_format() {
    let dir = tempfile::tempdir().expect("dir");
    let replay = candlekeep(
        dir.path(),
        &[
            "replay",
            ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz")
                .to_str()
                .expect("utf8"),
        ],
    );
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    let settings = crate::support::settings(dir.path());
    let store = ck_app::open_existing_store(&settings).await.expect("store");
    let stored = store.trades(&everything(btc())).await.expect("trades");
    assert!(stored.len() > 9_000, "{} trades", stored.len());

    // Parquet: the archive's exact columns.
    let parquet = export(dir.path(), "trades", "parquet", &[]);
    let back = ck_archive::trades::read_trades(&parquet).expect("read");
    assert_eq!(back.exchange, Exchange::Binance);
    assert_eq!(back.trades, stored);

    // CSV: the columns `trades --format csv` prints, every row.
    let csv = std::fs::read_to_string(export(dir.path(), "trades", "csv", &[])).expect("csv");
    let printed = candlekeep(
        dir.path(),
        &[
            "trades",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--limit",
            "1000000",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        csv,
        text(&printed.stdout),
        "the same rows as `trades --format csv`"
    );
    assert_eq!(
        csv.lines().count(),
        stored.len() + 1,
        "a header and every trade"
    );

    // JSON lines: one trade a line, exact decimals as strings.
    let jsonl = std::fs::read_to_string(export(dir.path(), "trades", "jsonl", &[])).expect("jsonl");
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), stored.len());
    assert_eq!(lines[0]["price"], stored[0].price.to_string());
    assert_eq!(lines[0]["trade_id"], stored[0].trade_id.to_string());

    // A time range: only its trades.
    let from = stored[100].ts_exchange;
    let to = stored[200].ts_exchange;
    let range = export(
        dir.path(),
        "trades",
        "parquet",
        &["--from", &from.to_string(), "--to", &to.to_string()],
    );
    let within: Vec<_> = stored
        .iter()
        .filter(|t| t.ts_exchange >= from && t.ts_exchange < to)
        .cloned()
        .collect();
    assert_eq!(
        ck_archive::trades::read_trades(&range)
            .expect("read")
            .trades,
        within
    );

    // Quotes and candles.
    let quotes = ck_archive::quotes::read_quotes(&export(dir.path(), "quotes", "parquet", &[]))
        .expect("read");
    let stored_quotes = store.quotes(&everything(btc())).await.expect("quotes");
    assert!(stored_quotes.len() > 1_000);
    let mut sorted = stored_quotes.clone();
    sorted.sort_by_key(|q| (q.ts_exchange, q.ts_received));
    let mut exported = quotes.quotes.clone();
    exported.sort_by_key(|q| (q.ts_exchange, q.ts_received));
    assert_eq!(exported, sorted);
    let candles = ck_archive::candles::read_candles(&export(
        dir.path(),
        "candles",
        "parquet",
        &["--interval", "1m"],
    ))
    .expect("read");
    let stored_candles = store
        .candles(&everything(btc()), Interval::M1, CandleSource::Ours)
        .await
        .expect("candles");
    assert!(stored_candles.len() > 3);
    assert_eq!(candles.candles, stored_candles);

    // Nothing stored: a clear error, no file.
    let none = candlekeep(
        dir.path(),
        &[
            "export",
            "--kind",
            "trades",
            "--exchange",
            "binance",
            "--instrument",
            "ETH-USDT",
            "--format",
            "csv",
            "--out",
            "never.csv",
        ],
    );
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("nothing stored to export"),
        "{}",
        text(&none.stderr)
    );
}
