//! NATS processors sharing the work by partition (`[nats] partitions`
//! above one).
//!
//! Collectors end each subject with its instrument's partition
//! ([`ck_bus::partition_of`]), so partition `k` is the subjects
//! `<prefix>.part.k.>`, read through a durable consumer of its own,
//! `<consumer>-p<k>`. A processor works a partition while it holds the
//! partition's lease (`<consumer>-p<k>` in the lease bucket; see
//! `lease.rs`), and aims at its fair share: the partitions divided by the
//! processors whose heartbeats it hears (a stopping processor's last
//! heartbeat says it leaves), rounded up. Every second it
//! renews its leases, hands on one partition above its share, or takes free
//! ones up to it. So a processor that joins gets partitions as the others
//! hand them on; the partitions of one that stops are handed on at once,
//! and those of one killed lapse after `lease_secs` and are taken by the
//! rest. With one partition this is the standby rule.
//!
//! - **Taking a partition** rebuilds the candles still open of its stored
//!   instruments from the store, then reads its consumer, which delivers
//!   what no processor acknowledged (at least once; deduplicated by trade
//!   id).
//! - **Handing one on** stops its consumer (acknowledging what the store
//!   committed), tells the candle stage to forget its instruments
//!   ([`Event::Release`]), waits until the store has committed everything
//!   before that, and only then gives the lease up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use ck_model::Interval;

use super::*;
use crate::lease::{ProcessorLease, Renewal};

/// How often a processor looks at its share.
const REBALANCE_EVERY: Duration = Duration::from_secs(1);

/// How long a processor losing a partition waits for its store.
const HANDOFF_WAIT: Duration = Duration::from_secs(60);

/// A partition this processor works.
struct Worker {
    lease: ProcessorLease,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<ConsumerStats>>,
    renewed: Instant,
}

/// The processor's source with a partitioned stream, until `stop`.
/// `coarsest` is the coarsest candle interval built.
///
/// # Errors
/// When the lease bucket cannot be made, or the pipeline stops under it.
pub async fn run_partitioned(
    cluster: Arc<Cluster>,
    store: Arc<dyn Store>,
    out: Sender<Event>,
    coarsest: Option<Interval>,
    stop: CancellationToken,
) -> anyhow::Result<ConsumerStats> {
    let config = cluster.config.clone();
    let partitions = config.partitions.max(1);
    let kv = crate::lease::bucket(&cluster).await?;
    let ttl = Duration::from_secs(config.lease_secs.max(1));
    let handoff_job = format!(
        "nats {} {} handoff {}-{}",
        config.stream,
        config.consumer,
        std::process::id(),
        Ts::now().0
    );

    // The processors alive: those heard from within three heartbeats.
    let heard: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let hearing = tokio::spawn({
        let (heard, stop) = (heard.clone(), stop.clone());
        crate::lease::follow_processor_nodes(
            Bus::Nats(cluster.clone()),
            stop,
            move |node, leaving| {
                if let Ok(mut h) = heard.lock() {
                    if leaving {
                        h.remove(&node);
                    } else {
                        h.insert(node, Instant::now());
                    }
                }
            },
        )
    });
    let alive = || {
        heard.lock().map_or(1, |h| {
            h.values()
                .filter(|at| at.elapsed() < STATUS_EVERY * 3)
                .count()
                .max(1)
        })
    };
    // Hear the others before taking a share.
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(STATUS_EVERY + REBALANCE_EVERY) => {}
    }

    let mut workers: BTreeMap<u32, Worker> = BTreeMap::new();
    let mut stats = ConsumerStats::default();
    let mut add = |s: ConsumerStats| {
        stats.received += s.received;
        stats.events += s.events;
        stats.undecodable += s.undecodable;
        stats.acked = stats.acked.max(s.acked);
    };
    let mut generation = 0u64;
    while !stop.is_cancelled() {
        // Renew; a lease lost (or not renewed for its term) is another's now.
        let mut lost = Vec::new();
        for (k, w) in &mut workers {
            match w.lease.renew().await {
                Renewal::Renewed => w.renewed = Instant::now(),
                Renewal::Lost => lost.push(*k),
                Renewal::Failed(e) if w.renewed.elapsed() >= ttl => {
                    tracing::error!(partition = k, error = %e, "could not renew the partition's lease within its term");
                    lost.push(*k);
                }
                Renewal::Failed(e) => {
                    tracing::warn!(partition = k, error = %e, "could not renew the partition's lease; retrying");
                }
            }
        }
        for k in lost {
            if let Some(w) = workers.remove(&k) {
                tracing::error!(partition = k, "lost the partition to another processor");
                w.stop.cancel();
                if let Ok(Ok(s)) = w.task.await {
                    add(s);
                }
                let released = instruments_of(store.as_ref(), partitions, k).await;
                out.send(Event::Release(released))
                    .await
                    .map_err(|_| anyhow::anyhow!("the pipeline stopped"))?;
            }
        }

        let share = (partitions as usize).div_ceil(alive()).max(1);
        if workers.len() > share {
            if let Some((&k, _)) = workers.iter().next_back()
                && let Some(w) = workers.remove(&k)
            {
                generation += 1;
                let s = hand_on(&store, &out, partitions, k, w, &handoff_job, generation).await?;
                add(s);
            }
        } else if workers.len() < share {
            for k in 0..partitions {
                if workers.len() >= share || stop.is_cancelled() {
                    break;
                }
                if workers.contains_key(&k) {
                    continue;
                }
                let key = format!("{}-p{k}", config.consumer);
                let lease = match ProcessorLease::try_take(&kv, &key, ttl).await {
                    Ok(Some(lease)) => lease,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(partition = k, error = %e, "could not ask for a partition's lease");
                        continue;
                    }
                };
                tracing::info!(partition = k, share, "took a partition");
                let worker_stop = stop.child_token();
                // On a task of its own, so that the leases are renewed
                // meanwhile: the rebuild may read a month of trades.
                let task = tokio::spawn({
                    let (cluster, store, out, stop) = (
                        cluster.clone(),
                        store.clone(),
                        out.clone(),
                        worker_stop.clone(),
                    );
                    async move {
                        let given = BTreeSet::from([k]);
                        take_on_partitions(
                            store.as_ref(),
                            partitions,
                            &given,
                            coarsest,
                            &out,
                            &stop,
                        )
                        .await;
                        let result =
                            processor::consume(&cluster, store, out, &key, Some(k), stop).await;
                        if let Err(e) = &result {
                            tracing::error!(partition = k, error = %format!("{e:#}"), "the partition's consumer failed");
                        }
                        result
                    }
                });
                workers.insert(
                    k,
                    Worker {
                        lease,
                        stop: worker_stop,
                        task,
                        renewed: Instant::now(),
                    },
                );
            }
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(REBALANCE_EVERY) => {}
        }
    }
    // Stopping: each partition is handed on at once (a processor still
    // running takes it within a second, not after the lease lapses).
    for (k, w) in std::mem::take(&mut workers) {
        generation += 1;
        match hand_on(&store, &out, partitions, k, w, &handoff_job, generation).await {
            Ok(s) => add(s),
            Err(e) => tracing::warn!(partition = k, error = %e, "partition not handed on cleanly"),
        }
    }
    hearing.abort();
    if let Err(e) = store.forget_jobs(&handoff_job, Ts(i64::MAX)).await {
        tracing::warn!(error = %e, "could not forget this processor's hand-off marker");
    }
    Ok(stats)
}

/// The stored instruments of partition `k`.
async fn instruments_of(store: &dyn Store, partitions: u32, k: u32) -> Vec<(Exchange, Instrument)> {
    stored_in_partitions(store, partitions, &BTreeSet::from([k]))
        .await
        .into_values()
        .flatten()
        .map(|(exchange, instrument, _)| (exchange, instrument))
        .collect()
}

/// Hands partition `k` on: its consumer stops, the candle stage forgets
/// its instruments, the store commits everything before that, the lease
/// is given up.
async fn hand_on(
    store: &Arc<dyn Store>,
    out: &Sender<Event>,
    partitions: u32,
    k: u32,
    worker: Worker,
    job: &str,
    generation: u64,
) -> anyhow::Result<ConsumerStats> {
    tracing::info!(partition = k, "handing a partition on");
    worker.stop.cancel();
    let stats = match worker.task.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(partition = k, error = %format!("{e:#}"), "the partition's consumer failed");
            ConsumerStats::default()
        }
        Err(e) => {
            tracing::warn!(partition = k, error = %e, "the partition's consumer panicked");
            ConsumerStats::default()
        }
    };
    let released = instruments_of(store.as_ref(), partitions, k).await;
    let marker = format!("g{generation} p{k}");
    for event in [
        Event::Release(released),
        Event::Progress(BackfillProgress {
            job: job.to_owned(),
            cursor: marker.clone(),
            done: false,
            updated_at: Ts::now(),
        }),
    ] {
        out.send(event)
            .await
            .map_err(|_| anyhow::anyhow!("the pipeline stopped"))?;
    }
    let started = Instant::now();
    loop {
        let committed = store.backfill_progress(job).await.ok().flatten();
        if committed.is_some_and(|p| p.cursor == marker) {
            break;
        }
        if started.elapsed() > HANDOFF_WAIT {
            tracing::warn!(partition = k, wait = ?HANDOFF_WAIT, "the store did not commit in time; handing the partition on anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.lease.release().await;
    Ok(stats)
}
