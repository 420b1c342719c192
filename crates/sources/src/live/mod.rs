//! What every live connector shares: reconnect backoff with jitter, the
//! connector status the rest of the program reads, and the one WebSocket
//! connector ([`connector::run_ws`]) driven by a venue's [`connector::WsProtocol`].

pub mod connector;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ck_model::{Exchange, Instrument, Ts};

/// Reconnect delays: exponential, capped, with jitter; reset after a good
/// connection.
#[derive(Debug, Clone)]
pub struct BackoffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Growth per failed attempt.
    pub multiplier: f64,
    /// Each delay is scaled by a random factor in `[1 - jitter, 1]`.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.3,
        }
    }
}

/// The state of one backoff sequence.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    current: Duration,
    rng: u64,
}

impl Backoff {
    /// A fresh sequence. `seed` varies the jitter between connectors.
    #[must_use]
    pub fn new(policy: BackoffPolicy, seed: u64) -> Backoff {
        Backoff {
            current: policy.initial,
            policy,
            rng: seed | 1,
        }
    }

    /// The next delay to wait before reconnecting.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift: jitter needs spread, not cryptographic randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 - self.policy.jitter.clamp(0.0, 1.0) * unit;
        let delay = self.current.mul_f64(factor);
        self.current = self
            .current
            .mul_f64(self.policy.multiplier.max(1.0))
            .min(self.policy.max);
        delay
    }

    /// Back to the initial delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.current = self.policy.initial;
    }
}

/// Where a connector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// Not started, or connecting for the first time.
    Connecting,
    /// Connected and subscribed.
    Connected,
    /// Lost the connection; waiting to reconnect.
    Reconnecting,
    /// Stopped on request.
    Stopped,
}

/// A snapshot of a connector, for status output and the API (and, from a
/// collector, over NATS to API nodes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnectorSnapshot {
    /// The venue.
    pub exchange: Exchange,
    /// The connection state.
    pub state: ConnectionState,
    /// Messages received.
    pub messages: u64,
    /// Reconnects so far.
    pub reconnects: u64,
    /// Stale instruments resubscribed so far.
    pub resubscribes: u64,
    /// When the last message arrived.
    pub last_message: Option<Ts>,
    /// The last connection error, if any.
    pub last_error: Option<String>,
    /// Something people should know about this connector's data, such as
    /// the demo's "replays a recording of 2021-04-17".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The instruments it captures (so an API node of a cluster knows
    /// what the collectors capture before any of it is stored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instruments: Vec<Instrument>,
}

/// Shared, updated by the connector, read by anyone.
#[derive(Debug)]
pub struct ConnectorStatus {
    inner: Mutex<ConnectorSnapshot>,
}

impl ConnectorStatus {
    /// A status for a connector that has not connected yet.
    #[must_use]
    pub fn new(exchange: Exchange) -> ConnectorStatus {
        ConnectorStatus {
            inner: Mutex::new(ConnectorSnapshot {
                exchange,
                state: ConnectionState::Connecting,
                messages: 0,
                reconnects: 0,
                resubscribes: 0,
                last_message: None,
                last_error: None,
                note: None,
                instruments: Vec::new(),
            }),
        }
    }

    /// A status for a connector of `instruments` that has not connected yet.
    #[must_use]
    pub fn capturing(exchange: Exchange, instruments: Vec<Instrument>) -> ConnectorStatus {
        let status = ConnectorStatus::new(exchange);
        status.with(|s| s.instruments = instruments);
        status
    }

    fn with(&self, f: impl FnOnce(&mut ConnectorSnapshot)) {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard);
    }

    /// The current state.
    #[must_use]
    pub fn snapshot(&self) -> ConnectorSnapshot {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_state(&self, state: ConnectionState) {
        self.with(|s| s.state = state);
    }

    pub(crate) fn on_message(&self, at: Ts) {
        self.with(|s| {
            s.messages += 1;
            s.last_message = Some(at);
        });
    }

    pub(crate) fn on_resubscribe(&self) {
        self.with(|s| s.resubscribes += 1);
    }

    pub(crate) fn on_disconnect(&self, error: Option<String>) {
        self.with(|s| {
            s.reconnects += 1;
            s.state = ConnectionState::Reconnecting;
            if error.is_some() {
                s.last_error = error;
            }
        });
    }
}

/// Every connector of a running application, for status output and the API:
/// this process's own, and on an API node those other processes (the
/// collectors) report ([`ConnectorRegistry::report`]), until they fall
/// silent for [`REMOTE_FORGOTTEN_AFTER`].
#[derive(Debug, Default)]
pub struct ConnectorRegistry {
    inner: Mutex<Vec<std::sync::Arc<ConnectorStatus>>>,
    remote: Mutex<std::collections::BTreeMap<(String, Exchange), (ConnectorSnapshot, Instant)>>,
    /// Processors of a cluster that reported, by node, with when.
    processors: Mutex<std::collections::BTreeMap<String, Instant>>,
    /// Notes shown with this process's connectors of a venue.
    notes: Mutex<std::collections::BTreeMap<Exchange, String>>,
}

/// A connector reported by another process and not heard of for this long
/// is left out: that process has stopped.
pub const REMOTE_FORGOTTEN_AFTER: Duration = Duration::from_secs(30);

impl ConnectorRegistry {
    /// Adds a connector's status.
    pub fn register(&self, status: std::sync::Arc<ConnectorStatus>) {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(status);
    }

    /// Records the state another process (`node`) reports of one of its
    /// connectors.
    pub fn report(&self, node: &str, snapshot: ConnectorSnapshot) {
        self.remote
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                (node.to_owned(), snapshot.exchange),
                (snapshot, Instant::now()),
            );
    }

    /// Shows `note` with this process's connectors of `exchange` (their
    /// snapshots carry it).
    pub fn annotate(&self, exchange: Exchange, note: String) {
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(exchange, note);
    }

    /// Records that processor `node` is alive.
    pub fn report_processor(&self, node: &str) {
        self.processors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(node.to_owned(), Instant::now());
    }

    /// The processors that reported within [`REMOTE_FORGOTTEN_AFTER`].
    #[must_use]
    pub fn processors(&self) -> Vec<String> {
        let mut processors = self
            .processors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        processors.retain(|_, at| at.elapsed() < REMOTE_FORGOTTEN_AFTER);
        processors.keys().cloned().collect()
    }

    /// The state of every registered connector, in registration order,
    /// then those other processes reported lately (by process, then venue).
    #[must_use]
    pub fn snapshots(&self) -> Vec<ConnectorSnapshot> {
        let mut out: Vec<ConnectorSnapshot> = self.local();
        let mut remote = self
            .remote
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        remote.retain(|_, (_, at)| at.elapsed() < REMOTE_FORGOTTEN_AFTER);
        out.extend(remote.values().map(|(s, _)| s.clone()));
        out
    }

    /// The state of this process's own connectors, in registration order.
    #[must_use]
    pub fn local(&self) -> Vec<ConnectorSnapshot> {
        let notes = self
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|s| {
                let mut snapshot = s.snapshot();
                if let Some(note) = notes.get(&snapshot.exchange) {
                    snapshot.note = Some(note.clone());
                }
                snapshot
            })
            .collect()
    }
}

/// The WebSocket protocol and default URL of `exchange`. `kraken_v1` picks
/// Kraken's v1 API instead of v2.
#[must_use]
pub fn protocol_for(
    exchange: Exchange,
    kraken_v1: bool,
) -> Option<(std::sync::Arc<dyn connector::WsProtocol>, &'static str)> {
    use std::sync::Arc;
    Some(match exchange {
        Exchange::Binance => (
            Arc::new(crate::binance::BinanceProtocol),
            crate::binance::DEFAULT_WS_URL,
        ),
        Exchange::Coinbase => (
            Arc::new(crate::coinbase::ws::CoinbaseProtocol),
            crate::coinbase::ws::DEFAULT_WS_URL,
        ),
        Exchange::CoinbaseExchange => (
            Arc::new(crate::coinbase_exchange::ws::CoinbaseExchangeProtocol),
            crate::coinbase_exchange::ws::DEFAULT_WS_URL,
        ),
        Exchange::Bitfinex => (
            Arc::new(crate::bitfinex::ws::BitfinexProtocol),
            crate::bitfinex::ws::DEFAULT_WS_URL,
        ),
        Exchange::Kraken if kraken_v1 => (
            Arc::new(crate::kraken::ws::KrakenProtocol::V1),
            crate::kraken::ws::V1_WS_URL,
        ),
        Exchange::Kraken => (
            Arc::new(crate::kraken::ws::KrakenProtocol::V2),
            crate::kraken::ws::DEFAULT_WS_URL,
        ),
        Exchange::Bitstamp => (
            Arc::new(crate::bitstamp::ws::BitstampProtocol),
            crate::bitstamp::ws::DEFAULT_WS_URL,
        ),
        Exchange::Okx => (
            Arc::new(crate::okx::ws::OkxProtocol),
            crate::okx::ws::DEFAULT_WS_URL,
        ),
        Exchange::Bybit => (
            Arc::new(crate::bybit::ws::BybitProtocol),
            crate::bybit::ws::DEFAULT_WS_URL,
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_jitters_and_resets() {
        let policy = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(800),
            multiplier: 2.0,
            jitter: 0.5,
        };
        let mut b = Backoff::new(policy, 42);
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        let ceilings = [100, 200, 400, 800, 800, 800];
        for (d, c) in delays.iter().zip(ceilings) {
            assert!(
                *d <= Duration::from_millis(c) && *d >= Duration::from_millis(c / 2),
                "{d:?} vs {c}"
            );
        }
        assert!(
            delays.windows(2).any(|w| w[0] != w[1]),
            "jitter varies the delays"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
