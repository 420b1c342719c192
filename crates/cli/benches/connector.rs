//! Connector throughput and memory, over loopback.
//!
//! Throughput: the mock Binance WebSocket serves `N` real (repeated) trade
//! messages as fast as the client reads; the live connector, the capture
//! stage (tape, then parse), the candle stage (all 15 intervals) and the
//! store writer (SQLite, durability full) run as `candlekeep run` runs them.
//! The clock starts when the pipeline starts and stops when the last trade is
//! committed. Five runs; the median is printed.
//!
//! Memory: the same with 200 instruments subscribed, trades spread over
//! them; resident memory (VmRSS) before the pipeline starts (the mock's data
//! is loaded) and its peak (VmHWM) after.
//!
//! `cargo bench -p candlekeep --bench connector` (throughput) and
//! `cargo bench -p candlekeep --bench connector -- --memory` (a fresh process).

use std::time::{Duration, Instant};

use ck_app::config::AppConfig;
use ck_app::pipeline::{Source, run_pipeline};
use ck_mock::binance::{MockBinance, MockOptions};
use ck_model::Instrument;
use ck_sources::binance::BinanceLiveConfig;
use ck_sources::live::BackoffPolicy;
use tokio_util::sync::CancellationToken;

const TRADES: usize = 300_000;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn run(n: usize, symbols: usize) -> (Duration, u64, u64) {
    let messages = ck_testkit::bench_data::repeated_binance_trade_messages(n, symbols);
    let instruments: Vec<Instrument> = if symbols == 1 {
        vec![Instrument::new("BTC", "USDT")]
    } else {
        (0..symbols)
            .map(|i| Instrument::new(&format!("S{i:03}"), "USDT"))
            .collect()
    };
    let mock = MockBinance::start(&messages, MockOptions::default())
        .await
        .expect("mock");
    // The mock builds its messages when it is first asked (at its first
    // client, so that its times follow that client): build them now, before
    // the clock starts, or the build is counted against the pipeline.
    assert!(!mock.is_empty(), "the mock holds the trades");
    drop(messages);
    let dir = tempfile::tempdir().expect("tempdir");
    // `CANDLEKEEP_*` variables of the bench's environment apply too (to
    // measure a stage's share, e.g. `CANDLEKEEP_TAPE__ENABLED=false`).
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CANDLEKEEP_"))
        .collect();
    env.push((
        "CANDLEKEEP_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    ));
    let settings = AppConfig::load(None, env)
        .expect("config")
        .settings()
        .expect("settings");
    let store = ck_app::open_store(&settings).await.expect("store");
    let rss_before = status_kb("VmRSS:");
    let source = Source::live(
        ck_model::Exchange::Binance,
        BinanceLiveConfig {
            ws_url: mock.ws_url(),
            instruments,
            backoff: BackoffPolicy::default(),
            stale_after: Duration::from_secs(60),
            rest_url: None,
            books: None,
        },
    )
    .expect("binance is a venue");
    let last_ids = last_ids(n, symbols);
    let token = CancellationToken::new();
    let start = Instant::now();
    let pipeline = tokio::spawn({
        let (store, token, settings) = (store.clone(), token.clone(), settings.clone());
        async move { run_pipeline(&settings, store, vec![source], None, token).await }
    });
    // Done when the last trade of every instrument is committed (an index
    // lookup per instrument, not a count over the table).
    loop {
        let mut done = true;
        for (instrument, id) in &last_ids {
            let last = store
                .last_trade(ck_model::Exchange::Binance, instrument)
                .await
                .expect("last trade");
            if last.and_then(|t| t.trade_id.as_u64()) != Some(*id) {
                done = false;
                break;
            }
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    token.cancel();
    pipeline.await.expect("join").expect("pipeline");
    (elapsed, rss_before, status_kb("VmHWM:"))
}

/// The baseline: the same messages read from the same mock by a bare
/// WebSocket client that only counts them (transport cost alone).
async fn transport_only(n: usize) -> Duration {
    use futures_util::StreamExt;
    let messages = ck_testkit::bench_data::repeated_binance_trade_messages(n, 1);
    let mock = MockBinance::start(&messages, MockOptions::default())
        .await
        .expect("mock");
    // The mock builds its messages when it is first asked (at its first
    // client, so that its times follow that client): build them now, before
    // the clock starts, or the build is counted against the pipeline.
    assert!(!mock.is_empty(), "the mock holds the trades");
    drop(messages);
    let url = format!("{}/stream?streams=btcusdt@trade", mock.ws_url());
    let start = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let mut seen = 0;
    while seen < n {
        match ws.next().await {
            Some(Ok(m)) if m.is_text() => seen += 1,
            Some(Ok(_)) => {}
            other => panic!("stream ended early: {other:?}"),
        }
    }
    start.elapsed()
}

/// The last trade id of each instrument in the data set.
fn last_ids(n: usize, symbols: usize) -> Vec<(Instrument, u64)> {
    let messages = ck_testkit::bench_data::repeated_binance_trade_messages(n, symbols);
    let mut last = std::collections::BTreeMap::new();
    for m in &messages {
        let v: serde_json::Value = serde_json::from_str(&m.data).expect("json");
        let symbol = v["data"]["s"].as_str().expect("symbol").to_owned();
        last.insert(symbol, v["data"]["t"].as_u64().expect("id"));
    }
    last.into_iter()
        .map(|(s, id)| {
            let base = s.trim_end_matches("USDT");
            (Instrument::new(base, "USDT"), id)
        })
        .collect()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::args().any(|a| a == "--memory") {
        let (t, before, peak) = rt.block_on(run(200_000, 200));
        println!(
            "connector/binance_200_instruments: 200000 trades in {t:.2?}; RSS before pipeline {} MiB, peak {} MiB, pipeline share {} MiB ({} KiB per instrument)",
            before / 1024,
            peak / 1024,
            peak.saturating_sub(before) / 1024,
            peak.saturating_sub(before) / 200
        );
        return;
    }
    let runs: usize = std::env::var("CK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut times = Vec::new();
    for i in 0..runs {
        let (t, _, _) = rt.block_on(run(TRADES, 1));
        let rate = TRADES as f64 / t.as_secs_f64();
        println!(
            "connector/binance_1_instrument run {i}: {TRADES} trades in {t:.2?} = {rate:.0} trades/s"
        );
        times.push(t);
    }
    times.sort();
    let median = times[times.len() / 2];
    let mut base: Vec<Duration> = (0..runs)
        .map(|_| rt.block_on(transport_only(TRADES)))
        .collect();
    base.sort();
    let base_median = base[base.len() / 2];
    println!(
        "connector/transport_only baseline median: {:.0} msgs/s; pipeline takes {:.2}x the bare transport's time",
        TRADES as f64 / base_median.as_secs_f64(),
        median.as_secs_f64() / base_median.as_secs_f64()
    );
    println!(
        "connector/binance_1_instrument median: {:.0} trades/s (range {:.0}..{:.0})",
        TRADES as f64 / median.as_secs_f64(),
        TRADES as f64 / times[times.len() - 1].as_secs_f64(),
        TRADES as f64 / times[0].as_secs_f64()
    );
}
