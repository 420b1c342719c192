//! The processor role over Kafka: one member of the processors' consumer
//! group, feeding the candle stage and the store with the partitions the
//! group gives it, and committing a partition's offset only once the store
//! has committed what came before it.
//!
//! A partition holds a fixed set of instruments ([`ck_bus::partition_of`]),
//! so a candle is built by one processor at a time:
//!
//! - **Given partitions** (a start, a rebalance), the processor first sends
//!   the candle stage the stored trades of the candles still open for each
//!   stored instrument of them, then reads each from its committed offset.
//!   What the previous owner stored but never committed comes again and is
//!   deduplicated by trade id.
//! - **Losing partitions** (a processor joined, or this one stops), it tells
//!   the candle stage to forget their instruments ([`Event::Release`]),
//!   waits until the store has committed everything before that (a
//!   progress marker, as a NATS processor's), and commits their offsets.
//!   Only then does the group hand them on.
//! - **A killed processor** commits nothing more: after
//!   `session_timeout_secs` the group gives its partitions to the others,
//!   which read them again from the last committed offsets.
//!
//! The consumer runs on a thread of its own (librdkafka calls the rebalance
//! handlers there, and they wait for the store).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use ck_model::Interval;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::message::Message as _;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;

use super::*;

/// How long a processor losing partitions waits for its store to commit
/// what it read from them before it lets them go anyway.
const HANDOFF_WAIT: Duration = Duration::from_secs(60);

/// The processor's source over Kafka, until `stop`. `coarsest` is the
/// coarsest candle interval built: given partitions, the candles of it
/// still open are rebuilt from the store first.
///
/// # Errors
/// When the consumer cannot be made or the pipeline stops under it.
pub async fn run_kafka_consumer(
    bus: Arc<KafkaBus>,
    store: Arc<dyn Store>,
    out: Sender<Event>,
    coarsest: Option<Interval>,
    stop: CancellationToken,
) -> anyhow::Result<ConsumerStats> {
    let topic = bus.config.events_topic();
    let positions = format!("kafka {topic} {} ", bus.config.group);
    processor::forget_abandoned(store.as_ref(), &positions).await;
    let job = format!("{positions}{}-{}", std::process::id(), Ts::now().0);
    let owner = Owner {
        handle: Handle::current(),
        store,
        out,
        job,
        coarsest,
        partitions: bus.partitions(),
        topic,
        stop: stop.clone(),
        state: Mutex::new(Positions::default()),
    };
    let consumer: BaseConsumer<Owner> = bus
        .processor_consumer_config()
        .create_with_context(owner)
        .context("making the processors' Kafka consumer")?;
    tokio::task::spawn_blocking(move || consume(&consumer))
        .await
        .context("the Kafka consumer thread panicked")?
}

/// What this processor read and what the store committed of it.
#[derive(Debug, Default)]
struct Positions {
    /// Per partition held: the offset after the newest message sent down
    /// the pipeline.
    sent: BTreeMap<i32, i64>,
    /// Per partition held: the offset last committed to Kafka.
    committed: BTreeMap<i32, i64>,
    /// Per partition held: the instruments whose candles are built here.
    instruments: HashMap<i32, HashSet<(Exchange, Instrument)>>,
    /// Counts markers, so that each is told apart in the store.
    generation: u64,
    /// The newest marker sent.
    marked: String,
    stats: ConsumerStats,
}

/// The consumer's context: what the rebalance handlers need.
struct Owner {
    handle: Handle,
    store: Arc<dyn Store>,
    out: Sender<Event>,
    job: String,
    coarsest: Option<Interval>,
    partitions: u32,
    topic: String,
    stop: CancellationToken,
    state: Mutex<Positions>,
}

impl ClientContext for Owner {}

impl ConsumerContext for Owner {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let lost: BTreeSet<i32> = list
                .elements_for_topic(&self.topic)
                .iter()
                .map(|e| e.partition())
                .collect();
            metrics::counter("candlekeep_kafka_bus_rebalances_total").inc();
            tracing::info!(partitions = ?lost, "handing partitions on");
            self.hand_on(consumer, &lost);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let given: BTreeSet<i32> = list
                .elements_for_topic(&self.topic)
                .iter()
                .map(|e| e.partition())
                .collect();
            tracing::info!(partitions = ?given, "given partitions");
            self.take_on(&given);
        }
    }
}

impl Owner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends an event down the pipeline from the consumer's thread.
    fn send(&self, event: Event) -> anyhow::Result<()> {
        self.out
            .blocking_send(event)
            .map_err(|_| anyhow::anyhow!("the pipeline stopped"))
    }

    /// Sends a progress marker for everything sent so far; the marker it
    /// sent (the store commits it after everything before it).
    fn mark(&self, force: bool) -> anyhow::Result<String> {
        let marker = {
            let mut state = self.lock();
            let offsets: Vec<String> = state.sent.iter().map(|(p, o)| format!("{p}={o}")).collect();
            let offsets = offsets.join(",");
            if !force && state.marked.ends_with(&format!(" {offsets}")) {
                return Ok(state.marked.clone());
            }
            state.generation += 1;
            state.marked = format!("g{} {offsets}", state.generation);
            state.marked.clone()
        };
        self.send(Event::Progress(BackfillProgress {
            job: self.job.clone(),
            cursor: marker.clone(),
            done: false,
            updated_at: Ts::now(),
        }))?;
        Ok(marker)
    }

    /// The marker the store committed last.
    fn committed_marker(&self) -> Option<String> {
        match self
            .handle
            .block_on(self.store.backfill_progress(&self.job))
        {
            Ok(p) => p.map(|p| p.cursor),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the committed stream position");
                None
            }
        }
    }

    /// Commits to Kafka the offsets of the marker the store committed, for
    /// the partitions still held.
    fn commit_stored(&self, consumer: &BaseConsumer<Self>, mode: CommitMode) {
        let Some(marker) = self.committed_marker() else {
            return;
        };
        let mut list = TopicPartitionList::new();
        {
            let mut state = self.lock();
            for (partition, offset) in offsets_of(&marker) {
                let held = state.sent.contains_key(&partition);
                let newer = state.committed.get(&partition).is_none_or(|&c| c < offset);
                if held && newer {
                    if list
                        .add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                        .is_err()
                    {
                        continue;
                    }
                    state.committed.insert(partition, offset);
                    state.stats.acked += 1;
                }
            }
        }
        if list.count() > 0
            && let Err(e) = consumer.commit(&list, mode)
        {
            tracing::warn!(error = %e, "offsets not committed; the messages will come again");
        }
    }

    /// Lets `lost` go: the candle stage forgets their instruments, the
    /// store commits everything read from them, their offsets are
    /// committed.
    fn hand_on(&self, consumer: &BaseConsumer<Self>, lost: &BTreeSet<i32>) {
        let released: Vec<(Exchange, Instrument)> = {
            let state = self.lock();
            if !lost.iter().any(|p| state.instruments.contains_key(p)) {
                return; // Handed on already (a stop).
            }
            lost.iter()
                .filter_map(|p| state.instruments.get(p))
                .flatten()
                .cloned()
                .collect()
        };
        let handed = self
            .send(Event::Release(released))
            .and_then(|()| self.mark(true));
        match handed {
            Ok(marker) => {
                let started = Instant::now();
                while self.committed_marker().as_deref() != Some(marker.as_str()) {
                    if started.elapsed() > HANDOFF_WAIT {
                        tracing::warn!(wait = ?HANDOFF_WAIT, "the store did not commit in time; handing the partitions on anyway");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                self.commit_stored(consumer, CommitMode::Sync);
            }
            Err(e) => tracing::warn!(error = %e, "partitions handed on without a commit"),
        }
        let mut state = self.lock();
        for p in lost {
            state.sent.remove(p);
            state.committed.remove(p);
            state.instruments.remove(p);
        }
    }

    /// Takes `given` on: the candles still open of their stored instruments
    /// are rebuilt from the store before anything is read from them.
    fn take_on(&self, given: &BTreeSet<i32>) {
        let partitions: BTreeSet<u32> = given
            .iter()
            .filter_map(|p| u32::try_from(*p).ok())
            .collect();
        let held = self.handle.block_on(take_on_partitions(
            self.store.as_ref(),
            self.partitions,
            &partitions,
            self.coarsest,
            &self.out,
            &self.stop,
        ));
        let mut state = self.lock();
        for (k, instruments) in held {
            let Ok(k) = i32::try_from(k) else { continue };
            state.instruments.entry(k).or_default().extend(instruments);
        }
    }
}

/// The partitions and offsets of a marker, `g<n> <p>=<offset>,…`.
fn offsets_of(marker: &str) -> Vec<(i32, i64)> {
    let list = marker.split_once(' ').map_or("", |(_, l)| l);
    list.split(',')
        .filter_map(|pair| {
            let (p, o) = pair.split_once('=')?;
            Some((p.parse().ok()?, o.parse().ok()?))
        })
        .collect()
}

/// The consumer's loop, on its own thread.
fn consume(consumer: &BaseConsumer<Owner>) -> anyhow::Result<ConsumerStats> {
    let owner = consumer.context();
    consumer
        .subscribe(&[owner.topic.as_str()])
        .context("joining the processors' consumer group")?;
    tracing::info!(topic = %owner.topic, "processor consuming from Kafka");
    let received = metrics::counter("candlekeep_kafka_bus_received_total");
    let bad = metrics::counter("candlekeep_kafka_bus_undecodable_total");
    let mut unmarked = 0usize;
    let mut last_commit = Instant::now();
    while !owner.stop.is_cancelled() {
        if let Some(next) = consumer.poll(Duration::from_millis(100)) {
            let message = match next {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka consumer hiccup; continuing");
                    continue;
                }
            };
            let (partition, offset) = (message.partition(), message.offset());
            let payload = message.payload().unwrap_or_default();
            received.inc();
            let events: Vec<Event> = match Wire::decode(payload) {
                Ok(wires) => wires.into_iter().map(Wire::into_event).collect(),
                Err(e) => {
                    bad.inc();
                    owner.lock().stats.undecodable += 1;
                    vec![Event::IngestError(IngestError::new(
                        None,
                        format!(
                            "kafka {} partition {partition} offset {offset}",
                            owner.topic
                        ),
                        format!("undecodable message: {e}"),
                        &String::from_utf8_lossy(payload),
                    ))]
                }
            };
            {
                let mut state = owner.lock();
                state.stats.received += 1;
                state.stats.events += events.len() as u64;
                let seen = state.instruments.entry(partition).or_default();
                for event in &events {
                    let key = match event {
                        Event::Trade(t) => (t.exchange, &t.instrument),
                        Event::Quote(q) => (q.exchange, &q.instrument),
                        Event::Gap(g) => (g.exchange, &g.instrument),
                        _ => continue,
                    };
                    seen.insert((key.0, key.1.clone()));
                }
            }
            unmarked += events.len();
            for event in events {
                owner.send(event)?;
            }
            owner.lock().sent.insert(partition, offset + 1);
        }
        // A marker every 1,024 events; the store asked what it committed
        // (and Kafka told) every 200 ms, not per marker: the question
        // waits for the store, and the consumer with it.
        if unmarked >= 1024 {
            unmarked = 0;
            owner.mark(false)?;
        }
        if last_commit.elapsed() >= Duration::from_millis(200) {
            last_commit = Instant::now();
            owner.mark(false)?;
            owner.commit_stored(consumer, CommitMode::Async);
        }
    }
    // Stopping: hand everything on (the group moves it at once, not after
    // the session timeout), then leave the group.
    let held: BTreeSet<i32> = owner.lock().instruments.keys().copied().collect();
    owner.hand_on(consumer, &held);
    consumer.unsubscribe();
    if let Err(e) = owner
        .handle
        .block_on(owner.store.forget_jobs(&owner.job, Ts(i64::MAX)))
    {
        tracing::warn!(error = %e, job = owner.job, "could not forget this processor's position");
    }
    let stats = owner.lock().stats;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_carry_each_partitions_next_offset() {
        assert_eq!(offsets_of("g3 0=12,5=7"), vec![(0, 12), (5, 7)]);
        assert_eq!(offsets_of("g1 "), vec![]);
        assert_eq!(offsets_of("garbage"), vec![]);
    }
}
