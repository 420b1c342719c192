//! The processor role: the durable consumer that feeds the candle stage and
//! the store, acknowledging what the store committed, and the live feed it
//! publishes for API nodes.

use super::*;

/// What a processor's consumer did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsumerStats {
    /// Messages received (redeliveries included).
    pub received: u64,
    /// The events those messages carried.
    pub events: u64,
    /// Messages that could not be decoded (recorded as ingest errors).
    pub undecodable: u64,
    /// The highest stream sequence acknowledged.
    pub acked: u64,
}

/// The processor's source: the durable consumer, until `stop`.
pub async fn run_consumer(
    cluster: Arc<Cluster>,
    store: Arc<dyn Store>,
    out: Sender<Event>,
    stop: CancellationToken,
) -> anyhow::Result<ConsumerStats> {
    let durable = cluster.config.consumer.clone();
    consume(&cluster, store, out, &durable, None, stop).await
}

/// Reads the durable consumer `durable` (created if missing, filtered to
/// `partition`'s subjects when given, else to every subject of the
/// stream) into `out` until `stop`, acknowledging what the store commits.
pub(super) async fn consume(
    cluster: &Cluster,
    store: Arc<dyn Store>,
    out: Sender<Event>,
    durable: &str,
    partition: Option<u32>,
    stop: CancellationToken,
) -> anyhow::Result<ConsumerStats> {
    let config = &cluster.config;
    let p = &config.subject_prefix;
    let (filter_subject, filter_subjects) = match partition {
        // One subject (NATS 2.9 filters on one): every kind of partition k.
        Some(k) => (format!("{p}.part.{k}.>"), Vec::new()),
        None => (
            String::new(),
            ["trades", "quotes", "gaps", "meta"]
                .iter()
                .map(|k| format!("{p}.{k}.>"))
                .collect(),
        ),
    };
    let stream = cluster
        .js
        .get_stream(&config.stream)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("opening the JetStream stream")?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            durable,
            consumer::pull::Config {
                durable_name: Some(durable.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(config.ack_wait_secs.max(1)),
                max_ack_pending: 200_000,
                filter_subject,
                filter_subjects,
                ..consumer::pull::Config::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("creating the durable consumer")?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("pulling from the durable consumer")?;
    // This process's own position (processors may share the consumer). The
    // positions processors of this consumer left without stopping cleanly
    // (killed, crashed) are forgotten after a day. A live processor's
    // position is rewritten whenever a message comes, and is read only
    // while messages are pending (seconds, never a day).
    let consumer_jobs = format!("nats {} {durable} ", config.stream);
    let job = format!("{consumer_jobs}{}-{}", std::process::id(), Ts::now().0);
    forget_abandoned(store.as_ref(), &consumer_jobs).await;
    tracing::info!(stream = %config.stream, consumer = %durable, "processor consuming");

    let received = metrics::counter("candlekeep_nats_received_total");
    let bad = metrics::counter("candlekeep_nats_undecodable_total");
    let mut stats = ConsumerStats::default();
    let mut pending: VecDeque<(u64, jetstream::Message)> = VecDeque::new();
    let mut marked = 0u64; // newest sequence sent as a progress marker
    let mut unmarked = 0usize; // events sent since that marker
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                mark(&out, &job, &pending, &mut marked).await?;
                ack_committed(store.as_ref(), &job, &mut pending, &mut stats).await;
            }
            next = messages.next() => {
                let Some(next) = next else { break };
                let message = match next {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "NATS consumer hiccup; continuing");
                        continue;
                    }
                };
                let seq = match message.info() {
                    Ok(info) => info.stream_sequence,
                    Err(e) => {
                        tracing::warn!(error = %e, "a message without JetStream metadata; skipped");
                        continue;
                    }
                };
                stats.received += 1;
                received.inc();
                let events = match Wire::decode(&message.payload) {
                    Ok(wires) => wires.into_iter().map(Wire::into_event).collect(),
                    Err(e) => {
                        stats.undecodable += 1;
                        bad.inc();
                        vec![Event::IngestError(IngestError::new(
                            None,
                            format!("nats {} #{seq}", message.subject),
                            format!("undecodable message: {e}"),
                            &String::from_utf8_lossy(&message.payload),
                        ))]
                    }
                };
                stats.events += events.len() as u64;
                unmarked += events.len();
                for event in events {
                    out.send(event).await.map_err(|_| anyhow::anyhow!("the pipeline stopped"))?;
                }
                pending.push_back((seq, message));
                if unmarked >= 1024 {
                    unmarked = 0;
                    mark(&out, &job, &pending, &mut marked).await?;
                }
            }
        }
    }
    // Stopping: mark the end, and acknowledge what gets committed meanwhile
    // (the rest is delivered again to the next processor, harmlessly).
    mark(&out, &job, &pending, &mut marked).await?;
    for _ in 0..25 {
        ack_committed(store.as_ref(), &job, &mut pending, &mut stats).await;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every marker sent is committed once nothing is pending, so none can
    // write the position again: it is of no use to anyone now.
    if pending.is_empty()
        && let Err(e) = store.forget_jobs(&job, Ts(i64::MAX)).await
    {
        tracing::warn!(error = %e, job, "could not forget this processor's position");
    }
    Ok(stats)
}

/// How old a processor's position must be before another processor of its
/// consumer forgets it.
const ABANDONED_POSITION_AGE: Ts = Ts::from_secs(24 * 3600);

/// Forgets the positions under `prefix` that processors left without
/// stopping cleanly (killed, crashed) a day or more ago. A live
/// processor's position is rewritten whenever a message comes.
pub(super) async fn forget_abandoned(store: &dyn Store, prefix: &str) {
    match store
        .forget_jobs(prefix, Ts(Ts::now().0 - ABANDONED_POSITION_AGE.0))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(positions = n, "forgot positions left by stopped processors"),
        Err(e) => {
            tracing::warn!(error = %e, "could not forget the positions of stopped processors")
        }
    }
}

/// Sends a progress marker for the newest pending message: the store writer
/// commits it after everything sent before it.
async fn mark(
    out: &Sender<Event>,
    job: &str,
    pending: &VecDeque<(u64, jetstream::Message)>,
    marked: &mut u64,
) -> anyhow::Result<()> {
    let Some(&(newest, _)) = pending.back() else {
        return Ok(());
    };
    if newest <= *marked {
        return Ok(());
    }
    *marked = newest;
    out.send(Event::Progress(BackfillProgress {
        job: job.to_owned(),
        cursor: newest.to_string(),
        done: false,
        updated_at: Ts::now(),
    }))
    .await
    .map_err(|_| anyhow::anyhow!("the pipeline stopped"))
}

/// Acknowledges every pending message at or below the committed position.
async fn ack_committed(
    store: &dyn Store,
    job: &str,
    pending: &mut VecDeque<(u64, jetstream::Message)>,
    stats: &mut ConsumerStats,
) {
    if pending.is_empty() {
        return;
    }
    let committed = match store.backfill_progress(job).await {
        Ok(Some(p)) => p.cursor.parse::<u64>().unwrap_or(0),
        Ok(None) => 0,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the committed stream position");
            return;
        }
    };
    while pending.front().is_some_and(|(seq, _)| *seq <= committed) {
        let Some((seq, message)) = pending.pop_front() else {
            break;
        };
        match message.ack().await {
            Ok(()) => stats.acked = stats.acked.max(seq),
            Err(e) => tracing::warn!(error = %e, seq, "ack failed; the message will come again"),
        }
    }
}

/// Processor side: publishes the live feed (trades, quotes, candles, gaps)
/// as notes for API nodes (`live.<kind>.<exchange>.<instrument>`), until
/// `stop`. Never slows the pipeline: a lagging publisher loses the oldest
/// updates and counts them.
pub async fn publish_live(bus: Bus, feed: LiveFeed, stop: CancellationToken) {
    let mut rx = feed.subscribe();
    let lagged = metrics::counter("candlekeep_nats_live_lagged_total");
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => break,
            r = rx.recv() => match r {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    lagged.inc_by(n);
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        };
        let Some(wire) = Wire::from_event(&event) else {
            continue;
        };
        let (kind, exchange, instrument) = match &wire {
            Wire::Trade(t) => ("trades", t.exchange, &t.instrument),
            Wire::Quote(q) => ("quotes", q.exchange, &q.instrument),
            Wire::Candle(c) => ("candles", c.exchange, &c.instrument),
            Wire::Gap(g) => ("gaps", g.exchange, &g.instrument),
            Wire::Instrument(_) | Wire::Error(_) => continue,
        };
        let Ok(body) = serde_json::to_vec(&wire) else {
            continue;
        };
        bus.note("live", &format!("{kind}.{exchange}.{instrument}"), body)
            .await;
    }
}
