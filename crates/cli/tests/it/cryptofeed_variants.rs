//! Every form cryptofeed's raw-data recorder wrote replays to the same
//! trades as the recording it was made from: a `configuration:` line first,
//! file names with the connection's random id (`BINANCE-<hex>.0`), times in
//! whole nanoseconds (versions that stamped `time_ns()`), cryptofeed's old
//! `COINBASE` (Coinbase Pro, told apart by its URLs), and a renamed file
//! whose venue only `replay --exchange` can give.

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use crate::support::{candlekeep, text};

/// `candlekeep replay` of `files` into `data`, with `extra` arguments.
fn replay(data: &Path, files: &[PathBuf], extra: &[&str]) -> std::process::Output {
    let files: Vec<&str> = files.iter().map(|f| f.to_str().expect("utf8")).collect();
    candlekeep(data, &[&["replay"], extra, &files].concat())
}

/// Every stored trade of `data`, as JSON text with its instrument.
fn stored_trades(data: &Path) -> BTreeSet<String> {
    let cli = |args: &[&str]| {
        let out = candlekeep(data, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let mut all = BTreeSet::new();
    // Those with trades (the rest are only listed by the venue).
    let instruments = cli(&["instruments"]);
    let traded = instruments
        .as_array()
        .expect("array")
        .iter()
        .filter(|i| i["last_trade_time"].is_string());
    for i in traded {
        let (exchange, instrument) = (
            i["exchange"].as_str().expect("exchange"),
            i["instrument"].as_str().expect("instrument"),
        );
        let trades = cli(&[
            "trades",
            "--exchange",
            exchange,
            "--instrument",
            instrument,
            "--limit",
            "10000000",
        ]);
        for t in trades.as_array().expect("array") {
            all.insert(format!("{exchange} {instrument} {t}"));
        }
    }
    all
}

/// What replaying `files` stores (it must succeed and store trades).
fn replayed(files: &[PathBuf], extra: &[&str]) -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("dir");
    let out = replay(dir.path(), files, extra);
    assert!(out.status.success(), "{files:?}: {}", text(&out.stderr));
    let trades = stored_trades(dir.path());
    assert!(!trades.is_empty(), "{files:?} stored trades");
    trades
}

/// The lines of a text fixture.
fn lines(relative: &str) -> Vec<String> {
    std::fs::read_to_string(ck_testkit::fixture(relative))
        .expect("fixture")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A cryptofeed v3 `.jsonl.zst` fixture written as the text recorder wrote
/// the same traffic: `configuration:` first, then each record as a line.
fn as_text_recording(relative: &str) -> String {
    let file = std::fs::File::open(ck_testkit::fixture(relative)).expect("fixture");
    let reader = std::io::BufReader::new(zstd::Decoder::new(file).expect("zstd"));
    let mut out = String::new();
    for line in reader.lines() {
        let line = line.expect("line");
        let r: serde_json::Value = serde_json::from_str(&line).expect("record");
        // The time as written (every digit), from the record's own text.
        let ts = || {
            let raw: std::collections::HashMap<String, &serde_json::value::RawValue> =
                serde_json::from_str(&line).expect("record");
            raw["ts"].get().to_owned()
        };
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let text = match r["t"].as_str().unwrap_or_default() {
            "header" => format!("configuration: {}", r["config"]),
            "connect" => format!("{} <-> {}", s("addr"), ts()),
            "send" => format!("{} <- {}: {}", s("addr"), ts(), s("data")),
            "recv" => format!("{}: {}", ts(), s("data")),
            "http" => format!("{} -> {}: {}", s("url"), ts(), s("data")),
            other => panic!("a record of kind {other}"),
        };
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// `1618677817.0208309` as whole nanoseconds, `1618677817020830900`.
fn as_nanos(secs: &str) -> String {
    let (whole, fraction) = secs.split_once('.').unwrap_or((secs, ""));
    format!("{whole}{fraction:0<9}")
}

#[test]
fn text_recordings_from_binance_and_kraken_named_by_connection_replay_like_their_source() {
    for (fixture, name) in [
        ("cryptofeed/BINANCE.jsonl.zst", "BINANCE-3f9a1c0be2d74e5f.0"),
        ("cryptofeed/KRAKEN.jsonl.zst", "KRAKEN-8d0e5a7c1b2f3e4d.0"),
    ] {
        let want = replayed(&[ck_testkit::fixture(fixture)], &[]);
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join(name);
        let recording = as_text_recording(fixture);
        assert!(recording.starts_with("configuration: {"), "{name}");
        std::fs::write(&file, recording).expect("write");
        assert_eq!(replayed(&[file], &[]), want, "{name} replays as {fixture}");
    }
}

#[test]
fn coinbase_pro_text_recordings_in_every_form_replay_alike() {
    let source = [
        ck_testkit::fixture("cryptofeed/COINBASE_EXCHANGE.0"),
        ck_testkit::fixture("cryptofeed/COINBASE_EXCHANGE.ws.28.0"),
    ];
    let want = replayed(&source, &[]);
    let (mut config, rest): (Vec<String>, Vec<String>) = lines("cryptofeed/COINBASE_EXCHANGE.0")
        .into_iter()
        .partition(|l| l.starts_with("configuration: "));
    assert_eq!(config.len(), 1, "the fixture has its configuration line");
    config.extend(rest);
    config.extend(lines("cryptofeed/COINBASE_EXCHANGE.ws.28.0"));
    let one_file = config;
    let dir = tempfile::tempdir().expect("dir");

    // cryptofeed's `COINBASE` of 2020-2021 is Coinbase Pro: its URLs say so.
    let old_name = dir.path().join("COINBASE-0f3c9a1be2d74e5f.0");
    std::fs::write(&old_name, one_file.join("\n")).expect("write");
    assert_eq!(replayed(&[old_name], &[]), want, "COINBASE-<hex>.0");

    // Times stamped with `time.time_ns()`: whole nanoseconds.
    let nanos: Vec<String> = one_file
        .iter()
        .map(|l| match l.split_once(": ") {
            Some((ts, frame)) if ts.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                format!("{}: {frame}", as_nanos(ts))
            }
            _ => match l.split_once(" -> ") {
                Some((url, rest)) => {
                    let (ts, body) = rest.split_once(": ").expect("REST line");
                    format!("{url} -> {}: {body}", as_nanos(ts))
                }
                None => l.clone(),
            },
        })
        .collect();
    assert_ne!(nanos, one_file);
    let ns = dir.path().join("COINBASE_EXCHANGE-5a5b5c5d5e5f6061.0");
    std::fs::write(&ns, nanos.join("\n")).expect("write");
    assert_eq!(replayed(&[ns], &[]), want, "times in nanoseconds");

    // Renamed, with only the frames: nothing says the venue but the user.
    let frames: Vec<&String> = one_file
        .iter()
        .filter(|l| l.as_bytes().first().is_some_and(u8::is_ascii_digit))
        .collect();
    let bare = dir.path().join("capture.0");
    std::fs::write(
        &bare,
        frames
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("write");
    let refused = replay(
        &dir.path().join("refused"),
        std::slice::from_ref(&bare),
        &[],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("--exchange"),
        "the refusal says how to name the venue: {}",
        text(&refused.stderr)
    );
    assert_eq!(
        replayed(&[bare], &["--exchange", "coinbase-exchange"]),
        want,
        "--exchange names the venue"
    );
}

#[test]
fn a_frame_that_holds_an_arrow_is_a_frame_and_python_bytes_are_a_counted_error() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("COINBASE_EXCHANGE-0123456789abcdef.0");
    std::fs::write(
        &file,
        "wss://ws-feed.pro.coinbase.com <-> 1618677816.84\n\
         1618677817.06: {\"type\":\"match\",\"trade_id\":7,\"maker_order_id\":\"a <- b -> c\",\"taker_order_id\":\"x\",\"side\":\"sell\",\"size\":\"1.5\",\"price\":\"10.25\",\"product_id\":\"SKL-USD\",\"sequence\":1,\"time\":\"2021-04-17T16:43:37.057813Z\"}\n\
         1618677817.07: b'x\\x9c\\x03\\x00'\n",
    )
    .expect("write");
    let data = dir.path().join("data");
    let out = replay(&data, &[file], &[]);
    // The unreadable line makes the exit status say so; the rest is stored.
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("1 records could not be read"),
        "{}",
        text(&out.stderr)
    );
    let trades = stored_trades(&data);
    assert_eq!(trades.len(), 1, "{trades:?}");
    assert!(
        trades.iter().all(|t| t.contains("\"trade_id\":\"7\"")),
        "{trades:?}"
    );
}
