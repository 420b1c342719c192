//! The command line: global options, commands and their arguments.

use std::path::PathBuf;

use ck_app::cluster::Role;
use ck_model::{Exchange, Instrument, Interval, Ts};
use ck_sources::import::{ImportFormat, TsUnit};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Gap-free crypto market data: trades, quotes and exact candles, stored and served.
#[derive(Debug, Parser)]
#[command(name = "candlekeep", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Where the database and tapes live.
    #[arg(long, global = true, env = "CANDLEKEEP_DATA_DIR", value_name = "DIR", help_heading = GLOBAL)]
    pub(crate) data_dir: Option<PathBuf>,
    /// The TOML configuration file (every key has a default).
    #[arg(long, global = true, env = "CANDLEKEEP_CONFIG", value_name = "FILE", help_heading = GLOBAL)]
    pub(crate) config: Option<PathBuf>,
    /// The store: `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`
    /// (overrides `store.url`).
    #[arg(long, global = true, env = "CANDLEKEEP_STORE", value_name = "URL", help_heading = GLOBAL)]
    pub(crate) store: Option<String>,
    /// Log filter, for example `info` or `ck_sources=debug`.
    #[arg(long, global = true, env = "CANDLEKEEP_LOG", default_value = "info", help_heading = GLOBAL)]
    pub(crate) log: String,
    /// Colour in log lines: `auto` colours only when standard error is a
    /// terminal and `NO_COLOR` is not set.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, help_heading = GLOBAL)]
    pub(crate) color: ColorChoice,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the pipeline from the configuration until Ctrl-C or SIGTERM, serving the
    /// API (`/api/v1`, `/health`, `/metrics`) meanwhile.
    Run {
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: std::net::SocketAddr,
        /// What this process does: `all` (everything, no NATS), `collector`
        /// (capture, publish to NATS JetStream), `processor` (consume, build
        /// candles and alerts, write the store) or `api` (serve the store and
        /// live updates from NATS). See `[nats]` in the configuration.
        #[arg(long, default_value = "all")]
        role: Role,
    },
    /// Serve the API over the store, without capturing (an API node).
    Serve {
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: std::net::SocketAddr,
    },
    /// Print the effective configuration (file plus environment), as TOML.
    Config,
    /// Feed recordings through the same parsers and pipeline as live capture.
    Replay {
        /// candlekeep tapes, cryptofeed `.jsonl.zst` or v1 text, hftbacktest `.gz`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Pace relative to the recording (1 = real time); as fast as possible if absent.
        #[arg(long)]
        speed: Option<f64>,
        /// The venue of recordings whose name and content do not say it
        /// (a cryptofeed text recording renamed).
        #[arg(long, value_parser = exchange_names(), ignore_case = true)]
        exchange: Option<Exchange>,
        /// Rebuild the recordings' order books too, through the same
        /// engine and checks as live capture, into the archive's book files
        /// (give a recording's REST file before its frames:
        /// `NAME.0 NAME.ws.N.0`).
        #[arg(long)]
        books: bool,
    },
    /// Load trades from a CSV (`ts,trade_id,price,qty,side`) or JSON lines file, or a Binance dump, and build their candles.
    Import {
        /// The exchange the trades are from.
        #[arg(long, value_parser = exchange_names(), ignore_case = true)]
        exchange: Exchange,
        /// The instrument, BASE-QUOTE.
        #[arg(long)]
        instrument: Instrument,
        /// The unit of numeric `ts` values: `auto` reads it from the
        /// magnitude (seconds below 10^11, milliseconds below 10^14,
        /// microseconds below 10^17, else nanoseconds); `s`, `ms`, `us` or
        /// `ns` forces one.
        #[arg(long, default_value = "auto", value_parser = parse_ts_unit)]
        ts_unit: TsUnit,
        /// The file's layout: candlekeep (the default), binance-trades or
        /// binance-agg-trades (Binance's public dumps, `.zip` or `.csv`, with
        /// or without a header row), binance-klines (Binance's kline dumps,
        /// as the exchange's candles; the interval from the name,
        /// `BTCUSDT-1m-2024-08-08.zip`), tardis-trades or tardis-book-ticker
        /// (Tardis.dev CSV, `.csv.gz` or plain; book tickers are quotes),
        /// freqtrade-trades (freqtrade's `<PAIR>-trades.json` or `.json.gz`).
        /// Default: from the file's name (`BTCUSDT-aggTrades-2024-08-08.zip`,
        /// `binance_book_ticker_2024-08-08_BTCUSDT.csv.gz`).
        #[arg(long, value_parser = parse_import_format)]
        format: Option<ImportFormat>,
        /// The file.
        file: PathBuf,
    },
    /// Print stored candles.
    Candles {
        #[command(flatten)]
        range: RangeArgs,
        /// The interval: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w 1M.
        #[arg(long)]
        interval: Interval,
        /// Whose candles: ours (built from trades) or the exchange's own.
        #[arg(long, value_enum, default_value_t = SourceArg::Ours)]
        source: SourceArg,
    },
    /// Print stored trades.
    Trades {
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Print stored quotes (best bid and ask).
    Quotes {
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Print an order book from the archive's book files: the exact book
    /// at `--at`, or the latest book recorded, best first.
    Book {
        /// The exchange.
        #[arg(long, value_parser = exchange_names(), ignore_case = true)]
        exchange: Exchange,
        /// The instrument, BASE-QUOTE.
        #[arg(long)]
        instrument: Instrument,
        /// The instant: RFC 3339 or a date. Default: the latest recorded.
        #[arg(long, value_parser = parse_time)]
        at: Option<Ts>,
        /// Levels a side (at most 10,000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        depth: u32,
        /// `json` (as `/api/v1/book` answers) or `csv` (`side,price,size`).
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Export stored trades, quotes or candles of one instrument to a
    /// Parquet, CSV or JSON-lines file, exactly, a window at a time.
    Export {
        /// What to export.
        #[arg(long, value_enum)]
        kind: ExportKind,
        /// The exchange.
        #[arg(long, value_parser = exchange_names(), ignore_case = true)]
        exchange: Exchange,
        /// The instrument, BASE-QUOTE.
        #[arg(long)]
        instrument: Instrument,
        /// Candles: this interval only (default: every interval the
        /// configuration builds).
        #[arg(long)]
        interval: Option<Interval>,
        /// Start, inclusive: RFC 3339 or a date. Default: the oldest stored.
        #[arg(long, value_parser = parse_time)]
        from: Option<Ts>,
        /// End, exclusive: RFC 3339 or a date. Default: now.
        #[arg(long, value_parser = parse_time)]
        to: Option<Ts>,
        /// The file's format: parquet (the archive's typed, exact columns),
        /// csv or jsonl (the columns `trades|quotes|candles` print); for
        /// `--kind book`, tardis (Tardis's `incremental_book_L2` CSV, from
        /// the recorded book parts; `.gz` compresses) or hftbacktest (its
        /// normalised events as `.npz`, with the stored trades).
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// The file to write (replaced if it exists, once complete).
        #[arg(long)]
        out: PathBuf,
    },
    /// List stored instruments with their last trade time.
    Instruments {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Serve a mock of one venue on this machine (WebSocket and REST) that
    /// replays recordings (their times moved to when the first client
    /// connects), for demos and offline runs.
    MockExchange {
        /// The venue.
        #[arg(long, default_value = "binance", value_parser = exchange_names(), ignore_case = true)]
        venue: Exchange,
        /// Address of the WebSocket (Binance: combined streams at `/stream`).
        #[arg(long, default_value = "127.0.0.1:9443")]
        listen: std::net::SocketAddr,
        /// Address of the REST API (Binance: `/api/v3/...`).
        #[arg(long, default_value = "127.0.0.1:9444")]
        rest_listen: std::net::SocketAddr,
        /// Pace relative to the recording (1 = real time); as fast as the client reads if absent.
        #[arg(long)]
        speed: Option<f64>,
        /// Start again at the end, ids and times moved on by one lap.
        #[arg(long = "loop")]
        looped: bool,
        /// Fault: close every connection after this many messages.
        #[arg(long)]
        drop_every: Option<usize>,
        /// Fault: withhold every Nth trade message (a gap for the client; Binance only).
        #[arg(long)]
        skip_every: Option<usize>,
        /// Fault: after every Nth message, send a truncated frame.
        #[arg(long)]
        malformed_every: Option<usize>,
        /// Fault: answer every Nth REST request with 429 and Retry-After.
        #[arg(long)]
        rest_429_every: Option<usize>,
        /// Recordings of the venue (cryptofeed's, hftbacktest's or tapes);
        /// the built-in demo recording of the venue if none.
        files: Vec<PathBuf>,
        /// The mock keeps nothing: the global `--store` is not its option
        /// (declared here, hidden, so that its help does not show it).
        #[arg(long, hide = true)]
        store: Option<String>,
    },
    /// List recorded gaps (trades known to be missing), newest first.
    Gaps {
        /// Only this exchange.
        #[arg(long, value_parser = exchange_names(), ignore_case = true)]
        exchange: Option<Exchange>,
        /// Only this instrument, BASE-QUOTE.
        #[arg(long)]
        instrument: Option<Instrument>,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Live data with no internet: starts a mock Binance on 127.0.0.1 that
    /// replays the recorded traffic (time-shifted to now), and the whole live
    /// pipeline against it, until Ctrl-C.
    Demo {
        /// A Binance recording to serve instead of the built-in one (an
        /// hftbacktest `.gz` of 2024-08-08, compiled into the binary).
        #[arg(long)]
        recording: Option<PathBuf>,
        /// Pace relative to the recording (1 = real time).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: std::net::SocketAddr,
        /// A folder of cryptofeed recordings instead of the built-in ones: a
        /// mock of each venue recorded there (Coinbase, Coinbase Exchange,
        /// Bitfinex, Kraken, Bitstamp, OKX, Bybit; times moved to now) is
        /// started too, with its live connector; `none` for Binance alone.
        #[arg(long)]
        venues: Option<PathBuf>,
        /// Print where the built-in recordings come from, and their
        /// licences, and exit.
        #[arg(long)]
        licenses: bool,
    },
    /// Apply the `[retention]` policies now: delete old trades, quotes,
    /// candles and tapes in small batches and give the space back
    /// (`run` does this every `retention.every_secs`).
    Prune {
        /// Show what would go; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move the settled days of trades and quotes from the store to the
    /// archive of Parquet files now (`run` does this every
    /// `archive.every_secs`; replay, import and backfill when they finish).
    Archive,
    /// Copy a whole store into another, with no loss: SQLite to PostgreSQL
    /// (or back). The target's schema is created if needed; rerunning is
    /// safe (rows already there are not doubled).
    Migrate {
        /// The store to read: `sqlite:PATH` or `postgres://…`.
        #[arg(long)]
        from: String,
        /// The store to fill: `postgres://…` or `sqlite:PATH`.
        #[arg(long)]
        to: String,
    },
    /// Show the most recent ingest errors (bad input that was skipped).
    Errors {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Fetch history over REST for a range: trades (building our candles on the
    /// way) and/or the exchange's own candles. Resumable: rerun to continue.
    Backfill {
        /// The exchange. Trades: every venue but bybit and bitstamp, which
        /// keep only recent trades (binance-us wants an API key in
        /// CANDLEKEEP_BINANCE_US_API_KEY). Candles (--candles): every venue.
        #[arg(long, value_parser = exchange_names(), ignore_case = true)]
        exchange: Exchange,
        /// Instruments, BASE-QUOTE; repeat for several (fetched in parallel).
        #[arg(long = "instrument", required = true)]
        instruments: Vec<Instrument>,
        /// Start, inclusive: RFC 3339 or a date (2024-01-01).
        #[arg(long, value_parser = parse_time)]
        from: Ts,
        /// End, exclusive: RFC 3339 or a date.
        #[arg(long, value_parser = parse_time)]
        to: Ts,
        /// Fetch trades (the default when --candles is not given).
        #[arg(long)]
        trades: bool,
        /// Fetch the exchange's own candles of this interval; repeat for several.
        #[arg(long, value_name = "INTERVAL")]
        candles: Vec<Interval>,
        /// The REST root (default: the venue's public API, or the configured source's).
        #[arg(long)]
        rest_url: Option<String>,
    },
    /// Compare our candles with the exchange's own (fetched with
    /// `backfill --candles`) and print every difference; exits 1 if any.
    Verify {
        /// The exchange.
        #[arg(long, value_parser = exchange_names(), ignore_case = true)]
        exchange: Exchange,
        /// The instrument, BASE-QUOTE.
        #[arg(long)]
        instrument: Instrument,
        /// The interval.
        #[arg(long, default_value = "1m")]
        interval: Interval,
        /// Start, inclusive.
        #[arg(long, value_parser = parse_time)]
        from: Ts,
        /// End, exclusive.
        #[arg(long, value_parser = parse_time)]
        to: Ts,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RangeArgs {
    /// The exchange.
    #[arg(long, value_parser = exchange_names(), ignore_case = true)]
    pub(crate) exchange: Exchange,
    /// The instrument, BASE-QUOTE.
    #[arg(long)]
    pub(crate) instrument: Instrument,
    /// Start, inclusive: RFC 3339 or a date (2024-01-01). Default: the beginning.
    #[arg(long, value_parser = parse_time)]
    pub(crate) from: Option<Ts>,
    /// End, exclusive: RFC 3339 or a date. Default: now.
    #[arg(long, value_parser = parse_time)]
    pub(crate) to: Option<Ts>,
    /// At most this many rows.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub(crate) format: Format,
}

/// The help heading of the options every command takes.
pub(crate) const GLOBAL: &str = "Global options";

/// Whether log lines carry ANSI colour codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour: `auto` asks whether stderr is a terminal and
    /// honours `NO_COLOR` (<https://no-color.org>: set and not empty).
    pub(crate) fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                use std::io::IsTerminal as _;
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
                !no_color && std::io::stderr().is_terminal()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Json,
    Csv,
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportKind {
    Trades,
    Quotes,
    Candles,
    /// A recorded order book (`--format tardis`).
    Book,
}

/// The format of `export`'s file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    Parquet,
    Csv,
    Jsonl,
    /// Tardis's `incremental_book_L2` CSV (`--kind book`).
    Tardis,
    /// hftbacktest's normalised events, `.npz` (`--kind book`, with the
    /// stored trades).
    Hftbacktest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SourceArg {
    Ours,
    Exchange,
}

pub(crate) fn parse_ts_unit(s: &str) -> Result<TsUnit, String> {
    s.parse()
}

fn parse_import_format(s: &str) -> Result<ImportFormat, String> {
    s.parse()
}

pub(crate) fn parse_time(s: &str) -> Result<Ts, String> {
    Ts::parse(s).map_err(|e| e.to_string())
}

/// The exchanges clap accepts, from ck-model's registry: the help lists
/// their names, and their other names (`gdax`, `binance_us`) are accepted.
fn exchange_names() -> impl clap::builder::TypedValueParser<Value = Exchange> {
    use clap::builder::TypedValueParser as _;
    let values = ck_model::FACTS
        .iter()
        .map(|f| clap::builder::PossibleValue::new(f.name).aliases(f.aliases.iter().copied()));
    clap::builder::PossibleValuesParser::new(values).try_map(|s| s.parse::<Exchange>())
}
