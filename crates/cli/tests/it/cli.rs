//! The `candlekeep` binary, as a user runs it.

use std::path::Path;
use std::process::Command;

use crate::support::{Demo, candlekeep, http_get, import_binance, stored_binance_trades, text};

#[test]
fn import_then_query_candles_as_json_and_csv() {
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("trades.csv");
    std::fs::write(
        &csv,
        "ts,trade_id,price,qty,side\n\
         2024-01-01T00:00:00.250Z,1,42000.10,0.5,buy\n\
         2024-01-01T00:00:30Z,2,41999.90,0.25,sell\n\
         garbage,3,1,1,buy\n\
         1704067260000,4,42001.00,1,buy\n\
         2024-01-01T00:05:00Z,5,42002,1,sell\n",
    )
    .expect("write csv");
    let out = crate::support::import_binance_file(dir.path(), &[], &csv);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("imported 4 trades; 1 bad rows skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 4:"),
        "bad row reported with its line number: {stderr}"
    );

    let out = candlekeep(
        dir.path(),
        &[
            "candles",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--interval",
            "1m",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-01T00:02:00Z",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json array");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    let keys: Vec<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "vwap",
        "taker_buy_volume",
        "trades",
        "first_trade_id",
        "last_trade_id",
        "state",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    assert_eq!(first["open_time"], "2024-01-01T00:00:00Z");
    assert_eq!(first["open"], "42000.10");
    assert_eq!(first["close"], "41999.90");
    assert_eq!(first["volume"], "0.75");
    assert_eq!(first["quote_volume"], "31500.025");
    assert_eq!(
        first["taker_buy_volume"], "0.50",
        "sizes keep the largest scale the exchange sent"
    );
    assert_eq!(first["trades"], 2);
    assert_eq!(first["first_trade_id"], "1", "ids are strings");
    assert_eq!(first["state"], "closed");
    assert_eq!(
        rows[1]["state"], "closed",
        "flat-filled or traded minutes before the last trade are closed"
    );

    let out = candlekeep(
        dir.path(),
        &[
            "candles",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--interval",
            "1m",
            "--format",
            "csv",
            "--limit",
            "1",
        ],
    );
    let csv_out = text(&out.stdout);
    let mut lines = csv_out.lines();
    assert_eq!(
        lines.next(),
        Some(
            "open_time,open,high,low,close,volume,quote_volume,vwap,taker_buy_volume,trades,first_trade_id,last_trade_id,state"
        )
    );
    assert_eq!(
        lines.next(),
        Some(
            "2024-01-01T00:00:00Z,42000.10,42000.10,41999.90,41999.90,0.75,31500.025,42000.033333,0.50,2,1,2,closed"
        )
    );

    // The skipped row was trade 3: an ingest error, not a gap, though
    // Binance's ids are sequential.
    let out = candlekeep(dir.path(), &["gaps", "--exchange", "binance"]);
    let gaps: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(gaps.as_array().map(Vec::len), Some(0), "{gaps}");

    let out = candlekeep(dir.path(), &["errors"]);
    let errors: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        errors[0]["origin"]
            .as_str()
            .expect("origin")
            .ends_with("trades.csv:4"),
        "{errors}"
    );
}

/// Runs `args` and checks the exit code and that stderr names the problem.
fn refused(data_dir: &Path, args: &[&str], code: i32, needle: &str) {
    let out = candlekeep(data_dir, args);
    assert_eq!(out.status.code(), Some(code), "{args:?}");
    assert!(
        text(&out.stderr).contains(needle),
        "{args:?}: {}",
        text(&out.stderr)
    );
}

#[test]
fn bad_arguments_are_refused_with_the_valid_values() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    // A venue that keeps only recent trades cannot backfill a range.
    refused(
        d,
        &[
            "backfill",
            "--exchange",
            "bybit",
            "--instrument",
            "BTC-USDT",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            "--rest-url",
            "http://127.0.0.1:9",
        ],
        1,
        "bybit serves only its 60 most recent spot trades, so it cannot backfill trades over a range",
    );
    refused(
        d,
        &[
            "candles",
            "--exchange",
            "nope",
            "--instrument",
            "BTC-USDT",
            "--interval",
            "1m",
        ],
        2,
        "[possible values: binance, coinbase-exchange, coinbase, bitfinex, kraken, bitstamp, okx, bybit, binance-us]",
    );
    refused(
        d,
        &[
            "candles",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--interval",
            "2m",
        ],
        2,
        "valid intervals: 1s, 1m",
    );
    refused(
        d,
        &[
            "trades",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--from",
            "2024-02-01",
            "--to",
            "2024-01-01",
        ],
        1,
        "must be before",
    );
    refused(
        d,
        &[
            "import",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "/no/such/file.csv",
        ],
        1,
        "/no/such/file.csv",
    );
}

#[test]
fn read_only_commands_refuse_a_store_that_does_not_exist_and_create_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("not-here");
    let series = ["--exchange", "binance", "--instrument", "BTC-USDT"];
    let commands: Vec<Vec<&str>> = vec![
        [&["candles", "--interval", "1m"][..], &series].concat(),
        [&["trades"][..], &series].concat(),
        [&["quotes"][..], &series].concat(),
        vec!["instruments"],
        vec!["gaps"],
        vec!["errors"],
        [
            &["verify", "--from", "2024-01-01", "--to", "2024-01-02"][..],
            &series,
        ]
        .concat(),
    ];
    let store = missing.join("candlekeep.sqlite");
    for args in commands {
        refused(
            &missing,
            &args,
            1,
            &format!("no store at {}", store.display()),
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
}

#[test]
fn an_instrument_with_no_data_is_named_with_what_is_stored() {
    let dir = tempfile::tempdir().expect("dir");
    import_binance(
        dir.path(),
        "ts,trade_id,price,qty,side\n2024-01-01T00:00:00Z,1,42000,1,buy\n",
    );
    // Another instrument of the same exchange: the hint lists what is stored.
    refused(
        dir.path(),
        &[
            "trades",
            "--exchange",
            "binance",
            "--instrument",
            "ETH-USDT",
        ],
        1,
        "no data for binance ETH-USDT: binance instruments stored: BTC-USDT",
    );
    refused(
        dir.path(),
        &[
            "candles",
            "--exchange",
            "okx",
            "--instrument",
            "BTC-USDT",
            "--interval",
            "1m",
        ],
        1,
        "nothing from okx is stored; exchanges stored: binance",
    );
    // A stored series with an empty range is an empty answer, status 0.
    let out = candlekeep(
        dir.path(),
        &[
            "trades",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--from",
            "2025-01-01",
            "--to",
            "2025-01-02",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "[]");
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal_and_bad_filters_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("trades.csv");
    std::fs::write(
        &csv,
        "ts,trade_id,price,qty,side\n2024-01-01T00:00:00Z,1,42000,1,buy\n",
    )
    .expect("write csv");
    // Each run into a fresh store, so that each logs its migrations.
    let import = |store: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_candlekeep"))
            .arg("--data-dir")
            .arg(dir.path().join(store))
            .args(extra)
            .args(["--log", "debug", "import", "--exchange", "binance"])
            .args(["--instrument", "BTC-USDT", csv.to_str().expect("utf8")])
            .env_remove("NO_COLOR")
            .env_remove("CANDLEKEEP_LOG")
            .output()
            .expect("run candlekeep");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let plain = import("plain", &[]);
    assert!(plain.contains("applied store migration"), "{plain}");
    assert!(!plain.contains('\u{1b}'), "ANSI codes in a pipe: {plain:?}");
    let coloured = import("coloured", &["--color", "always"]);
    assert!(coloured.contains('\u{1b}'), "--color always: {coloured:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--log", "ck_sources=loud", "instruments"])
        .env_remove("CANDLEKEEP_LOG")
        .output()
        .expect("run candlekeep");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is not a log filter"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn import_reads_unix_seconds_and_bad_rows_are_errors_not_gaps() {
    let dir = tempfile::tempdir().expect("dir");
    let mut body = String::from("ts,trade_id,price,qty,side\n");
    // 1709287201 is 2024-03-01T10:00:01Z in seconds. Every third row is bad.
    for id in 1..=300_u64 {
        let price = if id % 3 == 0 { "oops" } else { "42000.5" };
        body.push_str(&format!("{},{id},{price},1,buy\n", 1_709_287_201 + id));
    }
    let out = import_binance(dir.path(), &body);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("imported 200 trades; 100 bad rows skipped"),
        "{stderr}"
    );
    assert!(stderr.contains("  and 80 more"), "{stderr}");
    assert!(
        stderr.contains("200 new trades (0 already stored)"),
        "{stderr}"
    );
    assert!(
        stderr.matches("skipped bad row").count() <= 20,
        "warnings are throttled: {stderr}"
    );
    let gaps = candlekeep(dir.path(), &["gaps"]);
    assert!(gaps.status.success(), "{}", text(&gaps.stderr));
    assert_eq!(text(&gaps.stdout).trim(), "[]", "bad rows are not gaps");
    let rows = stored_binance_trades(dir.path());
    assert_eq!(rows[0]["ts"], "2024-03-01T10:00:02Z", "{rows}");
    assert_eq!(rows[0]["trade_id"], "1", "{rows}");
    // A finite import of 2024 settles: its newest candles are closed too.
    for interval in ["1m", "1d", "1M"] {
        let out = candlekeep(
            dir.path(),
            &[
                "candles",
                "--exchange",
                "binance",
                "--instrument",
                "BTC-USDT",
                "--interval",
                interval,
            ],
        );
        let candles: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let candles = candles.as_array().expect("array");
        assert!(!candles.is_empty(), "{interval}");
        assert!(
            candles.iter().all(|c| c["state"] == "closed"),
            "{interval}: {candles:?}"
        );
    }
    // Imported again: nothing new.
    let out = import_binance(dir.path(), &body);
    assert!(
        text(&out.stderr).contains("0 new trades (200 already stored)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn damaged_recordings_store_what_reads_and_exit_non_zero() {
    let dir = tempfile::tempdir().expect("dir");
    let whole = std::fs::read(ck_testkit::fixture(
        "hftbacktest/binance_spot_btcusdt_20240808.gz",
    ))
    .expect("fixture");
    // A download cut short: half the file.
    let cut = dir.path().join("cut.gz");
    std::fs::write(&cut, &whole[..whole.len() / 2]).expect("write");
    let out = candlekeep(dir.path(), &["replay", cut.to_str().expect("utf8")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 records could not be read and were skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("everything readable was stored"),
        "{stderr}"
    );
    // The summary's message counts add up: used, ignored, parse errors and
    // unsupported make the messages.
    let summary = stderr
        .lines()
        .find_map(|l| l.strip_prefix("replayed 1 file(s): "))
        .expect("summary");
    let n: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    // messages, used, events, ignored, errors, unsupported, unreadable
    assert_eq!(n.len(), 7, "{summary}");
    assert_eq!(n[1] + n[3] + n[4] + n[5], n[0], "{summary}");
    assert_eq!(n[6], 1, "{summary}");
    let rows = stored_binance_trades(dir.path());
    let n = rows.as_array().map_or(0, Vec::len);
    assert!(n > 1_000 && n < 9_757, "the readable half is stored: {n}");
    let errors = candlekeep(dir.path(), &["errors"]);
    assert!(
        text(&errors.stdout).contains("cut.gz"),
        "{}",
        text(&errors.stdout)
    );
}

/// `candlekeep demo` needs nothing beside the binary: run from an empty
/// folder (no `../shared`), it serves every venue from the recordings
/// compiled in, each named with its recording date.
#[test]
fn the_demo_runs_from_an_empty_folder_with_every_venue_live() {
    let dir = tempfile::tempdir().expect("dir");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("dir");
    let mut demo = crate::stopping::Running::start_in(
        Some(&empty),
        Path::new("data"),
        None,
        &["demo", "--listen", "127.0.0.1:0", "--speed", "5"],
    );
    let line = demo.wait_for("API on http://");
    let api = line
        .split("API on http://")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .expect("address")
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut last = String::new();
    let mut all_live = false;
    while std::time::Instant::now() < deadline {
        last = http_get(&api, "/api/v1/connectors");
        let body = last.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if let Ok(list) = serde_json::from_str::<Vec<serde_json::Value>>(body) {
            let live = list
                .iter()
                .filter(|c| c["state"] == "connected" && c["messages"].as_u64() > Some(0))
                .count();
            let venues = ck_model::Exchange::ALL.len();
            if list.len() == venues && live == venues {
                all_live = true;
                assert!(
                    list.iter().all(|c| c["note"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("recording of 20"))),
                    "each venue names its recording date: {body}"
                );
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let (_, status, stderr) = demo.terminate();
    assert!(all_live, "every venue live: {last}\n{stderr}");
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("(recorded 2021-04-17 16:39 UTC)"),
        "{stderr}"
    );
    assert!(empty.join("data/candlekeep.sqlite").is_file());
    let licenses = candlekeep(dir.path(), &["demo", "--licenses"]);
    let text = text(&licenses.stdout);
    assert!(
        text.contains("MIT License") && text.contains("Bryant Moscon"),
        "{text}"
    );
}

/// The help lists the valid exchanges and the venues `backfill` takes,
/// keeps the global options apart, and the list commands print CSV too.
#[test]
fn help_names_the_valid_values_and_lists_print_csv() {
    let dir = tempfile::tempdir().expect("dir");
    for command in ["candles", "trades", "quotes", "import", "verify", "gaps"] {
        let out = candlekeep(dir.path(), &[command, "--help"]);
        let help = text(&out.stdout);
        for exchange in ck_model::Exchange::ALL {
            assert!(
                help.contains(exchange.as_str()),
                "{command} --help lacks {exchange}: {help}"
            );
        }
        assert!(help.contains("Global options:"), "{command}: {help}");
    }
    let help = text(&candlekeep(dir.path(), &["mock-exchange", "--help"]).stdout);
    assert!(
        help.contains("--venue") && !help.contains("--store"),
        "mock-exchange keeps nothing, so its help shows no store: {help}"
    );
    let help = text(&candlekeep(dir.path(), &["backfill", "--help"]).stdout);
    for venue in [
        "binance",
        "coinbase-exchange",
        "bitfinex",
        "kraken",
        "okx",
        "bybit",
        "bitstamp",
    ] {
        assert!(
            help.contains(venue),
            "backfill --help lacks {venue}: {help}"
        );
    }
    import_binance(
        dir.path(),
        "ts,trade_id,price,qty,side\n2024-01-01T00:00:00Z,1,42000,1,buy\n2024-01-01T00:00:01Z,x,bad,1,buy\n",
    );
    let listed = text(&candlekeep(dir.path(), &["instruments", "--format", "csv"]).stdout);
    assert!(
        listed.starts_with(
            "exchange,instrument,native_symbol,status,last_trade_time\nbinance,BTC-USDT,BTCUSDT,"
        ),
        "{listed}"
    );
    let errors = text(&candlekeep(dir.path(), &["errors", "--format", "csv"]).stdout);
    assert!(
        errors.starts_with("exchange,origin,message,excerpt,ts\nbinance,"),
        "{errors}"
    );
    let gaps = text(&candlekeep(dir.path(), &["gaps", "--format", "csv"]).stdout);
    assert_eq!(
        gaps.lines().next(),
        Some(
            "exchange,instrument,from_ts,to_ts,first_missing_id,last_missing_id,state,reason,detected_at,kind"
        )
    );
}

#[test]
fn config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .args(["--data-dir", dir.path().to_str().expect("utf8"), "config"])
        .env("CANDLEKEEP_CANDLES__GRACE_MS", "4321")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("grace_ms = 4321"), "{printed}");
    assert!(
        printed.contains(&format!("data_dir = \"{}\"", dir.path().display())),
        "{printed}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("config")
        .env("CANDLEKEEP_STORE__NOPE", "1")
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("unknown field `nope`"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn run_replays_the_configured_sources_into_the_store() {
    let dir = tempfile::tempdir().expect("dir");
    let fixture = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nkind = \"replay\"\nfiles = [{:?}]\nspeed = 0\n",
            fixture.display().to_string()
        ),
    )
    .expect("write config");
    let out = candlekeep(
        dir.path(),
        &[
            "--config",
            config.to_str().expect("utf8"),
            "run",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = candlekeep(
        dir.path(),
        &[
            "candles",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--interval",
            "1m",
        ],
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 7);
    assert_eq!(
        rows[0]["state"], "closed",
        "replayed minutes close on exchange time"
    );
    assert_eq!(rows[0]["trades"], 875);
}

#[test]
fn demo_captures_live_from_the_mock_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("dir");
    let fixture = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let demo = Demo::start(dir.path(), &fixture, 100);
    let api = demo.api.clone();
    // Bounded wait for live trades to reach the store.
    let mut stored = 0;
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let out = candlekeep(
            dir.path(),
            &[
                "trades",
                "--exchange",
                "binance",
                "--instrument",
                "BTC-USDT",
                "--limit",
                "1000000",
            ],
        );
        if let Ok(rows) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            stored = rows.as_array().map_or(0, Vec::len);
            if stored > 100 {
                break;
            }
        }
    }
    // The API serves the running connector and the stored instrument.
    let connectors = http_get(&api, "/api/v1/connectors");
    assert!(
        connectors.contains("\"exchange\":\"binance\"")
            && connectors.contains("\"state\":\"connected\""),
        "{connectors}"
    );
    let health = http_get(&api, "/health");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.contains("\"connected\":1"),
        "{health}"
    );
    let (status, stderr) = demo.stop();
    assert!(status.success(), "{stderr}");
    assert!(stored > 100, "live trades reached the store: {stored}");
    assert!(
        stderr.contains("binance:"),
        "the connector reports: {stderr}"
    );
    let tapes = dir.path().join("tapes").join("binance");
    assert_eq!(
        std::fs::read_dir(&tapes).expect("tapes").count(),
        1,
        "today's tape"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_and_verify_from_the_command_line() {
    use ck_mock::binance::{MockBinance, MockOptions};
    let recording = crate::support::binance_messages(usize::MAX);
    let mock = MockBinance::start(&recording, MockOptions::default())
        .await
        .expect("mock");
    let trades = mock.trades("BTCUSDT");
    let from = ck_model::Ts::from_millis(trades[0].time_ms).to_string();
    let to = ck_model::Ts::from_millis(trades[trades.len() - 1].time_ms + 1).to_string();
    let dir = tempfile::tempdir().expect("dir");
    let rest = mock.rest_url();
    let args = [
        "backfill",
        "--exchange",
        "binance",
        "--instrument",
        "BTC-USDT",
        "--from",
        &from,
        "--to",
        &to,
        "--trades",
        "--candles",
        "1m",
        "--rest-url",
        &rest,
    ];
    let data = dir.path().to_owned();
    let out = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            candlekeep(&data, &args)
        }
    })
    .await
    .expect("join");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("trades") && stderr.contains("complete"),
        "{stderr}"
    );
    let again = tokio::task::spawn_blocking({
        let (data, args): (std::path::PathBuf, Vec<String>) = (
            dir.path().to_owned(),
            args.iter().map(|s| (*s).to_owned()).collect(),
        );
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            candlekeep(&data, &args)
        }
    })
    .await
    .expect("join");
    assert!(
        text(&again.stderr).contains("already complete"),
        "{}",
        text(&again.stderr)
    );

    // Our candles are whole only from the first full minute: verify from there.
    let start = ck_model::Interval::M1
        .next_start(
            ck_model::Interval::M1.bucket_start(ck_model::Ts::from_millis(trades[0].time_ms)),
        )
        .to_string();
    let last_full = ck_model::Interval::M1
        .bucket_start(ck_model::Ts::from_millis(trades[trades.len() - 1].time_ms))
        .to_string();
    let verify = candlekeep(
        dir.path(),
        &[
            "verify",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--interval",
            "1m",
            "--from",
            &start,
            "--to",
            &last_full,
        ],
    );
    let stderr = text(&verify.stderr);
    assert!(
        verify.status.success(),
        "{stderr}\n{}",
        text(&verify.stdout)
    );
    assert!(
        stderr.contains("differences") && stderr.contains(" 0 differences"),
        "{stderr}"
    );
}

#[test]
fn prune_dry_run_counts_and_prune_deletes_by_the_configured_policy() {
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("trades.csv");
    // Two trades from 2024 and one from a minute ago.
    let recent = ck_model::Ts(ck_model::Ts::now().0 - 60_000_000_000);
    std::fs::write(
        &csv,
        format!(
            "ts,trade_id,price,qty,side\n2024-01-01T00:00:00Z,1,42000,1,buy\n2024-01-01T00:00:30Z,2,42001,1,sell\n{recent},3,42002,1,buy\n"
        ),
    )
    .expect("write csv");
    let import = candlekeep(
        dir.path(),
        &[
            "import",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            csv.to_str().expect("utf8"),
        ],
    );
    assert!(import.status.success(), "{}", text(&import.stderr));
    let config = dir.path().join("retention.toml");
    std::fs::write(&config, "[retention]\ntrades = \"30d\"\n").expect("config");
    let prune = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_candlekeep"))
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--config")
            .arg(&config)
            .args(["--log", "warn", "prune"])
            .args(args)
            .output()
            .expect("run prune")
    };
    let dry = prune(&["--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("json");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["trades"]["rows"], 2, "{report}");
    let done = prune(&[]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("json");
    assert_eq!(report["trades"]["rows"], 2, "{report}");
    let left = candlekeep(
        dir.path(),
        &[
            "trades",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
        ],
    );
    let left: serde_json::Value = serde_json::from_slice(&left.stdout).expect("json");
    assert_eq!(
        left.as_array().map(Vec::len),
        Some(1),
        "the recent trade stays"
    );
    let candles = candlekeep(
        dir.path(),
        &[
            "candles",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--interval",
            "1m",
            "--to",
            "2024-01-02",
        ],
    );
    let candles: serde_json::Value = serde_json::from_slice(&candles.stdout).expect("json");
    assert_eq!(candles[0]["trades"], 2, "the candle survives its trades");
    std::fs::write(&config, "[retention]\ntrades = \"a month\"\n").expect("config");
    let bad = prune(&["--dry-run"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("retention.trades = `a month`"),
        "{}",
        text(&bad.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_every_recorded_venue_moved_to_now() {
    let dir = tempfile::tempdir().expect("dir");
    let fixture = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let venues = ck_testkit::fixture("cryptofeed/OKX.jsonl.zst")
        .parent()
        .expect("cryptofeed folder")
        .to_owned();
    let demo = Demo::start_with_venues(dir.path(), &fixture, 50, &venues);
    let started = ck_model::Ts::now();
    let wanted = [
        "binance",
        "coinbase",
        "coinbase-exchange",
        "bitstamp",
        "okx",
        "bybit",
    ];
    let mut body = String::new();
    let mut candles = String::new();
    // Candles are committed a moment after the trades: wait for both.
    for _ in 0..300 {
        body = http_get(&demo.api, "/api/v1/instruments?with_data=true");
        candles = http_get(
            &demo.api,
            "/api/v1/candles?exchange=okx&instrument=BTC-USDT&interval=1m&order=desc&limit=1",
        );
        if wanted
            .iter()
            .all(|e| body.contains(&format!("\"exchange\":\"{e}\"")))
            && candles.contains("\"open_time\"")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, stderr) = demo.stop();
    assert!(status.success(), "{stderr}");
    let json = body.split("\r\n\r\n").nth(1).unwrap_or_default();
    let items: serde_json::Value = serde_json::from_str(json).expect("instruments json");
    for e in wanted {
        let item = items
            .as_array()
            .and_then(|a| a.iter().find(|i| i["exchange"] == e))
            .unwrap_or_else(|| panic!("{e} captured: {body}"));
        // Moved to now: the last trade is from this run, not from the recording's day.
        let last =
            ck_model::Ts::parse(item["last_trade_time"].as_str().expect("time")).expect("ts");
        assert!(
            last.0 > started.0 - 120_000_000_000,
            "{e}: {last} is now-ish (started {started})"
        );
    }
    assert!(
        candles.starts_with("HTTP/1.1 200") && candles.contains("\"open_time\""),
        "{candles}"
    );
}
