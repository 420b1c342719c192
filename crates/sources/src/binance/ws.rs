//! The live Binance spot connector: one combined-stream WebSocket for all
//! configured instruments, reconnected with backoff, forever.
//!
//! Binance sends a ping frame every 20 s and expects a pong within a minute;
//! tungstenite answers pings as it reads. A connection lives at most 24 h, and
//! Binance may announce `serverShutdown`: both end in a reconnect. A stream
//! that sends nothing for `stale_after` is treated as dead and reconnected.

use std::sync::Arc;
use std::time::Duration;

use ck_bus::{Clock, Closed, Event, Origin, RawMessage, Sender};
use ck_model::{Exchange, Gap, GapState, Instrument, Ts};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::live::{Backoff, BackoffPolicy, ConnectionState, ConnectorStatus};

/// The public market-data endpoint.
pub const DEFAULT_WS_URL: &str = "wss://stream.binance.com:9443";

/// Settings of the live Binance connector.
#[derive(Debug, Clone)]
pub struct BinanceLiveConfig {
    /// WebSocket base URL, without the path.
    pub ws_url: String,
    /// The instruments to capture.
    pub instruments: Vec<Instrument>,
    /// Reconnect delays.
    pub backoff: BackoffPolicy,
    /// Reconnect when nothing arrives for this long.
    pub stale_after: Duration,
    /// REST root for the instrument list and gap repair; `None` runs
    /// without REST (gaps are recorded and stay open).
    pub rest_url: Option<String>,
}

impl BinanceLiveConfig {
    /// The combined-stream URL: `trade` and `bookTicker` for every instrument.
    #[must_use]
    pub fn stream_url(&self) -> String {
        let streams: Vec<String> = self
            .instruments
            .iter()
            .flat_map(|i| {
                let native = format!("{}{}", i.base(), i.quote()).to_ascii_lowercase();
                [format!("{native}@trade"), format!("{native}@bookTicker")]
            })
            .collect();
        format!(
            "{}/stream?streams={}",
            self.ws_url.trim_end_matches('/'),
            streams.join("/")
        )
    }
}

/// Runs until `stop` returns true (checked between messages and while
/// waiting), sending every text frame to `tx` as a [`RawMessage`].
/// Fails only when `tx` closes.
///
/// After a reconnect, when data flows again, every configured instrument gets
/// an open [`Gap`] on `events` spanning the window without data: trades may
/// have been missed there (id continuity, where the venue has it, tells more).
pub async fn run_binance(
    config: BinanceLiveConfig,
    tx: Sender<RawMessage>,
    events: Sender<Event>,
    status: Arc<ConnectorStatus>,
    clock: Arc<dyn Clock>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Closed> {
    let url = config.stream_url();
    let mut backoff = Backoff::new(config.backoff.clone(), clock.now().0.unsigned_abs());
    tokio::pin!(stop);
    // The start of the current window without data, once data had flowed.
    let mut window: Option<Ts> = None;
    loop {
        let error = tokio::select! {
            () = &mut stop => break,
            result = session(&url, &config, &tx, &events, &status, &clock, &mut backoff, &mut window) => result?,
        };
        if window.is_none() {
            window = status.snapshot().last_message;
        }
        match &error {
            Some(e) => {
                tracing::warn!(exchange = %Exchange::Binance, error = %e, "connection lost; reconnecting")
            }
            None => {
                tracing::info!(exchange = %Exchange::Binance, "connection closed by the server; reconnecting")
            }
        }
        status.on_disconnect(error);
        let delay = backoff.next_delay();
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    status.set_state(ConnectionState::Stopped);
    Ok(())
}

/// One connection: returns why it ended (`None` for a clean close).
#[expect(
    clippy::too_many_arguments,
    reason = "one connection's whole context, passed down once"
)]
async fn session(
    url: &str,
    config: &BinanceLiveConfig,
    tx: &Sender<RawMessage>,
    events: &Sender<Event>,
    status: &ConnectorStatus,
    clock: &Arc<dyn Clock>,
    backoff: &mut Backoff,
    window: &mut Option<Ts>,
) -> Result<Option<String>, Closed> {
    let (mut ws, _) = match tokio_tungstenite::connect_async(url).await {
        Ok(ok) => ok,
        Err(e) => return Ok(Some(format!("connecting to {url}: {e}"))),
    };
    status.set_state(ConnectionState::Connected);
    tracing::info!(exchange = %Exchange::Binance, %url, "connected");
    let mut healthy = false;
    loop {
        let next = match tokio::time::timeout(config.stale_after, ws.next()).await {
            Ok(next) => next,
            Err(_) => return Ok(Some(format!("no message for {:?}", config.stale_after))),
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                if !healthy {
                    // Data flows: the next failure starts the backoff afresh.
                    backoff.reset();
                    healthy = true;
                }
                let now = clock.now();
                status.on_message(now);
                if let Some(from) = window.take() {
                    for instrument in &config.instruments {
                        tracing::warn!(exchange = %Exchange::Binance, %instrument, %from, to = %now, "reconnect window recorded as a gap");
                        events
                            .send(Event::Gap(Gap {
                                exchange: Exchange::Binance,
                                instrument: instrument.clone(),
                                from_ts: from,
                                to_ts: now,
                                first_missing_id: None,
                                last_missing_id: None,
                                state: GapState::Open,
                                reason: format!(
                                    "reconnect: no data received between {from} and {now}"
                                ),
                                detected_at: now,
                            }))
                            .await?;
                    }
                }
                let data = text.as_str();
                let shutdown = data.contains("\"serverShutdown\"");
                tx.send(RawMessage {
                    exchange: Exchange::Binance,
                    ts_received: now,
                    origin: Origin::Ws,
                    data: data.to_owned(),
                })
                .await?;
                if shutdown {
                    return Ok(Some("server announced shutdown".into()));
                }
            }
            // Pings are answered by tungstenite as it reads; pongs and binary
            // frames carry no market data.
            Some(Ok(
                Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_),
            )) => {}
            Some(Ok(Message::Close(frame))) => {
                return Ok(frame.map(|f| format!("closed by server: {} {}", f.code, f.reason)));
            }
            Some(Err(e)) => return Ok(Some(e.to_string())),
            None => return Ok(None),
        }
    }
}
