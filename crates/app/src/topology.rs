//! The composition root. [`Topology::build`] makes everything one process
//! is for its role: the store, the cluster's stream (NATS or Kafka), the
//! sources and pipeline, the API, alerts, the Redis sink, packing and
//! retention. [`Topology::run`] starts all of it under one task tracker,
//! runs until one token is cancelled (or the sources end), and stops it in
//! order: the pipeline drains and commits, a processor's lease is released,
//! then every other task ends, and those that do not end in time are named.
//!
//! ```text
//!  role        sources                 also
//!  all         the configured ones     API, alerts, Redis, packing, retention
//!  collector   the configured ones     publishes to the stream; API (its connectors), tapes' retention
//!  processor   the stream's consumer   NATS: a lease (one works, the others wait) or a lease per
//!                                      partition; Kafka: the consumer group. Live updates as notes,
//!                                      API, alerts, Redis, packing, retention
//!  api         none                    API over the store and the notes (live updates, states)
//!  serve       none                    API over the store (`candlekeep serve`)
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ck_model::{Exchange, Instrument};
use ck_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Bus, Role};
use crate::config::Settings;
use crate::pipeline::{PipelineReport, Source, run_pipeline_with};
use crate::runtime::Runtime;

/// How long tasks other than the pipeline may take to end after the stop.
const GRACE: Duration = Duration::from_secs(10);

/// What a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// A `run` role.
    Run(Role),
    /// The API over the store alone (`candlekeep serve`).
    Serve,
}

/// One process, built and ready to run.
pub struct Topology {
    plan: Plan,
    settings: Settings,
    runtime: Runtime,
    store: Arc<dyn Store>,
    cluster: Option<Bus>,
    sources: Vec<Source>,
    api: Option<ApiServer>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("plan", &self.plan)
            .field("sources", &self.sources.len())
            .field("api", &self.api_addr())
            .finish_non_exhaustive()
    }
}

impl Topology {
    /// A `candlekeep run` process of `role`, its sources from the
    /// configuration and its API on `listen`.
    ///
    /// # Errors
    /// When NATS or the store cannot be reached, no source is configured
    /// where one is needed, a source cannot be built, or the API cannot
    /// listen.
    pub async fn build(
        settings: &Settings,
        role: Role,
        listen: SocketAddr,
    ) -> anyhow::Result<Topology> {
        let mut runtime = Runtime::new();
        let cluster = match role {
            Role::All => None,
            _ => Some(Bus::connect(&settings.config).await?),
        };
        let sources = match role {
            Role::Api => Vec::new(),
            Role::Processor => match cluster.clone().ok_or_else(no_cluster)? {
                Bus::Nats(nats) => vec![Source::Nats(nats)],
                Bus::Kafka(kafka) => vec![Source::Kafka(kafka)],
            },
            Role::Collector | Role::All => {
                let sources = crate::sources::from_config(&settings.config)?;
                anyhow::ensure!(
                    !sources.is_empty(),
                    "no sources configured: add a [[sources]] entry to the config (see config/example.toml)"
                );
                sources
            }
        };
        if role == Role::Collector {
            runtime.publish_to = cluster.clone();
        }
        Topology::assemble(
            Plan::Run(role),
            settings,
            runtime,
            cluster,
            sources,
            Some(listen),
        )
        .await
    }

    /// A single process running `sources` (the demo's), its API on `listen`.
    ///
    /// # Errors
    /// When the store cannot be opened or the API cannot listen.
    pub async fn with_sources(
        settings: &Settings,
        sources: Vec<Source>,
        listen: SocketAddr,
    ) -> anyhow::Result<Topology> {
        Topology::assemble(
            Plan::Run(Role::All),
            settings,
            Runtime::new(),
            None,
            sources,
            Some(listen),
        )
        .await
    }

    /// The API over the store alone (`candlekeep serve`): nothing captured,
    /// no candles built, no alerts evaluated.
    ///
    /// # Errors
    /// When the store cannot be opened or the API cannot listen.
    pub async fn serve(settings: &Settings, listen: SocketAddr) -> anyhow::Result<Topology> {
        Topology::assemble(
            Plan::Serve,
            settings,
            Runtime::new(),
            None,
            Vec::new(),
            Some(listen),
        )
        .await
    }

    async fn assemble(
        plan: Plan,
        settings: &Settings,
        runtime: Runtime,
        cluster: Option<Bus>,
        sources: Vec<Source>,
        listen: Option<SocketAddr>,
    ) -> anyhow::Result<Topology> {
        let store = crate::open_store(settings).await?;
        let api = match listen {
            Some(addr) => Some(ApiServer::bind(addr).await?),
            None => None,
        };
        Ok(Topology {
            plan,
            settings: settings.clone(),
            runtime,
            store,
            cluster,
            sources,
            api,
        })
    }

    /// Where the API listens.
    #[must_use]
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|a| a.addr)
    }

    /// The handles its stages share (the live feed, the connectors).
    #[must_use]
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Whether candles are built here, so that alerts, the Redis sink,
    /// packing and the store's retention run here too.
    fn builds_candles(&self) -> bool {
        matches!(self.plan, Plan::Run(Role::All | Role::Processor))
    }

    /// Runs every stage until `stop` is cancelled or the sources end, then
    /// stops them in order. The report is the pipeline's, where one ran
    /// (an API node runs none; a standby processor stopped before it got
    /// the lease ran none either).
    ///
    /// # Errors
    /// When the pipeline fails, or a stage the process cannot run without
    /// (the API node's live updates, the processor's lease) fails.
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<Option<PipelineReport>> {
        let tracker = TaskTracker::new();
        let tasks = Tasks {
            tracker: &tracker,
            stop: &stop,
        };
        let result = self.run_stages(&tasks).await;
        stop.cancel();
        tracker.close();
        if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
            tracing::warn!(
                tasks = tracker.len(),
                "tasks still running {GRACE:?} after the stop; leaving them"
            );
        }
        result
    }

    async fn run_stages(&mut self, tasks: &Tasks<'_>) -> anyhow::Result<Option<PipelineReport>> {
        let (settings, runtime) = (&self.settings, &self.runtime);
        let builds_candles = self.builds_candles();
        let mut lease = None;
        match (self.plan, &self.cluster) {
            (Plan::Run(Role::Api), Some(cluster)) => {
                tasks.spawn_fallible(
                    "collectors' connector states",
                    crate::cluster::follow_status(
                        cluster.clone(),
                        runtime.connectors.clone(),
                        tasks.stop.clone(),
                    ),
                );
                tasks.spawn_fallible(
                    "processors' heartbeats",
                    crate::lease::follow_processors(
                        cluster.clone(),
                        runtime.connectors.clone(),
                        tasks.stop.clone(),
                    ),
                );
            }
            (Plan::Run(Role::Processor), Some(cluster)) => {
                if let Bus::Nats(nats) = cluster
                    && nats.config.partitions <= 1
                {
                    // One processor per NATS consumer works; the others
                    // wait. (A partitioned stream has a lease per
                    // partition; over Kafka, the consumer group shares the
                    // partitions out.)
                    let Some(held) =
                        crate::lease::ProcessorLease::acquire(nats, tasks.stop).await?
                    else {
                        return Ok(None);
                    };
                    let held = Arc::new(held);
                    tasks.spawn("processor lease", held.clone().keep(tasks.stop.clone()));
                    lease = Some(held);
                }
                tasks.spawn(
                    "processor heartbeat",
                    crate::lease::publish_processor_alive(cluster.clone(), tasks.stop.clone()),
                );
                tasks.spawn(
                    "live updates to the cluster",
                    crate::cluster::publish_live(
                        cluster.clone(),
                        runtime.feed.clone(),
                        tasks.stop.clone(),
                    ),
                );
            }
            (Plan::Run(Role::Collector), Some(cluster)) => {
                tasks.spawn(
                    "connector states to the cluster",
                    crate::cluster::publish_status(
                        cluster.clone(),
                        runtime.connectors.clone(),
                        tasks.stop.clone(),
                    ),
                );
            }
            _ => {}
        }
        let alerts = start_alerts(settings, runtime, &self.store, tasks, builds_candles)?;
        if builds_candles && !settings.config.redis.url.is_empty() {
            let sink = ck_sinks::redis::run_redis_sink(
                settings.config.redis.clone(),
                runtime.feed.clone(),
                tasks.stop.clone(),
            );
            tasks.spawn("Redis sink", async move {
                let _ = sink.await;
            });
        }
        if builds_candles && settings.config.kafka.enabled() {
            let sink = ck_sinks::kafka::run_kafka_sink(
                settings.config.kafka.clone(),
                &runtime.feed,
                tasks.stop.clone(),
            );
            tasks.spawn_fallible("Kafka sink", async move {
                sink.await.map(|_| ()).map_err(anyhow::Error::from)
            });
        }
        if let Some(api) = self.api.take() {
            let capture = match self.plan {
                Plan::Serve => ck_api::Capture::Nothing,
                Plan::Run(Role::Api) => ck_api::Capture::Cluster,
                Plan::Run(Role::Processor) => ck_api::Capture::Nothing,
                // How long a live source may be silent: the longest of them.
                Plan::Run(_) => self
                    .sources
                    .iter()
                    .filter_map(|s| match s {
                        Source::Live { config, .. } => Some(config.stale_after),
                        _ => None,
                    })
                    .max()
                    .map_or(ck_api::Capture::Nothing, |stale_after| {
                        ck_api::Capture::Live { stale_after }
                    }),
            };
            let captured = self.sources.iter().flat_map(Source::captured).collect();
            api.serve(
                settings,
                runtime,
                &self.store,
                &alerts,
                capture,
                captured,
                tasks,
            );
        }
        self.start_upkeep(tasks, builds_candles)?;
        let report = match (self.plan, &self.cluster) {
            (Plan::Serve, _) => {
                tasks.stop.cancelled().await;
                None
            }
            (Plan::Run(Role::Api), Some(cluster)) => {
                crate::cluster::follow_live(
                    cluster.clone(),
                    runtime.feed.clone(),
                    tasks.stop.clone(),
                )
                .await?;
                None
            }
            _ => {
                let sources = std::mem::take(&mut self.sources);
                let report = run_pipeline_with(
                    settings,
                    runtime,
                    self.store.clone(),
                    sources,
                    None,
                    tasks.stop.clone(),
                )
                .await;
                if let Some(lease) = lease {
                    // After the last commit: the standby starts where it ended.
                    lease.release().await;
                }
                Some(report?)
            }
        };
        Ok(report)
    }

    /// Packing settled candle days and retention, on their schedules.
    fn start_upkeep(&self, tasks: &Tasks<'_>, builds_candles: bool) -> anyhow::Result<()> {
        if self.plan == Plan::Serve || self.plan == Plan::Run(Role::Api) {
            return Ok(());
        }
        let config = &self.settings.config;
        if builds_candles && config.store.pack_every_secs > 0 {
            tasks.spawn(
                "packing candle days",
                crate::retention::run_pack_schedule(
                    self.settings.clone(),
                    self.store.clone(),
                    Duration::from_secs(config.store.pack_every_secs),
                    tasks.stop.clone(),
                ),
            );
        }
        if builds_candles && config.archive.enabled {
            tasks.spawn(
                "archiving settled days",
                crate::archive::run_schedule(
                    self.settings.clone(),
                    self.store.clone(),
                    Duration::from_secs(config.archive.every_secs),
                    tasks.stop.clone(),
                ),
            );
        }
        let policy = config.retention.policy()?;
        // A collector prunes its own tapes only.
        let policy = if builds_candles {
            policy
        } else {
            policy.tapes_only()
        };
        if policy.prunes_anything() {
            tasks.spawn(
                "retention",
                crate::retention::run_schedule(
                    self.settings.clone(),
                    self.store.clone(),
                    policy,
                    Duration::from_secs(config.retention.every_secs),
                    tasks.stop.clone(),
                ),
            );
        }
        Ok(())
    }
}

/// A finite run (`replay`, `import`, `backfill`): `sources` through the
/// pipeline into `store` until they end or `stop`, with the Kafka sink
/// where one is configured, which gets every record before this returns
/// (up to ten seconds for the broker to take what it still holds).
///
/// # Errors
/// When the pipeline fails.
pub async fn run_to_end(
    settings: &Settings,
    store: Arc<dyn Store>,
    sources: Vec<Source>,
    stop: CancellationToken,
) -> anyhow::Result<PipelineReport> {
    let runtime = Runtime::new();
    let sink_stop = CancellationToken::new();
    let kafka = settings.config.kafka.enabled().then(|| {
        tokio::spawn(ck_sinks::kafka::run_kafka_sink(
            settings.config.kafka.clone(),
            &runtime.feed,
            sink_stop.clone(),
        ))
    });
    let report = run_pipeline_with(settings, &runtime, store, sources, None, stop).await;
    sink_stop.cancel();
    if let Some(kafka) = kafka {
        match kafka.await {
            Ok(Ok(stats)) => tracing::info!(
                delivered = stats.delivered,
                failed = stats.failed,
                buffer_full = stats.buffer_full,
                refused = stats.refused,
                lagged = stats.lagged,
                "kafka sink done"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "kafka sink failed"),
            Err(e) => tracing::error!(error = %e, "kafka sink panicked"),
        }
    }
    report
}

fn no_cluster() -> anyhow::Error {
    anyhow::anyhow!("a processor needs NATS")
}

/// The tasks of one process: spawned under one tracker, each named, each
/// told to stop by one token.
struct Tasks<'a> {
    tracker: &'a TaskTracker,
    stop: &'a CancellationToken,
}

impl Tasks<'_> {
    fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(async move {
            task.await;
            tracing::debug!(task = name, "ended");
        });
    }

    /// A task whose failure is logged by name (the process goes on).
    fn spawn_fallible(
        &self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.tracker.spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(task = name, error = %format!("{e:#}"), "stage failed");
            }
        });
    }
}

/// The alert rules and their evaluation where candles are built.
fn start_alerts(
    settings: &Settings,
    runtime: &Runtime,
    store: &Arc<dyn Store>,
    tasks: &Tasks<'_>,
    evaluate: bool,
) -> anyhow::Result<ck_alerts::AlertHandle> {
    let config = &settings.config.alerts;
    let handle = ck_alerts::AlertHandle::new(
        config.rules()?,
        config.channels.iter().map(|c| c.name.clone()).collect(),
    )
    .with_books(runtime.books.clone());
    if evaluate {
        tasks.spawn(
            "alerts",
            ck_alerts::service::run(
                runtime.feed.clone(),
                store.clone(),
                handle.clone(),
                Arc::new(config.notifier()?),
                tasks.stop.clone(),
            ),
        );
    }
    Ok(handle)
}

/// The API's listener, bound when the process is built (so its address is
/// known, and a port in use fails the start).
struct ApiServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl ApiServer {
    async fn bind(listen: SocketAddr) -> anyhow::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            anyhow::anyhow!("the API cannot listen on {listen}: {e} (use --listen ADDR)")
        })?;
        let addr = listener.local_addr()?;
        Ok(ApiServer { listener, addr })
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the API's state is made of all of them"
    )]
    fn serve(
        self,
        settings: &Settings,
        runtime: &Runtime,
        store: &Arc<dyn Store>,
        alerts: &ck_alerts::AlertHandle,
        capture: ck_api::Capture,
        captured: Vec<(Exchange, Instrument)>,
        tasks: &Tasks<'_>,
    ) {
        let api = &settings.config.api;
        let state = ck_api::ApiState::new(
            store.clone(),
            runtime.connectors.clone(),
            runtime.feed.clone(),
            Duration::from_secs(api.ws_heartbeat_secs),
        )
        .with_ws_queue(api.ws_queue)
        .with_ws_linger(Duration::from_millis(api.ws_linger_ms))
        .with_alerts(alerts.clone())
        .with_rate_limit(api.rate_limit_per_sec, api.rate_limit_burst)
        // `CANDLEKEEP_API_TOKEN` arrives here as `api.token` (see the config).
        .with_token(api.token.clone())
        .with_cors(api.cors_origins.clone())
        .with_capture(capture)
        .with_captured(captured)
        .with_books(
            Some(runtime.books.clone()),
            settings.config.archive.root(&settings.data_dir),
        );
        let stop = tasks.stop.clone().cancelled_owned();
        let listener = self.listener;
        tasks.spawn_fallible("API", async move {
            ck_api::serve(listener, state, stop)
                .await
                .map_err(|e| anyhow::anyhow!("API server failed: {e}"))
        });
    }
}
