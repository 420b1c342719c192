//! Scale-out on one machine: two collectors (Binance and Coinbase Advanced
//! Trade, each replayed by its own mock), one processor and one API node, joined
//! through the real NATS JetStream server and the real PostgreSQL on
//! loopback. Beside them, a single `run --role all` process captures the same
//! replayed data into SQLite. Two processors share the consumer: one works,
//! the other is a hot standby (a lease in NATS KV); the working one is
//! killed (SIGKILL) mid-run and the standby takes over.
//!
//! The candles in PostgreSQL, and those the API node serves, equal the
//! single process's; every trade is stored once. (The kill lands where the
//! processor holds messages it has not acknowledged: they come back after
//! the ack wait, to the new processor.)
//!
//! `CK_TEST_POSTGRES_URL` and `CK_TEST_NATS_URL` override the servers
//! (defaults: `postgres://postgres@127.0.0.1:5432/test`, `nats://127.0.0.1:4222`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ck_bus::{Event, Origin, RawMessage};
use ck_mock::venue::{MockVenue, VenueOptions};
use ck_model::{Candle, Exchange, Instrument, Interval, Ts};
use ck_store::{CandleSource, RangeQuery, Store};

use crate::support::{eventually, postgres_admin, postgres_url, recording};

pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nats_url() -> String {
    std::env::var("CK_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A venue recording: its frames, the instruments it trades, its trade count.
pub(crate) struct Venue {
    exchange: Exchange,
    kind: &'static str,
    messages: Vec<RawMessage>,
    pub(crate) instruments: Vec<Instrument>,
    pub(crate) trades: usize,
}

pub(crate) fn venue(exchange: Exchange, kind: &'static str, file: &str) -> Venue {
    let messages = recording(file);
    let mut normalizer = ck_sources::normalize::Normalizer::new();
    let mut events = Vec::new();
    for m in messages.iter().filter(|m| m.origin == Origin::Ws) {
        normalizer.handle(m, &|| "recording".to_owned(), &mut events);
    }
    let mut keys = BTreeSet::new();
    let mut instruments = BTreeSet::new();
    for e in &events {
        match e {
            Event::Trade(t) => {
                keys.insert((t.instrument.clone(), t.trade_id.to_string()));
                instruments.insert(t.instrument.clone());
            }
            Event::Quote(q) => {
                instruments.insert(q.instrument.clone());
            }
            _ => {}
        }
    }
    Venue {
        exchange,
        kind,
        messages,
        instruments: instruments.into_iter().collect(),
        trades: keys.len(),
    }
}

pub(crate) async fn mock(v: &Venue, at: Ts, speed: f64) -> MockVenue {
    MockVenue::start(
        v.exchange,
        &v.messages,
        VenueOptions {
            shift_to: Some(at),
            speed: Some(speed),
            ..VenueOptions::default()
        },
    )
    .await
    .expect("mock")
}

pub(crate) fn source_toml(v: &Venue, mock: &MockVenue) -> String {
    let instruments: Vec<String> = v.instruments.iter().map(|i| format!("\"{i}\"")).collect();
    format!(
        "[[sources]]\nkind = \"{}\"\nws_url = \"{}\"\nrest_url = \"\"\nstale_after_secs = 600\ninstruments = [{}]\n",
        v.kind,
        mock.ws_url(),
        instruments.join(", ")
    )
}

/// Starts `candlekeep run` with this config and extra arguments.
pub(crate) fn start(
    dir: &Path,
    name: &str,
    config: &str,
    env: &[(&str, String)],
    args: &[&str],
) -> Running {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_candlekeep"));
    cmd.arg("--config")
        .arg(&path)
        .arg("run")
        .args(args)
        .env("CANDLEKEEP_DATA_DIR", dir.join(name))
        .env("CANDLEKEEP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running(cmd.spawn().expect("start candlekeep run"))
}

pub(crate) async fn total_trades(store: &dyn Store) -> u64 {
    store.counts().await.map(|c| c.trades).unwrap_or(0)
}

/// Every candle field but the state (closed or revised depends on when a
/// late trade arrived, not on what was traded).
pub(crate) fn values(c: &Candle) -> String {
    format!(
        "{} o={} h={} l={} c={} v={} qv={} vwap={} tb={} n={} ids={:?}-{:?}",
        c.open_time,
        c.open,
        c.high,
        c.low,
        c.close,
        c.volume,
        c.quote_volume,
        c.vwap,
        c.taker_buy_volume,
        c.trades,
        c.first_trade_id,
        c.last_trade_id
    )
}

pub(crate) async fn candles(
    store: &dyn Store,
    e: Exchange,
    i: &Instrument,
    iv: Interval,
) -> Vec<String> {
    let q = RangeQuery {
        exchange: e,
        instrument: i.clone(),
        from: Ts(i64::MIN),
        to: Ts(i64::MAX),
        limit: 1_000_000,
    };
    store
        .candles(&q, iv, CandleSource::Ours)
        .await
        .expect("candles")
        .iter()
        .map(values)
        .collect()
}

/// A Binance mock replaying `messages`, moved to `at`, at `speed`.
pub(crate) async fn binance_mock(
    messages: &[RawMessage],
    at: Ts,
    speed: f64,
) -> ck_mock::binance::MockBinance {
    ck_mock::binance::MockBinance::start(
        messages,
        ck_mock::binance::MockOptions {
            speed: Some(speed),
            shift_to: Some(at),
            ..ck_mock::binance::MockOptions::default()
        },
    )
    .await
    .expect("binance mock")
}

/// The `[[sources]]` of BTC-USDT on a Binance mock.
pub(crate) fn binance_toml(m: &ck_mock::binance::MockBinance) -> String {
    format!(
        "[[sources]]\nkind = \"binance\"\ninstruments = [\"BTC-USDT\"]\nws_url = \"{}\"\nrest_url = \"\"\nstale_after_secs = 600\n",
        m.ws_url()
    )
}

/// A WebSocket client of the API node at `api_listen`, subscribed to
/// Binance BTC-USDT trades (asking again while it is refused): the first
/// trade pushed.
pub(crate) fn watch_live_trade(api_listen: &str) -> tokio::task::JoinHandle<Option<String>> {
    let url = format!("ws://{api_listen}/api/v1/ws");
    tokio::spawn(async move {
        use futures_util::{SinkExt as _, StreamExt as _};
        use tokio_tungstenite::tungstenite::Message;
        let mut ws = None;
        for _ in 0..100 {
            if let Ok((s, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
                ws = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut ws = ws?;
        let sub =
            r#"{"op":"subscribe","channel":"trades","exchange":"binance","instrument":"BTC-USDT"}"#;
        ws.send(Message::Text(sub.into())).await.ok()?;
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                if t.contains("\"type\":\"trade\"") {
                    return Some(t.to_string());
                }
                // Refused until a collector reports that it captures the
                // instrument (or it is stored): ask again.
                if t.contains("\"type\":\"error\"") {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    ws.send(Message::Text(sub.into())).await.ok()?;
                }
            }
        }
        None
    })
}

/// Waits up to 30 s for the 1m and 1h candles of `series` to be the same
/// in both stores (candles settle a moment after the trades); the last
/// difference if they never are.
pub(crate) async fn same_candles(
    a: &std::sync::Arc<dyn Store>,
    b: &std::sync::Arc<dyn Store>,
    series: &[(Exchange, Instrument)],
) -> Result<(), String> {
    let last_difference = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let same = eventually(Duration::from_secs(30), || {
        let (a, b, series) = (a.clone(), b.clone(), series.to_vec());
        let diff = last_difference.clone();
        async move {
            for (e, i) in &series {
                for iv in [Interval::M1, Interval::H1] {
                    let (x, y) = (
                        candles(a.as_ref(), *e, i, iv).await,
                        candles(b.as_ref(), *e, i, iv).await,
                    );
                    if x != y {
                        *diff.lock().expect("lock") =
                            format!("{e} {i} {iv}: cluster {x:#?}\nsingle {y:#?}");
                        return false;
                    }
                }
            }
            true
        }
    })
    .await;
    if same {
        Ok(())
    } else {
        Err(last_difference.lock().expect("lock").clone())
    }
}

/// The gaps of `store` that still miss data, sorted. (Trades redelivered
/// after a kill may come after newer ones: a gap opened for them is filled
/// when they arrive.)
pub(crate) async fn unfilled_gaps(store: &dyn Store) -> Vec<String> {
    let mut g: Vec<String> = store
        .gaps(None, None, 10_000)
        .await
        .expect("gaps")
        .iter()
        .filter(|g| g.state != ck_model::GapState::Filled)
        .map(|g| {
            format!(
                "{} {} {}..{} {:?}..{:?} {:?}",
                g.exchange,
                g.instrument,
                g.from_ts,
                g.to_ts,
                g.first_missing_id,
                g.last_missing_id,
                g.state
            )
        })
        .collect();
    g.sort();
    g
}

/// Waits up to `limit` for the mocks to finish and both stores to hold
/// `expected` trades; panics naming the counts (and `context`) if they
/// never do. Returns the single process's store.
pub(crate) async fn all_stored(
    cluster: &std::sync::Arc<dyn Store>,
    single_dir: &Path,
    finished: impl Fn() -> bool,
    expected: u64,
    limit: Duration,
    context: &str,
) -> std::sync::Arc<dyn Store> {
    let single = ck_app::open_location(
        &ck_app::config::StoreLocation::Sqlite(single_dir.join("candlekeep.sqlite")),
        crate::support::settings(single_dir).durability,
    )
    .await
    .expect("single store");
    let all_in = eventually(limit, || {
        let (a, b) = (cluster.clone(), single.clone());
        let done = finished();
        async move {
            done && total_trades(a.as_ref()).await == expected
                && total_trades(b.as_ref()).await == expected
        }
    })
    .await;
    assert!(
        all_in,
        "every recorded trade stored once in both: cluster {}, single {}, expected {expected} ({context})",
        total_trades(cluster.as_ref()).await,
        total_trades(single.as_ref()).await
    );
    single
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_processor_and_api_over_nats_and_postgres_match_one_process() {
    let tag = format!("ckt{}", std::process::id());
    // PostgreSQL: a schema of this test's own, named in the URL's search path.
    let pg = postgres_admin(&format!(
        "DROP SCHEMA IF EXISTS {tag} CASCADE; CREATE SCHEMA {tag}"
    ))
    .await;
    let store_url = format!("{}?options=-csearch_path%3D{tag}", postgres_url());
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

    // Binance: about six recorded minutes of BTC-USDT; Coinbase Advanced
    // Trade: its recording. Recorded times are moved to one start time for
    // both runs, so they see the same data; Binance's six minutes take
    // about twenty seconds.
    let binance_messages = crate::support::binance_messages(usize::MAX);
    let coinbase = venue(
        Exchange::Coinbase,
        "coinbase",
        "cryptofeed/COINBASE.jsonl.zst",
    );
    let speed = 20.0;
    let at = Ts::now();
    let binance_mock = |at| binance_mock(&binance_messages, at, speed);
    let dir = tempfile::tempdir().expect("dir");
    let cluster_env = vec![
        ("CANDLEKEEP_STORE", store_url.clone()),
        ("CANDLEKEEP_NATS__URL", nats_url()),
        ("CANDLEKEEP_NATS__STREAM", stream.clone()),
        ("CANDLEKEEP_NATS__SUBJECT_PREFIX", tag.clone()),
        // What the killed processor took comes back after this.
        ("CANDLEKEEP_NATS__ACK_WAIT_SECS", "3".to_owned()),
        // The standby takes over this long after the kill.
        ("CANDLEKEEP_NATS__LEASE_SECS", "3".to_owned()),
    ];

    // The single process, on its own mocks.
    let (bn1, cb1) = (binance_mock(at).await, mock(&coinbase, at, speed).await);
    let binance_trades = bn1.trades("BTCUSDT").len();
    assert!(
        binance_trades > 1_000 && coinbase.trades > 100,
        "recordings hold trades: {binance_trades} and {}",
        coinbase.trades
    );
    let expected = (binance_trades + coinbase.trades) as u64;
    let single = start(
        dir.path(),
        "single",
        &(binance_toml(&bn1) + &source_toml(&coinbase, &cb1)),
        &[],
        &["--listen", "127.0.0.1:0", "--role", "all"],
    );

    // The shared store, opened (and so created) before the cluster starts,
    // holding the position of a processor of this consumer that was killed
    // two days ago: the processor forgets it when it starts.
    let settings = crate::support::settings(dir.path());
    let pg_store = ck_app::open_location(
        &ck_app::config::StoreLocation::Postgres(store_url.clone()),
        settings.durability,
    )
    .await
    .expect("the PostgreSQL store opens");
    let positions = format!("nats {stream} processor ");
    let abandoned = ck_model::BackfillProgress {
        job: format!("{positions}1-1"),
        cursor: "12".into(),
        done: false,
        updated_at: Ts(Ts::now().0 - Ts::from_secs(2 * 24 * 3600).0),
    };
    pg_store
        .write(std::sync::Arc::new(ck_store::WriteBatch {
            progress: vec![abandoned.clone()],
            ..ck_store::WriteBatch::default()
        }))
        .await
        .expect("an abandoned position");

    // The cluster, on mocks of its own serving the same data.
    let (bn2, cb2) = (binance_mock(at).await, mock(&coinbase, at, speed).await);
    let api_port = crate::support::free_port();
    let api_listen = format!("127.0.0.1:{api_port}");
    let mut processor = start(
        dir.path(),
        "processor",
        "sources = []\n",
        &cluster_env,
        &["--listen", "127.0.0.1:0", "--role", "processor"],
    );
    // The first processor holds the lease before the second starts.
    let first_holds = eventually(Duration::from_secs(30), || {
        let (js, bucket) = (js.clone(), format!("{stream}_leases"));
        async move {
            match js.get_key_value(bucket).await {
                Ok(kv) => kv.get("processor").await.ok().flatten().is_some(),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(first_holds, "the first processor took the lease");
    let mut standby = start(
        dir.path(),
        "standby",
        "sources = []\n",
        &cluster_env,
        &["--listen", "127.0.0.1:0", "--role", "processor"],
    );
    let _api = start(
        dir.path(),
        "api",
        "sources = []\n",
        &cluster_env,
        &["--listen", &api_listen, "--role", "api"],
    );
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

    // The API node pushes live updates from NATS to a WebSocket client.
    let live_trade = watch_live_trade(&api_listen);

    // The API node shows the collectors' connectors, which it has only
    // from their reports over NATS.
    let shown = eventually(Duration::from_secs(30), || {
        let api = api_listen.clone();
        async move {
            let response = tokio::task::spawn_blocking(move || {
                std::net::TcpStream::connect(&api)
                    .is_ok()
                    .then(|| crate::support::http_get(&api, "/api/v1/connectors"))
            })
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
            let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let Ok(list) = serde_json::from_str::<Vec<serde_json::Value>>(body) else {
                return false;
            };
            ["binance", "coinbase"].iter().all(|e| {
                list.iter()
                    .any(|c| c["exchange"] == *e && c["state"] == "connected")
            })
        }
    })
    .await;
    assert!(
        shown,
        "the API node lists both collectors' connectors as connected"
    );

    // The API node is ready: a processor reports, the connectors are up.
    let ready = eventually(Duration::from_secs(30), || {
        let api = api_listen.clone();
        async move {
            let response =
                tokio::task::spawn_blocking(move || crate::support::http_get(&api, "/health"))
                    .await
                    .unwrap_or_default();
            response.starts_with("HTTP/1.1 200") && response.contains("\"processors\":1")
        }
    })
    .await;
    assert!(ready, "the API node's /health is ok with one processor");

    // Kill the working processor mid-run: the standby takes over.
    let third = expected / 3;
    let reached = eventually(Duration::from_secs(90), || {
        let s = pg_store.clone();
        async move { total_trades(s.as_ref()).await >= third }
    })
    .await;
    assert!(reached, "the processor stored a third of the trades");
    let working: Vec<String> = pg_store
        .backfill_jobs()
        .await
        .expect("jobs")
        .into_iter()
        .map(|p| p.job)
        .filter(|j| j.starts_with(&positions))
        .collect();
    assert_eq!(
        working.len(),
        1,
        "one processor works, the standby waits: {working:?}"
    );
    processor.0.kill().expect("SIGKILL the processor");
    processor.0.wait().expect("reaped");
    let stored_at_kill = total_trades(pg_store.as_ref()).await;

    let single_store = all_stored(
        &pg_store,
        &dir.path().join("single"),
        || [&bn1, &bn2].iter().all(|m| m.finished()) && [&cb1, &cb2].iter().all(|m| m.finished()),
        expected,
        Duration::from_secs(120),
        &format!("processor killed at {stored_at_kill}"),
    )
    .await;
    assert!(stored_at_kill < expected, "the kill came mid-run");

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
    let one_minute: usize = {
        let mut n = 0;
        for (e, i) in &series {
            n += candles(single_store.as_ref(), *e, i, Interval::M1)
                .await
                .len();
        }
        n
    };
    assert!(one_minute > 10, "{one_minute} one-minute candles compared");

    // The API node serves the same candles from the shared store.
    let (e, i) = (Exchange::Binance, crate::support::btc());
    let response = crate::support::http_get(
        &api_listen,
        &format!(
            "/api/v1/candles?exchange={}&instrument={i}&interval=1m&limit=10000",
            e.as_str()
        ),
    );
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let served: serde_json::Value = serde_json::from_str(body).expect("json");
    let served_closes: Vec<String> = served["candles"]
        .as_array()
        .or(served.as_array())
        .expect("a candle list")
        .iter()
        .map(|c| c["close"].as_str().unwrap_or_default().to_owned())
        .collect();
    let stored_closes: Vec<String> = {
        let q = RangeQuery {
            exchange: e,
            instrument: i.clone(),
            from: Ts(i64::MIN),
            to: Ts(i64::MAX),
            limit: 10_000,
        };
        single_store
            .candles(&q, Interval::M1, CandleSource::Ours)
            .await
            .expect("candles")
            .iter()
            .map(|c| c.close.to_string())
            .collect()
    };
    assert_eq!(served_closes, stored_closes, "the API node serves them");
    let live = tokio::time::timeout(Duration::from_secs(5), live_trade).await;
    assert!(
        matches!(live, Ok(Ok(Some(_)))),
        "the API node pushed a live trade it got over NATS: {live:?}"
    );

    // Gaps too are those of the single process. Trades redelivered after
    // the kill may come after newer ones: a gap opened for them is filled
    // when they arrive (and every trade is stored once, above), so only
    // gaps that still miss data are compared.
    assert_eq!(
        unfilled_gaps(pg_store.as_ref()).await,
        unfilled_gaps(single_store.as_ref()).await,
        "gaps"
    );

    // Positions: the abandoned one is forgotten, the killed processor's
    // stays (it is not a day old), and the standby that took over forgets
    // its own when SIGTERM stops it cleanly.
    let kept = |store: std::sync::Arc<dyn Store>| {
        let positions = positions.clone();
        async move {
            let jobs = store.backfill_jobs().await.expect("jobs");
            jobs.into_iter()
                .map(|p| p.job)
                .filter(|j| j.starts_with(&positions))
                .collect::<Vec<_>>()
        }
    };
    let before = kept(pg_store.clone()).await;
    assert!(!before.contains(&abandoned.job), "{before:?}");
    assert_eq!(
        before.len(),
        2,
        "the killed and the running processor's: {before:?}"
    );
    let status = crate::support::signal_and_wait(&mut standby.0, "TERM");
    assert!(
        status.success(),
        "SIGTERM stops the processor cleanly: {status}"
    );
    let after = kept(pg_store.clone()).await;
    assert_eq!(after.len(), 1, "only the killed processor's: {after:?}");
    assert!(before.contains(&after[0]), "{before:?} {after:?}");

    drop(single);
    let _ = js.delete_stream(&stream).await;
    let _ = js.delete_key_value(format!("{stream}_leases")).await;
    pg.batch_execute(&format!("DROP SCHEMA IF EXISTS {tag} CASCADE"))
        .await
        .expect("drop schema");
}
