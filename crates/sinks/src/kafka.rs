//! The Kafka sink: every trade, quote, closed or revised candle (and, when
//! asked, provisional ones) and gap, as it leaves the candle stage, to
//! `<prefix>.trades`, `<prefix>.quotes`, `<prefix>.candles` and
//! `<prefix>.gaps`. Each message is keyed `exchange:instrument`, so an
//! instrument stays in order in one partition; its value is the record's
//! JSON as the API pushes it ([`ck_bus::record_json`]).
//!
//! The producer is idempotent with `acks=all` and lz4 compression, its
//! buffer bounded (`queue_messages`). A broker that is down never holds up
//! capture or the store: librdkafka keeps retrying what it holds for
//! `delivery_timeout_secs`; what it gives up on, what does not fit the
//! buffer, and what the sink read too late from the live feed are counted
//! (`candlekeep_kafka_undelivered_total{reason}`) and logged, and delivery
//! resumes when the broker is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ck_bus::{Event, LiveFeed, metrics};
use ck_model::CandleState;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// `[kafka]`: where the sink writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`; empty turns the sink
    /// off (env `CANDLEKEEP_KAFKA__BROKERS`).
    pub brokers: String,
    /// Topics are `<prefix>.trades`, `.quotes`, `.candles` and `.gaps`.
    pub topic_prefix: String,
    /// Partitions of each topic created on start (existing topics are kept).
    pub partitions: i32,
    /// Replicas of each topic created on start.
    pub replication: i32,
    /// Also send provisional (still open) candles, not only closed and
    /// revised ones.
    pub provisional_candles: bool,
    /// Messages the producer holds for the broker at most; beyond, new ones
    /// are counted as undelivered (`reason="buffer_full"`).
    pub queue_messages: u32,
    /// How long a message may wait for the broker before it is counted as
    /// undelivered (`reason="broker"`).
    pub delivery_timeout_secs: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            topic_prefix: "candlekeep".into(),
            partitions: 6,
            replication: 1,
            provisional_candles: false,
            queue_messages: 500_000,
            delivery_timeout_secs: 300,
        }
    }
}

impl KafkaConfig {
    /// Whether the sink runs.
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    /// The topic of each kind: `trades`, `quotes`, `candles`, `gaps`.
    #[must_use]
    pub fn topic(&self, kind: &str) -> String {
        format!("{}.{kind}", self.topic_prefix)
    }
}

/// What the sink did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KafkaStats {
    /// Messages the broker acknowledged.
    pub delivered: u64,
    /// Messages the broker never took (after `delivery_timeout_secs`).
    pub failed: u64,
    /// Messages that did not fit the producer's buffer.
    pub buffer_full: u64,
    /// Messages the producer refused for another reason (too large, …).
    pub refused: u64,
    /// Updates the sink read too late from the live feed (they had gone).
    pub lagged: u64,
}

/// Counts deliveries as librdkafka reports them (on its own thread).
struct Counting {
    delivered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    delivered_metric: Arc<metrics::Counter>,
    failed_metric: Arc<metrics::Counter>,
    /// Set when the producer can no longer deliver anything (a fatal
    /// error, such as a broker that fenced it after an outage): the sink
    /// then makes a new one.
    broken: Arc<std::sync::atomic::AtomicBool>,
}

impl rdkafka::ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.delivered_metric.inc();
            }
            Err((e, _)) => {
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fatal)
                ) {
                    self.broken.store(true, Ordering::Relaxed);
                }
                let before = self.failed.fetch_add(1, Ordering::Relaxed);
                self.failed_metric.inc();
                // The first, then one in ten thousand: a broker down for an
                // hour fails millions.
                if before.is_multiple_of(10_000) {
                    tracing::warn!(error = %e, undelivered = before + 1, "kafka: messages the broker never took");
                }
            }
        }
    }
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
#[error("kafka: {0}")]
pub struct KafkaSinkError(#[from] KafkaError);

/// Sends the live feed's records to Kafka until `stop` (and what the feed
/// holds then), then waits up to ten seconds for what the producer still
/// holds. It reads the feed from the moment this is called, before the
/// future first runs.
pub fn run_kafka_sink(
    config: KafkaConfig,
    feed: &LiveFeed,
    stop: CancellationToken,
) -> impl std::future::Future<Output = Result<KafkaStats, KafkaSinkError>> + Send + 'static {
    let updates = feed.subscribe();
    sink(config, updates, stop)
}

async fn sink(
    config: KafkaConfig,
    mut updates: tokio::sync::broadcast::Receiver<Arc<Event>>,
    stop: CancellationToken,
) -> Result<KafkaStats, KafkaSinkError> {
    let delivered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let make = || -> Result<ThreadedProducer<Counting>, KafkaError> {
        client_config(&config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            // Back within two seconds of a broker's return (librdkafka's
            // default waits up to ten between attempts).
            .set("reconnect.backoff.max.ms", "2000")
            .set(
                "queue.buffering.max.messages",
                config.queue_messages.max(1).to_string(),
            )
            .set(
                "message.timeout.ms",
                (config.delivery_timeout_secs.max(1) * 1_000).to_string(),
            )
            .create_with_context(Counting {
                delivered: delivered.clone(),
                failed: failed.clone(),
                delivered_metric: metrics::counter("candlekeep_kafka_delivered_total"),
                failed_metric: metrics::counter(
                    "candlekeep_kafka_undelivered_total{reason=\"broker\"}",
                ),
                broken: broken.clone(),
            })
    };
    let mut producer = make()?;
    tokio::spawn(create_topics(config.clone(), stop.clone()));
    tracing::info!(brokers = %config.brokers, prefix = %config.topic_prefix, "kafka sink started");
    let mut stats = KafkaStats::default();
    let topics = ["trades", "quotes", "candles", "gaps"].map(|k| config.topic(k));
    let buffer_full =
        metrics::counter("candlekeep_kafka_undelivered_total{reason=\"buffer_full\"}");
    let refused = metrics::counter("candlekeep_kafka_undelivered_total{reason=\"refused\"}");
    let lagged = metrics::counter("candlekeep_kafka_undelivered_total{reason=\"lagged\"}");
    loop {
        let update = tokio::select! {
            biased;
            u = updates.recv() => u,
            () = stop.cancelled() => break,
        };
        let event = match update {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                stats.lagged += n;
                lagged.inc_by(n);
                tracing::warn!(missed = n, "kafka: the sink fell behind the live feed");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        };
        let (topic, key) = match event.as_ref() {
            Event::Trade(t) => (&topics[0], format!("{}:{}", t.exchange, t.instrument)),
            Event::Quote(q) => (&topics[1], format!("{}:{}", q.exchange, q.instrument)),
            Event::Candle(c) => {
                if c.state == CandleState::Provisional && !config.provisional_candles {
                    continue;
                }
                (&topics[2], format!("{}:{}", c.exchange, c.instrument))
            }
            Event::Gap(g) => (&topics[3], format!("{}:{}", g.exchange, g.instrument)),
            _ => continue,
        };
        let Some(value) = ck_bus::record_json::record_json(event.as_ref()) else {
            continue;
        };
        // Set by the delivery reports of a fatal error (no lock per message).
        if broken.load(Ordering::Relaxed) {
            // A fatal error (after an outage, the broker may fence the
            // producer's id): what it held is counted as failed; a new
            // producer, with a new id, carries on.
            let reason = producer
                .client()
                .fatal_error()
                .map_or_else(|| "fenced".to_owned(), |(_, reason)| reason);
            tracing::warn!(reason = %reason, "kafka: the producer cannot deliver any more; starting a new one");
            metrics::counter("candlekeep_kafka_producer_restarts_total").inc();
            let old = std::mem::replace(&mut producer, make()?);
            broken.store(false, Ordering::Relaxed);
            // Its messages are reported failed at once; its end (which
            // waits for what it holds) happens off the runtime.
            old.purge(PurgeConfig::default().queue().inflight());
            tokio::task::spawn_blocking(move || drop(old));
        }
        let payload = value.to_string();
        if let Err((e, _)) = producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
                stats.buffer_full += 1;
                buffer_full.inc();
                if stats.buffer_full % 10_000 == 1 {
                    tracing::warn!(error = %e, undelivered = stats.buffer_full, "kafka: the producer's buffer is full (is the broker down?)");
                }
            } else {
                stats.refused += 1;
                refused.inc();
                tracing::warn!(error = %e, topic = %topic, key = %key, "kafka: the producer refused a message");
            }
        }
    }
    let flush = tokio::task::spawn_blocking(move || {
        let flushed = producer.flush(Duration::from_secs(10));
        (producer.in_flight_count(), flushed)
    })
    .await;
    if let Ok((left, Err(e))) = flush {
        tracing::warn!(error = %e, left, "kafka: stopping with messages the broker has not taken");
    }
    stats.delivered = delivered.load(Ordering::Relaxed);
    stats.failed = failed.load(Ordering::Relaxed);
    Ok(stats)
}

fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.brokers.trim())
        .set("client.id", "candlekeep");
    c
}

/// Creates `topics` where missing; what could not be made, with why
/// (empty when every topic exists now).
pub(crate) async fn create_missing(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[NewTopic<'_>],
    options: &AdminOptions,
) -> Vec<String> {
    match admin.create_topics(topics, options).await {
        Ok(results) => results
            .iter()
            .filter_map(|r| match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                Err((name, code)) => Some(format!("{name}: {code}")),
            })
            .collect(),
        Err(e) => vec![e.to_string()],
    }
}

/// Creates the four topics where missing, retrying every ten seconds
/// while the broker cannot be reached (the producer holds messages
/// meanwhile).
async fn create_topics(config: KafkaConfig, stop: CancellationToken) {
    let admin: AdminClient<DefaultClientContext> = match client_config(&config).create() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "kafka: no admin client; topics are not created");
            return;
        }
    };
    let names: Vec<String> = ["trades", "quotes", "candles", "gaps"]
        .iter()
        .map(|k| config.topic(k))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    loop {
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| {
                NewTopic::new(
                    n,
                    config.partitions.max(1),
                    TopicReplication::Fixed(config.replication.max(1)),
                )
            })
            .collect();
        let missing = create_missing(&admin, &topics, &options).await;
        if missing.is_empty() {
            tracing::info!(topics = ?names, "kafka topics ready");
            return;
        }
        tracing::warn!(errors = ?missing, "kafka: topics not created yet; trying again in 10 s");
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}
