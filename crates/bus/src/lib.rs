//! The bus: what flows between candlekeep's stages, and how.
//!
//! - [`Event`]: everything a source emits and a sink consumes.
//! - [`RawMessage`]: one message exactly as an exchange sent it, for tapes.
//! - [`channel`]: a bounded channel whose depth is visible in metrics. Every
//!   edge of the pipeline is one; a full channel makes the sender wait
//!   (backpressure), so nothing is dropped on the store path.
//! - [`metrics`]: process-wide counters and gauges, rendered in Prometheus text.

#![warn(missing_docs)]

pub mod books;
pub mod connectors;
pub mod gap_queue;
pub mod health;
pub mod metrics;
pub mod record_json;
pub mod secrets;

use std::sync::Arc;

use ck_model::{
    BackfillProgress, Candle, Exchange, Gap, Instrument, InstrumentInfo, Quote, Trade, Ts,
};

/// One message exactly as received from an exchange (or read from a tape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The venue that sent it.
    pub exchange: Exchange,
    /// When it was received, local clock.
    pub ts_received: Ts,
    /// Which channel carried it.
    pub origin: Origin,
    /// The raw text, byte for byte.
    pub data: String,
}

/// The channel a raw message came over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A WebSocket text frame.
    Ws,
    /// A REST response body, with the URL that was fetched.
    Rest {
        /// The request URL.
        url: String,
    },
}

/// Bad input that was skipped: counted, logged and stored, never silent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IngestError {
    /// The venue, when known.
    pub exchange: Option<Exchange>,
    /// Where it came from: a file and line, a connection name.
    pub origin: String,
    /// What was wrong.
    pub message: String,
    /// The start of the offending input.
    pub excerpt: String,
    /// When it was seen.
    pub ts: Ts,
    /// The instrument and numeric trade id of a trade whose row could not
    /// be used (an import's bad row): the gap detector takes the id as seen,
    /// so a bad row is an ingest error, not a gap. Not stored or sent.
    #[serde(skip)]
    pub skipped_trade: Option<(Instrument, u64)>,
}

impl IngestError {
    /// Builds an error record, keeping at most 200 characters of the input.
    #[must_use]
    pub fn new(
        exchange: Option<Exchange>,
        origin: impl Into<String>,
        message: impl Into<String>,
        input: &str,
    ) -> IngestError {
        IngestError {
            exchange,
            origin: origin.into(),
            message: message.into(),
            excerpt: input.chars().take(200).collect(),
            ts: Ts::now(),
            skipped_trade: None,
        }
    }
}

/// Everything that flows from sources through processors to sinks.
#[derive(Debug, Clone)]
pub enum Event {
    /// A normalized trade.
    Trade(Trade),
    /// Best bid and ask.
    Quote(Quote),
    /// A candle: provisional, closed or revised. Boxed: candles are large and
    /// rarer than trades, and every event moves through queues by value.
    Candle(Box<Candle>),
    /// An instrument listing.
    Instrument(InstrumentInfo),
    /// Input that could not be used.
    IngestError(IngestError),
    /// Trades known to be missing, or a known gap's new state (filled,
    /// unfillable): a gap is identified by instrument, time and id range.
    Gap(Gap),
    /// The exchange's own candle, fetched to verify ours; stored apart.
    ExchangeCandle(Box<Candle>),
    /// A backfill job's position, committed after the data before it.
    Progress(BackfillProgress),
    /// Instruments this process stops building candles for: a processor
    /// handing their stream partition to another. The candle stage forgets
    /// their open candles and trade-id continuity (the next owner rebuilds
    /// them from the store); nothing is stored or published.
    Release(Vec<(Exchange, Instrument)>),
}

/// The stream partition of an instrument among `partitions`: FNV-1a (32
/// bits) of `exchange:instrument`, modulo the count. Every collector and
/// processor computes the same, whichever the engine, so a processor knows
/// which instruments a partition holds without reading it.
#[must_use]
pub fn partition_of(exchange: Exchange, instrument: &str, partitions: u32) -> u32 {
    let key = exchange
        .as_str()
        .bytes()
        .chain([b':'])
        .chain(instrument.bytes());
    fnv1a(key) % partitions.max(1)
}

/// [`partition_of`] of a key already joined, `exchange:instrument`.
#[must_use]
pub fn partition_of_key(key: &str, partitions: u32) -> u32 {
    fnv1a(key.bytes()) % partitions.max(1)
}

fn fnv1a(bytes: impl Iterator<Item = u8>) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// An error and its causes on one line (`connect: tcp: connection
/// refused`), for logs and stored errors: `Display` of most errors names
/// only the outermost.
#[must_use]
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some errors repeat their cause in their own message.
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

/// The sending half of a bounded pipeline edge.
#[derive(Debug)]
pub struct Sender<T> {
    inner: tokio::sync::mpsc::Sender<T>,
    depth: Arc<metrics::Gauge>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            inner: self.inner.clone(),
            depth: self.depth.clone(),
        }
    }
}

/// The receiving half of a bounded pipeline edge.
#[derive(Debug)]
pub struct Receiver<T> {
    inner: tokio::sync::mpsc::Receiver<T>,
    depth: Arc<metrics::Gauge>,
}

/// The receiver is gone: the pipeline is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pipeline channel closed")
    }
}

impl std::error::Error for Closed {}

/// A bounded channel named `name`; its depth is the gauge
/// `candlekeep_queue_depth{queue="name"}`.
#[must_use]
pub fn channel<T>(name: &str, capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    let depth = metrics::gauge(&format!("candlekeep_queue_depth{{queue=\"{name}\"}}"));
    (
        Sender {
            inner: tx,
            depth: depth.clone(),
        },
        Receiver { inner: rx, depth },
    )
}

/// A sender that does not keep its channel open: for side records (failed
/// REST requests) from components that outlive a pipeline run.
#[derive(Debug)]
pub struct WeakSender<T> {
    inner: tokio::sync::mpsc::WeakSender<T>,
    depth: Arc<metrics::Gauge>,
}

impl<T> Clone for WeakSender<T> {
    fn clone(&self) -> Self {
        WeakSender {
            inner: self.inner.clone(),
            depth: self.depth.clone(),
        }
    }
}

impl<T> WeakSender<T> {
    /// A sender, if the channel is still open.
    #[must_use]
    pub fn upgrade(&self) -> Option<Sender<T>> {
        Some(Sender {
            inner: self.inner.upgrade()?,
            depth: self.depth.clone(),
        })
    }
}

impl<T> Sender<T> {
    /// A weak handle: sends while others keep the channel open.
    #[must_use]
    pub fn downgrade(&self) -> WeakSender<T> {
        WeakSender {
            inner: self.inner.downgrade(),
            depth: self.depth.clone(),
        }
    }

    /// Sends, waiting while the channel is full (backpressure).
    pub async fn send(&self, value: T) -> Result<(), Closed> {
        self.inner.send(value).await.map_err(|_| Closed)?;
        self.depth.add(1);
        Ok(())
    }
}

impl<T> Sender<T> {
    /// Sends from a blocking thread (file readers), waiting while full.
    ///
    /// # Panics
    /// Panics if called from inside an async task; use [`Sender::send`] there.
    pub fn blocking_send(&self, value: T) -> Result<(), Closed> {
        // Without waiting when there is room: parking costs more than a
        // small message (an import sends a trade at a time).
        match self.inner.try_send(value) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(value)) => {
                self.inner.blocking_send(value).map_err(|_| Closed)?;
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return Err(Closed),
        }
        self.depth.add(1);
        Ok(())
    }
}

impl<T> Receiver<T> {
    /// The next value, or `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        let v = self.inner.recv().await;
        if v.is_some() {
            self.depth.add(-1);
        }
        v
    }

    /// Takes up to `limit` values that are ready now, after waiting for the first.
    /// Returns 0 once the channel is closed and empty.
    pub async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> usize {
        let n = self.inner.recv_many(buf, limit).await;
        self.depth.add(-i64::try_from(n).unwrap_or(i64::MAX));
        n
    }
}

/// Live events for subscribers that must never slow the pipeline: a
/// broadcast whose receivers each lag on their own, losing the oldest
/// updates (and learning how many) when they fall behind.
pub type LiveFeed = tokio::sync::broadcast::Sender<Arc<Event>>;

/// A feed holding up to `capacity` updates per subscriber.
#[must_use]
pub fn live_feed(capacity: usize) -> LiveFeed {
    tokio::sync::broadcast::channel(capacity.max(1)).0
}

/// Where the wall-clock time comes from. Parsers and processors never read
/// the system clock directly, so tests can drive time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Ts;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Ts {
        Ts::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channel_depth_is_visible_and_closing_ends_the_receiver() {
        let (tx, mut rx) = channel::<u32>("ck-test-queue", 4);
        tx.send(1).await.expect("send");
        tx.send(2).await.expect("send");
        let depth = metrics::gauge("candlekeep_queue_depth{queue=\"ck-test-queue\"}");
        assert_eq!(depth.get(), 2);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(depth.get(), 1);
        drop(tx);
        let mut buf = Vec::new();
        assert_eq!(rx.recv_many(&mut buf, 10).await, 1);
        assert_eq!(rx.recv_many(&mut buf, 10).await, 0, "closed and empty");
        assert_eq!(depth.get(), 0);
    }

    #[test]
    fn partitions_are_fixed_and_spread() {
        // FNV-1a of "binance:BTC-USDT", pinned: collectors and processors
        // of different versions must agree.
        assert_eq!(
            partition_of(Exchange::Binance, "BTC-USDT", u32::MAX),
            3_520_816_755
        );
        assert_eq!(partition_of(Exchange::Binance, "BTC-USDT", 12), 3);
        assert_eq!(partition_of(Exchange::Binance, "BTC-USDT", 1), 0);
        assert_eq!(
            partition_of(Exchange::Binance, "BTC-USDT", 0),
            0,
            "no partitions is one"
        );
        let mut used = std::collections::BTreeSet::new();
        for i in 0..64 {
            used.insert(partition_of(Exchange::Coinbase, &format!("C{i}-USD"), 6));
        }
        assert_eq!(
            used.len(),
            6,
            "64 instruments reach all 6 partitions: {used:?}"
        );
    }
}
