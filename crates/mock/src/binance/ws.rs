//! The mock's combined-stream WebSocket: `/stream?streams=a/b`, `SUBSCRIBE`
//! and `UNSUBSCRIBE`, ping frames, pacing, looping and the stream faults.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use super::Shared;

type WsError = tokio_tungstenite::tungstenite::Error;

/// Messages written before one flush when the client reads as fast as it can.
const BATCH: usize = 64;

pub(super) async fn accept(mut listener: crate::Listening, lazy: Arc<super::Lazy>) {
    while let Ok((socket, _)) = listener.accept().await {
        // The first client fixes the shift to now.
        let shared = lazy.get().clone();
        tokio::spawn(async move {
            if let Err(e) = serve(socket, shared).await {
                tracing::debug!(error = %e, "mock connection ended");
            }
        });
    }
}

/// What one connection has done, for the per-connection faults.
struct Connection {
    /// Its place in the recording: every connection has its own, starting
    /// where the furthest one got.
    at: u64,
    sent: usize,
    /// A stream withheld until it is subscribed again.
    muted: Option<String>,
    drop_at: Option<usize>,
    stall_until: Option<Instant>,
}

async fn serve(socket: TcpStream, shared: Arc<Shared>) -> Result<(), WsError> {
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
    let index = shared.connections.fetch_add(1, Ordering::SeqCst);
    let faults = &shared.options.faults;
    // Its place: as fast as the client reads, the start while others are
    // connected, else where the furthest got; paced, now (below).
    let (_open, others) = crate::Open::count(&shared.open);
    let mut conn = Connection {
        at: if others > 0 && shared.options.speed.is_none() {
            0
        } else {
            shared.cursor.load(Ordering::SeqCst)
        },
        sent: 0,
        muted: faults.mute_until_resubscribed.clone(),
        drop_at: match (index, faults.drop_after, faults.drop_every) {
            (0, Some(n), _) => Some(n),
            (_, _, every) => every,
        },
        stall_until: None,
    };
    let mut ping = tokio::time::interval(shared.options.ping_every);
    ping.tick().await;
    let len = shared.len();
    // Paced: what fell due while no one was connected is gone, as on a live
    // venue (the client's gap detection and REST repair must cover it).
    if index > 0 && shared.options.speed.is_some() {
        let now = Instant::now();
        loop {
            let n = conn.at;
            let exhausted = len == 0 || (!shared.options.looped && n >= len);
            if exhausted || shared.due(n).is_none_or(|d| d >= now) {
                break;
            }
            shared.cursor.fetch_max(n + 1, Ordering::SeqCst);
            conn.at += 1;
        }
    }
    let started = Instant::now();
    loop {
        if conn.drop_at.is_some_and(|n| conn.sent >= n) {
            // Fault injection: an abrupt end, as when a server restarts.
            return Ok(());
        }
        let n = conn.at;
        let exhausted = len == 0 || (!shared.options.looped && n >= len);
        let due = if exhausted {
            None
        } else {
            Some(shared.due(n).unwrap_or(started))
        };
        let due = match (due, conn.stall_until) {
            (Some(d), Some(s)) => Some(d.max(s)),
            (d, _) => d,
        };
        tokio::select! {
            biased;
            incoming = ws.next() => {
                match incoming {
                    Some(Ok(Message::Text(t))) => {
                        subscribe(&mut ws, &mut streams, t.as_str()).await?;
                        if conn.muted.as_ref().is_some_and(|m| t.as_str().contains("\"SUBSCRIBE\"") && t.as_str().contains(m.as_str())) {
                            conn.muted = None;
                        }
                    }
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
            () = wait(due), if due.is_some() => {}
        }
        conn.stall_until = None;
        // Paced: one message per wake-up. Unpaced: a batch, then one flush.
        let batch = if shared.options.speed.is_some() {
            1
        } else {
            BATCH
        };
        for _ in 0..batch {
            if !send_next(&mut ws, &shared, &streams, &mut conn).await? {
                break;
            }
        }
        ws.flush().await?;
    }
}

/// Sends (or passes, when unsubscribed or skipped) the message at the
/// connection's place. False when there is nothing to send now.
async fn send_next(
    ws: &mut WebSocketStream<TcpStream>,
    shared: &Shared,
    streams: &HashSet<String>,
    conn: &mut Connection,
) -> Result<bool, WsError> {
    let faults = &shared.options.faults;
    if conn.drop_at.is_some_and(|n| conn.sent >= n) || conn.stall_until.is_some() {
        return Ok(false);
    }
    let len = shared.len();
    let n = conn.at;
    if len == 0 || (!shared.options.looped && n >= len) {
        return Ok(false);
    }
    let Some(m) = usize::try_from(n % len)
        .ok()
        .and_then(|i| shared.messages.get(i))
    else {
        return Ok(false);
    };
    conn.at += 1;
    // The first connection past a message counts it for the faults.
    let first = shared.cursor.fetch_max(n + 1, Ordering::SeqCst) <= n;
    if !streams.contains(&m.stream) || conn.muted.as_ref() == Some(&m.stream) {
        return Ok(true);
    }
    if let (Some(every), Some(ordinal)) = (faults.skip_every, m.trade_ordinal)
        && every > 0
        && ordinal % every as u64 == every as u64 - 1
    {
        if first {
            shared.skipped.fetch_add(1, Ordering::SeqCst);
        }
        return Ok(true);
    }
    let Some(text) = shared.text(n) else {
        return Ok(true);
    };
    ws.feed(Message::Text(text.clone())).await?;
    conn.sent += 1;
    if let Some(every) = faults.malformed_every
        && every > 0
        && conn.sent.is_multiple_of(every)
    {
        let cut = text.len() / 2;
        let broken: String = text.as_str().chars().take(cut).collect();
        ws.feed(Message::Text(broken.into())).await?;
    }
    if let Some((every, pause)) = faults.stall
        && every > 0
        && conn.sent.is_multiple_of(every)
    {
        conn.stall_until = Some(Instant::now() + pause);
    }
    Ok(true)
}

async fn wait(until: Option<Instant>) {
    if let Some(t) = until {
        tokio::time::sleep_until(t).await;
    }
}

/// Handles `{"method":"SUBSCRIBE","params":[...],"id":1}` and friends.
async fn subscribe(
    ws: &mut WebSocketStream<TcpStream>,
    streams: &mut HashSet<String>,
    text: &str,
) -> Result<(), WsError> {
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
        Some("LIST_SUBSCRIPTIONS") => {
            let mut list: Vec<&String> = streams.iter().collect();
            list.sort();
            let reply = serde_json::json!({"result": list, "id": id});
            return ws.send(Message::Text(reply.to_string().into())).await;
        }
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
