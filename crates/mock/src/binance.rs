//! A mock of Binance spot's combined-stream WebSocket.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ck_bus::{Origin, RawMessage};
use ck_model::Ts;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// `None`: send as fast as the client reads. `Some(x)`: x times the
    /// recorded pace.
    pub speed: Option<f64>,
    /// Close the first connection after this many messages (fault injection).
    pub drop_after: Option<usize>,
    /// Send a ping frame this often, as Binance does every 20 s.
    pub ping_every: Duration,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            speed: None,
            drop_after: None,
            ping_every: Duration::from_secs(20),
        }
    }
}

struct Shared {
    /// `(receive time, stream name, raw text)` in recorded order.
    messages: Vec<(Ts, String, String)>,
    /// The next message to send: shared, so a reconnecting client resumes.
    cursor: AtomicUsize,
    connections: AtomicUsize,
    options: MockOptions,
    shift_ms: i64,
}

/// A running mock; dropping the handle does not stop it (it ends with the runtime).
pub struct MockBinance {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MockBinance {
    /// Starts a mock on `127.0.0.1` (any free port) that replays the
    /// combined-stream messages of `recording`, with every event time (`E`,
    /// `T`) shifted so the first message is "now".
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(
        recording: &[RawMessage],
        options: MockOptions,
    ) -> std::io::Result<MockBinance> {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        MockBinance::start_on(any, recording, options).await
    }

    /// Like [`MockBinance::start`], on a chosen address.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start_on(
        addr: SocketAddr,
        recording: &[RawMessage],
        options: MockOptions,
    ) -> std::io::Result<MockBinance> {
        let messages: Vec<(Ts, String, String)> = recording
            .iter()
            .filter(|m| m.origin == Origin::Ws)
            .filter_map(|m| {
                let v: serde_json::Value = serde_json::from_str(&m.data).ok()?;
                Some((
                    m.ts_received,
                    v.get("stream")?.as_str()?.to_owned(),
                    m.data.clone(),
                ))
            })
            .collect();
        let first = recording
            .iter()
            .find(|m| m.origin == Origin::Ws)
            .map_or(Ts::now(), |m| m.ts_received);
        let shared = Arc::new(Shared {
            messages,
            cursor: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            options,
            shift_ms: Ts::now().as_millis() - first.as_millis(),
        });
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let accept = shared.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let shared = accept.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(socket, shared).await {
                        tracing::debug!(error = %e, "mock connection ended");
                    }
                });
            }
        });
        Ok(MockBinance { addr, shared })
    }

    /// The base URL to give a connector: `ws://127.0.0.1:PORT`.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Recorded messages the mock holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.messages.len()
    }

    /// True when the recording had no combined-stream messages.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shared.messages.is_empty()
    }

    /// True once every message has been sent.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.shared.cursor.load(Ordering::SeqCst) >= self.shared.messages.len()
    }
}

/// Shifts `E` and `T` (event and trade time, ms) inside `data` by `shift_ms`.
fn time_shift(text: &str, shift_ms: i64) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_owned();
    };
    if let Some(data) = v.get_mut("data").and_then(|d| d.as_object_mut()) {
        for key in ["E", "T"] {
            if let Some(t) = data.get(key).and_then(serde_json::Value::as_i64) {
                data.insert(key.to_owned(), serde_json::Value::from(t + shift_ms));
            }
        }
    }
    v.to_string()
}

async fn serve(
    socket: TcpStream,
    shared: Arc<Shared>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut streams: HashSet<String> = HashSet::new();
    #[expect(
        clippy::result_large_err,
        reason = "tungstenite's handshake callback returns its own error type"
    )]
    let mut ws = tokio_tungstenite::accept_hdr_async(socket, |req: &Request, resp: Response| {
        if let Some(q) = req.uri().query().and_then(|q| q.strip_prefix("streams=")) {
            streams.extend(q.split('/').map(str::to_owned));
        }
        Ok(resp)
    })
    .await?;
    let connection = shared.connections.fetch_add(1, Ordering::SeqCst);
    let drop_after = if connection == 0 {
        shared.options.drop_after
    } else {
        None
    };
    let mut ping = tokio::time::interval(shared.options.ping_every);
    ping.tick().await;
    let started = tokio::time::Instant::now();
    let mut first_ts: Option<Ts> = None;
    let mut sent = 0usize;
    loop {
        if drop_after.is_some_and(|n| sent >= n) {
            // Fault injection: an abrupt end, as when a server restarts.
            return Ok(());
        }
        let i = shared.cursor.load(Ordering::SeqCst);
        let next = shared.messages.get(i);
        // Pace to the recording, if asked.
        let due = match (next, shared.options.speed) {
            (Some((ts, _, _)), Some(speed)) if speed > 0.0 => {
                let first = *first_ts.get_or_insert(*ts);
                let secs = (ts.0 - first.0).max(0) as f64 / 1e9 / speed;
                Some(started + Duration::from_secs_f64(secs))
            }
            _ => None,
        };
        tokio::select! {
            biased;
            incoming = ws.next() => {
                match incoming {
                    Some(Ok(Message::Text(t))) => subscribe(&mut ws, &mut streams, t.as_str()).await?,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                }
                continue;
            }
            _ = ping.tick() => {
                ws.send(Message::Ping(b"mock".to_vec().into())).await?;
                continue;
            }
            () = wait(due), if next.is_some() => {}
        }
        let Some((_, stream, text)) = next else {
            continue;
        };
        if shared
            .cursor
            .compare_exchange(i, i + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            continue;
        }
        if streams.contains(stream) {
            ws.send(Message::Text(time_shift(text, shared.shift_ms).into()))
                .await?;
            sent += 1;
        }
    }
}

async fn wait(until: Option<tokio::time::Instant>) {
    if let Some(t) = until {
        tokio::time::sleep_until(t).await;
    }
}

/// Handles `{"method":"SUBSCRIBE","params":[...],"id":1}` and friends.
async fn subscribe(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    streams: &mut HashSet<String>,
    text: &str,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        let reply = r#"{"code":2,"msg":"Invalid JSON","id":null}"#;
        return ws.send(Message::Text(reply.into())).await;
    };
    let id = v.get("id").cloned().unwrap_or(serde_json::Value::Null);
    let params = v
        .get("params")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    let names = params.iter().filter_map(|p| p.as_str().map(str::to_owned));
    match v.get("method").and_then(|m| m.as_str()) {
        Some("SUBSCRIBE") => streams.extend(names),
        Some("UNSUBSCRIBE") => names.for_each(|n| {
            streams.remove(&n);
        }),
        _ => {
            let reply = serde_json::json!({"code": 2, "msg": "Invalid request", "id": id});
            return ws.send(Message::Text(reply.to_string().into())).await;
        }
    }
    ws.send(Message::Text(
        serde_json::json!({"result": null, "id": id})
            .to_string()
            .into(),
    ))
    .await
}
