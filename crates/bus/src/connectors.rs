//! The state of a process's connectors, for status output, readiness and
//! the API: each connector updates its [`ConnectorStatus`]; the
//! [`ConnectorRegistry`] holds them, and on an API node the states the
//! collectors report over NATS.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ck_model::{Exchange, Instrument, Ts};

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

    /// The connector is now in `state`.
    pub fn set_state(&self, state: ConnectionState) {
        self.with(|s| s.state = state);
    }

    /// A message arrived at `at`.
    pub fn on_message(&self, at: Ts) {
        self.with(|s| {
            s.messages += 1;
            s.last_message = Some(at);
        });
    }

    /// A stale instrument was resubscribed.
    pub fn on_resubscribe(&self) {
        self.with(|s| s.resubscribes += 1);
    }

    /// The connection was lost (with its error, if any).
    pub fn on_disconnect(&self, error: Option<String>) {
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
