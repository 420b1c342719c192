//! WebSocket push against a real server on port 0, fed by a paced replay of
//! the real Binance fixture: subscribe, snapshot, live updates; a fast client
//! gets every trade, a slow one gets a `lagged` notice; a malformed message
//! gets an error and the connection stays open.

use std::time::Duration;

use ck_app::pipeline::ReplayOptions;
use ck_app::pipeline::Source;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr, recv_buffer: Option<u32>) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(n) = recv_buffer {
        socket.set_recv_buffer_size(n).expect("buffer size");
    }
    let stream = socket.connect(addr).await.expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/api/v1/ws"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .expect("upgrade");
    ws
}

async fn next_json(ws: &mut Client) -> serde_json::Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return serde_json::from_str(t.as_str()).expect("json");
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no message: {other:?}"),
        }
    }
}

async fn send(ws: &mut Client, v: &str) {
    ws.send(Message::Text(v.to_owned().into()))
        .await
        .expect("send");
}

/// A server on port 0 over a fresh store, with WebSocket queues of
/// `ws_queue` batches and `linger`; then its settings, store, address and
/// the token that stops it.
/// A process's settings and the handles its stages share.
struct Process {
    settings: ck_app::config::Settings,
    runtime: ck_app::runtime::Runtime,
}

async fn serve_fresh(
    dir: &std::path::Path,
    ws_queue: usize,
    linger: Duration,
) -> (
    Process,
    std::sync::Arc<dyn ck_store::Store>,
    std::net::SocketAddr,
    tokio_util::sync::CancellationToken,
) {
    let env = vec![
        ("CANDLEKEEP_DATA_DIR".to_owned(), dir.display().to_string()),
        ("CANDLEKEEP_API__WS_QUEUE".to_owned(), ws_queue.to_string()),
        (
            "CANDLEKEEP_API__WS_HEARTBEAT_SECS".to_owned(),
            "1".to_owned(),
        ),
    ];
    let settings = ck_app::config::AppConfig::load(None, env)
        .expect("config")
        .settings()
        .expect("settings");
    let store = ck_app::open_store(&settings).await.expect("store");
    let runtime = ck_app::runtime::Runtime::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = ck_api::ApiState::new(
        store.clone(),
        runtime.connectors.clone(),
        runtime.feed.clone(),
        Duration::from_secs(1),
    )
    .with_ws_queue(settings.config.api.ws_queue)
    .with_ws_linger(linger)
    // As a process capturing Binance BTC-USDT: subscriptions are taken
    // before anything is stored.
    .with_captured([(
        ck_model::Exchange::Binance,
        ck_model::Instrument::parse("BTC-USDT").expect("instrument"),
    )]);
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(ck_api::serve(
        listener,
        state,
        stop.clone().cancelled_owned(),
    ));
    (Process { settings, runtime }, store, addr, stop)
}

/// Replays the real Binance fixture through the pipeline at `speed`.
fn replay_binance(
    process: &Process,
    store: &std::sync::Arc<dyn ck_store::Store>,
    speed: f64,
) -> tokio::task::JoinHandle<Result<ck_app::pipeline::PipelineReport, String>> {
    let file = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let (settings, runtime, store) = (
        process.settings.clone(),
        process.runtime.clone(),
        store.clone(),
    );
    tokio::spawn(async move {
        ck_app::pipeline::run_pipeline_with(
            &settings,
            &runtime,
            store,
            vec![Source::Replay {
                files: vec![file],
                options: ReplayOptions {
                    speed: Some(speed),
                    ..ReplayOptions::default()
                },
            }],
            None,
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .map_err(|e| format!("{e:#}"))
    })
}

/// A client cannot make the server hold what nobody asked for: instruments
/// nobody captures or stores, thousands in one request, a huge frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_bounded_and_unknown_instruments_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let (process, _store, addr, stop) = serve_fresh(dir.path(), 4096, Duration::ZERO).await;
    let mut ws = connect(addr, None).await;
    // What a collector of a cluster reports it captures may be asked for
    // before any of it is stored.
    let eth = ck_model::Instrument::parse("ETH-USDT").expect("instrument");
    process.runtime.connectors.report(
        "collector-1",
        ck_bus::connectors::ConnectorSnapshot {
            instruments: vec![eth],
            ..ck_bus::connectors::ConnectorStatus::new(ck_model::Exchange::Binance).snapshot()
        },
    );
    send(
        &mut ws,
        r#"{"op":"subscribe","channel":"trades","exchange":"binance","instrument":"ETH-USDT"}"#,
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    send(
        &mut ws,
        r#"{"op":"subscribe","channel":"trades","exchange":"binance","instrument":"NOPE-USDT"}"#,
    )
    .await;
    let err = next_json(&mut ws).await;
    assert_eq!(err["type"], "error", "{err}");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no binance NOPE-USDT here") && message.contains("/api/v1/instruments"),
        "{message}"
    );
    // Too many instruments in one request.
    let many: Vec<String> = (0..1_000).map(|i| format!("\"C{i}-USDT\"")).collect();
    send(
        &mut ws,
        &format!(
            r#"{{"op":"subscribe","channel":"trades","exchange":"binance","instruments":[{}]}}"#,
            many.join(",")
        ),
    )
    .await;
    let err = next_json(&mut ws).await;
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 256"),
        "{err}"
    );
    // The connection is still usable for what is captured.
    send(
        &mut ws,
        r#"{"op":"subscribe","channel":"trades","exchange":"binance","instrument":"BTC-USDT"}"#,
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    // At most 1,024 subscriptions a client: a collector reports 1,100
    // instruments; four requests of 256 are taken, a fifth is refused.
    let many: Vec<ck_model::Instrument> = (0..1_100)
        .map(|i| ck_model::Instrument::parse(&format!("C{i}-USDT")).expect("instrument"))
        .collect();
    process.runtime.connectors.report(
        "collector-2",
        ck_bus::connectors::ConnectorSnapshot {
            instruments: many.clone(),
            ..ck_bus::connectors::ConnectorStatus::new(ck_model::Exchange::Binance).snapshot()
        },
    );
    let mut taken = connect(addr, None).await;
    for chunk in many.chunks(256).take(4) {
        let names: Vec<String> = chunk.iter().map(|i| format!("\"{i}\"")).collect();
        send(
            &mut taken,
            &format!(
                r#"{{"op":"subscribe","channel":"trades","exchange":"binance","instruments":[{}]}}"#,
                names.join(",")
            ),
        )
        .await;
        for _ in 0..chunk.len() * 2 {
            let m = next_json(&mut taken).await;
            assert!(m["type"] == "subscribed" || m["type"] == "snapshot", "{m}");
        }
    }
    send(
        &mut taken,
        r#"{"op":"subscribe","channel":"trades","exchange":"binance","instrument":"C1099-USDT"}"#,
    )
    .await;
    let err = next_json(&mut taken).await;
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("may hold 1024 subscriptions"),
        "{err}"
    );
    // A frame over the limit ends the connection, without the server
    // reading it whole.
    let huge = format!(
        r#"{{"op":"subscribe","channel":"trades","exchange":"binance","instruments":["{}"]}}"#,
        "X".repeat(200 * 1024)
    );
    use futures_util::{SinkExt as _, StreamExt as _};
    let _ = ws
        .send(tokio_tungstenite::tungstenite::Message::Text(huge.into()))
        .await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return true,
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the server closes on an oversized frame");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_snapshots_and_live_updates_and_slow_ones_lag() {
    let dir = tempfile::tempdir().expect("dir");
    let (process, store, addr, stop) = serve_fresh(dir.path(), 4096, Duration::ZERO).await;

    let mut fast = connect(addr, None).await;
    // A malformed message: an error reply, and the connection stays usable.
    send(&mut fast, "{not json").await;
    let err = next_json(&mut fast).await;
    assert_eq!(err["type"], "error", "{err}");
    send(
        &mut fast,
        r#"{"op":"subscribe","channel":"trades","exchange":"binance","instrument":"BTC-USDT"}"#,
    )
    .await;
    send(&mut fast, r#"{"op":"subscribe","channel":"candles","exchange":"binance","instruments":["BTC-USDT"],"interval":"1m"}"#).await;
    let mut acks = Vec::new();
    for _ in 0..4 {
        acks.push(next_json(&mut fast).await);
    }
    assert_eq!(acks[0]["type"], "subscribed");
    assert_eq!(acks[1]["type"], "snapshot", "a snapshot first: {:?}", acks);
    assert_eq!(
        acks[1]["data"],
        serde_json::Value::Null,
        "nothing stored yet"
    );
    assert_eq!(
        (acks[2]["type"].as_str(), acks[2]["interval"].as_str()),
        (Some("subscribed"), Some("1m"))
    );

    // The older OHLCV database's subscribe message.
    let mut legacy = connect(addr, None).await;
    send(&mut legacy, r#"{"event_type":"subscribe","data_type":"ohlcv","exchange":"binance","base_id":"BTC","quote_id":"USDT","interval":"1m"}"#).await;
    let ack = next_json(&mut legacy).await;
    assert_eq!(
        (
            ack["type"].as_str(),
            ack["channel"].as_str(),
            ack["instrument"].as_str()
        ),
        (Some("subscribed"), Some("candles"), Some("BTC-USDT"))
    );

    // A slow client with a tiny socket buffer that does not read for a while.
    let mut slow = connect(addr, Some(4096)).await;
    send(
        &mut slow,
        r#"{"op":"subscribe","channel":"tickers","exchange":"binance","instrument":"BTC-USDT"}"#,
    )
    .await;
    send(
        &mut slow,
        r#"{"op":"subscribe","channel":"trades","exchange":"binance","instrument":"BTC-USDT"}"#,
    )
    .await;

    // Paced so that the fast client keeps up even on a loaded machine (CI
    // compiles beside it); the slow one still falls far behind.
    let replay = replay_binance(&process, &store, 60.0);

    // The fast client reads everything as it comes (on a task of its own).
    let reader = tokio::spawn(async move {
        let mut trades = Vec::new();
        let mut candle_states = std::collections::BTreeSet::new();
        let mut heartbeats = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while trades.len() < 9_757 && tokio::time::Instant::now() < deadline {
            let m = next_json(&mut fast).await;
            match m["type"].as_str() {
                Some("trade") => trades.push(
                    m["trade_id"]
                        .as_str()
                        .and_then(|s| s.parse::<u64>().ok())
                        .expect("the id, as a string"),
                ),
                Some("candle") => {
                    assert_eq!(m["interval"], "1m");
                    candle_states.insert(m["state"].as_str().expect("state").to_owned());
                }
                Some("heartbeat") => heartbeats += 1,
                Some("lagged") => panic!("the fast client lagged: {m}"),
                _ => {}
            }
        }
        (trades, candle_states, heartbeats)
    });
    let (trades, candle_states, heartbeats) = reader.await.expect("fast reader");
    replay.await.expect("join").expect("replay");
    assert_eq!(trades.len(), 9_757, "every trade reached the fast client");
    assert!(
        trades.windows(2).all(|w| w[1] == w[0] + 1),
        "every trade, in order, once"
    );
    assert!(
        candle_states.contains("closed") && candle_states.contains("provisional"),
        "{candle_states:?}"
    );
    assert!(heartbeats >= 1, "heartbeats while streaming");

    // The slow client: behind by more than its queue, it learns how much it lost.
    // It reads now: the notice, what is left of its queue, then heartbeats.
    let mut lagged = 0u64;
    let mut slow_trades = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let v = next_json(&mut slow).await;
        match v["type"].as_str() {
            Some("lagged") => lagged += v["dropped"].as_u64().expect("count"),
            Some("trade") => slow_trades += 1,
            Some("heartbeat") if lagged > 0 => break,
            _ => {}
        }
    }
    assert!(lagged > 0, "the slow client got a lagged notice");
    assert!(slow_trades < 9_757, "and lost updates: {slow_trades}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_are_pushed_to_subscribers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = super::state();
    tokio::spawn(ck_api::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    let mut ws = connect(addr, None).await;
    send(
        &mut ws,
        r#"{"op":"subscribe","channel":"stats","window":"5x"}"#,
    )
    .await;
    let err = next_json(&mut ws).await;
    assert_eq!(err["type"], "error", "{err}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("`window` = `5x`")),
        "{err}"
    );
    send(
        &mut ws,
        r#"{"op":"subscribe","channel":"stats","window":"1h","exchange":"coinbase","instruments":["BTC-USD","ETH-USD"]}"#,
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["channel"].as_str()),
        (Some("subscribed"), Some("stats"))
    );
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    // The same table as REST.
    let rest = ck_api::router(state);
    let response = tower::ServiceExt::oneshot(
        rest,
        axum::http::Request::get(
            "/api/v1/stats?window=1h&instruments=coinbase:BTC-USD,coinbase:ETH-USD",
        )
        .body(axum::body::Body::empty())
        .expect("request"),
    )
    .await
    .expect("response");
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    let table: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(snapshot["data"], table);
    assert_eq!(table.as_array().map(Vec::len), Some(2));
    // Then pushed again, every five seconds.
    loop {
        let m = next_json(&mut ws).await;
        if m["type"] == "stats" {
            assert_eq!(m["window"], "1h");
            assert_eq!(m["data"], table);
            break;
        }
        assert_eq!(m["type"], "heartbeat", "{m}");
    }
}

/// A `?batch=true` client gets the same trades as a plain one, in order,
/// as rows of `batch` frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_clients_get_every_update_as_rows_of_batch_frames() {
    let dir = tempfile::tempdir().expect("dir");
    let (process, store, addr, stop) =
        serve_fresh(dir.path(), 4096, Duration::from_millis(5)).await;
    let connect_at = |query: &'static str| async move {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/ws{query}"))
            .await
            .expect("connect");
        ws
    };
    // A bad value is refused before the upgrade.
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/ws?batch=maybe")).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 400),
        "{refused:?}"
    );
    let subscribe =
        r#"{"op":"subscribe","channel":"trades","exchange":"binance","instrument":"BTC-USDT"}"#;
    let mut plain = connect_at("").await;
    let mut batched = connect_at("?batch=true").await;
    for ws in [&mut plain, &mut batched] {
        send(ws, subscribe).await;
        assert_eq!(next_json(ws).await["type"], "subscribed");
        assert_eq!(next_json(ws).await["type"], "snapshot");
    }
    let replay = replay_binance(&process, &store, 600.0);
    let collect = |mut ws: Client| {
        tokio::spawn(async move {
            let mut rows: Vec<serde_json::Value> = Vec::new();
            let mut frames = 0;
            while rows.len() < 9_757 {
                let m = next_json(&mut ws).await;
                match m["type"].as_str() {
                    Some("trade") => rows.push(serde_json::json!([
                        m["trade_id"],
                        m["price"],
                        m["qty"],
                        m["side"],
                        m["ts"],
                        m["received"]
                    ])),
                    Some("batch") => {
                        frames += 1;
                        assert_eq!(
                            (
                                m["channel"].as_str(),
                                m["exchange"].as_str(),
                                m["instrument"].as_str()
                            ),
                            (Some("trades"), Some("binance"), Some("BTC-USDT")),
                            "{m}"
                        );
                        assert_eq!(
                            m["fields"],
                            serde_json::json!([
                                "trade_id", "price", "qty", "side", "ts", "received"
                            ])
                        );
                        rows.extend(m["rows"].as_array().expect("rows").iter().cloned());
                    }
                    Some("lagged") => panic!("lagged: {m}"),
                    _ => {}
                }
            }
            (rows, frames)
        })
    };
    let (plain, batched) = (collect(plain), collect(batched));
    let (plain_rows, _) = plain.await.expect("plain client");
    let (batch_rows, frames) = batched.await.expect("batch client");
    replay.await.expect("join").expect("replay");
    assert_eq!(batch_rows.len(), 9_757);
    assert_eq!(batch_rows, plain_rows, "the same trades, in the same order");
    assert!(
        batch_rows
            .windows(2)
            .all(|w| w[1][0].as_u64() == w[0][0].as_u64().map(|id| id + 1)),
        "every trade once, in order"
    );
    assert!(
        frames < 9_757 / 2,
        "trades came several to a frame: {frames} frames"
    );
    // The server measured receive-to-push times.
    let pushes = ck_bus::metrics::histogram(ck_api::PUSH_LATENCY);
    assert!(pushes.count() > 0);
    stop.cancel();
}
