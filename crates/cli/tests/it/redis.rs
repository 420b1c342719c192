//! The Redis sink against a real Redis server of the test's own (started
//! from `redis-server` on a free loopback port, so it can be restarted):
//! after a replay, the latest-candle hash and the history sorted sets hold
//! what the store holds; a restart of Redis mid-run loses no captured data
//! and the sink carries on afterwards.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ck_app::config::RedisConfig;
use ck_app::pipeline::Source;
use ck_model::{Exchange, Interval};
use ck_sources::replay::ReplayOptions;

use crate::support::{btc, eventually, settings, spawn_pipeline_with};

struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis(port: u16) -> RedisServer {
    let bin = std::env::var("CK_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let child = Command::new(&bin)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {bin}: {e}. Install it with `apt-get install -y redis-server` (or set CK_TEST_REDIS_SERVER)")
        });
    RedisServer(child)
}

fn connect(url: &str) -> Option<redis::Connection> {
    redis::Client::open(url).ok()?.get_connection().ok()
}

async fn wait_up(url: &str) -> redis::Connection {
    for _ in 0..100 {
        if let Some(c) = connect(url) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not come up at {url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_the_latest_candle_and_history_and_a_restart_loses_no_capture() {
    let port = crate::support::free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let mut server = start_redis(port);
    wait_up(&url).await;

    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let config = RedisConfig {
        url: url.clone(),
        history_secs: 60,
        ..RedisConfig::default()
    };
    let sink_stop = tokio_util::sync::CancellationToken::new();
    let runtime = ck_app::runtime::Runtime::new();
    let sink = tokio::spawn(ck_sinks::redis::run_redis_sink(
        config.clone(),
        runtime.feed.clone(),
        sink_stop.clone(),
    ));
    // About six recorded minutes in about eight seconds.
    let fixture = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let (_token, pipeline) = spawn_pipeline_with(
        &settings,
        &runtime,
        &store,
        Source::Replay {
            files: vec![fixture],
            options: ReplayOptions {
                speed: Some(45.0),
                ..ReplayOptions::default()
            },
        },
    );

    // Redis goes away mid-run and comes back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(server);
    tokio::time::sleep(Duration::from_secs(2)).await;
    server = start_redis(port);
    let mut conn = wait_up(&url).await;
    // Pub/sub works after the restart.
    let mut pubsub_conn = wait_up(&url).await;
    let mut pubsub = pubsub_conn.as_pubsub();
    pubsub
        .subscribe("candlekeep.trades.binance.BTC-USDT")
        .expect("subscribe");
    pubsub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let message = pubsub.get_message().expect("a trade on pub/sub");
    let payload: String = message.get_payload().expect("payload");
    let trade: serde_json::Value = serde_json::from_str(&payload).expect("json");
    assert_eq!(trade["exchange"], "binance");
    drop(pubsub);

    let report = pipeline.await.expect("join").expect("pipeline");
    let trades = crate::support::binance_messages(usize::MAX)
        .iter()
        .filter(|m| m.data.contains("@trade\""))
        .count() as u64;
    assert_eq!(
        store.counts().await.expect("counts").trades,
        trades,
        "capture lost nothing while Redis was down"
    );
    assert!(report.writer.written.trades_inserted > 0);

    // The latest 1m candle, in the older database's hash.
    let latest = store
        .latest_candle(Exchange::Binance, &btc(), Interval::M1)
        .await
        .expect("latest")
        .expect("a candle");
    let hash_key = "ws_send_binance;;BTC;;USDT";
    let settled = eventually(Duration::from_secs(10), || {
        let close: Option<String> = redis::cmd("HGET")
            .arg(hash_key)
            .arg("close")
            .query(&mut conn)
            .ok();
        let want = latest.close.to_string();
        async move { close.as_deref() == Some(want.as_str()) }
    })
    .await;
    assert!(settled, "the hash holds the store's latest candle");
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(hash_key)
        .query(&mut conn)
        .expect("hgetall");
    assert_eq!(
        fields["timestamp"],
        latest.open_time.as_millis().to_string()
    );
    assert_eq!(fields["high"], latest.high.to_string());
    assert_eq!(fields["volume"], latest.volume.to_string());
    assert_eq!(fields["base"], "BTC");

    // Price history, scored by unix time, trimmed to the last minute or so.
    let history: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("binance:BTC-USDT:PRICE_HISTORY")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut conn)
        .expect("zrange");
    assert!(history.len() > 10, "{} entries", history.len());
    for (member, score) in &history {
        let (ms, price) = member.split_once(':').expect("ms:price");
        let ms: i64 = ms.parse().expect("ms");
        assert!(
            (ms as f64 / 1000.0 - score).abs() < 1e-3,
            "{member} scored {score}"
        );
        assert!(price.parse::<f64>().is_ok(), "{member}");
    }
    let (first, last) = (history[0].1, history[history.len() - 1].1);
    assert!(
        last - first <= 120.0,
        "trimmed to history_secs (plus a minute of slack): {first}..{last}"
    );
    let last_trade = store
        .last_trade(Exchange::Binance, &btc())
        .await
        .expect("last")
        .expect("some");
    assert!(
        (last - last_trade.ts_exchange.0 as f64 / 1e9).abs() < 1e-3,
        "the newest price is the last trade's"
    );
    let bids: u64 = redis::cmd("ZCARD")
        .arg("binance:BTC-USDT:BID_HISTORY")
        .query(&mut conn)
        .expect("zcard");
    assert!(bids > 0, "bid history kept");

    sink_stop.cancel();
    let stats = sink.await.expect("sink");
    assert!(
        stats.failed > 0,
        "writes failed while Redis was down: {stats:?}"
    );
    assert!(stats.written > 0, "{stats:?}");
    drop(server);
}
