//! The embedded store: SQLite in WAL mode.
//!
//! One writer connection (behind a mutex) commits each [`WriteBatch`] in one
//! transaction; readers use their own connections, which WAL lets run beside
//! the writer. All database work runs on tokio's blocking pool.
//!
//! Durability: with [`Durability::Full`] (the default) every commit is
//! fsync'd before `write` returns, so a crash, even of the machine, loses
//! nothing committed. [`Durability::Normal`] survives a process crash but may
//! lose the last commits on power loss.

mod alerts;
mod archived;
mod candle_days;
mod prune;
mod rows;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ck_bus::IngestError;
use ck_model::{BackfillProgress, Candle, Exchange, Gap, Instrument, Interval, Quote, Trade, Ts};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::{
    CandleRecords, CandleSource, Error, PackReport, RangeQuery, RecordForm, Store, StoreCounts,
    StoredInstrument, WriteBatch, WriteSummary,
};
use rows::{candle_from_row, gap_from_row, id_param, quote_from_row, side_code, trade_from_row};

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync on every commit (`synchronous=FULL`).
    #[default]
    Full,
    /// fsync at checkpoints only (`synchronous=NORMAL`).
    Normal,
}

fn sql(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |source| Error::Sqlite { context, source }
}

struct Writer {
    conn: Connection,
    ids: HashMap<(Exchange, Instrument), i64>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
}

/// The embedded SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// Runs `f` on the writer connection, off the async threads (small writes
/// outside the batch writer: alert rules, firings, job positions).
async fn with_writer<T: Send + 'static>(
    store: &SqliteStore,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let inner = store.inner.clone();
    tokio::task::spawn_blocking(move || f(&lock(&inner.writer).conn))
        .await
        .map_err(Error::Worker)?
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and
    /// applies pending migrations.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStore, Error> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let mut conn = Connection::open(path).map_err(sql("opening database"))?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        // Incremental vacuum lets pruning give space back; it only takes
        // effect on a database created with it (before any table), so it is
        // set on a new file only: on an existing one it would be a write,
        // which fails on a full disk, where a store must still open to be
        // read.
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(sql("reading the page count"))?;
        if pages == 0 {
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
                .map_err(sql("configuring database (auto_vacuum)"))?;
        }
        for (context, pragma) in [
            ("configuring database (journal_mode)", "journal_mode = WAL"),
            (
                "configuring database (synchronous)",
                &format!("synchronous = {sync}"),
            ),
            ("configuring database (foreign_keys)", "foreign_keys = ON"),
            (
                "configuring database (busy_timeout)",
                "busy_timeout = 10000",
            ),
            ("configuring database (cache_size)", "cache_size = -65536"),
            (
                "configuring database (wal_autocheckpoint)",
                "wal_autocheckpoint = 10000",
            ),
        ] {
            conn.execute_batch(&format!("PRAGMA {pragma};"))
                .map_err(sql(context))?;
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(sql("reading journal mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite did not enable WAL; durability holds, concurrency is lower");
        }
        schema::migrate(&mut conn)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(Writer {
                    conn,
                    ids: HashMap::new(),
                }),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Candles in `q`'s range, by open time in `order` (`ASC` or `DESC`).
    async fn candle_range(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
        order: &'static str,
    ) -> Result<Vec<Candle>, Error> {
        let q = q.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "{CANDLE_SELECT} WHERE instrument_id = {INSTRUMENT_ID} AND interval = ?3 AND source = ?4
                       AND open_time >= ?5 AND open_time < ?6 ORDER BY open_time {order} LIMIT ?7"
                ))
                .map_err(sql("preparing candle query"))?;
            let rows = stmt
                .query_map(
                    params![q.exchange.as_str(), q.instrument.as_str(), interval.as_str(), source.as_str(), q.from.0, q.to.0, limit(q.limit)],
                    |r| Ok(candle_from_row(r, q.exchange, &q.instrument, interval)),
                )
                .map_err(sql("querying candles"))?;
            collect(rows)
        })
        .await
    }

    /// Sets the writer's page cache to `mib` MiB (64 by default). The cache
    /// fills as pages are written and then stays at this size: it is most of
    /// what a long run's memory grows by.
    ///
    /// # Errors
    /// When SQLite refuses the setting.
    pub fn set_cache_mib(&self, mib: u32) -> Result<(), Error> {
        let kib = i64::from(mib.max(1)) * 1024;
        lock(&self.inner.writer)
            .conn
            .execute_batch(&format!("PRAGMA cache_size = -{kib};"))
            .map_err(sql("setting the page cache"))
    }

    /// The writer's page cache, in KiB.
    ///
    /// # Errors
    /// When SQLite cannot be asked.
    pub fn cache_kib(&self) -> Result<i64, Error> {
        let size: i64 = lock(&self.inner.writer)
            .conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .map_err(sql("reading the page cache size"))?;
        // Negative: KiB; positive: pages.
        Ok(if size < 0 { -size } else { size * 4 })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The newest row of one instrument: `select` (columns and table)
    /// ordered by `order`, read by `from_row`.
    async fn newest_row<T: Send + 'static>(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        select: &'static str,
        order: &'static str,
        what: &'static str,
        from_row: fn(&rusqlite::Row<'_>, Exchange, &Instrument) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        let instrument = instrument.clone();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "{select} WHERE instrument_id = {INSTRUMENT_ID} ORDER BY {order} LIMIT 1"
            ))
            .and_then(|mut s| {
                s.query_row(params![exchange.as_str(), instrument.as_str()], |r| {
                    Ok(from_row(r, exchange, &instrument))
                })
                .optional()
            })
            .map_err(sql(what))?
            .transpose()
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match lock(&inner.readers).pop() {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(sql("opening reader"))?;
                    c.busy_timeout(std::time::Duration::from_secs(10))
                        .map_err(sql("configuring reader"))?;
                    c
                }
            };
            let result = f(&conn);
            lock(&inner.readers).push(conn);
            result
        })
        .await
        .map_err(Error::Worker)?
    }

    /// Writes a batch synchronously (the blocking body of [`Store::write`]).
    pub fn write_blocking(&self, batch: &WriteBatch) -> Result<WriteSummary, Error> {
        let mut guard = lock(&self.inner.writer);
        let w = &mut *guard;
        let result = write_batch(&mut w.conn, &mut w.ids, batch);
        if result.is_err() {
            // Ids cached during a rolled-back transaction may not exist.
            w.ids.clear();
        }
        result
    }
}

fn instrument_id(
    tx: &rusqlite::Transaction<'_>,
    ids: &mut HashMap<(Exchange, Instrument), i64>,
    exchange: Exchange,
    instrument: &Instrument,
) -> Result<i64, Error> {
    if let Some(id) = ids.get(&(exchange, instrument.clone())) {
        return Ok(*id);
    }
    tx.prepare_cached(
        "INSERT INTO instruments (exchange, instrument) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| s.execute(params![exchange.as_str(), instrument.as_str()]))
    .map_err(sql("adding instrument"))?;
    let id: i64 = tx
        .prepare_cached("SELECT id FROM instruments WHERE exchange = ?1 AND instrument = ?2")
        .and_then(|mut s| {
            s.query_row(params![exchange.as_str(), instrument.as_str()], |r| {
                r.get(0)
            })
        })
        .map_err(sql("finding instrument"))?;
    ids.insert((exchange, instrument.clone()), id);
    Ok(id)
}

fn write_batch(
    conn: &mut Connection,
    ids: &mut HashMap<(Exchange, Instrument), i64>,
    b: &WriteBatch,
) -> Result<WriteSummary, Error> {
    let mut summary = WriteSummary::default();
    let tx = conn.transaction().map_err(sql("starting write"))?;
    {
        let mut listing = tx
            .prepare_cached(
                "INSERT INTO instruments (exchange, instrument, native_symbol, status) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (exchange, instrument) DO UPDATE SET native_symbol = excluded.native_symbol, status = excluded.status",
            )
            .map_err(sql("preparing instrument upsert"))?;
        for i in &b.instruments {
            listing
                .execute(params![
                    i.exchange.as_str(),
                    i.instrument.as_str(),
                    i.native_symbol,
                    i.status
                ])
                .map_err(sql("upserting instrument"))?;
        }
    }
    {
        // Many rows per statement: SQLite's per-statement work is most of the
        // cost of a narrow insert.
        let mut single = tx
            .prepare_cached(&trade_insert_sql(1))
            .map_err(sql("preparing trade insert"))?;
        let mut multi = tx
            .prepare_cached(&trade_insert_sql(TRADE_ROWS_PER_INSERT))
            .map_err(sql("preparing trade insert"))?;
        let mut last: Option<(Exchange, &Instrument, i64)> = None;
        let mut text = String::new();
        for chunk in b.trades.chunks(TRADE_ROWS_PER_INSERT) {
            let stmt = if chunk.len() == TRADE_ROWS_PER_INSERT {
                &mut multi
            } else {
                &mut single
            };
            for group in chunk.chunks(if chunk.len() == TRADE_ROWS_PER_INSERT {
                TRADE_ROWS_PER_INSERT
            } else {
                1
            }) {
                for (row, t) in group.iter().enumerate() {
                    let id = match last {
                        Some((e, i, id))
                            if e == t.exchange
                                && (i.ptr_eq(&t.instrument) || *i == t.instrument) =>
                        {
                            id
                        }
                        _ => {
                            let id = instrument_id(&tx, ids, t.exchange, &t.instrument)?;
                            last = Some((t.exchange, &t.instrument, id));
                            id
                        }
                    };
                    let p = row * 8;
                    let bind = |stmt: &mut rusqlite::CachedStatement<'_>,
                                i: usize,
                                v: &dyn rusqlite::ToSql| {
                        stmt.raw_bind_parameter(p + i, v)
                            .map_err(sql("binding trade"))
                    };
                    bind(stmt, 1, &id)?;
                    bind(stmt, 2, &id_param(&t.trade_id))?;
                    bind(stmt, 3, &t.ts_exchange.0)?;
                    t.price.write_to(&mut text);
                    bind(stmt, 4, &text.as_str())?;
                    t.size.write_to(&mut text);
                    bind(stmt, 5, &text.as_str())?;
                    bind(stmt, 6, &side_code(t.side))?;
                    bind(stmt, 7, &t.ts_received.0)?;
                    bind(stmt, 8, &t.fills)?;
                }
                let n = stmt.raw_execute().map_err(sql("inserting trades"))? as u64;
                summary.trades_inserted += n;
                summary.trades_duplicate += group.len() as u64 - n;
            }
        }
    }
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO quotes (instrument_id, ts, ts_received, bid, bid_size, ask, ask_size, last)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(sql("preparing quote insert"))?;
        for q in &b.quotes {
            let id = instrument_id(&tx, ids, q.exchange, &q.instrument)?;
            insert
                .execute(params![
                    id,
                    q.ts_exchange.0,
                    q.ts_received.0,
                    q.bid.to_string(),
                    q.bid_size.map(|d| d.to_string()),
                    q.ask.to_string(),
                    q.ask_size.map(|d| d.to_string()),
                    q.last.map(|d| d.to_string()),
                ])
                .map_err(sql("inserting quote"))?;
            summary.quotes_inserted += 1;
        }
    }
    // Days whose packed form the candles below make stale.
    let mut touched_days = std::collections::BTreeSet::new();
    for (candles, source) in [
        (&b.candles, CandleSource::Ours),
        (&b.exchange_candles, CandleSource::Exchange),
    ] {
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO candles (instrument_id, interval, open_time, source, open, high, low, close, volume,
                                      quote_volume, vwap, taker_buy_volume, trades, first_trade_id, last_trade_id, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (instrument_id, interval, source, open_time) DO UPDATE SET
                    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
                    volume = excluded.volume, quote_volume = excluded.quote_volume, vwap = excluded.vwap,
                    taker_buy_volume = excluded.taker_buy_volume, trades = excluded.trades,
                    first_trade_id = excluded.first_trade_id, last_trade_id = excluded.last_trade_id,
                    state = excluded.state
                 WHERE excluded.state <> 'provisional' OR candles.state = 'provisional'",
            )
            .map_err(sql("preparing candle upsert"))?;
        for c in candles {
            let id = instrument_id(&tx, ids, c.exchange, &c.instrument)?;
            if crate::packed::packable(c.interval) {
                touched_days.insert((
                    id,
                    c.interval.as_str(),
                    source.as_str(),
                    crate::packed::day_of(c.open_time.0),
                ));
            }
            summary.candles_upserted += upsert
                .execute(params![
                    id,
                    c.interval.as_str(),
                    c.open_time.0,
                    source.as_str(),
                    c.open.to_string(),
                    c.high.to_string(),
                    c.low.to_string(),
                    c.close.to_string(),
                    c.volume.to_string(),
                    c.quote_volume.to_string(),
                    c.vwap.to_string(),
                    c.taker_buy_volume.to_string(),
                    i64::try_from(c.trades).unwrap_or(i64::MAX),
                    c.first_trade_id.as_ref().map(id_param),
                    c.last_trade_id.as_ref().map(id_param),
                    c.state.as_str(),
                ])
                .map_err(sql("upserting candle"))? as u64;
        }
    }
    candle_days::mark_stale(&tx, &touched_days)?;
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO ingest_errors (ts, exchange, origin, message, excerpt) VALUES (?1, ?2, ?3, ?4, ?5)")
            .map_err(sql("preparing error insert"))?;
        for e in &b.errors {
            insert
                .execute(params![
                    e.ts.0,
                    e.exchange.map(Exchange::as_str),
                    e.origin,
                    e.message,
                    e.excerpt
                ])
                .map_err(sql("inserting ingest error"))?;
        }
    }
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO gaps (instrument_id, from_ts, to_ts, from_trade_id, to_trade_id, state, reason, detected_at, updated_at, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (instrument_id, kind, from_ts, to_ts, coalesce(from_trade_id, ''), coalesce(to_trade_id, ''))
                 DO UPDATE SET state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at
                 WHERE excluded.state <> 'open'",
            )
            .map_err(sql("preparing gap insert"))?;
        for g in &b.gaps {
            let id = instrument_id(&tx, ids, g.exchange, &g.instrument)?;
            let ids = [g.first_missing_id, g.last_missing_id].map(|v| v.map(num_id_value));
            insert
                .execute(params![
                    id,
                    g.from_ts.0,
                    g.to_ts.0,
                    ids[0],
                    ids[1],
                    g.state.as_str(),
                    g.reason,
                    g.detected_at.0,
                    Ts::now().0,
                    g.kind.as_str()
                ])
                .map_err(sql("inserting gap"))?;
        }
    }
    {
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO backfill_progress (job, cursor, done, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (job) DO UPDATE SET cursor = excluded.cursor, done = excluded.done, updated_at = excluded.updated_at",
            )
            .map_err(sql("preparing progress upsert"))?;
        for p in &b.progress {
            upsert
                .execute(params![p.job, p.cursor, p.done, p.updated_at.0])
                .map_err(sql("writing backfill progress"))?;
        }
    }
    tx.commit().map_err(sql("committing write"))?;
    Ok(summary)
}

/// Trades per multi-row `INSERT` (8 parameters each).
const TRADE_ROWS_PER_INSERT: usize = 64;

fn trade_insert_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT OR IGNORE INTO trades (instrument_id, trade_id, ts, price, size, side, ts_received, fills) VALUES {values}"
    )
}

/// The candle columns `candle_from_row` reads, in its order.
const CANDLE_SELECT: &str = "SELECT open_time, open, high, low, close, volume, quote_volume, vwap, \
     taker_buy_volume, trades, first_trade_id, last_trade_id, state FROM candles";

const INSTRUMENT_ID: &str = "(SELECT id FROM instruments WHERE exchange = ?1 AND instrument = ?2)";

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> String {
        "sqlite".to_owned()
    }

    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteSummary, Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write_blocking(&batch))
            .await
            .map_err(Error::Worker)?
    }

    async fn candles(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
    ) -> Result<Vec<Candle>, Error> {
        self.candle_range(q, interval, source, "ASC").await
    }

    async fn candles_newest_first(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
    ) -> Result<Vec<Candle>, Error> {
        self.candle_range(q, interval, source, "DESC").await
    }

    async fn candle_records(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
        newest_first: bool,
        form: RecordForm,
    ) -> Result<CandleRecords, Error> {
        let q = q.clone();
        self.read(move |c| candle_days::read_records(c, &q, interval, source, newest_first, form))
            .await
    }

    async fn trades(&self, q: &RangeQuery) -> Result<Vec<Trade>, Error> {
        let q = q.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT trade_id, ts, price, size, side, ts_received, fills FROM trades
                     WHERE instrument_id = {INSTRUMENT_ID} AND ts >= ?3 AND ts < ?4 ORDER BY ts, trade_id LIMIT ?5"
                ))
                .map_err(sql("preparing trade query"))?;
            let rows = stmt
                .query_map(params![q.exchange.as_str(), q.instrument.as_str(), q.from.0, q.to.0, limit(q.limit)], |r| {
                    Ok(trade_from_row(r, q.exchange, &q.instrument))
                })
                .map_err(sql("querying trades"))?;
            collect(rows)
        })
        .await
    }

    async fn quotes(&self, q: &RangeQuery) -> Result<Vec<Quote>, Error> {
        let q = q.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT ts, ts_received, bid, bid_size, ask, ask_size, last FROM quotes
                     WHERE instrument_id = {INSTRUMENT_ID} AND ts >= ?3 AND ts < ?4 ORDER BY ts, ts_received LIMIT ?5"
                ))
                .map_err(sql("preparing quote query"))?;
            let rows = stmt
                .query_map(params![q.exchange.as_str(), q.instrument.as_str(), q.from.0, q.to.0, limit(q.limit)], |r| {
                    Ok(quote_from_row(r, q.exchange, &q.instrument))
                })
                .map_err(sql("querying quotes"))?;
            collect(rows)
        })
        .await
    }

    async fn latest_candle(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        interval: Interval,
    ) -> Result<Option<Candle>, Error> {
        let instrument = instrument.clone();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "{CANDLE_SELECT} WHERE instrument_id = {INSTRUMENT_ID} AND interval = ?3 AND source = 'ours'
                 ORDER BY open_time DESC LIMIT 1"
            ))
            .and_then(|mut s| {
                s.query_row(params![exchange.as_str(), instrument.as_str(), interval.as_str()], |r| {
                    Ok(candle_from_row(r, exchange, &instrument, interval))
                })
                .optional()
            })
            .map_err(sql("querying latest candle"))?
            .transpose()
        })
        .await
    }

    async fn alert_rules(&self) -> Result<Vec<crate::StoredRule>, Error> {
        alerts::rules(self).await
    }

    async fn put_alert_rule(&self, id: Option<i64>, rule: &str) -> Result<Option<i64>, Error> {
        alerts::put_rule(self, id, rule).await
    }

    async fn delete_alert_rule(&self, id: i64) -> Result<bool, Error> {
        alerts::delete_rule(self, id).await
    }

    async fn record_firing(&self, rule_id: &str, at: Ts, firing: &str) -> Result<i64, Error> {
        alerts::record_firing(self, rule_id, at, firing).await
    }

    async fn set_firing_deliveries(&self, id: i64, deliveries: &str) -> Result<(), Error> {
        alerts::set_deliveries(self, id, deliveries).await
    }

    async fn firings(&self, limit: usize) -> Result<Vec<crate::StoredFiring>, Error> {
        alerts::firings(self, limit).await
    }

    async fn pack_candle_days(&self, settled_before: Ts) -> Result<PackReport, Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || candle_days::pack(&store, settled_before))
            .await
            .map_err(Error::Worker)?
    }

    async fn prune(&self, plan: &crate::PrunePlan) -> Result<crate::PruneReport, Error> {
        prune::prune(self, plan).await
    }

    async fn oldest_time(
        &self,
        kind: crate::RowKind,
        exchange: Exchange,
        instrument: &Instrument,
        from: Ts,
    ) -> Result<Option<Ts>, Error> {
        archived::oldest_time(self, kind, exchange, instrument, from).await
    }

    async fn delete_archived(&self, rows: crate::ArchivedRows<'_>) -> Result<u64, Error> {
        archived::delete(self, rows).await
    }

    async fn reclaim_space(&self) -> Result<(), Error> {
        prune::give_back_space(self).await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())
                .map_err(sql("pinging the database"))
        })
        .await
    }

    async fn last_trade(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
    ) -> Result<Option<Trade>, Error> {
        self.newest_row(
            exchange,
            instrument,
            "SELECT trade_id, ts, price, size, side, ts_received, fills FROM trades",
            "ts DESC, trade_id DESC",
            "querying last trade",
            trade_from_row,
        )
        .await
    }

    async fn backfill_progress(&self, job: &str) -> Result<Option<BackfillProgress>, Error> {
        let job = job.to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT cursor, done, updated_at FROM backfill_progress WHERE job = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![job], |r| {
                    Ok(BackfillProgress {
                        job: job.clone(),
                        cursor: r.get(0)?,
                        done: r.get(1)?,
                        updated_at: Ts(r.get(2)?),
                    })
                })
                .optional()
            })
            .map_err(sql("querying backfill progress"))
        })
        .await
    }

    async fn backfill_jobs(&self) -> Result<Vec<BackfillProgress>, Error> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT job, cursor, done, updated_at FROM backfill_progress ORDER BY job",
                )
                .map_err(sql("preparing backfill job query"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(BackfillProgress {
                        job: r.get(0)?,
                        cursor: r.get(1)?,
                        done: r.get(2)?,
                        updated_at: Ts(r.get(3)?),
                    })
                })
                .map_err(sql("reading backfill jobs"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(sql("reading backfill jobs"))
        })
        .await
    }

    async fn forget_jobs(&self, prefix: &str, updated_before: Ts) -> Result<u64, Error> {
        let prefix = prefix.to_owned();
        with_writer(self, move |c| {
            c.execute(
                "DELETE FROM backfill_progress
                 WHERE substr(job, 1, length(?1)) = ?1 AND updated_at < ?2",
                params![prefix, updated_before.0],
            )
            .map(|n| n as u64)
            .map_err(sql("forgetting job positions"))
        })
        .await
    }

    async fn restore_alert_rule(&self, rule: &crate::StoredRule) -> Result<(), Error> {
        alerts::restore_rule(self, rule.clone()).await
    }

    async fn latest_quote(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
    ) -> Result<Option<Quote>, Error> {
        self.newest_row(
            exchange,
            instrument,
            "SELECT ts, ts_received, bid, bid_size, ask, ask_size, last FROM quotes",
            "ts DESC, ts_received DESC",
            "querying latest quote",
            quote_from_row,
        )
        .await
    }

    async fn instruments(&self) -> Result<Vec<StoredInstrument>, Error> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT i.exchange, i.instrument, i.native_symbol, i.status,
                            (SELECT MAX(ts) FROM trades t WHERE t.instrument_id = i.id)
                     FROM instruments i ORDER BY i.exchange, i.instrument",
                )
                .map_err(sql("preparing instrument query"))?;
            let rows = stmt
                .query_map([], |r| {
                    let exchange: String = r.get(0)?;
                    let instrument: String = r.get(1)?;
                    let native: Option<String> = r.get(2)?;
                    let status: Option<String> = r.get(3)?;
                    let last: Option<i64> = r.get(4)?;
                    Ok((|| {
                        let exchange =
                            exchange.parse::<Exchange>().map_err(|_| Error::Corrupt {
                                what: "exchange",
                                value: exchange.clone(),
                            })?;
                        let instrument =
                            Instrument::parse(&instrument).map_err(|_| Error::Corrupt {
                                what: "instrument",
                                value: instrument.clone(),
                            })?;
                        Ok(StoredInstrument {
                            info: ck_model::InstrumentInfo {
                                exchange,
                                native_symbol: native.unwrap_or_default(),
                                instrument,
                                status,
                            },
                            last_trade_time: last.map(Ts),
                        })
                    })())
                })
                .map_err(sql("querying instruments"))?;
            collect(rows)
        })
        .await
    }

    async fn ingest_errors(&self, max: usize) -> Result<Vec<IngestError>, Error> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT ts, exchange, origin, message, excerpt FROM ingest_errors ORDER BY id DESC LIMIT ?1")
                .map_err(sql("preparing error query"))?;
            let rows = stmt
                .query_map(params![limit(max)], |r| {
                    let exchange: Option<String> = r.get(1)?;
                    Ok(Ok(IngestError {
                        ts: Ts(r.get(0)?),
                        exchange: exchange.and_then(|e| e.parse().ok()),
                        origin: r.get(2)?,
                        message: r.get(3)?,
                        excerpt: r.get(4)?,
                        skipped_trade: None,
                    }))
                })
                .map_err(sql("querying errors"))?;
            collect(rows)
        })
        .await
    }

    async fn gaps(
        &self,
        exchange: Option<Exchange>,
        instrument: Option<&Instrument>,
        max: usize,
    ) -> Result<Vec<Gap>, Error> {
        let instrument = instrument.cloned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT i.exchange, i.instrument, g.from_ts, g.to_ts, g.from_trade_id, g.to_trade_id, g.state, g.reason, g.detected_at, g.kind
                     FROM gaps g JOIN instruments i ON i.id = g.instrument_id
                     WHERE (?1 IS NULL OR i.exchange = ?1) AND (?2 IS NULL OR i.instrument = ?2)
                     ORDER BY g.from_ts DESC LIMIT ?3",
                )
                .map_err(sql("preparing gap query"))?;
            let rows = stmt
                .query_map(params![exchange.map(Exchange::as_str), instrument.as_ref().map(Instrument::as_str), limit(max)], |r| {
                    Ok(gap_from_row(r))
                })
                .map_err(sql("querying gaps"))?;
            collect(rows)
        })
        .await
    }

    async fn counts(&self) -> Result<StoreCounts, Error> {
        self.read(|c| {
            let count = |table: &str| -> Result<u64, Error> {
                let n: i64 = c
                    .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                    .map_err(sql("counting rows"))?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            let candles: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM candles WHERE source = 'ours'",
                    [],
                    |r| r.get(0),
                )
                .map_err(sql("counting candles"))?;
            Ok(StoreCounts {
                instruments: count("instruments")?,
                trades: count("trades")?,
                quotes: count("quotes")?,
                candles: u64::try_from(candles).unwrap_or(0),
                errors: count("ingest_errors")?,
            })
        })
        .await
    }
}

/// A numeric trade id as stored: an integer when it fits i64, else text.
fn num_id_value(n: u64) -> rusqlite::types::Value {
    i64::try_from(n).map_or_else(
        |_| rusqlite::types::Value::Text(n.to_string()),
        rusqlite::types::Value::Integer,
    )
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn collect<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, Error>>>,
) -> Result<Vec<T>, Error> {
    let mut out = Vec::new();
    for r in rows {
        out.push(r.map_err(sql("reading row"))??);
    }
    Ok(out)
}
