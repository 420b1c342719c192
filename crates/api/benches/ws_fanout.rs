//! WebSocket fan-out over loopback: N clients subscribe to the trades of one
//! instrument; the live feed carries trades at a fixed rate for a few
//! seconds; every client counts what it receives and, for every 10th trade,
//! the latency from the trade's `received` time (stamped as it enters the
//! feed) to the client reading it. The clients run on the same two cores as
//! the server (by default in the same process), so the latency is an upper
//! bound.
//!
//! `cargo bench -p ck-api --bench ws_fanout -- [clients] [trades/s] [seconds] [linger ms] [batch] [separate] [baseline]`
//! (default 1000 10000 5 0 0 0 0). With linger, the server collects updates
//! for that long into one batch (`api.ws_linger_ms`); with batch 1 the
//! clients connect with `?batch=true` and get a batch in one frame; with
//! separate 1 they run in a process of their own (2: at nice 19). With
//! baseline 1 the same clients read from the bare writer of [`bare`]
//! instead of candlekeep: the floor of this machine's loopback.

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

/// What precedes a trade's receive time.
const RECEIVED: &str = "\"received\":";
/// What precedes the rows of a batch.
const ROWS: &str = "\"rows\":[[";

/// The time at the start of `"...", the text after `"received":`, as
/// nanoseconds.
fn received(text: &str) -> Option<i64> {
    let at = 1;
    let end = at + text.get(at..)?.find('"')?;
    Ts::parse(&text[at..end]).ok().map(|t| t.0)
}

async fn client(
    addr: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Sender<()>,
    expected: u64,
    until: Instant,
    batched: bool,
) -> ClientReport {
    // A 16 KiB read buffer: tungstenite's default (128 KiB) is zeroed on
    // every read, which made memset the top of the profile (29%).
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(64 * 1024);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!(
            "ws://{addr}/api/v1/ws{}",
            if batched { "?batch=true" } else { "" }
        ),
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
    let received_field = memchr::memmem::Finder::new(RECEIVED);
    let rows_field = memchr::memmem::Finder::new(ROWS);
    let row_end = memchr::memmem::Finder::new("],[");
    while report.trades + report.lagged < expected {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(msg))) = tokio::time::timeout(left, ws.next()).await else {
            break;
        };
        let Message::Text(text) = msg else { continue };
        let text = text.as_str();
        let now = Ts::now().0;
        let sample = |report: &mut ClientReport, received: &dyn Fn() -> Option<i64>| {
            report.trades += 1;
            if report.trades.is_multiple_of(10)
                && let Some(r) = received()
            {
                let us = (now - r) / 1_000;
                report
                    .latencies_us
                    .push(u32::try_from(us.max(0)).unwrap_or(u32::MAX));
            }
        };
        // A batch: rows of [trade_id, price, qty, side, ts, received].
        if let Some(at) = rows_field.find(text.as_bytes()) {
            let rows = &text[at + ROWS.len()..];
            let mut start = 0;
            loop {
                let end = row_end.find(&rows.as_bytes()[start..]).map(|e| start + e);
                let row = &rows[start..end.unwrap_or(rows.len())];
                // The last field: `,"<received>"`.
                sample(&mut report, &|| {
                    row.rfind(",\"").and_then(|i| received(&row[i + 1..]))
                });
                match end {
                    Some(e) => start = e + 3,
                    None => break,
                }
            }
            continue;
        }
        // One trade.
        if let Some(at) = received_field.find(text.as_bytes()) {
            sample(&mut report, &|| received(&text[at + RECEIVED.len()..]));
            continue;
        }
        if text.contains("\"type\":\"lagged\"") {
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

/// What the clients saw, summed.
#[derive(Default)]
struct Summary {
    complete: u64,
    delivered: u64,
    lagged: u64,
    /// p50, p99, max (µs) and the number of samples.
    latency: (u32, u32, u32, usize),
}

/// Runs `clients` clients against `addr` until each has `expected` trades
/// (or `until`), calling `ready` once all are subscribed.
async fn run_clients(
    addr: std::net::SocketAddr,
    clients: u64,
    expected: u64,
    until: Instant,
    batched: bool,
    ready: impl FnOnce(),
) -> Summary {
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(clients as usize);
    let mut handles = Vec::new();
    for _ in 0..clients {
        handles.push(tokio::spawn(client(
            addr,
            ready_tx.clone(),
            expected,
            until,
            batched,
        )));
        // Connect in small steps: the listener's backlog is finite.
        tokio::task::yield_now().await;
    }
    for _ in 0..clients {
        ready_rx.recv().await.expect("client ready");
    }
    ready();
    let mut sum = Summary::default();
    let mut lat: Vec<u32> = Vec::new();
    for h in handles {
        let r = h.await.expect("client");
        sum.delivered += r.trades;
        sum.lagged += r.lagged;
        sum.complete += u64::from(r.trades == expected);
        lat.extend(r.latencies_us);
    }
    lat.sort_unstable();
    let p = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    sum.latency = (p(0.5), p(0.99), lat.last().copied().unwrap_or(0), lat.len());
    sum
}

/// The client process (`separate` = 1): the clients run at nice 19 in a
/// process of their own, as if on another machine that is slower to get
/// the CPU than the server; it prints `ready`, then its summary.
fn client_process(addr: &str, args: &[u64]) {
    let addr: std::net::SocketAddr = addr.parse().expect("address");
    let (clients, expected, secs, batched) = (args[0], args[1], args[2], args[3] == 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let until = Instant::now() + Duration::from_secs(secs);
    let s = rt.block_on(run_clients(addr, clients, expected, until, batched, || {
        println!("ready");
    }));
    println!(
        "summary {} {} {} {} {} {} {}",
        s.complete, s.delivered, s.lagged, s.latency.0, s.latency.1, s.latency.2, s.latency.3
    );
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if let Ok(addr) = std::env::var("CK_FANOUT_SERVER") {
        return client_process(&addr, &args);
    }
    let clients = args.first().copied().unwrap_or(1_000);
    let rate = args.get(1).copied().unwrap_or(10_000);
    let secs = args.get(2).copied().unwrap_or(5);
    let linger = Duration::from_millis(args.get(3).copied().unwrap_or(0));
    let batched = args.get(4).copied().unwrap_or(0) == 1;
    // 0: clients in this process; 1: in their own process; 2: there, at nice 19.
    let separate = args.get(5).copied().unwrap_or(0);
    let baseline = args.get(6).copied().unwrap_or(0) == 1;
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
        let feed = ck_bus::live_feed(262_144);
        let state = ck_api::ApiState::new(store, Arc::default(), feed.clone(), Duration::from_secs(15))
            .with_ws_queue(4_096)
            .with_ws_linger(linger);
        let (addr, accepting) = if baseline {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let accepting = std::thread::spawn(move || {
                (0..clients).map(|_| bare::accept(&listener)).collect::<Vec<_>>()
            });
            (addr, Some(accepting))
        } else {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(ck_api::serve(listener, state, std::future::pending()));
            (addr, None)
        };

        let expected = rate * secs;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let clients_done: tokio::task::JoinHandle<Summary> = if separate > 0 {
            use tokio::io::AsyncBufReadExt as _;
            // `CK_FANOUT_CLIENT_CPUS` pins the clients to those CPUs (run the
            // bench itself under `taskset` for the other ones).
            let pin = std::env::var("CK_FANOUT_CLIENT_CPUS").ok();
            let mut child = tokio::process::Command::new(if pin.is_some() { "taskset" } else { "nice" });
            if let Some(cpus) = &pin {
                child.args(["-c", cpus, "nice"]);
            }
            let mut child = child
                .args(["-n", if separate == 2 { "19" } else { "0" }])
                .arg(std::env::current_exe().expect("exe"))
                .args([clients, expected, secs + 15, u64::from(batched)].map(|n| n.to_string()))
                .env("CK_FANOUT_SERVER", addr.to_string())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("client process");
            let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
            tokio::spawn(async move {
                let mut ready_tx = Some(ready_tx);
                let mut sum = Summary::default();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line == "ready" {
                        ready_tx.take().map(|t| t.send(()));
                    } else if let Some(rest) = line.strip_prefix("summary ") {
                        let n: Vec<u64> = rest.split(' ').filter_map(|w| w.parse().ok()).collect();
                        sum = Summary {
                            complete: n[0],
                            delivered: n[1],
                            lagged: n[2],
                            latency: (n[3] as u32, n[4] as u32, n[5] as u32, n[6] as usize),
                        };
                    }
                }
                let _ = child.wait().await;
                sum
            })
        } else {
            let until = Instant::now() + Duration::from_secs(secs + 15);
            tokio::spawn(run_clients(addr, clients, expected, until, batched, move || {
                let _ = ready_tx.send(());
            }))
        };
        ready_rx.await.expect("clients ready");
        if let Some(accepting) = accepting {
            let socks = accepting.join().expect("accepted");
            let started = Instant::now();
            let writer = std::thread::spawn(move || {
                let mut socks = socks;
                let writes = bare::run(&mut socks, rate, expected);
                (writes, socks)
            });
            let s = clients_done.await.expect("clients");
            let drained_in = started.elapsed();
            let (mut writes, _socks) = writer.join().expect("writer");
            writes.sort_unstable();
            let p = |q: f64| writes.get(((writes.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0);
            println!(
                "ws_fanout baseline (bare writer): {clients} clients{}, {rate} trades/s for {secs} s (all delivered by {drained_in:.2?}): \
                 {}/{clients} clients got every trade; {} of {} deliveries ({:.2}%); \
                 latency received→client p50 {} µs, p99 {} µs, max {} µs ({} samples); \
                 writer receive→write p50 {} µs, p99 {} µs ({} writes)",
                if separate > 0 { " (own process)" } else { "" },
                s.complete,
                s.delivered,
                expected * clients,
                s.delivered as f64 / (expected * clients) as f64 * 100.0,
                s.latency.0,
                s.latency.1,
                s.latency.2,
                s.latency.3,
                p(0.5),
                p(0.99),
                writes.len(),
            );
            return;
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
        let s = clients_done.await.expect("clients");
        let drained_in = started.elapsed();
        let pushes = ck_bus::metrics::histogram(ck_api::PUSH_LATENCY);
        let push_bound = |q: f64| pushes.quantile_bound(q).map_or(f64::NAN, |s| s * 1e3);
        println!(
            "ws_fanout: {clients} clients{}{}, linger {linger:?}, {rate} trades/s for {secs} s (published in {published_in:.2?}, all delivered by {drained_in:.2?}): \
             {}/{clients} clients got every trade; {} of {} deliveries ({:.2}%), {} dropped as lagged; \
             latency received→client p50 {} µs, p99 {} µs, max {} µs ({} samples); \
             server receive→push (bucket bounds) p50 ≤ {} ms, p99 ≤ {} ms ({} pushes)",
            if batched { " (batched)" } else { "" },
            match separate {
                0 => "",
                1 => " (own process)",
                _ => " (own process, nice 19)",
            },
            s.complete,
            s.delivered,
            expected * clients,
            s.delivered as f64 / (expected * clients) as f64 * 100.0,
            s.lagged,
            s.latency.0,
            s.latency.1,
            s.latency.2,
            s.latency.3,
            push_bound(0.5),
            push_bound(0.99),
            pushes.count(),
        );
    });
}

/// The floor to compare with (`BASELINE` = 1): a server that does the least
/// any WebSocket server must. One thread builds each 1 ms tick's trades into
/// one `batch` frame of the form candlekeep sends, once for every client, and
/// writes each client the frames it has not had yet with one non-blocking
/// vectored write, client after client, round after round. No live feed, no
/// tasks, no per-client work but the write. The clients are the same.
mod bare {
    use std::collections::VecDeque;
    use std::io::{IoSlice, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use ck_model::{Decimal, Side, Ts};

    /// A frame with the time its trades were received.
    struct Frame {
        bytes: Vec<u8>,
        received: i64,
    }

    /// A server→client text frame (unmasked) holding `payload`.
    fn text_frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 10);
        out.push(0x81);
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n < 65_536 => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// Answers a client's upgrade request and sends the two messages it
    /// waits for after subscribing (in place of the ack and the snapshot).
    pub(crate) fn accept(listener: &TcpListener) -> TcpStream {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).expect("request");
            assert!(n > 0, "client closed during the upgrade");
            request.extend_from_slice(&buf[..n]);
        }
        let request = String::from_utf8_lossy(&request);
        let key = request
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim())
            })
            .expect("Sec-WebSocket-Key");
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        write!(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .expect("upgrade");
        for _ in 0..2 {
            s.write_all(&text_frame(b"{\"type\":\"subscribed\"}"))
                .expect("ack");
        }
        s.set_nonblocking(true).expect("nonblocking");
        s
    }

    /// A `batch` frame of `n` trades numbered from `first`, received now.
    fn trades_frame(first: u64, n: u64) -> Frame {
        let now = Ts::now();
        let mut json = String::from(
            r#"{"channel":"trades","exchange":"binance","instrument":"BTC-USDT","type":"batch","fields":["trade_id","price","qty","side","ts","received"],"rows":["#,
        );
        for id in first..first + n {
            if id > first {
                json.push(',');
            }
            let row = (
                id,
                Decimal::new(6_000_012, 2),
                Decimal::new(15, 4),
                Side::Buy,
                now,
                now,
            );
            json.push_str(&serde_json::to_string(&row).expect("row"));
        }
        json.push_str("]}");
        Frame {
            bytes: text_frame(json.as_bytes()),
            received: now.0,
        }
    }

    /// Sends `expected` trades at `rate` per second (in 1 ms ticks) to every
    /// one of `socks`, then goes on until each has had them all (or 20 s
    /// pass). Returns the time from receive to write of the oldest frame in
    /// each write, in µs. The caller keeps the sockets open until the
    /// clients are done: closing one with the client's unread subscribe
    /// request in it would reset it, and the client would lose what it has
    /// not read yet.
    pub(crate) fn run(socks: &mut [TcpStream], rate: u64, expected: u64) -> Vec<u32> {
        let per_tick = (rate / 1_000).max(1);
        let mut log: VecDeque<Frame> = VecDeque::new();
        // The index of `log[0]` in the stream of frames.
        let mut base = 0u64;
        // Each client's next frame and how much of it is written.
        let mut pos: Vec<(u64, usize)> = vec![(0, 0); socks.len()];
        let mut alive = vec![true; socks.len()];
        let mut latencies = Vec::new();
        let tick = Duration::from_millis(1);
        let start = Instant::now();
        let mut next_tick = start;
        let mut produced = 0u64;
        loop {
            while produced < expected && Instant::now() >= next_tick {
                let n = per_tick.min(expected - produced);
                log.push_back(trades_frame(produced + 1, n));
                produced += n;
                next_tick += tick;
            }
            let head = base + log.len() as u64;
            let pending = pos.iter().zip(&alive).any(|(p, a)| *a && p.0 < head);
            if !pending {
                if produced >= expected || start.elapsed() > Duration::from_secs(20) {
                    return latencies;
                }
                std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
                continue;
            }
            for ((s, p), a) in socks.iter_mut().zip(pos.iter_mut()).zip(alive.iter_mut()) {
                if !*a || p.0 == head {
                    continue;
                }
                let iov: Vec<IoSlice> = log
                    .range((p.0 - base) as usize..)
                    .take(64)
                    .enumerate()
                    .map(|(i, f)| IoSlice::new(&f.bytes[if i == 0 { p.1 } else { 0 }..]))
                    .collect();
                match s.write_vectored(&iov) {
                    Ok(mut k) => {
                        let oldest = log[(p.0 - base) as usize].received;
                        let us = (Ts::now().0 - oldest) / 1_000;
                        latencies.push(u32::try_from(us.max(0)).unwrap_or(u32::MAX));
                        while k > 0 {
                            let rest = log[(p.0 - base) as usize].bytes.len() - p.1;
                            if k >= rest {
                                k -= rest;
                                p.0 += 1;
                                p.1 = 0;
                            } else {
                                p.1 += k;
                                k = 0;
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        eprintln!("bare writer: a client failed: {e}");
                        *a = false;
                    }
                }
            }
            let min = pos
                .iter()
                .zip(&alive)
                .filter(|(_, a)| **a)
                .map(|(p, _)| p.0)
                .min()
                .unwrap_or(head);
            while base < min {
                log.pop_front();
                base += 1;
            }
        }
    }
}
