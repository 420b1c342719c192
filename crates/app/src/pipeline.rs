//! Wiring: sources -> candle stage -> store writer, and an orderly stop.
//!
//! ```text
//!  sources (replay, import, live)         bounded "ingest" queue
//!     └──> Event ──────────────────────────────> CandleRunner
//!                                                   │ events + candles
//!                                 bounded "store" queue
//!                                                   └──> StoreWriter ──> Store
//! ```
//!
//! Shutdown flows downstream: only sources watch the cancellation token. When
//! every source has stopped, the ingest queue closes; the candle stage drains
//! it, emits its open candles and closes the store queue; the writer commits
//! what is left and returns. Tasks still running after the grace period are
//! aborted and logged by name.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ck_bus::{Clock, Event, Sender, channel};
use ck_processors::candles::{AggregatorStats, CandleAggregator, CandleRunner, RunnerConfig};
use ck_sinks::{StoreWriter, WriterStats};
use ck_sources::import::{ImportStats, ImportTarget, import_file};
use ck_sources::replay::{ReplayOptions, ReplayStats, replay_blocking};
use ck_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;

/// One source to run.
#[derive(Debug, Clone)]
pub enum Source {
    /// Replay recordings.
    Replay {
        /// The files, in order.
        files: Vec<PathBuf>,
        /// Pace.
        options: ReplayOptions,
    },
    /// Import one trade file.
    Import {
        /// The CSV or JSON lines file.
        file: PathBuf,
        /// Exchange, instrument and receive time for its rows.
        target: ImportTarget,
    },
}

/// What one source did.
#[derive(Debug, Clone)]
pub enum SourceReport {
    /// A replay's counts.
    Replay(ReplayStats),
    /// An import's counts.
    Import(ImportStats),
}

/// What a pipeline run did.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    /// Per source, in the order given.
    pub sources: Vec<SourceReport>,
    /// The candle stage.
    pub aggregator: AggregatorStats,
    /// The store writer.
    pub writer: WriterStats,
}

/// Runs `sources` through the pipeline into `store` until they finish or
/// `shutdown` is cancelled, then stops in order.
pub async fn run_pipeline(
    settings: &Settings,
    store: Arc<dyn Store>,
    sources: Vec<Source>,
    clock: Option<Arc<dyn Clock>>,
    shutdown: CancellationToken,
) -> anyhow::Result<PipelineReport> {
    let tracker = TaskTracker::new();
    let (ingest_tx, ingest_rx) = channel::<Event>("ingest", settings.config.pipeline.ingest_queue);
    let (store_tx, store_rx) = channel::<Event>("store", settings.config.pipeline.store_queue);

    let writer = tracker.spawn(StoreWriter::new(store, settings.writer.clone()).run(store_rx));
    let runner_config = RunnerConfig {
        clock,
        tick: settings.tick,
        ..RunnerConfig::default()
    };
    let runner = CandleRunner::new(
        CandleAggregator::new(settings.aggregator.clone()),
        runner_config,
    );
    let candles = tracker.spawn(runner.run(ingest_rx, store_tx));

    let mut source_tasks = Vec::new();
    for source in sources {
        let tx = ingest_tx.clone();
        let token = shutdown.clone();
        source_tasks.push(tracker.spawn_blocking(move || run_source(source, &tx, &token)));
    }
    drop(ingest_tx);
    tracker.close();

    let mut reports = Vec::new();
    for task in source_tasks {
        reports.push(task.await.context("source task panicked")??);
    }
    // Sources are done: the rest drains by itself, within the grace period.
    let grace = Duration::from_secs(settings.config.pipeline.shutdown_grace_secs.max(1));
    let drained = async {
        let aggregator = candles.await.context("candle stage panicked")?;
        let writer = writer.await.context("store writer panicked")?;
        anyhow::Ok((aggregator, writer))
    };
    let (aggregator, writer) = if shutdown.is_cancelled() {
        match tokio::time::timeout(grace, drained).await {
            Ok(r) => r?,
            Err(_) => {
                tracing::error!(
                    ?grace,
                    "candle stage or store writer did not stop in time; aborting them"
                );
                anyhow::bail!(
                    "shutdown timed out after {grace:?} with the store writer still running"
                );
            }
        }
    } else {
        drained.await?
    };
    let aggregator = aggregator.map_err(|e| anyhow::anyhow!("candle stage: {e}"))?;
    tracker.wait().await;
    Ok(PipelineReport {
        sources: reports,
        aggregator,
        writer,
    })
}

fn run_source(
    source: Source,
    tx: &Sender<Event>,
    token: &CancellationToken,
) -> anyhow::Result<SourceReport> {
    match source {
        Source::Replay { files, options } => {
            let stats = replay_blocking(&files, options, tx, &|| token.is_cancelled())?;
            Ok(SourceReport::Replay(stats))
        }
        Source::Import { file, target } => {
            let stats = import_file(&file, &target, |e| tx.blocking_send(e))?;
            Ok(SourceReport::Import(stats))
        }
    }
}
