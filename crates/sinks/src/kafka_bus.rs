//! Kafka as the cluster's stream (`[cluster] bus = "kafka"`), in place of
//! NATS JetStream: where collectors produce, processors consume as one
//! consumer group, and API nodes follow what processors and collectors
//! report. The roles themselves are in `ck-app` (`cluster/`).
//!
//! - `<prefix>.events` holds every normalized trade, quote, gap, listing
//!   and skipped input. A message is one instrument's events (a JSON array
//!   of up to 1,000 [`Wire`] events, as on NATS), keyed
//!   `exchange:instrument` and sent to partition
//!   [`ck_bus::partition_of_key`] of its key: an instrument's events stay in
//!   order in one partition, and a processor knows which instruments a
//!   partition holds without reading it. (The partition count is read from
//!   the topic: keep it fixed once the topic exists.)
//! - `<prefix>.notes` (one partition) carries what is not stored: the
//!   processors' live updates, the collectors' connector states and the
//!   processors' heartbeats, keyed `<kind>.<rest>` (`live.trades.binance.BTC-USDT`,
//!   `status.binance`, `processor.<node>`). API nodes read it from its end.
//! - The producer is idempotent with `acks=all` and lz4. A collector waits
//!   for every delivery and produces again what failed, with backoff, so a
//!   broker outage stalls capture's queues and never drops; what comes
//!   twice is deduplicated by trade id downstream.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ck_bus::{Event, metrics};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::nats::batches;

/// Which stream the cluster's roles meet on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterBus {
    /// NATS JetStream (`[nats]`), the default.
    #[default]
    Nats,
    /// Kafka (`[cluster]` brokers and topics).
    Kafka,
}

/// `[cluster]`: which engine joins collectors, processors and API nodes,
/// and, for Kafka, where and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `nats` (default) or `kafka` (env `CANDLEKEEP_CLUSTER__BUS`).
    pub bus: ClusterBus,
    /// Kafka's bootstrap brokers, `host:port[,…]`; empty uses `[kafka]
    /// brokers` (the sink's).
    pub brokers: String,
    /// Topics `<prefix>.events` and `<prefix>.notes`.
    pub topic_prefix: String,
    /// Partitions of `<prefix>.events` when it is created: the most
    /// processors that can share the work.
    pub partitions: i32,
    /// Replicas of each topic when it is created.
    pub replication: i32,
    /// The processors' consumer group.
    pub group: String,
    /// Seconds without a heartbeat before the group gives a processor's
    /// partitions to the others (a killed processor).
    pub session_timeout_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            bus: ClusterBus::Nats,
            brokers: String::new(),
            topic_prefix: "candlekeep.cluster".into(),
            partitions: 12,
            replication: 1,
            group: "candlekeep-processors".into(),
            session_timeout_secs: 10,
        }
    }
}

/// A connection to Kafka with the cluster's topics in place.
pub struct KafkaBus {
    /// What it was connected with (`brokers` filled in).
    pub config: ClusterConfig,
    producer: FutureProducer,
    partitions: u32,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.config.brokers)
            .field("prefix", &self.config.topic_prefix)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

/// How long [`KafkaBus::connect`] keeps trying to reach the brokers.
const CONNECT_FOR: Duration = Duration::from_secs(60);

impl KafkaBus {
    /// Connects to `config.brokers` (or `fallback_brokers` when empty),
    /// creates the topics where missing and reads the events topic's
    /// partition count. Keeps trying for a minute while no broker answers.
    ///
    /// # Errors
    /// When no brokers are configured, or none answers in time.
    pub async fn connect(
        config: &ClusterConfig,
        fallback_brokers: &str,
    ) -> anyhow::Result<Arc<KafkaBus>> {
        let mut config = config.clone();
        if config.brokers.trim().is_empty() {
            config.brokers = fallback_brokers.trim().to_owned();
        }
        anyhow::ensure!(
            !config.brokers.is_empty(),
            "[cluster] bus = \"kafka\" needs brokers: set [cluster] brokers \
             (CANDLEKEEP_CLUSTER__BROKERS) or [kafka] brokers"
        );
        let admin: AdminClient<DefaultClientContext> = client_config(&config.brokers)
            .create()
            .context("making a Kafka admin client")?;
        let (events, notes) = (config.events_topic(), config.notes_topic());
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let started = std::time::Instant::now();
        loop {
            let replication = || TopicReplication::Fixed(config.replication.max(1));
            let topics = [
                NewTopic::new(&events, config.partitions.max(1), replication()),
                NewTopic::new(&notes, 1, replication()),
            ];
            let problems = crate::kafka::create_missing(&admin, &topics, &options).await;
            if problems.is_empty() {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < CONNECT_FOR,
                "creating the cluster's Kafka topics at {}: {}",
                config.brokers,
                problems.join("; ")
            );
            tracing::warn!(brokers = %config.brokers, problems = ?problems, "kafka: cluster topics not ready; trying again");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let producer: FutureProducer = client_config(&config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .set("reconnect.backoff.max.ms", "2000")
            .create()
            .context("making the cluster's Kafka producer")?;
        let partitions = {
            let (brokers, topic) = (config.brokers.clone(), events.clone());
            tokio::task::spawn_blocking(move || count_partitions(&brokers, &topic))
                .await
                .context("reading the events topic's partitions")??
        };
        tracing::info!(brokers = %config.brokers, topic = %events, partitions, "joined the cluster over Kafka");
        Ok(Arc::new(KafkaBus {
            config,
            producer,
            partitions,
        }))
    }

    /// How many partitions the events topic has.
    #[must_use]
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Produces events as a collector does (one message per instrument's
    /// run, keyed and partitioned by instrument), waits for every delivery
    /// and produces again, with backoff, what failed, until `stop` comes
    /// while retrying. Returns how many events were delivered.
    pub async fn publish_all(&self, events: &[Event], stop: &CancellationToken) -> u64 {
        let published = metrics::counter("candlekeep_kafka_bus_published_total");
        let retries = metrics::counter("candlekeep_kafka_bus_publish_retries_total");
        let messages = batches(events, |e| key_of(e).map(|k| (k, None)));
        let total: u64 = messages.iter().map(|m| m.events).sum();
        let topic = self.config.events_topic();
        let mut pending: Vec<usize> = (0..messages.len()).collect();
        let mut delay = Duration::from_millis(100);
        loop {
            let mut deliveries = Vec::with_capacity(pending.len());
            let mut failed = Vec::new();
            for &i in &pending {
                let m = &messages[i];
                let partition = ck_bus::partition_of_key(&m.subject, self.partitions);
                let record = FutureRecord::to(&topic)
                    .key(m.subject.as_str())
                    .payload(m.body.as_slice())
                    .partition(i32::try_from(partition).unwrap_or(0));
                match self.producer.send_result(record) {
                    Ok(delivery) => deliveries.push((i, delivery)),
                    Err((e, _)) => {
                        tracing::debug!(error = %e, "not produced");
                        failed.push(i);
                    }
                }
            }
            for (i, delivery) in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => {
                        tracing::debug!(error = %e, "not delivered");
                        failed.push(i);
                    }
                    Err(_) => failed.push(i),
                }
            }
            let events_in = |list: &[usize]| list.iter().map(|&i| messages[i].events).sum::<u64>();
            published.inc_by(events_in(&pending) - events_in(&failed));
            if failed.is_empty() {
                return total;
            }
            retries.inc_by(failed.len() as u64);
            tracing::warn!(failed = failed.len(), retry_in = ?delay, "Kafka did not take every message; producing them again");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled(), if delay > Duration::from_secs(5) => {
                    tracing::error!(lost = events_in(&failed), "stopping with events Kafka never took");
                    return total - events_in(&failed);
                }
            }
            delay = (delay * 2).min(Duration::from_secs(10));
            failed.sort_unstable();
            pending = failed;
        }
    }

    /// Sends a note (`<kind>.<rest>`) on the notes topic without waiting:
    /// notes are current state, and the next one replaces a lost one.
    pub fn note(&self, key: &str, body: &[u8]) {
        let topic = self.config.notes_topic();
        let record = FutureRecord::to(&topic).key(key).payload(body).partition(0);
        if let Err((e, _)) = self.producer.send_result(record) {
            tracing::debug!(error = %e, key, "note not sent");
        }
    }

    /// Reads every note of `kind` from now on as JSON of `T` and hands it
    /// to `take`, until `stop`; what does not decode is counted and logged.
    ///
    /// # Errors
    /// When the consumer cannot be made.
    pub async fn follow<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        stop: CancellationToken,
        mut take: impl FnMut(T),
    ) -> anyhow::Result<()> {
        let consumer: StreamConsumer = client_config(&self.config.brokers)
            .set(
                "group.id",
                format!("candlekeep-follow-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .create()
            .context("making a Kafka consumer for the notes")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.config.notes_topic(), 0, Offset::End)
            .context("choosing the notes' partition")?;
        consumer.assign(&tpl).context("reading the notes")?;
        let prefix = format!("{kind}.");
        let bad = metrics::counter("candlekeep_kafka_bus_undecodable_total");
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                m = consumer.recv() => match m {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(error = %e, "kafka notes hiccup; continuing");
                        continue;
                    }
                },
            };
            let key = message.key().unwrap_or_default();
            if !key.starts_with(prefix.as_bytes()) {
                continue;
            }
            match serde_json::from_slice::<T>(message.payload().unwrap_or_default()) {
                Ok(value) => take(value),
                Err(e) => {
                    bad.inc();
                    tracing::warn!(key = %String::from_utf8_lossy(key), error = %e, "undecodable {kind} note skipped");
                }
            }
        }
    }

    /// A processor's consumer settings: the group, offsets committed only
    /// by hand (after the store commits), from the start of what the group
    /// never committed.
    #[must_use]
    pub fn processor_consumer_config(&self) -> ClientConfig {
        let session = self.config.session_timeout_secs.max(3) * 1_000;
        let mut c = client_config(&self.config.brokers);
        c.set("group.id", &self.config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session.to_string())
            .set(
                "heartbeat.interval.ms",
                (session / 3).max(1_000).to_string(),
            )
            .set("reconnect.backoff.max.ms", "2000");
        c
    }
}

impl ClusterConfig {
    /// `<prefix>.events`.
    #[must_use]
    pub fn events_topic(&self) -> String {
        format!("{}.events", self.topic_prefix)
    }

    /// `<prefix>.notes`.
    #[must_use]
    pub fn notes_topic(&self) -> String {
        format!("{}.notes", self.topic_prefix)
    }
}

/// The key of an event on the events topic: `exchange:instrument`
/// (`exchange:errors` for skipped input no instrument owns).
fn key_of(event: &Event) -> Option<String> {
    let key = |e: ck_model::Exchange, i: &ck_model::Instrument| format!("{e}:{i}");
    Some(match event {
        Event::Trade(t) => key(t.exchange, &t.instrument),
        Event::Quote(q) => key(q.exchange, &q.instrument),
        Event::Gap(g) => key(g.exchange, &g.instrument),
        Event::Instrument(i) => key(i.exchange, &i.instrument),
        Event::IngestError(e) => format!(
            "{}:errors",
            e.exchange.map_or("unknown", ck_model::Exchange::as_str)
        ),
        _ => return None,
    })
}

fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers.trim())
        .set("client.id", "candlekeep");
    c
}

/// The partition count of `topic` (blocking: metadata).
fn count_partitions(brokers: &str, topic: &str) -> anyhow::Result<u32> {
    let consumer: BaseConsumer = client_config(brokers)
        .create()
        .context("making a Kafka client for metadata")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let n = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(n > 0, "the topic {topic} has no partitions");
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats::Wire;
    use ck_model::{Decimal, Exchange, Instrument, Side, Trade, TradeId, Ts};

    fn trade(exchange: Exchange, instrument: &str, id: u64) -> Event {
        Event::Trade(Trade {
            exchange,
            instrument: Instrument::parse(instrument).expect("instrument"),
            trade_id: TradeId::Num(id),
            price: Decimal::parse("1").expect("price"),
            size: Decimal::parse("1").expect("size"),
            side: Side::Buy,
            ts_exchange: Ts(1),
            ts_received: Ts(1),
            fills: 1,
        })
    }

    #[test]
    fn one_message_per_instrument_keyed_and_partitioned_as_processors_expect() {
        let events = [
            trade(Exchange::Binance, "BTC-USDT", 1),
            trade(Exchange::Coinbase, "BTC-USD", 7),
            trade(Exchange::Binance, "BTC-USDT", 2),
        ];
        let made = batches(&events, |e| key_of(e).map(|k| (k, None)));
        let keys: Vec<(&str, u64)> = made
            .iter()
            .map(|b| (b.subject.as_str(), b.events))
            .collect();
        assert_eq!(keys, vec![("binance:BTC-USDT", 2), ("coinbase:BTC-USD", 1)]);
        let ids: Vec<String> = Wire::decode(&made[0].body)
            .expect("decodes")
            .into_iter()
            .map(|w| match w {
                Wire::Trade(t) => t.trade_id.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, ["1", "2"], "in order");
        for n in [1, 6, 12] {
            let by_key = ck_bus::partition_of_key(&made[0].subject, n);
            let by_instrument = ck_bus::partition_of(Exchange::Binance, "BTC-USDT", n);
            assert_eq!(by_key, by_instrument);
        }
    }

    #[test]
    fn the_config_names_its_topics_and_defaults_to_nats() {
        let c = ClusterConfig::default();
        assert_eq!(c.bus, ClusterBus::Nats);
        assert_eq!(c.events_topic(), "candlekeep.cluster.events");
        assert_eq!(c.notes_topic(), "candlekeep.cluster.notes");
    }
}
