//! One active processor per consumer: a lease in a NATS key-value bucket.
//!
//! A candle needs every trade of its instrument in one place: two
//! processors sharing one consumer would each build candles from half the
//! trades and overwrite each other's. Until processors partition the work
//! by instrument, one of them works and the others are hot standbys.
//!
//! - The lease is the key `<consumer>` in the bucket `<stream>_leases`,
//!   whose entries expire `lease_secs` after their last write. Its value
//!   names the holder.
//! - A processor creates the key to take the lease (a create fails while
//!   the key exists), and renews it every third of `lease_secs` with a
//!   write that expects the revision it wrote last.
//! - A standby tries again every second: it takes over at most `lease_secs`
//!   after the active processor was killed, at once after a clean stop
//!   (which deletes the key after the last commit).
//! - A holder that cannot renew for `lease_secs`, or finds another holder,
//!   has lost the lease: it stops (its queued work drains), and a
//!   supervisor restarting it makes it a standby.
//! - The working processor sends a heartbeat on core NATS; an API node is
//!   ready only while one comes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{kv, stream};
use tokio_util::sync::CancellationToken;

use ck_sources::live::ConnectorRegistry;

use crate::cluster::{Bus, Cluster, STATUS_EVERY, node_name};

/// A standby asks for the lease this often.
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// The lease this process holds on its consumer.
pub struct ProcessorLease {
    kv: kv::Store,
    key: String,
    node: String,
    ttl: Duration,
    /// The revision of this holder's last write.
    revision: AtomicU64,
}

impl ProcessorLease {
    /// Waits, as a hot standby, until this process holds the lease of its
    /// consumer; `None` when `stop` comes first.
    ///
    /// # Errors
    /// When the bucket cannot be opened or created.
    pub async fn acquire(
        cluster: &Cluster,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<ProcessorLease>> {
        let kv = bucket(cluster).await?;
        let key = cluster.config.consumer.clone();
        let ttl = Duration::from_secs(cluster.config.lease_secs.max(1));
        let mut told = false;
        loop {
            match ProcessorLease::try_take(&kv, &key, ttl).await {
                Ok(Some(lease)) => {
                    tracing::info!(consumer = %key, node = %lease.node, "took the processor lease: this processor works");
                    return Ok(Some(lease));
                }
                Ok(None) => {
                    if !told {
                        let holder = kv
                            .get(&key)
                            .await
                            .ok()
                            .flatten()
                            .map(|v| String::from_utf8_lossy(&v).into_owned())
                            .unwrap_or_else(|| "another processor".into());
                        tracing::info!(consumer = %key, %holder, lease_secs = ttl.as_secs(), "standby: another processor holds the lease; taking over when it lapses");
                        told = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(consumer = %key, error = %e, "could not ask for the processor lease; retrying");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(None),
                () = tokio::time::sleep(STANDBY_POLL) => {}
            }
        }
    }

    /// One attempt at the lease `key` of `kv`: `None` while another holds it.
    ///
    /// # Errors
    /// When the bucket cannot be asked.
    pub async fn try_take(
        kv: &kv::Store,
        key: &str,
        ttl: Duration,
    ) -> anyhow::Result<Option<ProcessorLease>> {
        let node = node_name();
        match kv.create(key, node.clone().into()).await {
            Ok(revision) => Ok(Some(ProcessorLease {
                kv: kv.clone(),
                key: key.to_owned(),
                node,
                ttl,
                revision: AtomicU64::new(revision),
            })),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        }
    }

    /// Renews the lease once.
    pub async fn renew(&self) -> Renewal {
        let revision = self.revision.load(Ordering::SeqCst);
        match self
            .kv
            .update(&self.key, self.node.clone().into(), revision)
            .await
        {
            Ok(next) => {
                self.revision.store(next, Ordering::SeqCst);
                Renewal::Renewed
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Renewal::Lost,
            Err(e) => Renewal::Failed(e.to_string()),
        }
    }

    /// How long the lease lasts unrenewed.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Renews the lease until `stop`; when it is lost (another holder, or
    /// no renewal for its whole term), logs why and cancels `stop`, so the
    /// processor stops taking work.
    pub async fn keep(self: Arc<Self>, stop: CancellationToken) {
        let every = self.ttl / 3;
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.renew().await {
                Renewal::Renewed => renewed = tokio::time::Instant::now(),
                Renewal::Lost => {
                    tracing::error!(consumer = %self.key, "lost the processor lease to another processor; stopping");
                    stop.cancel();
                    return;
                }
                Renewal::Failed(e) if renewed.elapsed() >= self.ttl => {
                    tracing::error!(consumer = %self.key, error = %e, "could not renew the processor lease within its term; stopping");
                    stop.cancel();
                    return;
                }
                Renewal::Failed(e) => {
                    tracing::warn!(consumer = %self.key, error = %e, "could not renew the processor lease; retrying");
                }
            }
        }
    }

    /// Gives the lease up after a clean stop, so a standby takes over at
    /// once (only if this process still holds it).
    pub async fn release(&self) {
        let revision = self.revision.load(Ordering::SeqCst);
        match self
            .kv
            .delete_expect_revision(&self.key, Some(revision))
            .await
        {
            Ok(()) => tracing::info!(consumer = %self.key, "released the processor lease"),
            Err(e) => {
                tracing::warn!(consumer = %self.key, error = %e, "could not release the processor lease; it lapses by itself");
            }
        }
    }
}

/// What a renewal came to.
#[derive(Debug)]
pub enum Renewal {
    /// Held for another term.
    Renewed,
    /// Another processor holds it now.
    Lost,
    /// NATS did not answer; the lease may still be held.
    Failed(String),
}

/// The lease bucket of `cluster`'s stream (`<stream>_leases`), made if
/// missing; its entries lapse `lease_secs` after their last write.
///
/// # Errors
/// When the bucket cannot be opened or created.
pub async fn bucket(cluster: &Cluster) -> anyhow::Result<kv::Store> {
    let config = &cluster.config;
    let ttl = Duration::from_secs(config.lease_secs.max(1));
    let bucket = format!("{}_leases", config.stream);
    // The bucket's stream, made as a key-value bucket is made (the
    // client's own bucket creation first asks for account details that
    // NATS 2.9 answers in a form it does not read).
    let wanted = stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("candlekeep: which processor of a consumer works".into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: ttl,
        duplicate_window: ttl.min(Duration::from_secs(120)),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..stream::Config::default()
    };
    // Processors starting together race to create it: the loser's create
    // fails (the subjects are taken), and its next look finds the stream.
    let mut attempt = 0;
    loop {
        match cluster.js.get_or_create_stream(wanted.clone()).await {
            Ok(_) => break,
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, bucket, "lease bucket not ready; looking again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(anyhow::anyhow!("{e}"))
                    .with_context(|| format!("creating the lease bucket {bucket}"));
            }
        }
    }
    cluster
        .js
        .get_key_value(&bucket)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("opening the lease bucket {bucket}"))
}

/// A processor's heartbeat as a note (`processor.<node>`, on core NATS or Kafka),
/// every [`STATUS_EVERY`]: API nodes are ready only while one reports.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ProcessorReport {
    node: String,
    /// The last report of a processor stopping: partitioned processors
    /// count it out at once (older processors never send it).
    #[serde(default)]
    leaving: bool,
}

/// Processor side: reports this process alive until `stop`, then that it
/// leaves.
pub async fn publish_processor_alive(bus: Bus, stop: CancellationToken) {
    let node = node_name();
    let rest = node.replace(['.', '*', '>', ' '], "_");
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        let leaving = tokio::select! {
            () = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        let report = ProcessorReport {
            node: node.clone(),
            leaving,
        };
        if let Ok(body) = serde_json::to_vec(&report) {
            bus.note("processor", &rest, body).await;
        }
        if leaving {
            break;
        }
    }
}

/// API side: records the processors alive, until `stop`.
///
/// # Errors
/// When the subscription cannot be made.
pub async fn follow_processors(
    bus: Bus,
    connectors: Arc<ConnectorRegistry>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    bus.follow("processor", stop, |report: ProcessorReport| {
        if !report.leaving {
            connectors.report_processor(&report.node);
        }
    })
    .await
}

/// Hands `take` the node name of every processor heartbeat, and whether
/// it is the last (the processor stops), until `stop`.
///
/// # Errors
/// When the subscription cannot be made.
pub(crate) async fn follow_processor_nodes(
    bus: Bus,
    stop: CancellationToken,
    mut take: impl FnMut(String, bool),
) -> anyhow::Result<()> {
    bus.follow("processor", stop, |report: ProcessorReport| {
        take(report.node, report.leaving);
    })
    .await
}
