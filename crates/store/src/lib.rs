//! candlekeep storage.
//!
//! - [`Store`]: the contract every backend meets (one test suite,
//!   `ck_testkit::store_contract`, runs against each).
//! - [`sqlite::SqliteStore`]: the embedded default, SQLite in WAL mode.
//! - [`postgres::PgStore`]: PostgreSQL (TimescaleDB when present), for scale-out.
//! - [`WriteBatch`]: what the store writer commits in one transaction.
//!
//! Time ranges are half-open, `[from, to)`, on exchange time (candles: open time).

#![warn(missing_docs)]

mod packed;
pub mod postgres;
pub mod sqlite;
pub mod tiered;

use ck_bus::IngestError;
use ck_model::{
    BackfillProgress, Candle, Exchange, Gap, Instrument, InstrumentInfo, Interval, Quote, Trade,
    TradeId, Ts,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database refused or failed.
    #[error("sqlite: {context}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL refused or failed.
    #[error("postgres: {context}")]
    Postgres {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database file or folder could not be used.
    #[error("store at {path}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A stored value could not be read back (a corrupt or foreign row).
    #[error("stored {what} `{value}` is invalid")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// What it held.
        value: String,
    },
    /// The database schema is newer than this binary.
    #[error(
        "the store's schema version {found} is newer than this candlekeep ({supported}); upgrade candlekeep"
    )]
    SchemaTooNew {
        /// Version in the database.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// The database holds no candlekeep store, and the caller only reads.
    #[error(
        "it holds no candlekeep store yet (`run`, `import`, `replay`, `backfill` or `migrate` create one)"
    )]
    Missing,
    /// An archive file could not be written or read.
    #[error("archive")]
    Archive(#[source] ck_archive::Error),
    /// An import writing straight to the archive failed earlier; it
    /// writes nothing more (the days it installed stay).
    #[error("writing settled days straight to the archive failed: {0}")]
    DirectArchive(String),
    /// The blocking worker stopped unexpectedly.
    #[error("store worker failed")]
    Worker(#[source] tokio::task::JoinError),
}

/// Where a candle came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandleSource {
    /// Built by candlekeep from trades.
    Ours,
    /// The exchange's own candle, fetched to verify ours.
    Exchange,
}

impl CandleSource {
    /// `ours` or `exchange`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CandleSource::Ours => "ours",
            CandleSource::Exchange => "exchange",
        }
    }
}

/// Everything one commit writes. Trades are deduplicated by exchange,
/// instrument and trade id; candles are upserted by instrument, interval, open
/// time and source (a provisional candle never replaces a closed one).
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// Instrument listings.
    pub instruments: Vec<InstrumentInfo>,
    /// Trades.
    pub trades: Vec<Trade>,
    /// Quotes.
    pub quotes: Vec<Quote>,
    /// Candles built by candlekeep.
    pub candles: Vec<Candle>,
    /// The exchange's own candles.
    pub exchange_candles: Vec<Candle>,
    /// Ingest errors.
    pub errors: Vec<IngestError>,
    /// Gaps detected (a gap already recorded is not recorded twice), and
    /// state changes of recorded gaps (an open gap never reopens a closed one).
    pub gaps: Vec<Gap>,
    /// Backfill positions, written after the rest of the batch.
    pub progress: Vec<BackfillProgress>,
}

impl WriteBatch {
    /// The number of rows it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.instruments.len()
            + self.trades.len()
            + self.quotes.len()
            + self.candles.len()
            + self.exchange_candles.len()
            + self.errors.len()
            + self.gaps.len()
            + self.progress.len()
    }

    /// True when there is nothing to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An alert rule kept in the store (created over the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    /// Its id.
    pub id: i64,
    /// The rule, as JSON.
    pub rule: String,
    /// When it was last written.
    pub updated_at: Ts,
}

/// A recorded alert firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFiring {
    /// Its id.
    pub id: i64,
    /// The rule's id.
    pub rule_id: String,
    /// When it fired.
    pub fired_at: Ts,
    /// What fired, as JSON.
    pub firing: String,
    /// The delivery results, as JSON, once known.
    pub deliveries: Option<String>,
}

/// What retention removes: rows older than each cutoff. `None` keeps all.
#[derive(Debug, Clone, Default)]
pub struct PrunePlan {
    /// Trades with exchange time before this.
    pub trades_before: Option<Ts>,
    /// Quotes with exchange time before this.
    pub quotes_before: Option<Ts>,
    /// Candles (ours and the exchange's) of an interval opening before a time.
    pub candles_before: Vec<(Interval, Ts)>,
    /// Rows per delete transaction; the writer is free between batches.
    pub batch_rows: usize,
    /// Count what would go, delete nothing.
    pub dry_run: bool,
}

/// What a prune removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Trades.
    pub trades: u64,
    /// Quotes.
    pub quotes: u64,
    /// Candles per interval.
    pub candles: Vec<(Interval, u64)>,
    /// Bytes the database used before.
    pub bytes_before: u64,
    /// Bytes it uses after (space given back to the file system).
    pub bytes_after: u64,
}

/// What packing settled candle days did (see [`Store::pack_candle_days`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackReport {
    /// Days packed (or packed again after a revision).
    pub days_packed: u64,
    /// Days forgotten because no candle is left in them.
    pub days_dropped: u64,
    /// Candles in the days packed.
    pub candles: u64,
    /// Compressed bytes written.
    pub bytes: u64,
}

/// What moving settled days to the archive did (see
/// [`Store::archive_settled`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    /// Day files written (new days, and days rewritten with late rows).
    pub days: u64,
    /// Trades written to the archive.
    pub trades: u64,
    /// Quotes written to the archive.
    pub quotes: u64,
    /// Candles written to the archive (ours and the exchange's).
    pub candles: u64,
    /// Rows deleted from the store once archived.
    pub deleted: u64,
    /// Bytes of the files written.
    pub bytes: u64,
    /// Half-written files of an interrupted pass, removed.
    pub swept: u64,
}

/// What a commit changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// New trades (duplicates are not counted).
    pub trades_inserted: u64,
    /// Trades already stored.
    pub trades_duplicate: u64,
    /// Candle rows inserted or updated.
    pub candles_upserted: u64,
    /// Quotes stored.
    pub quotes_inserted: u64,
}

/// A time-range query on one instrument.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    /// The venue.
    pub exchange: Exchange,
    /// The instrument.
    pub instrument: Instrument,
    /// Inclusive start.
    pub from: Ts,
    /// Exclusive end.
    pub to: Ts,
    /// At most this many rows, oldest first.
    pub limit: usize,
}

/// An instrument the store knows, with its latest data time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInstrument {
    /// The listing (`native_symbol` is empty when the venue's list never arrived).
    pub info: InstrumentInfo,
    /// Exchange time of the newest stored trade.
    pub last_trade_time: Option<Ts>,
}

/// What the store holds of `exchange`, for an error about an instrument it
/// does not hold: its stored instruments (at most `limit`), else the
/// exchanges it holds, else that it holds nothing yet.
#[must_use]
pub fn stored_hint(stored: &[StoredInstrument], exchange: Exchange, limit: usize) -> String {
    let same: Vec<String> = stored
        .iter()
        .filter(|s| s.info.exchange == exchange)
        .map(|s| s.info.instrument.to_string())
        .collect();
    if !same.is_empty() {
        let more = same.len().saturating_sub(limit);
        let mut listed = same.into_iter().take(limit).collect::<Vec<_>>().join(", ");
        if more > 0 {
            listed.push_str(&format!(" and {more} more"));
        }
        return format!("{exchange} instruments stored: {listed}");
    }
    if stored.is_empty() {
        return "the store holds no instruments yet".to_owned();
    }
    let mut exchanges: Vec<&str> = stored.iter().map(|s| s.info.exchange.as_str()).collect();
    exchanges.sort_unstable();
    exchanges.dedup();
    format!(
        "nothing from {exchange} is stored; exchanges stored: {}",
        exchanges.join(", ")
    )
}

/// Row counts, for status output and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Instruments.
    pub instruments: u64,
    /// Trades.
    pub trades: u64,
    /// Quotes.
    pub quotes: u64,
    /// Candles (ours).
    pub candles: u64,
    /// Ingest errors.
    pub errors: u64,
}

/// The form candle records are written in: the two forms of the API's and
/// the CLI's candle answers, each kept ready in the stores' packed days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RecordForm {
    /// JSON objects ([`ck_model::CandleRecord`]'s shape), each preceded by
    /// a comma: `,{...},{...}`.
    #[default]
    Json,
    /// CSV rows in [`ck_model::CandleRecord::COLUMNS`] order, each ending
    /// in a line break, without the header.
    Csv,
}

impl RecordForm {
    /// Bytes before each record: the comma of the JSON form.
    #[must_use]
    pub const fn lead(self) -> usize {
        match self {
            RecordForm::Json => 1,
            RecordForm::Csv => 0,
        }
    }

    /// Appends one record, written from its fields, without its lead.
    pub fn append<D: ck_model::DecimalText + ?Sized>(
        self,
        fields: &ck_model::RecordFields<'_, D>,
        out: &mut Vec<u8>,
    ) {
        match self {
            RecordForm::Json => fields.append_json(out),
            RecordForm::Csv => fields.append_csv(out),
        }
    }

    /// Appends one candle's record, without its lead.
    pub fn append_candle(self, candle: &Candle, out: &mut Vec<u8>) {
        match self {
            RecordForm::Json => candle.append_record_json(out),
            RecordForm::Csv => candle.append_record_csv(out),
        }
    }
}

/// Candles written as records of one [`RecordForm`], with each one's end
/// and open time, so that a reader can cut them to a limit and page on
/// from the last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandleRecords {
    /// The form of every record.
    pub form: RecordForm,
    /// The records, one after the other: `,{...},{...}` or `row\nrow\n`.
    pub bytes: Vec<u8>,
    /// Where each record ends in `bytes`.
    pub ends: Vec<usize>,
    /// Each record's open time.
    pub open_times: Vec<Ts>,
}

impl CandleRecords {
    /// No records yet, with room for `n` of them.
    #[must_use]
    pub fn new(form: RecordForm, n: usize) -> CandleRecords {
        let per_record = match form {
            RecordForm::Json => 280,
            RecordForm::Csv => 140,
        };
        CandleRecords {
            form,
            bytes: Vec::with_capacity(n * per_record),
            ends: Vec::with_capacity(n),
            open_times: Vec::with_capacity(n),
        }
    }

    /// Adds a record opening at `open_time`, written by `write` (after the
    /// form's lead).
    pub fn push(&mut self, open_time: Ts, write: impl FnOnce(&mut Vec<u8>)) {
        if self.form == RecordForm::Json {
            self.bytes.push(b',');
        }
        write(&mut self.bytes);
        self.ends.push(self.bytes.len());
        self.open_times.push(open_time);
    }

    /// Adds a candle's record.
    pub fn push_candle(&mut self, candle: &Candle) {
        let form = self.form;
        self.push(candle.open_time, |out| form.append_candle(candle, out));
    }

    /// Record `i` without its lead: a JSON object or a CSV row.
    ///
    /// # Panics
    /// When `i` is not below [`CandleRecords::len`].
    #[must_use]
    pub fn record(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start + self.form.lead()..self.ends[i]]
    }

    /// How many records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Keeps the first `n` records.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.bytes
                .truncate(if n == 0 { 0 } else { self.ends[n - 1] });
            self.ends.truncate(n);
            self.open_times.truncate(n);
        }
    }
}

/// Rows the archive takes from a store, a settled day at a time (see
/// [`tiered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowKind {
    /// Trades, by exchange time.
    Trades,
    /// Quotes, by exchange time.
    Quotes,
    /// Candles of one source with an interval the archive takes
    /// ([`archived_interval`]), by open time.
    Candles(CandleSource),
}

/// Whether settled candles of `interval` move to the archive: those of a
/// day or less (1s to 1d), which belong to one UTC day. Longer ones (1w,
/// 1M) are few and stay in the store.
#[must_use]
pub fn archived_interval(interval: Interval) -> bool {
    interval
        .fixed_nanos()
        .is_some_and(|n| n <= 86_400 * 1_000_000_000)
}

/// Rows of one instrument that the archive now holds, to delete from the
/// store by their keys: trades by id, quotes by time and receive time. A
/// row written again since it was read has the same key and goes too; a
/// new row of another key stays.
#[derive(Debug, Clone, Copy)]
pub enum ArchivedRows<'a> {
    /// Trades, by id.
    Trades {
        /// The venue.
        exchange: Exchange,
        /// The instrument.
        instrument: &'a Instrument,
        /// Their ids.
        ids: &'a [TradeId],
    },
    /// Quotes, by exchange time and receive time.
    Quotes {
        /// The venue.
        exchange: Exchange,
        /// The instrument.
        instrument: &'a Instrument,
        /// Their times.
        keys: &'a [(Ts, Ts)],
    },
    /// Candles, by interval, source and open time, each only while it is
    /// still as archived (a candle revised since keeps its new row).
    Candles {
        /// The venue.
        exchange: Exchange,
        /// The instrument.
        instrument: &'a Instrument,
        /// Ours or the exchange's.
        source: CandleSource,
        /// The candles as archived.
        candles: &'a [Candle],
    },
}

/// The storage contract. Every backend passes `ck_testkit::store_contract`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Commits a batch atomically and durably.
    async fn write(&self, batch: std::sync::Arc<WriteBatch>) -> Result<WriteSummary, Error>;

    /// Candles of one instrument and interval with open time in `[from, to)`.
    async fn candles(
        &self,
        query: &RangeQuery,
        interval: Interval,
        source: CandleSource,
    ) -> Result<Vec<Candle>, Error>;

    /// The newest `limit` candles with open time in `[from, to)`, newest
    /// first: the page before a time, for scrolling back through history.
    async fn candles_newest_first(
        &self,
        query: &RangeQuery,
        interval: Interval,
        source: CandleSource,
    ) -> Result<Vec<Candle>, Error>;

    /// The candles [`Store::candles`] (or, `newest_first`,
    /// [`Store::candles_newest_first`]) reads, written as their records
    /// in `form`: the API's and the CLI's large answers. This default
    /// writes each candle read; a backend may write straight from its rows
    /// and keep settled days written.
    async fn candle_records(
        &self,
        query: &RangeQuery,
        interval: Interval,
        source: CandleSource,
        newest_first: bool,
        form: RecordForm,
    ) -> Result<CandleRecords, Error> {
        let candles = if newest_first {
            self.candles_newest_first(query, interval, source).await?
        } else {
            self.candles(query, interval, source).await?
        };
        let mut records = CandleRecords::new(form, candles.len());
        for c in &candles {
            records.push_candle(c);
        }
        Ok(records)
    }

    /// Trades of one instrument with exchange time in `[from, to)`, in exchange order.
    async fn trades(&self, query: &RangeQuery) -> Result<Vec<Trade>, Error>;

    /// Quotes of one instrument with exchange time in `[from, to)`.
    async fn quotes(&self, query: &RangeQuery) -> Result<Vec<Quote>, Error>;

    /// The candle with the latest open time.
    async fn latest_candle(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        interval: Interval,
    ) -> Result<Option<Candle>, Error>;

    /// Alert rules created over the API, by id.
    async fn alert_rules(&self) -> Result<Vec<StoredRule>, Error>;

    /// Stores a rule (JSON): a new one when `id` is `None`, else replaces
    /// that one. The rule's id, or `None` when `id` names no rule.
    async fn put_alert_rule(&self, id: Option<i64>, rule: &str) -> Result<Option<i64>, Error>;

    /// Deletes a rule; whether it existed.
    async fn delete_alert_rule(&self, id: i64) -> Result<bool, Error>;

    /// Records a firing (JSON); its id.
    async fn record_firing(&self, rule_id: &str, at: Ts, firing: &str) -> Result<i64, Error>;

    /// Records the delivery results (JSON) of a firing.
    async fn set_firing_deliveries(&self, id: i64, deliveries: &str) -> Result<(), Error>;

    /// The latest firings, newest first.
    async fn firings(&self, limit: usize) -> Result<Vec<StoredFiring>, Error>;

    /// Deletes what `plan` names, in batches of `plan.batch_rows` so that
    /// writes interleave, and gives the space back where the backend can.
    async fn prune(&self, plan: &PrunePlan) -> Result<PruneReport, Error>;

    /// Packs the candles of every UTC day that ended at or before
    /// `settled_before` and changed since it was last packed, into the form
    /// long range reads ([`Store::candle_records`]) take them in. Packing
    /// never changes what is read, only how fast; a backend without a
    /// packed form does nothing (the default).
    async fn pack_candle_days(&self, settled_before: Ts) -> Result<PackReport, Error> {
        let _ = settled_before;
        Ok(PackReport::default())
    }

    /// Moves the trades, quotes and candles (1s to 1d) of every UTC day
    /// that ended at or before `settled_before` to the archive, where the store has one
    /// ([`tiered::TieredStore`]); a store without one does nothing (the
    /// default).
    async fn archive_settled(&self, settled_before: Ts) -> Result<ArchiveReport, Error> {
        let _ = settled_before;
        Ok(ArchiveReport::default())
    }

    /// Begins an import that writes the settled days it brings straight
    /// to the archive, where the store has one (see `tiered::direct`), until
    /// [`Store::end_direct_archive`]; a store without one does nothing
    /// (the default). Meanwhile this store's archive takes no pass.
    async fn begin_direct_archive(&self, settled_before: Ts) -> Result<(), Error> {
        let _ = settled_before;
        Ok(())
    }

    /// Ends what [`Store::begin_direct_archive`] began: every day begun is
    /// installed in the archive. What was written there.
    async fn end_direct_archive(&self) -> Result<ArchiveReport, Error> {
        Ok(ArchiveReport::default())
    }

    /// Gives the space of deleted rows back where the backend can (after
    /// an archive pass moved rows out): SQLite shrinks its file by
    /// incremental vacuum, PostgreSQL vacuums the tables so the space is
    /// reused. The default does nothing.
    async fn reclaim_space(&self) -> Result<(), Error> {
        Ok(())
    }

    /// The stored trade with the latest exchange time (ties: the highest id).
    async fn last_trade(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
    ) -> Result<Option<Trade>, Error>;

    /// A backfill job's stored position.
    async fn backfill_progress(&self, job: &str) -> Result<Option<BackfillProgress>, Error>;

    /// Every stored job position (backfills, NATS consumers), by job name.
    async fn backfill_jobs(&self) -> Result<Vec<BackfillProgress>, Error>;

    /// Deletes the job positions whose name starts with `prefix` and that
    /// were last updated before `updated_before`; how many. A NATS
    /// processor's position is its own (the name ends in its process id
    /// and start time): it forgets it when it stops cleanly, and forgets the
    /// positions that processors of its consumer left a day or more ago.
    async fn forget_jobs(&self, prefix: &str, updated_before: Ts) -> Result<u64, Error>;

    /// Stores a rule under its own id and time, replacing any rule with that
    /// id (copying a store); later new rules get higher ids.
    async fn restore_alert_rule(&self, rule: &StoredRule) -> Result<(), Error>;

    /// The latest quote.
    async fn latest_quote(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
    ) -> Result<Option<Quote>, Error>;

    /// Every instrument, with its latest trade time.
    async fn instruments(&self) -> Result<Vec<StoredInstrument>, Error>;

    /// The most recent ingest errors, newest first.
    async fn ingest_errors(&self, limit: usize) -> Result<Vec<IngestError>, Error>;

    /// Recorded gaps, newest first, optionally of one exchange and instrument.
    async fn gaps(
        &self,
        exchange: Option<Exchange>,
        instrument: Option<&Instrument>,
        limit: usize,
    ) -> Result<Vec<Gap>, Error>;

    /// Row counts.
    async fn counts(&self) -> Result<StoreCounts, Error>;

    /// A cheap round trip to the database, for health checks.
    async fn ping(&self) -> Result<(), Error>;

    /// The exchange time of the oldest row of `kind` of one instrument at
    /// or after `from`: where the archive looks for the next settled day.
    async fn oldest_time(
        &self,
        kind: RowKind,
        exchange: Exchange,
        instrument: &Instrument,
        from: Ts,
    ) -> Result<Option<Ts>, Error>;

    /// Deletes rows the archive now holds, by their keys, in transactions
    /// of a few thousand (ingest waits briefly); how many went.
    async fn delete_archived(&self, rows: ArchivedRows<'_>) -> Result<u64, Error>;

    /// Which backend this is, for `/health` and the logs: `sqlite`,
    /// `postgresql`, or `postgresql+timescaledb VERSION`.
    fn backend(&self) -> String;
}
