//! Binance.US, the ninth venue, end to end: replay of cryptofeed's
//! `BINANCE_US` recordings, live capture from its mock, and backfill and
//! `verify` against the mock from the command line, with the API key its
//! `historicalTrades` wants.
//!
//! No recording of Binance.US is at hand. Its recording here is derived from
//! `../shared/fixtures/cryptofeed/BINANCE.jsonl.zst` the way cryptofeed
//! would have written it on Binance.US (the venue's name, its connections'
//! names and the hosts in its URLs); its mock replays the hftbacktest
//! Binance recording (BTCUSDT, which Binance.US lists too).

use std::io::Read as _;
use std::time::Duration;

use ck_app::pipeline::{Source, run_pipeline};
use ck_model::{Exchange, Instrument, Ts};
use ck_sources::live::connector::LiveConfig;
use ck_sources::recordings::Recording;
use ck_store::RangeQuery;
use tokio_util::sync::CancellationToken;

use crate::support::{binance_messages, btc, eventually, settings, spawn_pipeline, text};

/// `BINANCE.jsonl.zst` as cryptofeed records Binance.US: `BINANCE_US`,
/// its connections `BINANCE_US.*`, its hosts `*.binance.us`.
fn binance_us_recording(dir: &std::path::Path) -> std::path::PathBuf {
    let fixture = ck_testkit::fixture("cryptofeed/BINANCE.jsonl.zst");
    let mut text = String::new();
    zstd::stream::read::Decoder::new(std::fs::File::open(&fixture).expect("open the fixture"))
        .expect("zstd")
        .read_to_string(&mut text)
        .expect("read the fixture");
    let derived = text
        .replace("\"exchange\":\"BINANCE\"", "\"exchange\":\"BINANCE_US\"")
        .replace("\"conn\":\"BINANCE.", "\"conn\":\"BINANCE_US.")
        .replace("api.binance.com", "api.binance.us")
        .replace("stream.binance.com", "stream.binance.us");
    assert_ne!(derived, text, "the fixture names Binance where expected");
    assert!(!derived.contains("binance.com"), "every host moved");
    let path = dir.join("BINANCE_US.jsonl");
    std::fs::write(&path, derived).expect("write the derived recording");
    path
}

fn all_of(exchange: Exchange, instrument: &Instrument) -> RangeQuery {
    RangeQuery {
        exchange,
        instrument: instrument.clone(),
        from: Ts(0),
        to: Ts(i64::MAX),
        limit: usize::MAX,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binance_us_recording_replays_as_binance_us_with_every_trade() {
    let dir = tempfile::tempdir().expect("dir");
    let derived = binance_us_recording(dir.path());
    let original = ck_testkit::fixture("cryptofeed/BINANCE.jsonl.zst");
    assert_eq!(
        Recording::open(&derived).expect("open").exchange(),
        Exchange::BinanceUs,
        "the recording says which venue it is"
    );
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    for file in [&original, &derived] {
        run_pipeline(
            &settings,
            store.clone(),
            vec![Source::Replay {
                files: vec![file.clone()],
                options: ck_sources::replay::ReplayOptions::default(),
            }],
            None,
            CancellationToken::new(),
        )
        .await
        .expect("replay");
    }
    let (mut trades, mut quotes) = (0, 0);
    for symbol in ["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"] {
        let instrument = Instrument::parse(symbol).expect("instrument");
        let binance = store
            .trades(&all_of(Exchange::Binance, &instrument))
            .await
            .expect("binance trades");
        let us = store
            .trades(&all_of(Exchange::BinanceUs, &instrument))
            .await
            .expect("binance-us trades");
        assert_eq!(binance.len(), us.len(), "{symbol}");
        for (b, u) in binance.iter().zip(&us) {
            assert_eq!(u.exchange, Exchange::BinanceUs);
            assert_eq!(
                (&b.trade_id, b.price, b.size, b.side, b.ts_exchange),
                (&u.trade_id, u.price, u.size, u.side, u.ts_exchange),
                "{symbol}"
            );
        }
        trades += us.len();
        let binance = store
            .quotes(&all_of(Exchange::Binance, &instrument))
            .await
            .expect("binance quotes");
        let us = store
            .quotes(&all_of(Exchange::BinanceUs, &instrument))
            .await
            .expect("binance-us quotes");
        assert_eq!(binance.len(), us.len(), "{symbol}");
        for (b, u) in binance.iter().zip(&us) {
            assert_eq!(u.exchange, Exchange::BinanceUs);
            assert_eq!(
                (b.bid, b.ask, b.bid_size, b.ask_size, b.ts_exchange),
                (u.bid, u.ask, u.bid_size, u.ask_size, u.ts_exchange),
                "{symbol}"
            );
        }
        quotes += us.len();
    }
    // The recording holds two trades (aggTrade) and 85 best bid/asks.
    assert_eq!(trades, 2, "every trade of the recording");
    assert!(quotes > 50, "the recording's quotes: {quotes}");
}

#[test]
fn replay_exchange_reads_a_file_that_names_no_venue_as_binance_us() {
    let dir = tempfile::tempdir().expect("dir");
    let fixture = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let file = fixture.display().to_string();
    let out =
        crate::support::candlekeep(dir.path(), &["replay", "--exchange", "binance-us", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let trades = crate::support::candlekeep(
        dir.path(),
        &[
            "trades",
            "--exchange",
            "binance-us",
            "--instrument",
            "BTC-USDT",
            "--from",
            "2024-08-08T00:00:00Z",
            "--to",
            "2024-08-10T00:00:00Z",
            "--limit",
            "5",
            "--format",
            "json",
        ],
    );
    let stdout = text(&trades.stdout);
    assert!(trades.status.success(), "{}", text(&trades.stderr));
    assert!(stdout.contains("\"trade_id\": \"3735683259\""), "{stdout}");
    // A file that names its venue is not read as another.
    let named = ck_testkit::fixture("cryptofeed/BYBIT.jsonl.zst");
    let refused = crate::support::candlekeep(
        dir.path(),
        &[
            "replay",
            "--exchange",
            "binance-us",
            &named.display().to_string(),
        ],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("names bybit, not binance-us"),
        "{}",
        text(&refused.stderr)
    );
}

/// The Binance.US mock serving the first `take` messages of the hftbacktest
/// recording, its times moved to now, or kept as recorded (`as_recorded`).
async fn mock(take: usize, as_recorded: bool) -> ck_mock::venues::RunningMock {
    let recording = binance_messages(take);
    ck_mock::binance_us::SPEC
        .start(ck_mock::venues::MockStart {
            recording: &recording,
            listen: None,
            shift_to: as_recorded.then(|| recording[0].ts_received),
            speed: None,
            looped: false,
            faults: ck_mock::venues::StartFaults::default(),
        })
        .await
        .expect("the Binance.US mock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_us_is_captured_live_from_its_mock() {
    let mock = mock(3_000, false).await;
    let expected = binance_messages(3_000)
        .iter()
        .filter(|m| m.data.contains("@trade\""))
        .count();
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let config = LiveConfig {
        ws_url: mock.ws_url.clone(),
        instruments: vec![btc()],
        backoff: ck_sources::live::BackoffPolicy::default(),
        stale_after: Duration::from_secs(30),
        rest_url: mock.rest_url.clone(),
        books: None,
    };
    let source = Source::live(Exchange::BinanceUs, config).expect("a venue");
    assert_eq!(source.captured(), vec![(Exchange::BinanceUs, btc())]);
    let (token, pipeline) = spawn_pipeline(&settings, &store, source);
    let query = all_of(Exchange::BinanceUs, &btc());
    let done = eventually(Duration::from_secs(60), || {
        let (store, query) = (store.clone(), query.clone());
        async move { store.trades(&query).await.map_or(0, |t| t.len()) >= expected }
    })
    .await;
    token.cancel();
    let report = pipeline.await.expect("join").expect("pipeline");
    assert!(done, "every trade of the recording was stored");
    let stored = store.trades(&query).await.expect("trades");
    assert_eq!(stored.len(), expected);
    assert!(stored.iter().all(|t| t.exchange == Exchange::BinanceUs));
    let binance = store
        .trades(&all_of(Exchange::Binance, &btc()))
        .await
        .expect("trades");
    assert!(binance.is_empty(), "nothing is stored as Binance");
    // It ran as live capture (tapes, then parsing), like any live venue.
    assert!(report.capture.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binance_us_instrument_it_does_not_list_is_refused_at_start() {
    let mock = mock(200, false).await;
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let config = LiveConfig {
        ws_url: mock.ws_url.clone(),
        instruments: vec![btc(), Instrument::new("DOGE", "USD")],
        backoff: ck_sources::live::BackoffPolicy::default(),
        stale_after: Duration::from_secs(30),
        rest_url: mock.rest_url.clone(),
        books: None,
    };
    let source = Source::live(Exchange::BinanceUs, config).expect("a venue");
    let err = run_pipeline(
        &settings,
        store,
        vec![source],
        None,
        CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("`DOGEUSD` (DOGE-USD) is not listed") && message.contains("binance-us"),
        "{message}"
    );
}

/// `candlekeep` with `env` set (and the configuration file unset).
fn candlekeep_with(
    data_dir: &std::path::Path,
    env: &[(&str, &str)],
    args: &[String],
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--log", "warn"])
        .args(args)
        .env_remove("CANDLEKEEP_CONFIG")
        .env_remove(ck_sources::binance_us::API_KEY_ENV)
        .envs(env.iter().copied())
        .output()
        .expect("run candlekeep")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_us_backfill_and_verify_against_its_mock() {
    let mock = mock(usize::MAX, true).await;
    let trades: Vec<ck_model::Trade> = {
        let mut parser = ck_sources::parse::parser_for(Exchange::BinanceUs).expect("parser");
        let mut events = Vec::new();
        for m in binance_messages(usize::MAX) {
            let _ = parser.parse(&m, &mut events);
        }
        events
            .into_iter()
            .filter_map(|e| match e {
                ck_bus::Event::Trade(t) => Some(t),
                _ => None,
            })
            .collect()
    };
    let (first, last) = (trades[0].ts_exchange, trades[trades.len() - 1].ts_exchange);
    let from = first.to_string();
    let to = Ts(last.0 + 1_000_000).to_string();
    let rest = mock.rest_url.clone().expect("a REST mock");
    let dir = tempfile::tempdir().expect("dir");
    let backfill: Vec<String> = [
        "backfill",
        "--exchange",
        "binance-us",
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
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let data = dir.path().to_owned();
    // Without the key, trades by id are refused by the venue: the job
    // fails, naming where the key goes; the candles need none.
    let (without, with) = tokio::task::spawn_blocking(move || {
        let without = candlekeep_with(&data, &[], &backfill);
        let with = candlekeep_with(
            &data,
            &[(ck_sources::binance_us::API_KEY_ENV, "test-key")],
            &backfill,
        );
        (without, with)
    })
    .await
    .expect("join");
    assert!(!without.status.success(), "a job failed");
    assert!(
        text(&without.stderr).contains(ck_sources::binance_us::API_KEY_ENV),
        "{}",
        text(&without.stderr)
    );
    let stderr = text(&with.stderr);
    assert!(with.status.success(), "{stderr}");
    assert!(stderr.contains("complete"), "{stderr}");

    let settings = settings(dir.path());
    let store = ck_app::open_existing_store(&settings).await.expect("store");
    let stored = store
        .trades(&all_of(Exchange::BinanceUs, &btc()))
        .await
        .expect("trades");
    assert_eq!(
        stored.len(),
        trades.len(),
        "every trade, once: {stderr}\n{}",
        text(&without.stderr)
    );
    drop(store);

    let interval = ck_model::Interval::M1;
    let start = interval
        .next_start(interval.bucket_start(first))
        .to_string();
    let last_full = interval.bucket_start(last).to_string();
    let verify: Vec<String> = [
        "verify",
        "--exchange",
        "binance-us",
        "--instrument",
        "BTC-USDT",
        "--interval",
        "1m",
        "--from",
        &start,
        "--to",
        &last_full,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = candlekeep_with(dir.path(), &[], &verify);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", text(&out.stdout));
    assert!(stderr.contains(" 0 differences"), "{stderr}");
}
