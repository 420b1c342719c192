//! What the stages of one running process share, beside its plain
//! [`Settings`](crate::config::Settings): the live feed, the registry of its
//! connectors, and a collector's NATS connection. The composition root
//! ([`crate::topology`]) makes one per process; clones share it.

use std::sync::Arc;

use ck_bus::LiveFeed;
use ck_bus::connectors::ConnectorRegistry;

use crate::cluster::Bus;

/// Updates the live feed holds for each reader (the WebSocket encoder, the
/// Redis sink, alerts...) before the slowest loses the oldest: about six
/// seconds at 10,000 a second, for a few megabytes of pointers. A
/// WebSocket client's own queue is `api.ws_queue`, after the encoder.
pub const LIVE_FEED_CAPACITY: usize = 65_536;

/// The handles one process's stages share.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The live connectors (the pipeline registers them; the API shows them).
    pub connectors: Arc<ConnectorRegistry>,
    /// Live trades, quotes and candles for WebSocket clients, alerts and the
    /// Redis sink (the candle stage publishes; nobody waits on a slow reader).
    pub feed: LiveFeed,
    /// The order books captured live (the book recorder keeps them; the
    /// API reads them).
    pub books: ck_bus::books::LiveBooks,
    /// A collector's stream (NATS or Kafka): the pipeline publishes there
    /// instead of building candles and writing the store.
    pub publish_to: Option<Bus>,
}

impl Runtime {
    /// Fresh handles: no connectors yet, a live feed nobody reads yet.
    #[must_use]
    pub fn new() -> Runtime {
        Runtime {
            connectors: Arc::default(),
            feed: ck_bus::live_feed(LIVE_FEED_CAPACITY),
            books: ck_bus::books::LiveBooks::default(),
            publish_to: None,
        }
    }
}

impl Default for Runtime {
    fn default() -> Runtime {
        Runtime::new()
    }
}
