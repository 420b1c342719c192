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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ck_bus::{Clock, Event, RawMessage, Sender, SystemClock, channel};
use ck_model::Exchange;
use ck_sources::live::connector::{LiveConfig, WsProtocol, run_ws};
use ck_sources::live::{ConnectorSnapshot, ConnectorStatus};

use crate::backfill::{BackfillContext, BackfillJob, JobMeter, JobReport, run_jobs};
use ck_processors::candles::{AggregatorStats, CandleAggregator, CandleRunner, RunnerConfig};
use ck_sinks::{StoreWriter, WriterStats};
use ck_sources::book_recorder::{RecorderSettings, RecorderStats, run_book_recorder};
use ck_sources::capture::{CaptureStats, TapeSettings, run_capture};
use ck_sources::history::History;
use ck_sources::import::{ImportStats, ImportTarget, import_file};
use ck_sources::live::books::BookEvent;
use ck_sources::poll::{PollStats, PollTarget, run_ticker_poll};
use ck_sources::repair::{Histories, RepairStats, run_gap_repair, startup_seed};
/// How a replay source runs (its speed, and the venue of files that do not say it).
pub use ck_sources::replay::ReplayOptions;
use ck_sources::replay::{ReplayStats, replay_blocking};
use ck_sources::rest::{RestClient, RestSettings};
use ck_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::runtime::Runtime;

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
    /// Live capture from any venue's WebSocket, until shutdown. Gaps are
    /// detected and recorded. With a REST root in its config, the venue's
    /// instrument list is checked first (where it publishes one) and its
    /// REST history repairs gaps.
    Live {
        /// The venue's protocol.
        protocol: Arc<dyn WsProtocol>,
        /// URL, instruments, watchdog and backoff.
        config: LiveConfig,
    },
    /// Best bid/ask polled over REST at a cadence per instrument, until shutdown.
    Poll {
        /// The venue.
        exchange: Exchange,
        /// Its REST root.
        rest_url: String,
        /// What to poll, how often.
        targets: Vec<PollTarget>,
    },
    /// REST backfill jobs, run concurrently within the venue's budget.
    Backfill {
        /// The jobs.
        jobs: Vec<BackfillJob>,
        /// The venue's history.
        history: Arc<dyn History>,
        /// One meter per job, for a progress bar.
        meters: Vec<Arc<JobMeter>>,
    },
    /// A processor's input: the JetStream durable consumer, until shutdown.
    Nats(std::sync::Arc<crate::cluster::Cluster>),
    /// A processor's input: its share of the Kafka events topic, as a
    /// member of the processors' consumer group, until shutdown.
    Kafka(std::sync::Arc<crate::cluster::KafkaBus>),
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
    /// A polling source's counts.
    Poll(PollStats),
    /// Backfill jobs' reports (an error stops only its own job).
    Backfill(Vec<Result<JobReport, String>>),
    /// A processor's consumer.
    Nats(crate::cluster::ConsumerStats),
    /// A processor's Kafka consumer (`acked`: offset commits).
    Kafka(crate::cluster::ConsumerStats),
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
    /// Gap repair, if it ran (live sources with REST).
    pub repair: Option<RepairStats>,
    /// The book recorder, if any live source captured order books.
    pub books: Option<RecorderStats>,
    /// What a collector published to NATS (in place of the candle stage
    /// and store writer), if this process is one.
    pub collector: Option<crate::cluster::CollectorStats>,
    /// Settled candle days packed after a finite run (replay, import,
    /// backfill) wrote its candles.
    pub packed: ck_store::PackReport,
    /// Settled days moved to the archive after a finite run stored trades
    /// or quotes.
    pub archived: ck_store::ArchiveReport,
}

impl Source {
    /// Live capture of `exchange` with its registered protocol (its default
    /// API version).
    ///
    /// # Errors
    /// For a venue candlekeep does not capture.
    pub fn live(exchange: Exchange, config: LiveConfig) -> anyhow::Result<Source> {
        let venue = ck_sources::venues::venue(exchange)
            .ok_or_else(|| anyhow::anyhow!("no live connector for {exchange}"))?;
        let (protocol, _) = (venue.live)(None);
        Ok(Source::Live { protocol, config })
    }

    /// The instruments this source captures live (none for finite sources
    /// and the NATS consumer).
    #[must_use]
    pub fn captured(&self) -> Vec<(Exchange, ck_model::Instrument)> {
        match self {
            Source::Live { protocol, config } => config
                .instruments
                .iter()
                .map(|i| (protocol.exchange(), i.clone()))
                .collect(),
            Source::Poll {
                exchange, targets, ..
            } => targets
                .iter()
                .map(|t| (*exchange, t.instrument.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// `f`, unless `stop` is cancelled first (`None`): every wait of a start-up
/// (REST retries, warm-up reads, backfill pages) ends at once on the stop
/// signal.
pub(crate) async fn until_stopped<T>(
    stop: &CancellationToken,
    f: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        v = f => Some(v),
    }
}

/// Runs `sources` through the pipeline into `store` until they finish or
/// `shutdown` is cancelled, then stops in order, with handles of its own
/// (see [`run_pipeline_with`]).
pub async fn run_pipeline(
    settings: &Settings,
    store: Arc<dyn Store>,
    sources: Vec<Source>,
    wall_clock: Option<Arc<dyn Clock>>,
    shutdown: CancellationToken,
) -> anyhow::Result<PipelineReport> {
    run_pipeline_with(
        settings,
        &Runtime::new(),
        store,
        sources,
        wall_clock,
        shutdown,
    )
    .await
}

/// Runs `sources` through the pipeline into `store` until they finish or
/// `shutdown` is cancelled, then stops in order; its connectors register
/// in `runtime`, its candles and trades go to `runtime`'s live feed. With
/// `runtime.publish_to`
/// (a collector), events go to NATS instead of the candle stage and the
/// store, which is then only read (restart seeds, open gaps).
///
/// `wall_clock` stamps live messages and closes quiet candles; the system
/// clock is used if it is `None` and a live source runs. Without live sources
/// (replay, import, backfill) candles close on exchange time only while data
/// flows (the wall clock would close every candle of the past); when the
/// input ends, candles past their end plus the lateness window by the wall
/// clock are closed, and only the rest stay provisional.
pub async fn run_pipeline_with(
    settings: &Settings,
    runtime: &Runtime,
    store: Arc<dyn Store>,
    mut sources: Vec<Source>,
    wall_clock: Option<Arc<dyn Clock>>,
    shutdown: CancellationToken,
) -> anyhow::Result<PipelineReport> {
    let live = sources.iter().any(|s| {
        matches!(
            s,
            Source::Live { .. } | Source::Poll { .. } | Source::Nats(_) | Source::Kafka(_)
        )
    });
    let clock: Option<Arc<dyn Clock>> = if live {
        Some(wall_clock.clone().unwrap_or_else(|| Arc::new(SystemClock)))
    } else {
        None
    };
    // An import writes the settled days it brings straight to the
    // archive (no positions to keep in step: a rerun imports again).
    let direct = settings.config.archive.enabled
        && runtime.publish_to.is_none()
        && !sources.is_empty()
        && sources.iter().all(|s| matches!(s, Source::Import { .. }));
    if direct {
        store
            .begin_direct_archive(crate::archive::cutoff(settings, ck_model::Ts::now()))
            .await
            .context("starting to write settled days to the archive")?;
    }
    let tracker = TaskTracker::new();
    let (ingest_tx, ingest_rx) = channel::<Event>("ingest", settings.config.pipeline.ingest_queue);
    let (store_tx, store_rx) = channel::<Event>("store", settings.config.pipeline.store_queue);

    // REST for live venues: the instrument list (checked before anything
    // starts) and the history that repairs gaps.
    let mut histories: Histories = Histories::new();
    let mut listings: Vec<RawMessage> = Vec::new();
    // Every read of the store at start ends on the stop signal too (a
    // server that does not answer, a table another session holds).
    let gap_seeds = until_stopped(&shutdown, startup_seeds(store.as_ref(), &sources))
        .await
        .unwrap_or_else(|| {
            tracing::info!("stopped while reading the store at start");
            Vec::new()
        });
    // One REST client, so one rate budget, per exchange.
    let mut clients: HashMap<Exchange, Arc<RestClient>> = HashMap::new();
    let mut client_for = |exchange: Exchange, url: &str| -> anyhow::Result<Arc<RestClient>> {
        if let Some(c) = clients.get(&exchange) {
            if c.base_url() != url.trim_end_matches('/') {
                tracing::warn!(%exchange, kept = c.base_url(), ignored = url, "one REST root per exchange; keeping the first");
            }
            return Ok(c.clone());
        }
        let client = RestClient::new(exchange, RestSettings::new(url))
            .context("setting up the REST client")?;
        client.record_failures_to(&ingest_tx);
        let client = Arc::new(client);
        clients.insert(exchange, client.clone());
        Ok(client)
    };
    let mut pollers = Vec::new();
    for source in &sources {
        if let Source::Poll {
            exchange, rest_url, ..
        } = source
        {
            pollers.push(client_for(*exchange, rest_url)?);
        }
    }
    for source in &sources {
        let Source::Live { protocol, config } = source else {
            continue;
        };
        let Some(url) = &config.rest_url else {
            continue;
        };
        let exchange = protocol.exchange();
        let Some(venue) = ck_sources::venues::venue(exchange) else {
            tracing::warn!(%exchange, "no REST history for this venue: its gaps are recorded and stay open");
            continue;
        };
        let client = client_for(exchange, url)?;
        match until_stopped(&shutdown, ck_sources::listing::fetch(venue, &client)).await {
            None => {
                tracing::info!(%exchange, "stopped while asking for the instrument list");
            }
            Some(Ok(None)) => {}
            Some(Ok(Some(listing))) => {
                ck_sources::listing::check(venue, &listing, &config.instruments)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                listings.push(listing);
            }
            Some(Err(e)) => {
                tracing::warn!(%exchange, error = %ck_bus::error_chain(&e), "instrument list unavailable; starting without checking symbols");
            }
        }
        histories.insert(exchange, (venue.history)(client));
    }
    // Order books: each live source that captures them gets the recorder's
    // queue and its venue's REST client (for venues whose books start
    // from a REST snapshot).
    let (book_tx, book_rx) = channel::<BookEvent>("books", settings.config.books.queue);
    let mut recording_books = false;
    for source in &mut sources {
        if let Source::Replay {
            options: ReplayOptions {
                books: Some(books), ..
            },
            ..
        } = source
        {
            books.sink = Some(book_tx.clone());
            recording_books = true;
            continue;
        }
        let Source::Live { protocol, config } = source else {
            continue;
        };
        let Some(books) = config.books.as_mut() else {
            continue;
        };
        books.sink = Some(book_tx.clone());
        books.rest = match &config.rest_url {
            Some(url) => Some(client_for(protocol.exchange(), url)?),
            None => None,
        };
        recording_books = true;
    }
    drop(book_tx);
    let (gap_tx, gap_rx) = ck_bus::gap_queue::gap_queue();
    let repairing = live && !histories.is_empty();
    let repair = if repairing {
        let exchanges: Vec<Exchange> = histories.keys().copied().collect();
        let open = until_stopped(&shutdown, open_gaps(store.as_ref(), &exchanges)).await;
        // Fed by a task of their own: the queue is bounded, and its
        // repairer only makes room once the pipeline runs.
        let (tap, stop) = (gap_tx.clone(), shutdown.clone());
        tracker.spawn(async move {
            for gap in open.unwrap_or_default() {
                tokio::select! {
                    () = stop.cancelled() => break,
                    sent = tap.send(gap) => if !sent { break },
                }
            }
        });
        Some(tracker.spawn(run_gap_repair(
            gap_rx,
            histories,
            ingest_tx.clone(),
            shutdown.clone(),
        )))
    } else {
        None
    };

    let (stages, collector) = if let Some(cluster) = &runtime.publish_to {
        drop((store_tx, store_rx));
        let collector = tracker.spawn(crate::cluster::run_collector(
            cluster.clone(),
            ingest_rx,
            repairing.then_some(gap_tx),
            gap_seeds,
            shutdown.clone(),
        ));
        (None, Some(collector))
    } else {
        let mut writer_config = settings.writer.clone();
        if !live {
            // A finite run ends, naming the cause, when the store refuses
            // every commit for about half a minute (a full disk); a live
            // run holds its queued work and waits for the store.
            writer_config.give_up_after.get_or_insert(8);
        }
        let writer = tracker.spawn(StoreWriter::new(store.clone(), writer_config).run(store_rx));
        let runner_config = RunnerConfig {
            clock: clock.clone(),
            tick: settings.tick,
            gap_tap: repairing.then_some(gap_tx),
            gap_seeds,
            feed: Some(runtime.feed.clone()),
            // A finite run ends with its settled candles closed: nothing
            // will come to revise a 2024 candle after a replay of 2024.
            settle_at_end: (!live)
                .then(|| wall_clock.clone().unwrap_or_else(|| Arc::new(SystemClock))),
            ..RunnerConfig::default()
        };
        let runner = CandleRunner::new(
            CandleAggregator::new(settings.aggregator.clone()),
            runner_config,
        );
        let candles = tracker.spawn(runner.run(ingest_rx, store_tx));
        (Some((candles, writer)), None)
    };

    // Order books (live sources with `books`, replays with `--books`) go
    // to one recorder.
    let mut books_task = None;
    if recording_books {
        let recorder = RecorderSettings {
            root: settings.config.archive.root(&settings.data_dir),
            part_ns: i64::try_from(settings.config.books.part_secs)
                .unwrap_or(86_400)
                .saturating_mul(1_000_000_000),
            top_every_ns: i64::try_from(settings.config.books.top_every_ms)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
            top_depth: settings.config.books.top_depth,
            stats_every_ns: i64::try_from(settings.config.books.stats_every_ms)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
        };
        books_task = Some(tracker.spawn(run_book_recorder(
            book_rx,
            ingest_tx.clone(),
            runtime.books.clone(),
            recorder,
        )));
    }

    // Live sources send raw messages through the capture stage (tape, then
    // parse); files are parsed by their own readers.
    let (raw_tx, capture) = if live {
        let (raw_tx, raw_rx) = channel::<RawMessage>("raw", settings.config.pipeline.ingest_queue);
        let tape = settings.config.tape.enabled.then(|| TapeSettings {
            dir: settings.data_dir.join("tapes"),
            flush_every: settings.config.tape.flush_every,
            flush_interval: Duration::from_secs(1),
        });
        let capture = tracker.spawn(run_capture(raw_rx, ingest_tx.clone(), tape));
        for info in listings {
            raw_tx
                .send(info)
                .await
                .map_err(|_| anyhow::anyhow!("the capture stage stopped at start"))?;
        }
        (Some(raw_tx), Some(capture))
    } else {
        (None, None)
    };
    let live_clock: Arc<dyn Clock> = clock.clone().unwrap_or_else(|| Arc::new(SystemClock));

    // A restart mid-candle: before live data flows, the candle stage gets
    // the stored trades of every candle still open, so that those candles
    // are built from all their trades, not only from the ones after the
    // restart. (With `1M` among the intervals that is up to a month of
    // trades per instrument.)
    let coarsest = settings
        .aggregator
        .intervals
        .iter()
        .copied()
        .max_by_key(|i| i.index())
        .filter(|_| runtime.publish_to.is_none());
    let continuing = sources
        .iter()
        .any(|s| matches!(s, Source::Nats(_) | Source::Live { .. }));
    if let Some(coarsest) = coarsest.filter(|_| continuing) {
        tracing::info!(interval = %coarsest, "warming up the candles open now from the store");
        let warm = warm_up(
            store.as_ref(),
            &sources,
            coarsest,
            live_clock.now(),
            &ingest_tx,
        );
        if until_stopped(&shutdown, warm).await.is_none() {
            tracing::info!("stopped during warm-up");
        }
    }

    let mut source_tasks: Vec<tokio::task::JoinHandle<anyhow::Result<SourceReport>>> = Vec::new();
    for source in sources {
        let tx = ingest_tx.clone();
        let token = shutdown.clone();
        match (source, &raw_tx) {
            (Source::Poll { targets, .. }, Some(raw)) => {
                let client = pollers.remove(0);
                let raw = raw.clone();
                source_tasks.push(tracker.spawn(async move {
                    let stats =
                        run_ticker_poll(client, targets, raw, token.cancelled_owned()).await;
                    Ok(SourceReport::Poll(stats))
                }));
            }
            (Source::Live { protocol, config }, Some(raw)) => {
                let (raw, clock) = (raw.clone(), live_clock.clone());
                source_tasks.push(tracker.spawn(run_live(
                    protocol,
                    config,
                    raw,
                    tx,
                    clock,
                    token,
                    runtime.connectors.clone(),
                )));
            }
            (
                Source::Backfill {
                    jobs,
                    history,
                    meters,
                },
                _,
            ) => {
                history.client().record_failures_to(&tx);
                let ctx = BackfillContext {
                    history,
                    store: store.clone(),
                    out: tx,
                    coarsest: settings
                        .aggregator
                        .intervals
                        .iter()
                        .copied()
                        .max_by_key(|i| i.index()),
                    stop: token,
                };
                source_tasks.push(tracker.spawn(async move {
                    let results = run_jobs(jobs, ctx, meters).await;
                    Ok(SourceReport::Backfill(
                        results
                            .into_iter()
                            .map(|r| r.map_err(|e| e.to_string()))
                            .collect(),
                    ))
                }));
            }
            (Source::Nats(cluster), _) => {
                let store = store.clone();
                source_tasks.push(tracker.spawn(async move {
                    let stats = if cluster.config.partitions > 1 {
                        crate::cluster::run_partitioned(cluster, store, tx, coarsest, token).await?
                    } else {
                        crate::cluster::run_consumer(cluster, store, tx, token).await?
                    };
                    Ok(SourceReport::Nats(stats))
                }));
            }
            (Source::Kafka(bus), _) => {
                let store = store.clone();
                // Given partitions, it rebuilds their open candles itself.
                source_tasks.push(tracker.spawn(async move {
                    let stats =
                        crate::cluster::run_kafka_consumer(bus, store, tx, coarsest, token).await?;
                    Ok(SourceReport::Kafka(stats))
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

    // A source's error is reported after the writer's: when the store gives
    // up, the sources only see their queue close, and the store names why.
    let mut reports = Vec::new();
    let mut source_error = None;
    for task in source_tasks {
        match task.await.context("source task panicked")? {
            Ok(report) => reports.push(report),
            Err(e) => {
                // The other sources stop too, and what was queued drains.
                tracing::error!(error = %format!("{e:#}"), "a source failed; stopping");
                shutdown.cancel();
                source_error.get_or_insert(e);
            }
        }
    }
    let capture = match capture {
        Some(task) => match task.await.context("capture stage panicked")? {
            Ok(c) => Some(c),
            Err(e) => {
                source_error.get_or_insert(e.into());
                None
            }
        },
        None => None,
    };
    let books = match books_task {
        Some(task) => match task.await.context("book recorder panicked")? {
            Ok(stats) => Some(stats),
            Err(e) => {
                source_error.get_or_insert(e.into());
                None
            }
        },
        None => None,
    };
    let repair = match repair {
        Some(task) => Some(task.await.context("gap repair panicked")?),
        None => None,
    };
    // Sources are done: the rest drains by itself, within the grace period.
    let grace = Duration::from_secs(settings.config.pipeline.shutdown_grace_secs.max(1));
    let drained = async {
        match stages {
            Some((candles, writer)) => {
                let aggregator = candles.await.context("candle stage panicked")?;
                let writer = writer.await.context("store writer panicked")?;
                anyhow::Ok((aggregator, writer, None))
            }
            None => {
                let collector = match collector {
                    Some(task) => Some(task.await.context("NATS publisher panicked")?),
                    None => None,
                };
                anyhow::Ok((
                    Ok(AggregatorStats::default()),
                    WriterStats::default(),
                    collector,
                ))
            }
        }
    };
    let drained = if shutdown.is_cancelled() {
        match tokio::time::timeout(grace, drained).await {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(
                    ?grace,
                    "candle stage or store writer did not stop in time; aborting them"
                );
                Err(anyhow::anyhow!(
                    "shutdown timed out after {grace:?} with the store writer still running"
                ))
            }
        }
    } else {
        drained.await
    };
    // Every day the import began goes into the archive, stopped or not
    // (what the writer still held is not in it: a rerun brings it).
    let direct_report = if direct {
        store
            .end_direct_archive()
            .await
            .context("installing the days written straight to the archive")
    } else {
        Ok(ck_store::ArchiveReport::default())
    };
    let (aggregator, writer, collector) = drained?;
    let direct_report = direct_report?;
    if let Some(why) = &writer.gave_up {
        anyhow::bail!(
            "the store refused to commit ({why}); everything committed before stays, and a rerun continues"
        );
    }
    if let Some(e) = source_error {
        return Err(e);
    }
    let aggregator = aggregator.map_err(|e| anyhow::anyhow!("candle stage: {e}"))?;
    tracker.wait().await;
    // A finite run that wrote candles packs the days it settled, so that
    // long reads of them are fast at once (a live run packs on a schedule).
    let packed = if !live && !shutdown.is_cancelled() && writer.written.candles_upserted > 0 {
        crate::retention::pack(settings, store.as_ref(), ck_model::Ts::now()).await?
    } else {
        ck_store::PackReport::default()
    };
    // And moves the settled days it stored to the archive.
    let mut archived = if !live
        && !shutdown.is_cancelled()
        && writer.written.trades_inserted + writer.written.quotes_inserted > 0
    {
        crate::archive::settle(settings, store.as_ref(), ck_model::Ts::now()).await?
    } else {
        ck_store::ArchiveReport::default()
    };
    archived.days += direct_report.days;
    archived.trades += direct_report.trades;
    archived.quotes += direct_report.quotes;
    archived.candles += direct_report.candles;
    archived.bytes += direct_report.bytes;
    archived.swept += direct_report.swept;
    Ok(PipelineReport {
        sources: reports,
        aggregator,
        writer,
        capture,
        repair,
        books,
        collector,
        packed,
        archived,
    })
}

async fn run_live(
    protocol: Arc<dyn WsProtocol>,
    config: LiveConfig,
    raw: Sender<RawMessage>,
    events: Sender<Event>,
    clock: Arc<dyn Clock>,
    token: CancellationToken,
    registry: Arc<ck_sources::live::ConnectorRegistry>,
) -> anyhow::Result<SourceReport> {
    // One connection per group of instruments the venue allows on one.
    let groups = ck_sources::live::connector::connection_groups(
        protocol.as_ref(),
        &config.instruments,
        config.books.is_some(),
    );
    if groups.len() > 1 {
        tracing::info!(exchange = %protocol.exchange(), connections = groups.len(), "instruments split over connections (the venue's limit per connection)");
    }
    let mut connections = tokio::task::JoinSet::new();
    let mut statuses = Vec::new();
    let pace = Arc::new(ck_sources::live::connector::ConnectPace::of(
        protocol.as_ref(),
    ));
    for instruments in groups {
        let status = Arc::new(ConnectorStatus::capturing(
            protocol.exchange(),
            instruments.clone(),
        ));
        registry.register(status.clone());
        statuses.push(status.clone());
        connections.spawn(run_ws(
            protocol.clone(),
            LiveConfig {
                instruments,
                ..config.clone()
            },
            pace.clone(),
            raw.clone(),
            events.clone(),
            status,
            clock.clone(),
            token.clone().cancelled_owned(),
        ));
    }
    while let Some(done) = connections.join_next().await {
        done??;
    }
    Ok(SourceReport::Live(combined(
        protocol.exchange(),
        statuses.iter().map(|s| s.snapshot()),
    )))
}

/// One source's connections as one: counts added up, the newest message,
/// the worst state (the first connection's when all are alike), the last
/// error any reported.
fn combined(
    exchange: ck_model::Exchange,
    snapshots: impl Iterator<Item = ConnectorSnapshot>,
) -> ConnectorSnapshot {
    snapshots
        .reduce(|mut all, s| {
            all.messages += s.messages;
            all.reconnects += s.reconnects;
            all.resubscribes += s.resubscribes;
            all.last_message = all.last_message.max(s.last_message);
            if s.state != ck_sources::live::ConnectionState::Connected {
                all.state = s.state;
            }
            if s.last_error.is_some() {
                all.last_error = s.last_error;
            }
            all
        })
        .unwrap_or_else(|| ConnectorStatus::new(exchange).snapshot())
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
        Source::Live { .. } | Source::Poll { .. } => {
            anyhow::bail!("a live source needs the capture stage")
        }
        Source::Backfill { .. } => anyhow::bail!("a backfill runs as an async task"),
        Source::Nats(_) | Source::Kafka(_) => {
            anyhow::bail!("a processor's consumer runs as a task of its own")
        }
        Source::Import { file, target } => {
            let stats = import_file(&file, &target, |e| tx.blocking_send(e))?;
            Ok(SourceReport::Import(stats))
        }
    }
}

/// Open gaps recorded before this start, oldest first, to repair again.
async fn open_gaps(store: &dyn Store, exchanges: &[Exchange]) -> Vec<ck_model::Gap> {
    let mut out = Vec::new();
    for &exchange in exchanges {
        match store.gaps(Some(exchange), None, 10_000).await {
            Ok(gaps) => out.extend(
                gaps.into_iter()
                    .filter(|g| g.state == ck_model::GapState::Open),
            ),
            Err(e) => tracing::error!(%exchange, error = %e, "reading open gaps"),
        }
    }
    out.sort_by_key(|g| g.from_ts);
    out
}

/// Every instrument the live sources capture, with its venue.
fn live_instruments(sources: &[Source]) -> impl Iterator<Item = (Exchange, &ck_model::Instrument)> {
    sources
        .iter()
        .filter_map(|source| match source {
            Source::Live { protocol, config } => Some((protocol.exchange(), &config.instruments)),
            _ => None,
        })
        .flat_map(|(exchange, instruments)| instruments.iter().map(move |i| (exchange, i)))
}

/// Where gap detection resumes for each live instrument with sequential ids:
/// its newest stored trade (so trades missed while down become a gap).
async fn startup_seeds(
    store: &dyn Store,
    sources: &[Source],
) -> Vec<(Exchange, ck_model::Instrument, u64, ck_model::Ts)> {
    let mut seeds = Vec::new();
    for (exchange, instrument) in live_instruments(sources) {
        if !exchange.sequential_trade_ids() {
            continue;
        }
        let last = store.last_trade(exchange, instrument).await.ok().flatten();
        if let Some((id, at)) = last.as_ref().and_then(startup_seed) {
            seeds.push((exchange, instrument.clone(), id, at));
        }
    }
    seeds
}

/// Sends the candle stage the stored trades of every candle of `coarsest`
/// still open, so that a restart mid-candle builds those candles from all
/// their trades: for a processor (reading NATS) every stored instrument's
/// newest candle; for live sources, each instrument's candle open now.
async fn warm_up(
    store: &dyn Store,
    sources: &[Source],
    coarsest: ck_model::Interval,
    now: ck_model::Ts,
    out: &Sender<Event>,
) {
    let mut open = Vec::new();
    // (A partitioned processor rebuilds its partitions' candles as it
    // takes them.)
    if sources
        .iter()
        .any(|s| matches!(s, Source::Nats(c) if c.config.partitions <= 1))
    {
        for stored in store.instruments().await.unwrap_or_default() {
            if let Some(last) = stored.last_trade_time {
                let (exchange, instrument) = (stored.info.exchange, stored.info.instrument);
                open.push((exchange, instrument, coarsest.bucket_start(last), last));
            }
        }
    }
    let from = coarsest.bucket_start(now);
    for (exchange, instrument) in live_instruments(sources) {
        // Up to the newest stored trade, even if the venue's clock runs
        // ahead of ours; nothing when no candle open now has trades.
        if let Ok(Some(last)) = store.last_trade(exchange, instrument).await
            && last.ts_exchange >= from
        {
            open.push((
                exchange,
                instrument.clone(),
                from,
                last.ts_exchange.max(now),
            ));
        }
    }
    for (exchange, instrument, from, to) in open {
        let read =
            crate::backfill::replay_stored_trades(store, (exchange, &instrument), from, to, out);
        match read.await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(%exchange, %instrument, trades = n, since = %from, "warmed up the open candles from the store");
            }
            Err(e) => {
                tracing::error!(%exchange, %instrument, error = %e, "warm-up read failed; candles open at the restart may be partial");
            }
        }
    }
}
