//! Helpers shared by the end-to-end tests: settings on a temporary folder,
//! the real Binance recording, and candles recomputed from a trade set.

use std::collections::BTreeMap;
use std::time::Duration;

use ck_app::config::{AppConfig, Settings};
use ck_bus::RawMessage;
use ck_mock::binance::MockTrade;
use ck_model::{Candle, Decimal, Exchange, Instrument, Interval, Side, Trade, TradeId, Ts};
use ck_processors::candles::CandleAggregator;
use ck_sources::recordings::Recording;
use ck_store::{CandleSource, RangeQuery, Store};

pub(crate) fn settings(dir: &std::path::Path) -> Settings {
    let env = vec![("CANDLEKEEP_DATA_DIR".to_owned(), dir.display().to_string())];
    AppConfig::load(None, env)
        .expect("config")
        .settings()
        .expect("settings")
}

pub(crate) fn btc() -> Instrument {
    Instrument::parse("BTC-USDT").expect("instrument")
}

/// The hftbacktest Binance recording's trade and bookTicker messages.
pub(crate) fn binance_messages(take: usize) -> Vec<RawMessage> {
    let fixture = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    Recording::open(&fixture)
        .expect("open")
        .map(|r| r.expect("line"))
        .filter(|m| m.data.contains("@trade\"") || m.data.contains("@bookTicker\""))
        .take(take)
        .collect()
}

pub(crate) fn everything(instrument: Instrument) -> RangeQuery {
    RangeQuery {
        exchange: Exchange::Binance,
        instrument,
        from: Ts(i64::MIN),
        to: Ts(i64::MAX),
        limit: usize::MAX,
    }
}

/// A mock trade as candlekeep normalizes it.
pub(crate) fn to_trade(t: &MockTrade) -> Trade {
    Trade {
        exchange: Exchange::Binance,
        instrument: btc(),
        trade_id: TradeId::Num(t.id),
        price: Decimal::parse(&t.price).expect("price"),
        size: Decimal::parse(&t.qty).expect("qty"),
        side: if t.buyer_is_maker {
            Side::Sell
        } else {
            Side::Buy
        },
        ts_exchange: Ts::from_millis(t.time_ms),
        ts_received: Ts::from_millis(t.time_ms),
        fills: 1,
    }
}

/// The final `interval` candles of a complete trade set, by open time, from
/// a fresh aggregator fed in id order.
pub(crate) fn expected_candles(
    settings: &Settings,
    trades: &[Trade],
    interval: Interval,
) -> BTreeMap<Ts, Candle> {
    let mut aggregator = CandleAggregator::new(settings.aggregator.clone());
    let mut out = Vec::new();
    for t in trades {
        aggregator.on_trade(t, &mut out);
    }
    aggregator.flush(&mut out);
    out.into_iter()
        .filter(|c| c.interval == interval)
        .map(|c| (c.open_time, c))
        .collect()
}

/// Asserts that the stored candles up to the last trade's equal `expected`
/// in every value (states may differ: live candles close by the clock).
pub(crate) async fn assert_candles_match(
    store: &dyn Store,
    expected: &BTreeMap<Ts, Candle>,
    interval: Interval,
) {
    let stored = store
        .candles(&everything(btc()), interval, CandleSource::Ours)
        .await
        .expect("candles");
    let last = *expected.keys().next_back().expect("some candles");
    let stored: BTreeMap<Ts, Candle> = stored
        .into_iter()
        .filter(|c| c.open_time <= last)
        .map(|c| (c.open_time, c))
        .collect();
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same {interval} candles"
    );
    for (t, e) in expected {
        let s = &stored[t];
        assert_eq!(
            (s.open, s.high, s.low, s.close, s.volume, s.trades),
            (e.open, e.high, e.low, e.close, e.volume, e.trades),
            "{interval} candle at {t}"
        );
    }
}

/// Polls `done` every 50 ms for up to `limit` (real I/O on loopback, so real
/// time), returning whether it became true.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done().await
}

/// A live Binance source against `mock`, reconnecting quickly; with the
/// mock's REST (instrument check, gap repair) when `rest`.
pub(crate) fn binance_source(
    mock: &ck_mock::binance::MockBinance,
    instruments: Vec<Instrument>,
    stale_after: Duration,
    rest: bool,
) -> ck_app::pipeline::Source {
    ck_app::pipeline::Source::live(
        Exchange::Binance,
        ck_sources::binance::BinanceLiveConfig {
            ws_url: mock.ws_url(),
            instruments,
            backoff: ck_sources::live::BackoffPolicy {
                initial: Duration::from_millis(20),
                ..ck_sources::live::BackoffPolicy::default()
            },
            stale_after,
            rest_url: rest.then(|| mock.rest_url()),
            books: None,
        },
    )
    .expect("binance is a venue")
}

/// Runs the pipeline with `source` in the background until the token is cancelled.
pub(crate) fn spawn_pipeline(
    settings: &Settings,
    store: &std::sync::Arc<dyn Store>,
    source: ck_app::pipeline::Source,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<ck_app::pipeline::PipelineReport>>,
) {
    spawn_pipeline_with(settings, &ck_app::runtime::Runtime::new(), store, source)
}

/// [`spawn_pipeline`], its updates on `runtime`'s live feed.
pub(crate) fn spawn_pipeline_with(
    settings: &Settings,
    runtime: &ck_app::runtime::Runtime,
    store: &std::sync::Arc<dyn Store>,
    source: ck_app::pipeline::Source,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<ck_app::pipeline::PipelineReport>>,
) {
    let token = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn({
        let (store, token, settings, runtime) = (
            store.clone(),
            token.clone(),
            settings.clone(),
            runtime.clone(),
        );
        async move {
            ck_app::pipeline::run_pipeline_with(
                &settings,
                &runtime,
                store,
                vec![source],
                None,
                token,
            )
            .await
        }
    });
    (token, handle)
}

/// A port on loopback nothing listens on (it was free a moment ago).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A plain HTTP/1.1 GET on loopback; the whole response as text.
pub(crate) fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the API");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// `candlekeep demo` running on `data_dir`: a mock Binance replaying
/// `recording` at `speed`, the live pipeline, and the API on a free port.
pub(crate) struct Demo {
    child: std::process::Child,
    reader: std::thread::JoinHandle<String>,
    /// The API's address, `127.0.0.1:PORT`.
    pub(crate) api: String,
}

impl Demo {
    pub(crate) fn start(
        data_dir: &std::path::Path,
        recording: &std::path::Path,
        speed: u32,
    ) -> Demo {
        Demo::start_with_config(data_dir, recording, speed, None)
    }

    /// As [`Demo::start`], with the mocks of the venues recorded in `venues` too.
    pub(crate) fn start_with_venues(
        data_dir: &std::path::Path,
        recording: &std::path::Path,
        speed: u32,
        venues: &std::path::Path,
    ) -> Demo {
        Demo::launch(data_dir, recording, speed, None, Some(venues))
    }

    /// As [`Demo::start`], with a config file.
    pub(crate) fn start_with_config(
        data_dir: &std::path::Path,
        recording: &std::path::Path,
        speed: u32,
        config: Option<&std::path::Path>,
    ) -> Demo {
        Demo::launch(data_dir, recording, speed, config, None)
    }

    fn launch(
        data_dir: &std::path::Path,
        recording: &std::path::Path,
        speed: u32,
        config: Option<&std::path::Path>,
        venues: Option<&std::path::Path>,
    ) -> Demo {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_candlekeep"));
        if let Some(c) = config {
            command.arg("--config").arg(c);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--log",
                "warn",
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--speed",
            ])
            .arg(speed.to_string())
            .arg("--recording")
            .arg(recording)
            .args(venues.map_or_else(
                || vec!["--venues".to_owned(), "none".to_owned()],
                |v| vec!["--venues".to_owned(), v.display().to_string()],
            ))
            .env_remove("CANDLEKEEP_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start demo");
        // stderr, line by line, on a thread: the API's address comes first.
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                all.push_str(&line);
                all.push('\n');
                let _ = lines_tx.send(line);
            }
            all
        });
        let api = lines
            .iter()
            .find_map(|l| {
                l.strip_prefix("API on http://")
                    .map(|a| a.split_whitespace().next().unwrap_or("").to_owned())
            })
            .expect("the API address is printed");
        Demo { child, reader, api }
    }

    /// Ctrl-C, then the exit status and everything it printed on stderr.
    pub(crate) fn stop(mut self) -> (std::process::ExitStatus, String) {
        let status = signal_and_wait(&mut self.child, "INT");
        (status, self.reader.join().expect("stderr reader"))
    }
}

/// Sends `signal` (`INT`, `TERM`) to `child`; its exit status.
pub(crate) fn signal_and_wait(
    child: &mut std::process::Child,
    signal: &str,
) -> std::process::ExitStatus {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{signal} {}", child.id());
    child.wait().expect("the process exits")
}

/// Replays the hftbacktest Binance recording into `store` as fast as it goes.
pub(crate) async fn replay_binance_fixture(settings: &Settings, store: &std::sync::Arc<dyn Store>) {
    replay_binance_fixture_with(settings, &ck_app::runtime::Runtime::new(), store).await;
}

/// [`replay_binance_fixture`], its updates on `runtime`'s live feed.
pub(crate) async fn replay_binance_fixture_with(
    settings: &Settings,
    runtime: &ck_app::runtime::Runtime,
    store: &std::sync::Arc<dyn Store>,
) {
    ck_app::pipeline::run_pipeline_with(
        settings,
        runtime,
        store.clone(),
        vec![ck_app::pipeline::Source::Replay {
            files: vec![ck_testkit::fixture(
                "hftbacktest/binance_spot_btcusdt_20240808.gz",
            )],
            options: ck_sources::replay::ReplayOptions::default(),
        }],
        None,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("replay");
}

/// Every record of a recording in `../shared/fixtures`.
pub(crate) fn recording(relative: &str) -> Vec<RawMessage> {
    Recording::open(&ck_testkit::fixture(relative))
        .expect("open recording")
        .map(|r| r.expect("record"))
        .collect()
}

pub(crate) use ck_testkit::postgres_url;

/// A connection to that PostgreSQL, after `sql` ran on it (typically:
/// drop and create the test's schema); panics with how to start the server.
pub(crate) async fn postgres_admin(sql: &str) -> tokio_postgres::Client {
    postgres_admin_at(&postgres_url(), sql).await
}

/// The same on the server at `url`.
pub(crate) async fn postgres_admin_at(url: &str, sql: &str) -> tokio_postgres::Client {
    let client = ck_testkit::postgres_client(url).await;
    client.batch_execute(sql).await.expect("PostgreSQL set-up");
    client
}

/// The instrument of `messages` with the most recorded trades, and those
/// trades, oldest first.
pub(crate) fn busiest_instrument(messages: &[RawMessage]) -> (Instrument, Vec<ck_model::Trade>) {
    let mut normalizer = ck_sources::normalize::Normalizer::new();
    let mut events = Vec::new();
    for m in messages.iter().filter(|m| m.origin == ck_bus::Origin::Ws) {
        normalizer.handle(m, &|| "recording".to_owned(), &mut events);
    }
    let mut by_instrument: BTreeMap<Instrument, Vec<ck_model::Trade>> = BTreeMap::new();
    for e in events {
        if let ck_bus::Event::Trade(t) = e {
            by_instrument
                .entry(t.instrument.clone())
                .or_default()
                .push(t);
        }
    }
    let (instrument, mut trades) = by_instrument
        .into_iter()
        .max_by_key(|(_, t)| t.len())
        .expect("trades");
    trades.sort_by_key(|t| (t.ts_exchange, t.trade_id.clone()));
    (instrument, trades)
}

/// A history that asks for pages of five, to exercise paging.
#[derive(Debug)]
pub(crate) struct PagedBy5(pub(crate) std::sync::Arc<dyn ck_sources::history::History>);

#[async_trait::async_trait]
impl ck_sources::history::History for PagedBy5 {
    fn exchange(&self) -> Exchange {
        self.0.exchange()
    }
    fn client(&self) -> &ck_sources::rest::RestClient {
        self.0.client()
    }
    fn page_size(&self) -> u32 {
        5
    }
    fn by_time(&self) -> bool {
        self.0.by_time()
    }
    fn keeps_only(&self) -> Option<&'static str> {
        self.0.keeps_only()
    }
    async fn trades_from_time(
        &self,
        instrument: &Instrument,
        from: Ts,
        limit: u32,
    ) -> Result<Vec<ck_model::Trade>, ck_sources::history::HistoryError> {
        self.0.trades_from_time(instrument, from, limit).await
    }
    async fn trades_from_id(
        &self,
        instrument: &Instrument,
        from_id: u64,
        limit: u32,
    ) -> Result<Vec<ck_model::Trade>, ck_sources::history::HistoryError> {
        self.0.trades_from_id(instrument, from_id, limit).await
    }
    async fn first_trade_id_at(
        &self,
        instrument: &Instrument,
        at: Ts,
    ) -> Result<Option<u64>, ck_sources::history::HistoryError> {
        self.0.first_trade_id_at(instrument, at).await
    }
    async fn candles(
        &self,
        instrument: &Instrument,
        interval: ck_model::Interval,
        start: Ts,
        limit: u32,
    ) -> Result<ck_sources::history::CandlePage, ck_sources::history::HistoryError> {
        self.0.candles(instrument, interval, start, limit).await
    }
}

/// Runs the `candlekeep` binary over the store in `data_dir`, to the end.
/// [`candlekeep`] on the store at `store` (a `--store` URL).
pub(crate) fn candlekeep_on(
    data_dir: &std::path::Path,
    store: &str,
    args: &[&str],
) -> std::process::Output {
    let mut all = vec!["--store", store];
    all.extend_from_slice(args);
    candlekeep(data_dir, &all)
}

pub(crate) fn candlekeep(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--log", "warn"])
        .args(args)
        .env_remove("CANDLEKEEP_CONFIG")
        .output()
        .expect("run candlekeep")
}

/// Imports `csv` (a header and rows) as Binance BTC-USDT trades into the
/// store in `data_dir`, asserting that the import succeeded.
pub(crate) fn import_binance(data_dir: &std::path::Path, csv: &str) -> std::process::Output {
    let file = data_dir.join("trades.csv");
    std::fs::write(&file, csv).expect("write the CSV");
    let out = import_binance_file(data_dir, &[], &file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

/// `candlekeep import` of `file` as Binance BTC-USDT trades, with `global`
/// options (such as `--store URL`) before the command; whatever its outcome.
pub(crate) fn import_binance_file(
    data_dir: &std::path::Path,
    global: &[&str],
    file: &std::path::Path,
) -> std::process::Output {
    let command = [
        "import",
        "--exchange",
        "binance",
        "--instrument",
        "BTC-USDT",
        file.to_str().expect("utf8"),
    ];
    candlekeep(data_dir, &[global, &command].concat())
}

/// The Binance BTC-USDT trades `candlekeep trades` prints from `data_dir`.
pub(crate) fn stored_binance_trades(data_dir: &std::path::Path) -> serde_json::Value {
    binance_trades_in(data_dir, &[])
}

/// Every Binance BTC-USDT trade stored (up to a million), with `global`
/// options (such as `--store URL`) before the command.
pub(crate) fn binance_trades_in(data_dir: &std::path::Path, global: &[&str]) -> serde_json::Value {
    let command = [
        "trades",
        "--exchange",
        "binance",
        "--instrument",
        "BTC-USDT",
        "--limit",
        "1000000",
    ];
    let out = candlekeep(data_dir, &[global, &command].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("trades as JSON")
}

/// Process output as text.
pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
