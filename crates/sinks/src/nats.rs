//! NATS JetStream, where collectors publish and processors and API nodes
//! read (`run --role collector|processor|api`): the connection (the stream
//! made or updated on connect), the wire format (JSON, a message per
//! subject holding a batch of events), and the publisher, which waits for
//! every acknowledgement and retries what failed, so that a NATS outage
//! stalls capture and never drops. The roles themselves are in `ck-app`
//! (`cluster/`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use ck_bus::IngestError;
use ck_bus::{Event, metrics};
use ck_model::{Candle, Exchange, Gap, Instrument, InstrumentInfo, Quote, Trade};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// NATS JetStream, for `run --role collector|processor|api`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// The server, `nats://HOST:PORT`.
    pub url: String,
    /// The JetStream stream holding trades, quotes, gaps and listings
    /// (created on start if missing; its limits are updated to these).
    pub stream: String,
    /// Subject prefix: collectors publish `<prefix>.trades.<exchange>.<instrument>`,
    /// `<prefix>.quotes.…`, `<prefix>.gaps.…` and `<prefix>.meta.…`;
    /// processors publish live updates on `<prefix>.live.…` (not stored).
    pub subject_prefix: String,
    /// How long the stream keeps messages, in hours.
    pub max_age_hours: u64,
    /// The stream's size limit in bytes (oldest dropped first); 0 for none.
    pub max_bytes: i64,
    /// JetStream's de-duplication window (by message id), in seconds.
    pub duplicate_window_secs: u64,
    /// The processors' durable consumer. Processors sharing a name share
    /// the work; each name receives every message.
    pub consumer: String,
    /// Seconds before a message a processor took but did not acknowledge
    /// (it died, or its store is stuck) is delivered again.
    pub ack_wait_secs: u64,
    /// Seconds a processor's lease lasts unrenewed. One processor per
    /// consumer works; others wait as hot standbys and take over when the
    /// active one's lease lapses (renewed every third of it; released at
    /// once on a clean stop). With `partitions` above one, a lease per
    /// partition.
    pub lease_secs: u64,
    /// Partitions of the stream: with more than one, collectors put each
    /// instrument's partition ([`ck_bus::partition_of`]) in its subjects
    /// (`<prefix>.part.<partition>.trades.<exchange>.<instrument>`), and
    /// processors share the partitions out, each with a durable consumer
    /// and a lease of its own, moved when a processor joins or leaves. One
    /// (the default) keeps the subjects unpartitioned: one processor works
    /// and the others stand by. Every collector and processor of a stream
    /// must agree on it.
    pub partitions: u32,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: "CANDLEKEEP".into(),
            subject_prefix: "candlekeep".into(),
            max_age_hours: 24 * 7,
            max_bytes: 0,
            duplicate_window_secs: 120,
            consumer: "processor".into(),
            ack_wait_secs: 30,
            lease_secs: 10,
            partitions: 1,
        }
    }
}

/// One message on the wire (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Wire {
    /// A trade.
    Trade(Trade),
    /// Best bid and ask.
    Quote(Quote),
    /// A gap, or a gap's new state.
    Gap(Gap),
    /// An instrument listing.
    Instrument(InstrumentInfo),
    /// Bad input a collector skipped.
    Error(IngestError),
    /// A candle update (live subjects only).
    Candle(Candle),
}

impl Wire {
    /// The message of `event`, if it goes on the wire.
    #[must_use]
    pub fn from_event(event: &Event) -> Option<Wire> {
        Some(match event {
            Event::Trade(t) => Wire::Trade(t.clone()),
            Event::Quote(q) => Wire::Quote(q.clone()),
            Event::Gap(g) => Wire::Gap(g.clone()),
            Event::Instrument(i) => Wire::Instrument(i.clone()),
            Event::IngestError(e) => Wire::Error(e.clone()),
            Event::Candle(c) => Wire::Candle((**c).clone()),
            Event::ExchangeCandle(_) | Event::Progress(_) | Event::Release(_) => return None,
        })
    }

    /// A message's events: a collector's batch (a JSON array), or one
    /// event (as collectors before batching sent them).
    ///
    /// # Errors
    /// When the payload is not such JSON.
    pub fn decode(payload: &[u8]) -> Result<Vec<Wire>, serde_json::Error> {
        let first = payload.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            serde_json::from_slice(payload)
        } else {
            serde_json::from_slice(payload).map(|w| vec![w])
        }
    }

    /// The event it carries.
    #[must_use]
    pub fn into_event(self) -> Event {
        match self {
            Wire::Trade(t) => Event::Trade(t),
            Wire::Quote(q) => Event::Quote(q),
            Wire::Gap(g) => Event::Gap(g),
            Wire::Instrument(i) => Event::Instrument(i),
            Wire::Error(e) => Event::IngestError(e),
            Wire::Candle(c) => Event::Candle(Box::new(c)),
        }
    }
}

/// A connection to NATS with the stream in place.
#[derive(Debug)]
pub struct Cluster {
    /// The core NATS client (live updates, status, the lease).
    pub client: async_nats::Client,
    /// JetStream on it.
    pub js: jetstream::Context,
    /// What it was connected with.
    pub config: NatsConfig,
}

impl Cluster {
    /// Connects, and creates the stream if missing (or updates its limits).
    ///
    /// # Errors
    /// When NATS cannot be reached or the stream cannot be made.
    pub async fn connect(config: &NatsConfig) -> anyhow::Result<Arc<Cluster>> {
        let client = async_nats::ConnectOptions::new()
            .name("candlekeep")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(config.url.as_str())
            .await
            .with_context(|| {
                format!(
                    "connecting to NATS at {}",
                    ck_bus::secrets::redact_credentials(&config.url)
                )
            })?;
        let js = jetstream::new(client.clone());
        let p = &config.subject_prefix;
        let wanted = stream::Config {
            name: config.stream.clone(),
            subjects: ["trades", "quotes", "gaps", "meta", "part"]
                .iter()
                .map(|k| format!("{p}.{k}.>"))
                .collect(),
            max_age: Duration::from_secs(config.max_age_hours.max(1) * 3600),
            max_bytes: if config.max_bytes > 0 {
                config.max_bytes
            } else {
                -1
            },
            duplicate_window: Duration::from_secs(config.duplicate_window_secs.max(1)),
            storage: stream::StorageType::File,
            ..stream::Config::default()
        };
        js.create_or_update_stream(wanted)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("creating the JetStream stream {}", config.stream))?;
        tracing::info!(url = %ck_bus::secrets::redact_credentials(&config.url), stream = %config.stream, prefix = %p, "joined NATS JetStream");
        Ok(Arc::new(Cluster {
            client,
            js,
            config: config.clone(),
        }))
    }

    /// Publishes events as a collector does (subjects, message ids, every
    /// acknowledgement awaited, failures retried); how many were published.
    pub async fn publish(&self, events: &[Event]) -> u64 {
        self.publish_all(events, &CancellationToken::new()).await
    }

    /// Publishes events to JetStream and waits for every acknowledgement,
    /// retrying (with backoff, for ever) those that fail. Returns how many
    /// events were published.
    ///
    /// The events of one subject go as one message (a JSON array, in their
    /// order; at most [`MAX_BATCH_EVENTS`] and about [`MAX_BATCH_BYTES`]),
    /// so a busy instrument costs JetStream, the network and the processor's
    /// acknowledgements one message per batch instead of one per trade.
    pub async fn publish_all(&self, events: &[Event], stop: &CancellationToken) -> u64 {
        let published = metrics::counter("candlekeep_nats_published_total");
        let retries = metrics::counter("candlekeep_nats_publish_retries_total");
        let (prefix, partitions) = (&self.config.subject_prefix, self.config.partitions);
        let messages = batches(events, |e| address(prefix, partitions, e));
        let total: u64 = messages.iter().map(|m| m.events).sum();
        let mut pending: Vec<usize> = (0..messages.len()).collect();
        let mut delay = Duration::from_millis(100);
        loop {
            let mut acks = Vec::with_capacity(pending.len());
            let mut failed = Vec::new();
            for &i in &pending {
                let m = &messages[i];
                let mut msg = PublishMessage::build().payload(m.body.clone().into());
                if let Some(id) = &m.id {
                    msg = msg.message_id(id);
                }
                match self.js.send_publish(m.subject.clone(), msg).await {
                    Ok(ack) => acks.push((i, ack)),
                    Err(e) => {
                        tracing::debug!(error = %e, "publish failed");
                        failed.push(i);
                    }
                }
            }
            for (i, ack) in acks {
                if let Err(e) = ack.await {
                    tracing::debug!(error = %e, "publish not acknowledged");
                    failed.push(i);
                }
            }
            let events_in = |list: &[usize]| list.iter().map(|&i| messages[i].events).sum::<u64>();
            published.inc_by(events_in(&pending) - events_in(&failed));
            if failed.is_empty() {
                return total;
            }
            retries.inc_by(failed.len() as u64);
            tracing::warn!(
                failed = failed.len(),
                retry_in = ?delay,
                "JetStream did not take every message; publishing them again"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled(), if delay > Duration::from_secs(5) => {
                    tracing::error!(lost = events_in(&failed), "stopping with events NATS never acknowledged");
                    return total - events_in(&failed);
                }
            }
            delay = (delay * 2).min(Duration::from_secs(10));
            failed.sort_unstable();
            pending = failed;
        }
    }
}

/// The subject and de-duplication id of an event, if it is published:
/// `<p>.<kind>.<exchange>.<instrument>`, or, when the stream has more than
/// one partition, `<p>.part.<partition>.<kind>.<exchange>.<instrument>`
/// (NATS 2.9 wants a consumer's one filter, `<p>.part.<k>.>`, inside one
/// of the stream's subjects).
fn address(p: &str, partitions: u32, event: &Event) -> Option<(String, Option<String>)> {
    let at = |kind: &str, e: Exchange, i: &Instrument| {
        if partitions > 1 {
            let k = ck_bus::partition_of(e, i.as_str(), partitions);
            format!("{p}.part.{k}.{kind}.{e}.{i}")
        } else {
            format!("{p}.{kind}.{e}.{i}")
        }
    };
    Some(match event {
        Event::Trade(t) => (
            at("trades", t.exchange, &t.instrument),
            Some(format!("t:{}:{}:{}", t.exchange, t.instrument, t.trade_id)),
        ),
        Event::Quote(q) => (
            at("quotes", q.exchange, &q.instrument),
            Some(format!(
                "q:{}:{}:{}:{}",
                q.exchange, q.instrument, q.ts_exchange.0, q.ts_received.0
            )),
        ),
        Event::Gap(g) => (
            at("gaps", g.exchange, &g.instrument),
            Some(format!(
                "g:{}:{}:{}:{}:{}",
                g.exchange,
                g.instrument,
                g.from_ts.0,
                g.to_ts.0,
                g.state.as_str()
            )),
        ),
        Event::Instrument(i) => (at("meta", i.exchange, &i.instrument), None),
        Event::IngestError(e) => {
            let exchange = e.exchange.map_or("unknown", Exchange::as_str);
            let subject = if partitions > 1 {
                let k = ck_bus::partition_of_key(&format!("{exchange}:errors"), partitions);
                format!("{p}.part.{k}.meta.{exchange}.errors")
            } else {
                format!("{p}.meta.{exchange}.errors")
            };
            (subject, None)
        }
        _ => return None,
    })
}

/// The messages `events` go as: per place (a NATS subject, a Kafka key)
/// that `place` gives with the event's id, runs of events in their
/// order. A message's id joins its first and last event's ids and its
/// length, so a message published again (a retry) is the same message
/// to JetStream's de-duplication.
pub(crate) fn batches(
    events: &[Event],
    place: impl Fn(&Event) -> Option<(String, Option<String>)>,
) -> Vec<Batch> {
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut batches: Vec<Batch> = Vec::new();
    for event in events {
        let (Some((subject, id)), Some(wire)) = (place(event), Wire::from_event(event)) else {
            continue;
        };
        let at = match open.get(&subject) {
            Some(&at)
                if batches[at].events < MAX_BATCH_EVENTS as u64
                    && batches[at].body.len() < MAX_BATCH_BYTES =>
            {
                at
            }
            _ => {
                open.insert(subject.clone(), batches.len());
                batches.push(Batch {
                    subject,
                    id: None,
                    first_id: id.clone(),
                    body: b"[".to_vec(),
                    events: 0,
                });
                batches.len() - 1
            }
        };
        let batch = &mut batches[at];
        let start = batch.body.len();
        if batch.events > 0 {
            batch.body.extend_from_slice(b",");
        }
        match serde_json::to_writer(&mut batch.body, &wire) {
            Ok(()) => {
                batch.events += 1;
                batch.id = id;
            }
            Err(e) => {
                batch.body.truncate(start);
                tracing::error!(error = %e, "could not encode an event for the cluster stream");
            }
        }
    }
    for batch in &mut batches {
        batch.body.extend_from_slice(b"]");
        batch.id = batch
            .first_id
            .take()
            .zip(batch.id.take())
            .map(|(first, last)| format!("{first}..{last}#{}", batch.events));
    }
    batches.retain(|b| b.events > 0);
    batches
}

/// The most events one message carries.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// A message is closed once its body reaches this size (NATS refuses
/// messages over its `max_payload`, 1 MB by default).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// One message to publish: events of one subject, as a JSON array.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The NATS subject, or the Kafka key.
    pub(crate) subject: String,
    /// The message id; while the batch fills, its last event's id.
    pub(crate) id: Option<String>,
    /// The first event's id, while the batch fills.
    first_id: Option<String>,
    pub(crate) body: Vec<u8>,
    pub(crate) events: u64,
}

/// This process, as its connector reports name it: host and process id.
#[must_use]
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}/{}", std::process::id())
}

/// Reads every core NATS message under `<prefix>.<kind>.>` as JSON of `T`
/// and hands it to `take`, until `stop`; what does not decode is counted
/// and logged.
///
/// # Errors
/// When the subscription cannot be made.
pub async fn follow<T: serde::de::DeserializeOwned>(
    cluster: &Cluster,
    kind: &str,
    stop: CancellationToken,
    mut take: impl FnMut(T),
) -> anyhow::Result<()> {
    let subject = format!("{}.{kind}.>", cluster.config.subject_prefix);
    let mut sub = cluster
        .client
        .subscribe(subject.clone())
        .await
        .with_context(|| format!("subscribing to {subject}"))?;
    let bad = metrics::counter("candlekeep_nats_undecodable_total");
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            m = sub.next() => match m {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        match serde_json::from_slice::<T>(&message.payload) {
            Ok(value) => take(value),
            Err(e) => {
                bad.inc();
                tracing::warn!(subject = %message.subject, error = %e, "undecodable {kind} message skipped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ck_model::{BackfillProgress, Ts};

    #[test]
    fn wire_round_trips_exactly() {
        let trade = Trade {
            exchange: Exchange::Binance,
            instrument: Instrument::parse("BTC-USDT").expect("instrument"),
            trade_id: ck_model::TradeId::Num(u64::MAX),
            price: ck_model::Decimal::parse("61837.63000000").expect("price"),
            size: ck_model::Decimal::parse("0.00100000").expect("size"),
            side: ck_model::Side::Sell,
            ts_exchange: Ts(1_723_075_200_123_456_789),
            ts_received: Ts(1_723_075_200_223_456_789),
            fills: 3,
        };
        let text = serde_json::to_string(&Wire::Trade(trade.clone())).expect("encode");
        let back: Wire = serde_json::from_str(&text).expect("decode");
        assert!(
            matches!(back, Wire::Trade(t) if t == trade),
            "nanoseconds, decimals and ids survive: {text}"
        );
    }

    fn trade(instrument: &str, id: u64) -> Event {
        Event::Trade(Trade {
            exchange: Exchange::Binance,
            instrument: Instrument::parse(instrument).expect("instrument"),
            trade_id: ck_model::TradeId::Num(id),
            price: ck_model::Decimal::parse("61837.63").expect("price"),
            size: ck_model::Decimal::parse("0.001").expect("size"),
            side: ck_model::Side::Buy,
            ts_exchange: Ts::from_secs(id as i64),
            ts_received: Ts::from_secs(id as i64),
            fills: 1,
        })
    }

    fn ids(batch: &Batch) -> Vec<u64> {
        Wire::decode(&batch.body)
            .expect("a batch decodes")
            .into_iter()
            .map(|w| match w {
                Wire::Trade(t) => match t.trade_id {
                    ck_model::TradeId::Num(n) => n,
                    ck_model::TradeId::Str(_) => panic!("numeric ids"),
                },
                other => panic!("a trade: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn events_go_in_one_message_per_subject_in_order() {
        let mut events = Vec::new();
        for id in 1..=2_500 {
            events.push(trade(if id % 2 == 0 { "BTC-USDT" } else { "ETH-USDT" }, id));
        }
        events.push(Event::Progress(BackfillProgress {
            job: "not published".into(),
            cursor: "1".into(),
            done: false,
            updated_at: Ts(0),
        }));
        let made = batches(&events, |e| address("ck", 1, e));
        let shape: Vec<(&str, u64)> = made
            .iter()
            .map(|b| (b.subject.as_str(), b.events))
            .collect();
        assert_eq!(
            shape,
            [
                ("ck.trades.binance.ETH-USDT", 1_000),
                ("ck.trades.binance.BTC-USDT", 1_000),
                ("ck.trades.binance.ETH-USDT", 250),
                ("ck.trades.binance.BTC-USDT", 250),
            ],
            "at most {MAX_BATCH_EVENTS} events a message, one subject each"
        );
        let btc: Vec<u64> = made
            .iter()
            .filter(|b| b.subject.ends_with("BTC-USDT"))
            .flat_map(ids)
            .collect();
        assert_eq!(
            btc,
            (1..=1_250).map(|i| i * 2).collect::<Vec<_>>(),
            "in order"
        );
        assert_eq!(
            made[0].id.as_deref(),
            Some("t:binance:ETH-USDT:1..t:binance:ETH-USDT:1999#1000"),
            "the same events make the same message id"
        );
        assert_eq!(
            batches(&events, |e| address("ck", 1, e))
                .iter()
                .map(|b| (&b.id, &b.body))
                .collect::<Vec<_>>(),
            made.iter().map(|b| (&b.id, &b.body)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn partitioned_subjects_name_the_instruments_partition() {
        let events = [trade("BTC-USDT", 1), trade("ETH-USDT", 2)];
        let subjects: Vec<String> = batches(&events, |e| address("ck", 6, e))
            .into_iter()
            .map(|b| b.subject)
            .collect();
        let p = |i: &str| ck_bus::partition_of(Exchange::Binance, i, 6);
        assert_eq!(
            subjects,
            [
                format!("ck.part.{}.trades.binance.BTC-USDT", p("BTC-USDT")),
                format!("ck.part.{}.trades.binance.ETH-USDT", p("ETH-USDT")),
            ]
        );
    }

    #[test]
    fn big_events_close_a_message_early() {
        let mut events = Vec::new();
        for id in 1..=200 {
            let mut message = "x".repeat(4_000);
            message.push_str(&id.to_string());
            events.push(Event::IngestError(IngestError::new(
                Some(Exchange::Binance),
                "test",
                message,
                "",
            )));
        }
        let made = batches(&events, |e| address("ck", 1, e));
        assert!(made.len() > 1, "{} messages", made.len());
        for b in &made {
            assert!(
                b.body.len() < MAX_BATCH_BYTES + 8_192,
                "a message stays near the bound: {} bytes",
                b.body.len()
            );
        }
        assert_eq!(made.iter().map(|b| b.events).sum::<u64>(), 200);
    }

    #[test]
    fn processors_read_batches_and_single_events() {
        let one = serde_json::to_vec(&Wire::from_event(&trade("BTC-USDT", 7)).expect("wire"))
            .expect("encode");
        let decoded = Wire::decode(&one).expect("a single event, as older collectors sent");
        assert!(
            matches!(decoded.as_slice(), [Wire::Trade(t)] if t.trade_id == ck_model::TradeId::Num(7))
        );
        let batch = &batches(&[trade("BTC-USDT", 8), trade("BTC-USDT", 9)], |e| {
            address("ck", 1, e)
        })[0];
        assert_eq!(ids(batch), [8, 9]);
        for bad in [&b"[{\"type\":\"trade\"}]"[..], b"", b"{", b" [1]"] {
            assert!(
                Wire::decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
