//! Scale-out over NATS JetStream: `run --role collector|processor|api`.
//!
//! ```text
//!  collector ──JetStream──> processor ──> store (PostgreSQL)
//!  (capture, gap           (candles,         │
//!   detection + repair)     alerts)          │
//!          core NATS <prefix>.live.… ──> API node ──> clients
//! ```
//!
//! - **Collectors** run the live sources and publish every normalized trade,
//!   quote, gap and listing to `<prefix>.trades|quotes|gaps|meta.<exchange>.<instrument>`,
//!   what capture hands over at once going as one message per subject (a
//!   JSON array of up to 1,000 events). Each message carries a
//!   `Nats-Msg-Id` built from its first and last events' ids (a trade's is
//!   its exchange, instrument and id), so a message published again is
//!   dropped by JetStream within its de-duplication window. A publish is
//!   retried until JetStream acknowledges it: a NATS outage stalls
//!   capture's queues, never drops.
//! - **Processors** read the stream through a durable pull consumer and run
//!   the normal candle stage and store writer. Each processor sends its
//!   stream position through the pipeline, so the store commits it in the
//!   same transaction as the data before it; a message is acknowledged (each
//!   one explicitly) only once its position is committed. A processor killed
//!   at any moment loses nothing: the server delivers what it had not
//!   acknowledged again (to any processor of the consumer) after
//!   `nats.ack_wait_secs`. What comes twice is deduplicated by trade id in
//!   the store and in the aggregator, and the candles open at a restart are
//!   rebuilt from the stored trades first.
//!   (Ack-all would be wrong here: a new processor's ack would also cover
//!   the messages delivered to the one that died.)
//! - **API nodes** serve from the shared store, and push the live updates
//!   the processors publish on core NATS (`<prefix>.live.…`, not stored).
//!   They show the collectors' connectors, which each collector reports
//!   every two seconds on core NATS (`<prefix>.status.<exchange>`).
//!
//! One file a role: `collector.rs`, `processor.rs`, `api_node.rs`, and
//! `status.rs` for the connector states collectors report to API nodes;
//! here, the roles. The connection, the wire format and the publisher they
//! share are `ck_sinks::nats`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use ck_bus::{Event, IngestError, LiveFeed, Receiver, Sender, metrics};
use ck_model::{BackfillProgress, Exchange, Instrument, Ts};
use ck_processors::gaps::GapDetector;
use ck_sources::live::{ConnectorRegistry, ConnectorSnapshot};
use ck_store::Store;
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

mod api_node;
mod collector;
mod kafka_processor;
mod nats_partitions;
mod processor;
mod status;

pub use api_node::follow_live;
pub use collector::{CollectorStats, run_collector};
pub use kafka_processor::run_kafka_consumer;
pub use nats_partitions::run_partitioned;
pub use processor::{ConsumerStats, publish_live, run_consumer};
pub use status::{STATUS_EVERY, follow_status, publish_status};

/// What one `candlekeep run` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Everything in one process, no NATS (the default).
    #[default]
    All,
    /// Capture and publish to JetStream.
    Collector,
    /// Consume from JetStream, build candles and alerts, write the store.
    Processor,
    /// Serve the API from the store and live updates from NATS.
    Api,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "all" => Ok(Role::All),
            "collector" => Ok(Role::Collector),
            "processor" => Ok(Role::Processor),
            "api" => Ok(Role::Api),
            other => Err(format!(
                "unknown role `{other}`: use all, collector, processor or api"
            )),
        }
    }
}

pub use ck_sinks::kafka_bus::KafkaBus;
pub use ck_sinks::nats::{Cluster, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, Wire, follow, node_name};

/// The stored instruments of the partitions `given` (out of `partitions`),
/// by partition, each with the time of its newest stored trade.
pub(crate) async fn stored_in_partitions(
    store: &dyn Store,
    partitions: u32,
    given: &std::collections::BTreeSet<u32>,
) -> std::collections::HashMap<u32, Vec<(Exchange, Instrument, Option<Ts>)>> {
    let mut held: std::collections::HashMap<u32, Vec<_>> =
        given.iter().map(|k| (*k, Vec::new())).collect();
    match store.instruments().await {
        Ok(stored) => {
            for s in stored {
                let (exchange, instrument) = (s.info.exchange, s.info.instrument);
                let k = ck_bus::partition_of(exchange, instrument.as_str(), partitions);
                if let Some(list) = held.get_mut(&k) {
                    list.push((exchange, instrument, s.last_trade_time));
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "could not list the stored instruments; candles open now may be partial");
        }
    }
    held
}

/// Takes the partitions `given` on: the stored trades of each of their
/// stored instruments' `coarsest` candle still open are sent to `out`
/// (unless `stop` comes), so that a processor given a partition builds
/// those candles from all their trades, not only from the ones it reads
/// next. Returns those instruments by partition.
pub(crate) async fn take_on_partitions(
    store: &dyn Store,
    partitions: u32,
    given: &std::collections::BTreeSet<u32>,
    coarsest: Option<ck_model::Interval>,
    out: &Sender<Event>,
    stop: &CancellationToken,
) -> std::collections::HashMap<u32, std::collections::HashSet<(Exchange, Instrument)>> {
    let stored = stored_in_partitions(store, partitions, given).await;
    let mut held = std::collections::HashMap::new();
    for (k, list) in stored {
        let set: &mut std::collections::HashSet<_> = held.entry(k).or_default();
        for (exchange, instrument, last) in list {
            set.insert((exchange, instrument.clone()));
            let (Some(last), Some(coarsest)) = (last, coarsest) else {
                continue;
            };
            if stop.is_cancelled() {
                continue;
            }
            let from = coarsest.bucket_start(last);
            let read = crate::backfill::replay_stored_trades(
                store,
                (exchange, &instrument),
                from,
                last,
                out,
            );
            match read.await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(%exchange, %instrument, trades = n, since = %from, "rebuilt the open candles from the store");
                }
                Err(e) => {
                    tracing::error!(%exchange, %instrument, error = %e, "rebuild read failed; candles open now may be partial");
                }
            }
        }
    }
    held
}

/// The stream a cluster's roles meet on (`[cluster] bus`).
#[derive(Debug, Clone)]
pub enum Bus {
    /// NATS JetStream, and core NATS for what is not stored.
    Nats(Arc<Cluster>),
    /// Kafka: the events topic, and the notes topic for what is not stored.
    Kafka(Arc<KafkaBus>),
}

impl Bus {
    /// Connects to the engine `config.cluster.bus` names.
    ///
    /// # Errors
    /// When it cannot be reached or its stream or topics cannot be made.
    pub async fn connect(config: &crate::config::AppConfig) -> anyhow::Result<Bus> {
        Ok(match config.cluster.bus {
            crate::config::ClusterBus::Nats => Bus::Nats(Cluster::connect(&config.nats).await?),
            crate::config::ClusterBus::Kafka => {
                Bus::Kafka(KafkaBus::connect(&config.cluster, &config.kafka.brokers).await?)
            }
        })
    }

    /// Publishes a collector's events, waiting for the engine to take
    /// every one (retrying, with backoff, what failed); how many it took.
    pub async fn publish_all(&self, events: &[Event], stop: &CancellationToken) -> u64 {
        match self {
            Bus::Nats(c) => c.publish_all(events, stop).await,
            Bus::Kafka(k) => k.publish_all(events, stop).await,
        }
    }

    /// Sends what is not stored (live updates, connector states,
    /// heartbeats) as `<kind>.<rest>`, without waiting for it.
    pub(crate) async fn note(&self, kind: &str, rest: &str, body: Vec<u8>) {
        match self {
            Bus::Nats(c) => {
                let subject = format!("{}.{kind}.{rest}", c.config.subject_prefix);
                if let Err(e) = c.client.publish(subject, body.into()).await {
                    tracing::debug!(error = %e, kind, "note not published");
                }
            }
            Bus::Kafka(k) => k.note(&format!("{kind}.{rest}"), &body),
        }
    }

    /// Reads every note of `kind` from now on, until `stop`.
    ///
    /// # Errors
    /// When the subscription cannot be made.
    pub(crate) async fn follow<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        stop: CancellationToken,
        take: impl FnMut(T),
    ) -> anyhow::Result<()> {
        match self {
            Bus::Nats(c) => follow(c, kind, stop, take).await,
            Bus::Kafka(k) => k.follow(kind, stop, take).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_refuse_unknown_names() {
        assert_eq!("processor".parse::<Role>(), Ok(Role::Processor));
        let err = "worker".parse::<Role>().expect_err("unknown");
        assert!(err.contains("worker"), "{err}");
    }
}
