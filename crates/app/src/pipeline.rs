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
use ck_bus::{Clock, Event, RawMessage, Sender, SystemClock, channel};
use ck_model::Exchange;
use ck_sources::binance::{BinanceLiveConfig, run_binance};
use ck_sources::live::{ConnectorSnapshot, ConnectorStatus};

use crate::capture::{CaptureStats, TapeSettings, run_capture};
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
    /// Live Binance spot capture, until shutdown.
    Binance(BinanceLiveConfig),
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
    /// A live connector's final status.
    Live(ConnectorSnapshot),
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
    /// The capture stage of live sources (tapes and parsing), if any ran.
    pub capture: Option<CaptureStats>,
}

/// Runs `sources` through the pipeline into `store` until they finish or
/// `shutdown` is cancelled, then stops in order.
///
/// `wall_clock` stamps live messages and closes quiet candles; the system
/// clock is used if it is `None` and a live source runs. Without live sources
/// (replay, import) candles close on exchange time only: the wall clock would
/// close every candle of the past.
pub async fn run_pipeline(
    settings: &Settings,
    store: Arc<dyn Store>,
    sources: Vec<Source>,
    wall_clock: Option<Arc<dyn Clock>>,
    shutdown: CancellationToken,
) -> anyhow::Result<PipelineReport> {
    let live = sources.iter().any(|s| matches!(s, Source::Binance(_)));
    let clock: Option<Arc<dyn Clock>> = if live {
        Some(wall_clock.clone().unwrap_or_else(|| Arc::new(SystemClock)))
    } else {
        None
    };
    let tracker = TaskTracker::new();
    let (ingest_tx, ingest_rx) = channel::<Event>("ingest", settings.config.pipeline.ingest_queue);
    let (store_tx, store_rx) = channel::<Event>("store", settings.config.pipeline.store_queue);

    let writer = tracker.spawn(StoreWriter::new(store, settings.writer.clone()).run(store_rx));
    let runner_config = RunnerConfig {
        clock: clock.clone(),
        tick: settings.tick,
        ..RunnerConfig::default()
    };
    let runner = CandleRunner::new(
        CandleAggregator::new(settings.aggregator.clone()),
        runner_config,
    );
    let candles = tracker.spawn(runner.run(ingest_rx, store_tx));

    // Live sources send raw messages through the capture stage (tape, then
    // parse); files are parsed by their own readers.
    let (raw_tx, capture) = if live {
        let (raw_tx, raw_rx) = channel::<RawMessage>("raw", settings.config.pipeline.ingest_queue);
        let tape = settings.config.tape.enabled.then(|| TapeSettings {
            dir: settings.data_dir.join("tapes"),
            flush_every: settings.config.tape.flush_every,
            flush_interval: Duration::from_secs(1),
        });
        (
            Some(raw_tx),
            Some(tracker.spawn(run_capture(raw_rx, ingest_tx.clone(), tape))),
        )
    } else {
        (None, None)
    };
    let live_clock: Arc<dyn Clock> = clock.clone().unwrap_or_else(|| Arc::new(SystemClock));

    let mut source_tasks: Vec<tokio::task::JoinHandle<anyhow::Result<SourceReport>>> = Vec::new();
    for source in sources {
        let tx = ingest_tx.clone();
        let token = shutdown.clone();
        match (source, &raw_tx) {
            (Source::Binance(config), Some(raw)) => {
                let raw = raw.clone();
                let clock = live_clock.clone();
                source_tasks.push(tracker.spawn(async move {
                    let status = Arc::new(ConnectorStatus::new(Exchange::Binance));
                    run_binance(
                        config,
                        raw,
                        tx,
                        status.clone(),
                        clock,
                        token.cancelled_owned(),
                    )
                    .await?;
                    Ok(SourceReport::Live(status.snapshot()))
                }));
            }
            (source, _) => {
                source_tasks.push(tracker.spawn_blocking(move || run_source(source, &tx, &token)))
            }
        }
    }
    drop(raw_tx);
    drop(ingest_tx);
    tracker.close();

    let mut reports = Vec::new();
    for task in source_tasks {
        reports.push(task.await.context("source task panicked")??);
    }
    let capture = match capture {
        Some(task) => Some(task.await.context("capture stage panicked")??),
        None => None,
    };
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
        capture,
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
        Source::Binance(_) => anyhow::bail!("a live source needs the capture stage"),
        Source::Import { file, target } => {
            let stats = import_file(&file, &target, |e| tx.blocking_send(e))?;
            Ok(SourceReport::Import(stats))
        }
    }
}
