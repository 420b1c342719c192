//! Order-book capture end to end, over loopback, all nine venues at once.
//!
//! Each venue's mock (`ck_mock::venues`) replays its cryptofeed recording
//! (Binance.US replays Binance's under its own name) as fast as the client
//! reads, looped (each lap's ids and update ids moved on, so the books go
//! on), and one process captures every venue with `books = true`: the live
//! connectors, each connection's book keeping (reader, sequence rules,
//! checksums), the tape, the normalizer, the candle stage and the store
//! writer (SQLite), and the book recorder writing Parquet parts. For
//! `CK_BENCH_SECS` (default 20) seconds; then book messages (deltas
//! applied) and raw frames a second, summed over the venues.
//!
//! The same run without books, in the same process, is the baseline: the
//! ratio of raw frames a second is what keeping the books costs the
//! capture.
//!
//! `cargo bench -p candlekeep --bench books` (`CK_BENCH_RUNS`, default 3:
//! the median is printed).

use std::time::{Duration, Instant};

use ck_app::config::AppConfig;
use ck_app::pipeline::{Source, run_pipeline_with};
use ck_model::{Exchange, Ts};
use ck_sources::live::BackoffPolicy;
use ck_sources::live::books::BookCapture;
use ck_sources::live::connector::LiveConfig;
use tokio_util::sync::CancellationToken;

const VENUES: [(Exchange, &str); 9] = [
    (Exchange::Binance, "cryptofeed/BINANCE.jsonl.zst"),
    (Exchange::BinanceUs, "cryptofeed/BINANCE.jsonl.zst"),
    (Exchange::Coinbase, "cryptofeed/COINBASE.jsonl.zst"),
    (
        Exchange::CoinbaseExchange,
        "cryptofeed/COINBASE_EXCHANGE.ws.28.0",
    ),
    (Exchange::Bitfinex, "cryptofeed/BITFINEX.jsonl.zst"),
    (Exchange::Kraken, "cryptofeed/KRAKEN.jsonl.zst"),
    (Exchange::Bitstamp, "cryptofeed/BITSTAMP.jsonl.zst"),
    (Exchange::Okx, "cryptofeed/OKX.jsonl.zst"),
    (Exchange::Bybit, "cryptofeed/BYBIT.jsonl.zst"),
];

/// What one run measured.
struct Measured {
    secs: f64,
    frames: u64,
    deltas: u64,
    snapshots: u64,
    rows: u64,
    incidents: u64,
    per_venue: Vec<(Exchange, u64)>,
}

async fn run(books: bool, secs: u64) -> Measured {
    let mut mocks = Vec::new();
    let mut sources = Vec::new();
    for (exchange, fixture) in VENUES {
        let path = ck_testkit::fixture(fixture);
        let messages: Vec<ck_bus::RawMessage> =
            // Opened as the venue that recorded it; Binance.US plays Binance's.
            ck_sources::recordings::Recording::open(&path)
                .expect("recording")
                .filter_map(Result::ok)
                .map(|mut m| {
                    m.exchange = exchange;
                    m
                })
                .collect();
        let instruments = ck_sources::normalize::traded_instruments(&messages);
        let spec = ck_mock::venues::spec(exchange).expect("a mock of every venue");
        let mock = spec
            .start(ck_mock::venues::MockStart {
                recording: &messages,
                listen: None,
                shift_to: Some(Ts::now()),
                speed: None,
                looped: true,
                faults: ck_mock::venues::StartFaults::default(),
            })
            .await
            .expect("mock");
        let kraken_v1 = exchange == Exchange::Kraken;
        let (protocol, _) = ck_sources::live::protocol_for(exchange, kraken_v1).expect("protocol");
        sources.push(Source::Live {
            protocol,
            config: LiveConfig {
                ws_url: mock.ws_url.clone(),
                instruments,
                backoff: BackoffPolicy {
                    initial: Duration::from_millis(20),
                    ..BackoffPolicy::default()
                },
                stale_after: Duration::from_secs(60),
                rest_url: mock.rest_url.clone(),
                books: books.then(BookCapture::default),
            },
        });
        mocks.push(mock);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let env: Vec<(String, String)> = vec![(
        "CANDLEKEEP_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    )];
    let settings = AppConfig::load(None, env)
        .expect("config")
        .settings()
        .expect("settings");
    let store = ck_app::open_store(&settings).await.expect("store");
    let runtime = ck_app::runtime::Runtime::new();
    let stop = CancellationToken::new();
    let before = incidents();
    let started = Instant::now();
    let pipeline = tokio::spawn({
        let (settings, runtime, stop) = (settings.clone(), runtime.clone(), stop.clone());
        async move { run_pipeline_with(&settings, &runtime, store, sources, None, stop).await }
    });
    let rows_before: Vec<u64> = VENUES.iter().map(|(e, _)| rows_of(*e)).collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.cancel();
    let report = pipeline.await.expect("join").expect("pipeline");
    let elapsed = started.elapsed().as_secs_f64();
    let recorder = report.books.unwrap_or_default();
    Measured {
        secs: elapsed,
        frames: report.capture.map_or(0, |c| c.messages),
        deltas: recorder.deltas,
        snapshots: recorder.snapshots,
        rows: recorder.rows,
        incidents: incidents() - before,
        per_venue: VENUES
            .iter()
            .zip(rows_before)
            .map(|((e, _), b)| (*e, rows_of(*e) - b))
            .collect(),
    }
}

/// Book rows written for `exchange` so far in this process.
fn rows_of(exchange: Exchange) -> u64 {
    ["book_deltas", "book_snapshots"]
        .iter()
        .map(|kind| {
            ck_bus::metrics::counter(&format!(
                "candlekeep_book_rows_total{{exchange=\"{exchange}\",kind=\"{kind}\"}}"
            ))
            .get()
        })
        .sum()
}

/// Incidents of `exchange` so far in this process, every cause.
fn incidents_of(exchange: Exchange) -> u64 {
    let prefix = format!("candlekeep_book_incidents_total{{exchange=\"{exchange}\",");
    ck_bus::metrics::render_prometheus()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Incidents so far, every venue and cause.
fn incidents() -> u64 {
    ck_bus::metrics::render_prometheus()
        .lines()
        .filter(|l| l.starts_with("candlekeep_book_incidents_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("CK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let secs: u64 = std::env::var("CK_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (mut with, mut without, mut deltas) = (Vec::new(), Vec::new(), Vec::new());
    for run_no in 1..=runs {
        let plain = rt.block_on(run(false, secs));
        let booked = rt.block_on(run(true, secs));
        let f0 = plain.frames as f64 / plain.secs;
        let f1 = booked.frames as f64 / booked.secs;
        let d1 = booked.deltas as f64 / booked.secs;
        println!(
            "run {run_no}: without books {f0:.0} frames/s; with books {f1:.0} frames/s, {d1:.0} book deltas/s, {:.0} rows/s, {} snapshots, {} incidents ({:.2}x the frames of the run without)",
            booked.rows as f64 / booked.secs,
            booked.snapshots,
            booked.incidents,
            f1 / f0
        );
        for (e, rows) in &booked.per_venue {
            println!("  {e}: {rows} book rows, {} incidents", incidents_of(*e));
        }
        with.push(f1);
        without.push(f0);
        deltas.push(d1);
    }
    let (w, wo, d) = (median(with), median(without), median(deltas));
    println!(
        "median of {runs}: {d:.0} book deltas/s; {w:.0} frames/s with books, {wo:.0} without ({:.2}x)",
        w / wo
    );
}
