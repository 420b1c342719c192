//! WebSocket fan-out over loopback: N clients subscribe to the trades of one
//! instrument; the live feed carries trades at a fixed rate for a few
//! seconds; every client counts what it receives and, for every 10th trade,
//! the latency from the trade's `received` time (stamped as it enters the
//! feed) to the client reading it. The clients run in the same process and
//! share the two cores with the server, so the latency is an upper bound.
//!
//! `cargo bench -p ck-api --bench ws_fanout -- [clients] [trades/s] [seconds]`
//! (default 1000 10000 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ck_bus::Event;
use ck_model::{Decimal, Exchange, Instrument, Side, Trade, TradeId, Ts};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

struct ClientReport {
    trades: u64,
    lagged: u64,
    latencies_us: Vec<u32>,
}

/// The `"received":"..."` time in a trade message, as nanoseconds.
fn received(text: &str) -> Option<i64> {
    let at = text.find("\"received\":\"")? + 12;
    let end = at + text[at..].find('"')?;
    Ts::parse(&text[at..end]).ok().map(|t| t.0)
}

async fn client(
    addr: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Sender<()>,
    expected: u64,
    until: Instant,
) -> ClientReport {
    // A 16 KiB read buffer: tungstenite's default (128 KiB) is zeroed on
    // every read, which made memset the top of the profile (29%).
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/api/v1/ws"),
        Some(config),
        false,
    )
    .await
    .expect("connect");
    ws.send(Message::Text(
        r#"{"op":"subscribe","channel":"trades","exchange":"binance","instrument":"BTC-USDT"}"#
            .into(),
    ))
    .await
    .expect("subscribe");
    // The ack and the snapshot.
    for _ in 0..2 {
        ws.next().await.expect("ack").expect("ack");
    }
    ready.send(()).await.expect("ready");
    let mut report = ClientReport {
        trades: 0,
        lagged: 0,
        latencies_us: Vec::new(),
    };
    while report.trades + report.lagged < expected {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(msg))) = tokio::time::timeout(left, ws.next()).await else {
            break;
        };
        let Message::Text(text) = msg else { continue };
        let text = text.as_str();
        if text.contains("\"type\":\"trade\"") {
            report.trades += 1;
            if report.trades.is_multiple_of(10)
                && let Some(r) = received(text)
            {
                let us = (Ts::now().0 - r) / 1_000;
                report
                    .latencies_us
                    .push(u32::try_from(us.max(0)).unwrap_or(u32::MAX));
            }
        } else if text.contains("\"type\":\"lagged\"") {
            let n: u64 = text
                .split("\"dropped\":")
                .nth(1)
                .and_then(|s| s.split([',', '}']).next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            report.lagged += n;
        }
    }
    report
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let clients = args.first().copied().unwrap_or(1_000);
    let rate = args.get(1).copied().unwrap_or(10_000);
    let secs = args.get(2).copied().unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn ck_store::Store> =
            Arc::new(
                ck_store::sqlite::SqliteStore::open(&dir.path().join("bench.db"), ck_store::sqlite::Durability::Normal)
                    .expect("store"),
            );
        let feed = ck_bus::live_feed(4_096);
        let state = ck_api::ApiState::new(store, Arc::default(), feed.clone(), Duration::from_secs(15))
            .with_ws_queue(4_096);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(ck_api::serve(listener, state, std::future::pending()));

        let expected = rate * secs;
        let until = Instant::now() + Duration::from_secs(secs + 15);
        let (ready_tx, mut ready) = tokio::sync::mpsc::channel(clients as usize);
        let mut handles = Vec::new();
        for _ in 0..clients {
            handles.push(tokio::spawn(client(addr, ready_tx.clone(), expected, until)));
            // Connect in small steps: the listener's backlog is finite.
            tokio::task::yield_now().await;
        }
        for _ in 0..clients {
            ready.recv().await.expect("client ready");
        }

        // Trades at `rate` per second, in 1 ms ticks.
        let per_tick = (rate / 1_000).max(1);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let started = Instant::now();
        let mut id = 0u64;
        while id < expected {
            tick.tick().await;
            for _ in 0..per_tick.min(expected - id) {
                id += 1;
                let trade = Trade {
                    exchange: Exchange::Binance,
                    instrument: Instrument::new("BTC", "USDT"),
                    trade_id: TradeId::Num(id),
                    price: Decimal::new(6_000_012, 2),
                    size: Decimal::new(15, 4),
                    side: Side::Buy,
                    ts_exchange: Ts::now(),
                    ts_received: Ts::now(),
                    fills: 1,
                };
                let _ = feed.send(Arc::new(Event::Trade(trade)));
            }
        }
        let published_in = started.elapsed();
        let mut delivered = 0u64;
        let mut lagged = 0u64;
        let mut complete = 0u64;
        let mut lat: Vec<u32> = Vec::new();
        for h in handles {
            let r = h.await.expect("client");
            delivered += r.trades;
            lagged += r.lagged;
            complete += u64::from(r.trades == expected);
            lat.extend(r.latencies_us);
        }
        let drained_in = started.elapsed();
        lat.sort_unstable();
        let p = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0);
        println!(
            "ws_fanout: {clients} clients, {rate} trades/s for {secs} s (published in {published_in:.2?}, all delivered by {drained_in:.2?}): \
             {complete}/{clients} clients got every trade; {delivered} of {} deliveries ({:.2}%), {lagged} dropped as lagged; \
             latency received→client p50 {} µs, p99 {} µs, max {} µs ({} samples)",
            expected * clients,
            delivered as f64 / (expected * clients) as f64 * 100.0,
            p(0.5),
            p(0.99),
            lat.last().copied().unwrap_or(0),
            lat.len(),
        );
    });
}
