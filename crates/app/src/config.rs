//! The one configuration tree, read from TOML with environment overrides.
//!
//! Every key has a default, so an empty file (or none) is a valid config.
//! Any key can be overridden from the environment as
//! `CANDLEKEEP_<SECTION>__<KEY>` (double underscore between levels), for
//! example `CANDLEKEEP_STORE__DURABILITY=normal` or
//! `CANDLEKEEP_CANDLES__GRACE_MS=5000`. `CANDLEKEEP_DATA_DIR` sets `data_dir`.
//! Values are read as TOML when they parse (numbers, booleans, arrays), else
//! as strings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ck_model::{EmptyIntervalPolicy, Exchange, Interval, NANOS_PER_SEC};
use ck_processors::candles::AggregatorConfig;
use ck_sinks::WriterConfig;
use ck_store::sqlite::Durability;
use serde::{Deserialize, Serialize};

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML (after environment overrides) does not fit the schema.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Where the database and tapes live. Default `./data`; the
    /// `--data-dir` flag and `CANDLEKEEP_DATA_DIR` override it.
    pub data_dir: PathBuf,
    /// The store.
    pub store: StoreConfig,
    /// Candle building.
    pub candles: CandlesConfig,
    /// Raw tapes of live capture.
    pub tape: TapeConfig,
    /// Sizes of the pipeline's bounded queues.
    pub pipeline: PipelineConfig,
    /// The HTTP API.
    pub api: ApiConfig,
    /// How long each kind of data is kept.
    pub retention: RetentionConfig,
    /// The archive of settled days, as Parquet files.
    pub archive: ArchiveConfig,
    /// How captured order books are kept.
    pub books: BooksConfig,
    /// Alert rules and notification channels.
    pub alerts: AlertsConfig,
    /// Which stream joins collectors, processors and API nodes (NATS or
    /// Kafka), and Kafka's settings for it.
    pub cluster: ClusterConfig,
    /// NATS JetStream, joining collectors, processors and API nodes.
    pub nats: NatsConfig,
    /// The Redis sink (hot state and pub/sub for outside apps).
    pub redis: RedisConfig,
    /// The Kafka sink (off unless `brokers` is set).
    pub kafka: KafkaConfig,
    /// Where data comes from. Default: live Binance BTC-USDT and ETH-USDT.
    pub sources: Vec<SourceConfig>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            data_dir: PathBuf::from("./data"),
            store: StoreConfig::default(),
            candles: CandlesConfig::default(),
            tape: TapeConfig::default(),
            pipeline: PipelineConfig::default(),
            api: ApiConfig::default(),
            retention: RetentionConfig::default(),
            archive: ArchiveConfig::default(),
            books: BooksConfig::default(),
            alerts: AlertsConfig::default(),
            cluster: ClusterConfig::default(),
            nats: NatsConfig::default(),
            redis: RedisConfig::default(),
            kafka: KafkaConfig::default(),
            sources: vec![SourceConfig::Live(VenueSourceConfig {
                exchange: Some(ck_model::Exchange::Binance),
                instruments: vec!["BTC-USDT".to_owned(), "ETH-USDT".to_owned()],
                ws_url: None,
                stale_after_secs: default_stale_secs(),
                api: None,
                rest_url: None,
                books: false,
                book_depth: None,
                book_depths: std::collections::BTreeMap::new(),
            })],
        }
    }
}

/// NATS JetStream, for `run --role collector|processor|api`.
pub use ck_sinks::nats::NatsConfig;

/// The Redis sink's settings (`[redis]`).
pub use ck_sinks::kafka::KafkaConfig;
/// `[cluster]`: NATS or Kafka between the roles.
pub use ck_sinks::kafka_bus::{ClusterBus, ClusterConfig};
pub use ck_sinks::redis::RedisConfig;

/// Which backend holds the store, from `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded SQLite file (`sqlite:PATH`, or empty for the default).
    Sqlite(PathBuf),
    /// A PostgreSQL server (`postgres://…` or `postgresql://…`).
    Postgres(String),
}

impl StoreLocation {
    /// Reads a store URL; empty means `<data_dir>/candlekeep.sqlite`.
    pub fn parse(url: &str, data_dir: &Path) -> Result<StoreLocation, String> {
        if url.is_empty() {
            Ok(StoreLocation::Sqlite(data_dir.join("candlekeep.sqlite")))
        } else if let Some(p) = url.strip_prefix("sqlite:") {
            let p = p.trim_start_matches("//");
            if p.is_empty() {
                return Err("`sqlite:` needs a path, as in sqlite:./data/candlekeep.sqlite".into());
            }
            Ok(StoreLocation::Sqlite(PathBuf::from(p)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StoreLocation::Postgres(url.to_owned()))
        } else {
            Err(format!(
                "`{}` is not a store URL: use sqlite:PATH or postgres://USER@HOST:PORT/DB",
                ck_bus::secrets::redact_credentials(url)
            ))
        }
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            // The URL may hold a password: show only where it points.
            StoreLocation::Postgres(url) => {
                let host = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                write!(f, "postgres://{host}")
            }
        }
    }
}

/// The store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`; empty means
    /// `sqlite:<data_dir>/candlekeep.sqlite`.
    pub url: String,
    /// `full` (fsync every commit; a crash, even of the machine, loses nothing
    /// committed) or `normal` (survives a process crash).
    pub durability: DurabilityConfig,
    /// Rows per commit, at most.
    pub batch_rows: usize,
    /// Commit at most this many milliseconds after the oldest uncommitted
    /// event arrived (batches still grow to `batch_rows` under load).
    pub flush_interval_ms: u64,
    /// Seconds between packings of settled candle days (SQLite's fast form
    /// of long reads) while `run` runs; 0 never packs on a schedule.
    pub pack_every_secs: u64,
    /// SQLite: the writer's page cache in MiB. It fills as the store grows
    /// and then stays at this size; smaller saves memory, larger keeps more
    /// of the indexes in memory for writes.
    pub sqlite_cache_mib: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            durability: DurabilityConfig::Full,
            batch_rows: 20_000,
            flush_interval_ms: 50,
            pack_every_secs: 600,
            sqlite_cache_mib: 64,
        }
    }
}

/// See [`StoreConfig::durability`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityConfig {
    /// fsync every commit.
    Full,
    /// fsync at checkpoints.
    Normal,
}

/// Candle building.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CandlesConfig {
    /// The intervals to build and store. Default: all fifteen, `1s` to `1M`.
    pub intervals: Vec<String>,
    /// A candle stays open this long after its end for stragglers, in ms.
    pub grace_ms: u64,
    /// A trade this far behind the watermark still revises candles, in seconds.
    pub lateness_secs: u64,
    /// Empty-interval policy per exchange (`flat` or `skip`); unlisted
    /// exchanges follow their own candles (flat: Binance, Kraken, OKX, Bybit,
    /// Bitstamp; skip: Coinbase, Bitfinex).
    pub empty_intervals: BTreeMap<String, EmptyIntervalPolicy>,
    /// How often provisional candles are emitted and quiet candles closed, in ms.
    pub tick_ms: u64,
    /// Flat candles are made for at most this long after an instrument's last
    /// trade, in seconds; a longer silence is treated as a capture gap.
    pub max_flat_fill_secs: u64,
}

impl Default for CandlesConfig {
    fn default() -> Self {
        CandlesConfig {
            intervals: Interval::ALL
                .iter()
                .map(|i| i.as_str().to_owned())
                .collect(),
            grace_ms: 2_000,
            lateness_secs: 900,
            empty_intervals: BTreeMap::new(),
            tick_ms: 250,
            max_flat_fill_secs: 6 * 3600,
        }
    }
}

/// Raw tapes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TapeConfig {
    /// Record every raw message of live capture.
    pub enabled: bool,
    /// Flush a complete compressed block at least every this many messages.
    pub flush_every: usize,
}

impl Default for TapeConfig {
    fn default() -> Self {
        TapeConfig {
            enabled: true,
            flush_every: 1_000,
        }
    }
}

/// Queue sizes. Full queues make the sender wait: nothing is dropped.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Events between sources and the candle stage.
    pub ingest_queue: usize,
    /// Events between the candle stage and the store writer.
    pub store_queue: usize,
    /// Seconds a clean shutdown may take before stragglers are aborted.
    pub shutdown_grace_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            ingest_queue: 65_536,
            store_queue: 65_536,
            shutdown_grace_secs: 10,
        }
    }
}

/// Retention (the history manager): how long to keep each kind of data,
/// `"forever"` or a duration such as `"30d"`. Trades are kept at least until
/// every candle built from them is closed and past the lateness window.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Raw tapes, by whole day.
    pub tapes: String,
    /// Trades.
    pub trades: String,
    /// Quotes (best bid and ask).
    pub quotes: String,
    /// Candles per interval, such as `{ "1s" = "7d", "1m" = "365d" }`;
    /// intervals not named are kept forever.
    pub candles: BTreeMap<String, String>,
    /// Seconds between prunes while `run` is capturing.
    pub every_secs: u64,
    /// Rows per delete transaction (small, so ingest never waits long).
    pub batch_rows: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            tapes: "forever".into(),
            trades: "forever".into(),
            quotes: "forever".into(),
            candles: BTreeMap::new(),
            every_secs: 3_600,
            batch_rows: 5_000,
        }
    }
}

impl RetentionConfig {
    /// The policies, checked.
    ///
    /// # Errors
    /// A value that is not `forever` or a duration, or an unknown interval.
    pub fn policy(&self) -> Result<crate::retention::Policy, ConfigError> {
        use crate::retention::Keep;
        let mut candles = Vec::new();
        for (name, keep) in &self.candles {
            let interval = name
                .parse::<Interval>()
                .map_err(|e| ConfigError::Invalid(format!("retention.candles: `{name}`: {e}")))?;
            candles.push((interval, Keep::parse(&format!("candles.{name}"), keep)?));
        }
        if self.every_secs == 0 || self.batch_rows == 0 {
            return Err(ConfigError::Invalid(
                "retention.every_secs and retention.batch_rows must be above zero".into(),
            ));
        }
        Ok(crate::retention::Policy {
            tapes: Keep::parse("tapes", &self.tapes)?,
            trades: Keep::parse("trades", &self.trades)?,
            quotes: Keep::parse("quotes", &self.quotes)?,
            candles,
            batch_rows: self.batch_rows,
        })
    }
}

/// The archive (`[archive]`): settled days of trades, quotes and candles
/// (1s to 1d) move from the store to Parquet files, one per instrument and UTC day, in a Hive
/// layout that DuckDB, polars and pyarrow read as they are. A day is
/// settled once it ended before `now - candles.lateness_secs - grace`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Move settled days to the archive (`run` on a schedule, `replay`,
    /// `import` and `backfill` when they finish). Off keeps every row in
    /// the store; an archive already written is still read.
    pub enabled: bool,
    /// The archive's folder; empty means `<data_dir>/archive`.
    pub dir: String,
    /// Seconds between archive passes while `run` runs.
    pub every_secs: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: true,
            dir: String::new(),
            every_secs: 600,
        }
    }
}

impl ArchiveConfig {
    /// The archive's folder.
    #[must_use]
    pub fn root(&self, data_dir: &Path) -> PathBuf {
        if self.dir.is_empty() {
            data_dir.join("archive")
        } else {
            PathBuf::from(&self.dir)
        }
    }
}

/// Order books (`[books]`), for live sources with `books = true`: kept in
/// the archive's folder as `book_snapshots` and `book_deltas` files, one
/// pair per part of a book's day.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BooksConfig {
    /// Seconds between whole-book snapshots recorded between deltas, so a
    /// book at any instant is rebuilt from at most this much of them.
    pub snapshot_every_secs: u64,
    /// Seconds a part of a book's files stays open before it is finished
    /// and a new one begins (with a snapshot): what a crash can lose of
    /// the book files (the tape keeps every message regardless).
    pub part_secs: u64,
    /// Book updates queued between the connections and the recorder.
    pub queue: usize,
    /// Milliseconds between recordings of each book's best levels alone
    /// (`book_top` files, for those who want only those); 0: never.
    pub top_every_ms: u64,
    /// Levels a side of those.
    pub top_depth: usize,
    /// Milliseconds between the samples of each book's statistics
    /// (`book_stats` files, `/api/v1/book/series`), at multiples of it
    /// since the epoch; 0: never.
    pub stats_every_ms: u64,
}

impl Default for BooksConfig {
    fn default() -> Self {
        BooksConfig {
            snapshot_every_secs: 600,
            part_secs: 600,
            queue: 4_096,
            top_every_ms: 1_000,
            top_depth: 25,
            stats_every_ms: 1_000,
        }
    }
}

/// Alerts: rules (as `/api/v1/alerts` takes them) and the channels they
/// notify. Rules can also be created over the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Rules, such as `{ kind = "price_above", exchange = "binance",
    /// instrument = "BTC-USDT", level = "70000", notify = ["ops"] }`.
    pub rules: Vec<serde_json::Value>,
    /// Channels, such as `{ name = "ops", kind = "webhook", url = "...", secret = "..." }`.
    pub channels: Vec<ck_alerts::ChannelConfig>,
    /// Tries per delivery before it is recorded as failed.
    pub attempts: u32,
    /// The wait before the first retry, doubling each time.
    pub retry_backoff_ms: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            rules: Vec::new(),
            channels: Vec::new(),
            attempts: 5,
            retry_backoff_ms: 1_000,
        }
    }
}

impl AlertsConfig {
    /// The config's rules, checked, and each channel they name.
    ///
    /// # Errors
    /// A bad rule (named by its place) or an unknown channel.
    pub fn rules(&self) -> Result<Vec<ck_alerts::Rule>, ConfigError> {
        let mut out = Vec::new();
        for (i, value) in self.rules.iter().enumerate() {
            let rule = ck_alerts::Rule::from_value(value.clone())
                .map_err(|e| ConfigError::Invalid(format!("alerts.rules[{}]: {e}", i + 1)))?;
            if let Some(missing) = rule
                .notify
                .iter()
                .find(|n| !self.channels.iter().any(|c| &c.name == *n))
            {
                return Err(ConfigError::Invalid(format!(
                    "alerts.rules[{}]: no channel named `{missing}` in alerts.channels",
                    i + 1
                )));
            }
            out.push(rule);
        }
        Ok(out)
    }

    /// The notifier for the channels.
    ///
    /// # Errors
    /// A channel name used twice.
    pub fn notifier(&self) -> Result<ck_alerts::Notifier, ConfigError> {
        ck_alerts::Notifier::new(
            self.channels.clone(),
            self.attempts,
            std::time::Duration::from_millis(self.retry_backoff_ms),
        )
        .map_err(ConfigError::Invalid)
    }
}

/// The HTTP API (`--listen` sets the address).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Live updates each WebSocket client may fall behind the newest by
    /// before the oldest are dropped and it gets a `lagged` notice.
    pub ws_queue: usize,
    /// Milliseconds the WebSocket server keeps collecting updates into one
    /// batch after the first; 0 (the default) sends what is ready at once.
    /// A few milliseconds let a thousand clients of a busy stream keep up.
    pub ws_linger_ms: u64,
    /// Seconds between the server's WebSocket heartbeats.
    pub ws_heartbeat_secs: u64,
    /// The bearer token every state-changing request must carry
    /// (`CANDLEKEEP_API_TOKEN` overrides it). Without one, such requests are
    /// refused. Never printed by `candlekeep config`.
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
    /// Origins whose web pages may call the API (`["*"]` for any); none by default.
    pub cors_origins: Vec<String>,
    /// Requests a second each client (by address) may make; 0 for no limit.
    pub rate_limit_per_sec: u32,
    /// The burst a client may make above its rate.
    pub rate_limit_burst: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            ws_queue: 4_096,
            ws_linger_ms: 0,
            ws_heartbeat_secs: 15,
            token: None,
            cors_origins: Vec::new(),
            rate_limit_per_sec: 100,
            rate_limit_burst: 200,
        }
    }
}

/// One source of data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// Live Binance spot capture (`trade`, `bookTicker`).
    Binance(VenueSourceConfig),
    /// Live capture from any venue: `exchange = "okx"` names it (the
    /// per-venue kinds below are the same with the venue in the kind).
    Live(VenueSourceConfig),
    /// Live Coinbase Advanced Trade capture (`market_trades`, `ticker`).
    Coinbase(VenueSourceConfig),
    /// Live Coinbase Exchange capture (`matches`, `ticker`).
    #[serde(rename = "coinbase_exchange")]
    CoinbaseExchange(VenueSourceConfig),
    /// Live Bitfinex v2 capture (`trades`, `ticker`).
    Bitfinex(VenueSourceConfig),
    /// Live Kraken capture (`trade`, `ticker`); `api = "v1"` for WS v1.
    Kraken(VenueSourceConfig),
    /// Live Bitstamp capture (`live_trades`).
    Bitstamp(VenueSourceConfig),
    /// Live OKX capture (`trades`, `tickers`).
    Okx(VenueSourceConfig),
    /// Live Bybit spot capture (`publicTrade`, `orderbook.1`).
    Bybit(VenueSourceConfig),
    /// Best bid/ask polled over REST, at a cadence per instrument (venues or
    /// pairs without a WebSocket feed): every venue's public ticker.
    Poll {
        /// The venue.
        exchange: ck_model::Exchange,
        /// Its REST root; the venue's public API if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rest_url: Option<String>,
        /// What to poll.
        tickers: Vec<PollTickerConfig>,
    },
    /// Replays recordings (tapes or fixture formats) through the pipeline.
    Replay {
        /// The files, in order.
        files: Vec<PathBuf>,
        /// Pace: `0` (default) is as fast as possible, `1.0` real time.
        #[serde(default)]
        speed: f64,
        /// The venue of files that do not say it; read from each file if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exchange: Option<ck_model::Exchange>,
    },
}

/// One polled instrument.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollTickerConfig {
    /// `BASE-QUOTE`.
    pub instrument: String,
    /// Poll every this many milliseconds.
    pub every_ms: u64,
}

/// A live venue: `kind = "live"` with `exchange`, or a per-venue kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueSourceConfig {
    /// The venue (`kind = "live"`; a per-venue kind names it already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<ck_model::Exchange>,
    /// Instruments, `BASE-QUOTE`.
    pub instruments: Vec<String>,
    /// WebSocket URL; the venue's public endpoint if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// Renew a connection, or resubscribe an instrument, silent this long.
    #[serde(default = "default_stale_secs")]
    pub stale_after_secs: u64,
    /// Kraken only: `v2` (default) or `v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// The REST root for gap repair: the venue's public one where candlekeep
    /// has its REST history (Coinbase Exchange), if absent; `""` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_url: Option<String>,
    /// Capture the instruments' order books too (`[books]` says how they
    /// are kept).
    #[serde(default)]
    pub books: bool,
    /// Levels a side each book is asked for, where the venue takes a
    /// depth (the nearest it offers at or above); 1,000 if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub book_depth: Option<usize>,
    /// Depth per instrument, over `book_depth`: `{ "BTC-USDT" = 5000 }`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub book_depths: std::collections::BTreeMap<String, usize>,
}

impl SourceConfig {
    /// The venue of a live source, with its settings.
    #[must_use]
    pub fn venue(&self) -> Option<(ck_model::Exchange, &VenueSourceConfig)> {
        use ck_model::Exchange as E;
        Some(match self {
            SourceConfig::Live(v) => (v.exchange?, v),
            SourceConfig::Binance(v) => (E::Binance, v),
            SourceConfig::Coinbase(v) => (E::Coinbase, v),
            SourceConfig::CoinbaseExchange(v) => (E::CoinbaseExchange, v),
            SourceConfig::Bitfinex(v) => (E::Bitfinex, v),
            SourceConfig::Kraken(v) => (E::Kraken, v),
            SourceConfig::Bitstamp(v) => (E::Bitstamp, v),
            SourceConfig::Okx(v) => (E::Okx, v),
            SourceConfig::Bybit(v) => (E::Bybit, v),
            SourceConfig::Replay { .. } | SourceConfig::Poll { .. } => return None,
        })
    }
}

fn default_stale_secs() -> u64 {
    60
}

/// The validated settings derived from [`AppConfig`]: plain data. What the
/// stages of a running process share (the live feed, the connector
/// registry, a collector's NATS connection) is in [`crate::runtime::Runtime`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The data folder.
    pub data_dir: PathBuf,
    /// Where the store is.
    pub store: StoreLocation,
    /// SQLite durability.
    pub durability: Durability,
    /// Aggregator settings.
    pub aggregator: AggregatorConfig,
    /// Store writer settings.
    pub writer: WriterConfig,
    /// Candle stage tick.
    pub tick: std::time::Duration,
    /// The rest, as configured.
    pub config: AppConfig,
}

impl AppConfig {
    /// Reads `path` (if given), applies environment overrides from `env`, and
    /// validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<AppConfig, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let mut value: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (key, raw) in env {
            let Some(rest) = key.strip_prefix("CANDLEKEEP_") else {
                continue;
            };
            // Process settings that are not part of the pipeline config, and
            // venues' API keys (`CANDLEKEEP_BINANCE_US_API_KEY`), which the
            // venue reads itself and no configuration file holds.
            if matches!(rest, "LOG" | "CONFIG") || rest.ends_with("_API_KEY") {
                continue;
            }
            // The documented name of the API token, short for API__TOKEN.
            let rest = if rest == "API_TOKEN" {
                "API__TOKEN"
            } else {
                rest
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            set_path(&mut value, &path, parse_env_value(&raw))
                .map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?;
        }
        let config: AppConfig = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.settings()?;
        Ok(config)
    }

    /// Checks everything and derives the runtime settings.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let mut intervals = Vec::new();
        for name in &self.candles.intervals {
            intervals.push(
                name.parse::<Interval>()
                    .map_err(|e| invalid(format!("candles.intervals: {e}")))?,
            );
        }
        let mut empty_policy = std::collections::HashMap::new();
        for (name, policy) in &self.candles.empty_intervals {
            let ex = name
                .parse::<Exchange>()
                .map_err(|e| invalid(format!("candles.empty_intervals: {e}")))?;
            empty_policy.insert(ex, *policy);
        }
        let store = StoreLocation::parse(&self.store.url, &self.data_dir)
            .map_err(|e| invalid(format!("store.url: {e}")))?;
        self.retention.policy()?;
        self.alerts.rules()?;
        if self.api.ws_queue == 0 || self.api.ws_heartbeat_secs == 0 {
            return Err(invalid(
                "api.ws_queue and api.ws_heartbeat_secs must be above zero".into(),
            ));
        }
        if self.books.snapshot_every_secs == 0 || self.books.part_secs == 0 || self.books.queue == 0
        {
            return Err(invalid(
                "books.snapshot_every_secs, books.part_secs and books.queue must be above zero"
                    .into(),
            ));
        }
        if self.books.top_depth == 0 {
            return Err(invalid("books.top_depth must be above zero".into()));
        }
        if self.books.part_secs > 86_400 {
            return Err(invalid(
                "books.part_secs is at most 86400: a part of a book's files lasts at most a day"
                    .into(),
            ));
        }
        // The open part's stats samples are kept in memory: at most a
        // million a book.
        if self.books.stats_every_ms > 0
            && self.books.part_secs.saturating_mul(1_000) / self.books.stats_every_ms > 1_000_000
        {
            return Err(invalid(format!(
                "books.stats_every_ms = {} samples a part of books.part_secs = {} s more than a million times (the open part's samples are kept in memory): sample less often or end parts sooner",
                self.books.stats_every_ms, self.books.part_secs
            )));
        }
        if self.archive.every_secs == 0 {
            return Err(invalid(
                "archive.every_secs must be above zero (set archive.enabled = false to stop archiving)".into(),
            ));
        }
        if self.store.sqlite_cache_mib == 0 {
            return Err(invalid(
                "store.sqlite_cache_mib must be at least 1 (MiB of SQLite's page cache)".into(),
            ));
        }
        if self.store.batch_rows == 0
            || self.pipeline.ingest_queue == 0
            || self.pipeline.store_queue == 0
        {
            return Err(invalid(
                "store.batch_rows and pipeline queue sizes must be above zero".into(),
            ));
        }
        for s in &self.sources {
            match s {
                SourceConfig::Live(_)
                | SourceConfig::Binance(_)
                | SourceConfig::Coinbase(_)
                | SourceConfig::CoinbaseExchange(_)
                | SourceConfig::Bitfinex(_)
                | SourceConfig::Kraken(_)
                | SourceConfig::Bitstamp(_)
                | SourceConfig::Okx(_)
                | SourceConfig::Bybit(_) => {
                    let Some((exchange, v)) = s.venue() else {
                        return Err(invalid(format!(
                            "a live source needs `exchange`, one of: {}",
                            ck_model::Exchange::names().join(", ")
                        )));
                    };
                    if let Some(named) = v.exchange.filter(|e| *e != exchange) {
                        return Err(invalid(format!(
                            "a {exchange} source names exchange `{named}`: use kind = \"live\" with exchange = \"{named}\""
                        )));
                    }
                    if v.instruments.is_empty() {
                        return Err(invalid(format!(
                            "a {exchange} source needs at least one instrument"
                        )));
                    }
                    for i in &v.instruments {
                        ck_model::Instrument::parse(i)
                            .map_err(|e| invalid(format!("sources: {e}")))?;
                    }
                    if let Some(url) = &v.ws_url
                        && !(url.starts_with("ws://") || url.starts_with("wss://"))
                    {
                        return Err(invalid(format!(
                            "sources: ws_url `{url}` must start with ws:// or wss://"
                        )));
                    }
                    if let Some(url) = &v.rest_url
                        && !(url.is_empty()
                            || url.starts_with("http://")
                            || url.starts_with("https://"))
                    {
                        return Err(invalid(format!(
                            "sources: rest_url `{url}` must start with http:// or https:// (or be empty to disable REST)"
                        )));
                    }
                    match (exchange, v.api.as_deref()) {
                        (_, None) | (ck_model::Exchange::Kraken, Some("v1" | "v2")) => {}
                        (_, Some(api)) => {
                            return Err(invalid(format!(
                                "sources: api `{api}` is not known for {exchange} (Kraken takes v1 or v2)"
                            )));
                        }
                    }
                }
                SourceConfig::Poll {
                    exchange: _,
                    rest_url,
                    tickers,
                } => {
                    if tickers.is_empty() {
                        return Err(invalid("a poll source needs at least one ticker".into()));
                    }
                    for t in tickers {
                        ck_model::Instrument::parse(&t.instrument)
                            .map_err(|e| invalid(format!("sources: {e}")))?;
                        if t.every_ms < 10 {
                            return Err(invalid(format!(
                                "sources: polling {} every {} ms is too often (10 ms at least)",
                                t.instrument, t.every_ms
                            )));
                        }
                    }
                    if let Some(url) = rest_url
                        && !(url.starts_with("http://") || url.starts_with("https://"))
                    {
                        return Err(invalid(format!(
                            "sources: rest_url `{url}` must start with http:// or https://"
                        )));
                    }
                }
                SourceConfig::Replay { files, speed, .. } => {
                    if files.is_empty() {
                        return Err(invalid("a replay source needs at least one file".into()));
                    }
                    if !speed.is_finite() || *speed < 0.0 {
                        return Err(invalid(format!(
                            "replay speed must be 0 or positive, got {speed}"
                        )));
                    }
                }
            }
        }
        let ms = |v: u64| {
            i64::try_from(v)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000)
        };
        Ok(Settings {
            data_dir: self.data_dir.clone(),
            store,
            durability: match self.store.durability {
                DurabilityConfig::Full => Durability::Full,
                DurabilityConfig::Normal => Durability::Normal,
            },
            aggregator: AggregatorConfig {
                intervals,
                grace_nanos: ms(self.candles.grace_ms),
                lateness_nanos: i64::try_from(self.candles.lateness_secs)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(NANOS_PER_SEC),
                max_flat_span_nanos: i64::try_from(self.candles.max_flat_fill_secs)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(NANOS_PER_SEC),
                empty_policy,
            },
            writer: WriterConfig {
                batch_rows: self.store.batch_rows,
                flush_interval: std::time::Duration::from_millis(
                    self.store.flush_interval_ms.max(1),
                ),
                ..WriterConfig::default()
            },
            tick: std::time::Duration::from_millis(self.candles.tick_ms.max(10)),
            config: self.clone(),
        })
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(&self.redacted()).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The configuration with every credential masked (`ck_bus::secrets`):
    /// passwords in server URLs, webhook paths, secrets and tokens.
    #[must_use]
    pub fn redacted(&self) -> AppConfig {
        use ck_bus::secrets::redact_credentials;
        let mut c = self.clone();
        c.store.url = redact_credentials(&c.store.url);
        c.redis.url = redact_credentials(&c.redis.url);
        c.nats.url = redact_credentials(&c.nats.url);
        for channel in &mut c.alerts.channels {
            *channel = channel.redacted();
        }
        c
    }

    /// Every secret the configuration holds, for scrubbing logs and errors
    /// (`ck_bus::secrets::scrub`).
    #[must_use]
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = [&self.store.url, &self.redis.url, &self.nats.url]
            .into_iter()
            .flat_map(|u| ck_bus::secrets::credential_secrets(u))
            .collect();
        for channel in &self.alerts.channels {
            out.extend(channel.secrets());
        }
        out.extend(self.api.token.clone().filter(|t| t.len() >= 4));
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out.dedup();
        out
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    // `x = <raw>` parses as TOML for numbers, booleans and arrays; anything
    // else is a plain string.
    toml::from_str::<toml::Table>(&format!("x = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("x"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("`{first}` is not a section")),
            }
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
