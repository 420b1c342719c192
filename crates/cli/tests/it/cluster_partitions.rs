//! Processors that share the work, on each engine: the multi-process test
//! of `cluster.rs` with a partitioned stream. Two collectors (Binance and
//! Coinbase Advanced Trade, each on its own mock), an API node, and
//! processors sharing six partitions, joined through the real PostgreSQL
//! and either a real Kafka-compatible broker (the tests' own tansu, see
//! `kafka.rs`; `[cluster] bus = "kafka"`, one consumer group) or the real
//! NATS JetStream (`[nats] partitions = 6`, a lease per partition) on
//! loopback. Beside them, a single `run --role all` process captures the
//! same data into SQLite.
//!
//! Three processors start and split the partitions; one that works is
//! killed (SIGKILL) mid-run and a fourth joins; later another that works
//! is stopped (SIGTERM) and hands its partitions on. The candles and the gaps
//! in PostgreSQL equal the single process's, every trade is stored once,
//! the API node serves those candles and pushes a live trade it had from
//! the stream.

use std::collections::BTreeSet;
use std::time::Duration;

use ck_model::{Exchange, Instrument, Interval, Ts};
use ck_store::Store;

use crate::cluster::{
    Running, all_stored, binance_mock, binance_toml, candles, mock, same_candles, source_toml,
    start, total_trades, unfilled_gaps, venue, watch_live_trade,
};
use crate::kafka::broker;
use crate::support::{eventually, postgres_admin, postgres_url};

/// The processes whose positions in the store (`<prefix><pid>-<time>`)
/// show that they read something (a Kafka marker names partitions and
/// offsets, `g<n> <p>=<offset>,…`; a NATS one a stream sequence).
async fn working(store: &dyn Store, prefix: &str) -> BTreeSet<u32> {
    let jobs = store.backfill_jobs().await.expect("jobs");
    jobs.into_iter()
        .filter(|p| p.job.starts_with(prefix))
        .filter(|p| p.cursor.rsplit(' ').next().is_some_and(|t| !t.is_empty()))
        .filter_map(|p| {
            let rest = p.job.rsplit(' ').next()?;
            rest.split('-').next()?.parse().ok()
        })
        .collect()
}

/// Which stream joins the processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Kafka,
    Nats,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_processors_and_api_over_kafka_match_one_process() {
    processors_share_the_work(Engine::Kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_processors_over_nats_match_one_process() {
    processors_share_the_work(Engine::Nats).await;
}

fn nats_url() -> String {
    std::env::var("CK_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn processors_share_the_work(engine: Engine) {
    let tag = format!(
        "ck{}{}",
        if engine == Engine::Kafka { "k" } else { "n" },
        std::process::id()
    );
    let pg = postgres_admin(&format!(
        "DROP SCHEMA IF EXISTS {tag} CASCADE; CREATE SCHEMA {tag}"
    ))
    .await;
    let store_url = format!("{}?options=-csearch_path%3D{tag}", postgres_url());

    let binance_messages = crate::support::binance_messages(usize::MAX);
    let coinbase = venue(
        Exchange::Coinbase,
        "coinbase",
        "cryptofeed/COINBASE.jsonl.zst",
    );
    // Slower than `cluster.rs`: a kill, a rebalance and a clean stop fit in.
    let speed = 10.0;
    let at = Ts::now();
    let binance_mock = |at| binance_mock(&binance_messages, at, speed);
    let dir = tempfile::tempdir().expect("dir");
    let mut cluster_env = vec![("CANDLEKEEP_STORE", store_url.clone())];
    let (_kafka, js, positions) = match engine {
        Engine::Kafka => {
            let kafka = broker();
            cluster_env.extend([
                ("CANDLEKEEP_CLUSTER__BUS", "kafka".to_owned()),
                ("CANDLEKEEP_CLUSTER__BROKERS", kafka.addr.clone()),
                ("CANDLEKEEP_CLUSTER__TOPIC_PREFIX", tag.clone()),
                ("CANDLEKEEP_CLUSTER__PARTITIONS", "6".to_owned()),
                ("CANDLEKEEP_CLUSTER__GROUP", format!("{tag}-processors")),
                // The killed processor's partitions move this long after the kill.
                ("CANDLEKEEP_CLUSTER__SESSION_TIMEOUT_SECS", "6".to_owned()),
            ]);
            (
                Some(kafka),
                None,
                format!("kafka {tag}.events {tag}-processors "),
            )
        }
        Engine::Nats => {
            let nats = async_nats::connect(nats_url()).await.unwrap_or_else(|e| {
                panic!(
                    "NATS is unreachable at {}: {e}. Start it with \
                     `nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server &`",
                    nats_url()
                )
            });
            let js = async_nats::jetstream::new(nats);
            let stream = tag.to_uppercase();
            let _ = js.delete_stream(&stream).await;
            let _ = js.delete_key_value(format!("{stream}_leases")).await;
            cluster_env.extend([
                ("CANDLEKEEP_NATS__URL", nats_url()),
                ("CANDLEKEEP_NATS__STREAM", stream.clone()),
                ("CANDLEKEEP_NATS__SUBJECT_PREFIX", tag.clone()),
                ("CANDLEKEEP_NATS__PARTITIONS", "6".to_owned()),
                // What the killed processor took comes back after this.
                ("CANDLEKEEP_NATS__ACK_WAIT_SECS", "3".to_owned()),
                // Its partitions' leases lapse this long after the kill.
                ("CANDLEKEEP_NATS__LEASE_SECS", "3".to_owned()),
            ]);
            (
                None,
                Some((js, stream.clone())),
                format!("nats {stream} processor-p"),
            )
        }
    };

    let (bn1, cb1) = (binance_mock(at).await, mock(&coinbase, at, speed).await);
    let binance_trades = bn1.trades("BTCUSDT").len();
    let expected = (binance_trades + coinbase.trades) as u64;
    assert!(
        binance_trades > 1_000 && coinbase.trades > 100 && coinbase.instruments.len() > 1,
        "recordings hold trades: {binance_trades} and {} ({} instruments)",
        coinbase.trades,
        coinbase.instruments.len()
    );
    let single = start(
        dir.path(),
        "single",
        &(binance_toml(&bn1) + &source_toml(&coinbase, &cb1)),
        &[],
        &["--listen", "127.0.0.1:0", "--role", "all"],
    );

    // The shared store exists before the cluster starts.
    let settings = crate::support::settings(dir.path());
    let pg_store = ck_app::open_location(
        &ck_app::config::StoreLocation::Postgres(store_url.clone()),
        settings.durability,
    )
    .await
    .expect("the PostgreSQL store opens");

    let (bn2, cb2) = (binance_mock(at).await, mock(&coinbase, at, speed).await);
    let api_listen = format!("127.0.0.1:{}", crate::support::free_port());
    let processor = |name: &str| {
        start(
            dir.path(),
            name,
            "sources = []\n",
            &cluster_env,
            &["--listen", "127.0.0.1:0", "--role", "processor"],
        )
    };
    let mut processors: Vec<Running> = ["processor-1", "processor-2", "processor-3"]
        .into_iter()
        .map(processor)
        .collect();
    let _api = start(
        dir.path(),
        "api",
        "sources = []\n",
        &cluster_env,
        &["--listen", &api_listen, "--role", "api"],
    );
    // The processors settle into the group before data flows.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let _collector_a = start(
        dir.path(),
        "collector-a",
        &binance_toml(&bn2),
        &cluster_env,
        &["--listen", "127.0.0.1:0", "--role", "collector"],
    );
    let _collector_b = start(
        dir.path(),
        "collector-b",
        &source_toml(&coinbase, &cb2),
        &cluster_env,
        &["--listen", "127.0.0.1:0", "--role", "collector"],
    );

    // The API node pushes a live trade it had from Kafka.
    let live_trade = watch_live_trade(&api_listen);

    // The API node is ready: processors report over Kafka, and it lists
    // the collectors' connectors, which it knows only from their notes.
    let ready = eventually(Duration::from_secs(60), || {
        let api = api_listen.clone();
        async move {
            let (health, connectors) = tokio::task::spawn_blocking(move || {
                if std::net::TcpStream::connect(&api).is_err() {
                    return (String::new(), String::new());
                }
                (
                    crate::support::http_get(&api, "/health"),
                    crate::support::http_get(&api, "/api/v1/connectors"),
                )
            })
            .await
            .unwrap_or_default();
            health.starts_with("HTTP/1.1 200")
                && !health.contains("\"processors\":0")
                && connectors.contains("\"exchange\":\"binance\"")
                && connectors.contains("\"exchange\":\"coinbase\"")
        }
    })
    .await;
    assert!(
        ready,
        "the API node is ready and lists both collectors' connectors"
    );

    // Mid-run, the work is shared: kill one processor, add another.
    let third = expected / 3;
    let reached = eventually(Duration::from_secs(90), || {
        let s = pg_store.clone();
        async move { total_trades(s.as_ref()).await >= third }
    })
    .await;
    assert!(reached, "the processors stored a third of the trades");
    let sharing = working(pg_store.as_ref(), &positions).await;
    assert!(
        sharing.len() >= 2,
        "more than one processor reads partitions: {sharing:?}"
    );
    // A working processor goes: its position names its process id.
    let pid = *sharing.iter().next().expect("one works");
    let victim = processors
        .iter_mut()
        .find(|p| p.0.id() == pid)
        .expect("the working processor is one of ours");
    victim.0.kill().expect("SIGKILL a processor");
    victim.0.wait().expect("reaped");
    let stored_at_kill = total_trades(pg_store.as_ref()).await;
    processors.push(processor("processor-4"));

    // Later, a working processor stops cleanly: it hands its partitions on
    // while data flows.
    let two_thirds = expected * 2 / 3;
    let reached = eventually(Duration::from_secs(90), || {
        let s = pg_store.clone();
        async move { total_trades(s.as_ref()).await >= two_thirds }
    })
    .await;
    assert!(reached, "the processors stored two thirds of the trades");
    let sharing = working(pg_store.as_ref(), &positions).await;
    let leaving = processors
        .iter_mut()
        .find(|p| p.0.id() != pid && sharing.contains(&p.0.id()))
        .expect("another processor works");
    let status = crate::support::signal_and_wait(&mut leaving.0, "TERM");
    assert!(
        status.success(),
        "SIGTERM stops a processor cleanly: {status}"
    );
    let stored_at_stop = total_trades(pg_store.as_ref()).await;

    let single_store = all_stored(
        &pg_store,
        &dir.path().join("single"),
        || [&bn1, &bn2].iter().all(|m| m.finished()) && [&cb1, &cb2].iter().all(|m| m.finished()),
        expected,
        Duration::from_secs(150),
        &format!("processor killed at {stored_at_kill}"),
    )
    .await;
    assert!(
        stored_at_kill < stored_at_stop && stored_at_stop < expected,
        "the kill ({stored_at_kill}) and the stop ({stored_at_stop}) came mid-run"
    );

    // Candles settle a moment after the trades: compare until equal.
    let mut series: Vec<(Exchange, Instrument)> = coinbase
        .instruments
        .iter()
        .map(|i| (Exchange::Coinbase, i.clone()))
        .collect();
    series.push((Exchange::Binance, crate::support::btc()));
    if let Err(difference) = same_candles(&pg_store, &single_store, &series).await {
        panic!("candles differ: {difference}");
    }

    // Gaps still missing data are the single process's too (a gap opened
    // for trades redelivered after the kill is filled when they arrive).
    assert_eq!(
        unfilled_gaps(pg_store.as_ref()).await,
        unfilled_gaps(single_store.as_ref()).await,
        "gaps"
    );

    // The API node serves the candles of the shared store.
    let response = crate::support::http_get(
        &api_listen,
        "/api/v1/candles?exchange=binance&instrument=BTC-USDT&interval=1m&limit=10000",
    );
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let served: serde_json::Value = serde_json::from_str(body).expect("json");
    let served_count = served["candles"]
        .as_array()
        .or(served.as_array())
        .map_or(0, Vec::len);
    let stored_count = candles(
        single_store.as_ref(),
        Exchange::Binance,
        &crate::support::btc(),
        Interval::M1,
    )
    .await
    .len();
    assert!(stored_count > 3, "{stored_count} candles");
    assert_eq!(served_count, stored_count, "the API node serves them");
    let live = tokio::time::timeout(Duration::from_secs(5), live_trade).await;
    assert!(
        matches!(live, Ok(Ok(Some(_)))),
        "the API node pushed a live trade it got over {engine:?}: {live:?}"
    );

    drop(single);
    if let Some((js, stream)) = js {
        let _ = js.delete_stream(&stream).await;
        let _ = js.delete_key_value(format!("{stream}_leases")).await;
    }
    pg.batch_execute(&format!("DROP SCHEMA IF EXISTS {tag} CASCADE"))
        .await
        .expect("drop schema");
}
