//! The scale-out store: PostgreSQL, with TimescaleDB when the server has it.
//!
//! - One writer connection commits each [`WriteBatch`] in one transaction.
//!   Trades go in as one `INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO
//!   NOTHING` per batch (a single round trip whatever the batch size);
//!   quotes and candles are upserted the same way.
//! - Readers share a few connections round-robin; tokio-postgres pipelines
//!   concurrent queries on each. Statements are prepared once per connection.
//! - A lost connection is opened again on next use; the store writer retries
//!   a failed commit, so a database restart loses nothing.
//! - The schema is created and migrated on open ([`schema`]); several
//!   processes may open one database at once.

mod archived;
mod candle_days;
mod prune;
mod rows;
mod write;

use write::write_batch;
pub mod schema;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ck_bus::IngestError;
use ck_model::{
    BackfillProgress, Candle, CandleState, Exchange, Gap, Instrument, Interval, Quote, Trade, Ts,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use crate::{
    CandleRecords, CandleSource, Error, PackReport, PrunePlan, PruneReport, RangeQuery, RecordForm,
    Store, StoreCounts, StoredFiring, StoredInstrument, StoredRule, WriteBatch, WriteSummary,
};
use rows::{
    candle_columns, candle_from_row, exchange_from, gap_columns, gap_from_row, id_seq, id_text,
    instrument_from, instrument_id, quote_columns, quote_from_row, side_code, trade_columns,
    trade_from_row,
};
pub use schema::Extension;

pub(crate) fn pg(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |source| Error::Postgres { context, source }
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db` (libpq URL or key=value form).
    pub url: String,
    /// A schema to keep every table in (created if missing); `None` uses
    /// the server's default search path. Tests use one schema each.
    pub schema: Option<String>,
    /// Reader connections.
    pub readers: usize,
    /// TimescaleDB's policies to set at open; `None` leaves the server's as
    /// they are (hypertables made at this open get the defaults).
    pub policies: Option<TimescalePolicies>,
    /// Create the schema and tables where they are missing; `false` refuses
    /// a database without candlekeep's tables ([`Error::Missing`]), as the
    /// read-only commands open it.
    pub create: bool,
}

/// TimescaleDB's background policies for trades and quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimescalePolicies {
    /// Compress chunks older than this many days.
    pub compress_after_days: i64,
    /// Drop trade chunks whose rows are all older than this many
    /// nanoseconds; `None` keeps them (candlekeep's own retention may
    /// still prune).
    pub drop_trades_after: Option<i64>,
    /// The same for quotes.
    pub drop_quotes_after: Option<i64>,
}

impl Default for TimescalePolicies {
    /// Compression after 7 days, no retention.
    fn default() -> Self {
        TimescalePolicies {
            compress_after_days: 7,
            drop_trades_after: None,
            drop_quotes_after: None,
        }
    }
}

impl PgOptions {
    /// Defaults for `url`.
    #[must_use]
    pub fn new(url: &str) -> PgOptions {
        PgOptions {
            url: url.to_owned(),
            schema: None,
            readers: 4,
            policies: None,
            create: true,
        }
    }
}

/// One connection with its prepared statements.
struct Conn {
    client: Client,
    statements: Mutex<HashMap<&'static str, Statement>>,
}

impl Conn {
    async fn open(options: &PgOptions) -> Result<Conn, Error> {
        let mut config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(pg("reading the PostgreSQL URL"))?;
        if config.get_application_name().is_none() {
            // Names the schema too, so an operator (or a test) can tell
            // which store a connection serves.
            config.application_name(match &options.schema {
                Some(schema) => format!("candlekeep/{schema}"),
                None => "candlekeep".to_owned(),
            });
        }
        let (client, connection) = config.connect(NoTls).await.map_err(pg("connecting"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        if let Some(schema) = &options.schema {
            let ident = quote_ident(schema);
            let create = if options.create {
                format!("CREATE SCHEMA IF NOT EXISTS {ident}; ")
            } else {
                String::new()
            };
            client
                .batch_execute(&format!("{create}SET search_path TO {ident}"))
                .await
                .map_err(pg("selecting the schema"))?;
        }
        client
            .batch_execute(schema::EXTENSION_ON_PATH)
            .await
            .map_err(pg("finding TimescaleDB's functions"))?;
        Ok(Conn {
            client,
            statements: Mutex::new(HashMap::new()),
        })
    }

    async fn statement(&self, sql: &'static str) -> Result<Statement, Error> {
        if let Some(s) = self
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sql)
        {
            return Ok(s.clone());
        }
        let s = self
            .client
            .prepare(sql)
            .await
            .map_err(pg("preparing a statement"))?;
        self.statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sql, s.clone());
        Ok(s)
    }

    async fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let stmt = self.statement(sql).await?;
        self.client.query(&stmt, params).await.map_err(pg(context))
    }

    async fn query_opt(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<Option<tokio_postgres::Row>, Error> {
        let stmt = self.statement(sql).await?;
        self.client
            .query_opt(&stmt, params)
            .await
            .map_err(pg(context))
    }

    async fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<u64, Error> {
        let stmt = self.statement(sql).await?;
        self.client
            .execute(&stmt, params)
            .await
            .map_err(pg(context))
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

struct Writer {
    conn: Option<Conn>,
    ids: HashMap<(Exchange, Instrument), i64>,
    /// Batches left to insert with `ON CONFLICT` after one met stored trades
    /// (a backfill or a replay over stored data meets them batch after batch).
    conflict_batches: u32,
}

struct Inner {
    options: PgOptions,
    extension: Extension,
    writer: tokio::sync::Mutex<Writer>,
    readers: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    next_reader: AtomicUsize,
}

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.options.schema)
            .field("extension", &self.inner.extension)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, creates or migrates the schema, and sets up TimescaleDB
    /// when the server offers it.
    pub async fn open(options: PgOptions) -> Result<PgStore, Error> {
        let mut conn = Conn::open(&options).await?;
        schema::migrate(&mut conn.client, options.create).await?;
        let extension = schema::timescale(&mut conn.client, &options).await;
        let readers = (0..options.readers.max(1))
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        Ok(PgStore {
            inner: Arc::new(Inner {
                options,
                extension,
                writer: tokio::sync::Mutex::new(Writer {
                    conn: Some(conn),
                    ids: HashMap::new(),
                    conflict_batches: 0,
                }),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// What the server offers (detected at open).
    #[must_use]
    pub fn extension(&self) -> &Extension {
        &self.inner.extension
    }

    /// Rows of a range query taking `$1` exchange, `$2` instrument, `$3`
    /// from, `$4` to and `$5` limit.
    async fn range_rows(
        &self,
        sql: &'static str,
        q: &RangeQuery,
        context: &'static str,
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        self.reader()
            .await?
            .query(
                sql,
                &[
                    &q.exchange.as_str(),
                    &q.instrument.as_str(),
                    &q.from.0,
                    &q.to.0,
                    &limit(q.limit),
                ],
                context,
            )
            .await
    }

    /// A reader connection, opened again if it was lost.
    /// The newest row of one instrument: `sql` takes the exchange and the
    /// instrument as `$1` and `$2`; `from_row` reads the row.
    async fn newest_row<T>(
        &self,
        sql: &'static str,
        exchange: Exchange,
        instrument: &Instrument,
        what: &'static str,
        from_row: fn(&tokio_postgres::Row, Exchange, &Instrument) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        let conn = self.reader().await?;
        conn.query_opt(sql, &[&exchange.as_str(), &instrument.as_str()], what)
            .await?
            .map(|r| from_row(&r, exchange, instrument))
            .transpose()
    }

    async fn reader(&self) -> Result<Arc<Conn>, Error> {
        let n = self.inner.next_reader.fetch_add(1, Ordering::Relaxed) % self.inner.readers.len();
        let mut slot = self.inner.readers[n].lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(c.clone());
        }
        let conn = Arc::new(Conn::open(&self.inner.options).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `f` with the writer connection (opened again if lost). On error
    /// the id cache is cleared: ids from a rolled-back transaction may not exist.
    async fn with_writer<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn, &mut WriterState<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut w = self.inner.writer.lock().await;
        let w = &mut *w;
        if w.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            w.conn = None;
            w.conn = Some(Conn::open(&self.inner.options).await?);
        }
        let Some(conn) = w.conn.as_mut() else {
            unreachable!("opened above")
        };
        let mut state = WriterState {
            ids: &mut w.ids,
            conflict_batches: &mut w.conflict_batches,
        };
        let result = f(conn, &mut state).await;
        if result.is_err() {
            w.ids.clear();
        }
        result
    }

    async fn candle_range(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
        newest_first: bool,
    ) -> Result<Vec<Candle>, Error> {
        const ASC: &str = candle_range_sql!("ASC");
        const DESC: &str = candle_range_sql!("DESC");
        let conn = self.reader().await?;
        let rows = conn
            .query(
                if newest_first { DESC } else { ASC },
                &[
                    &q.exchange.as_str(),
                    &q.instrument.as_str(),
                    &interval.as_str(),
                    &source.as_str(),
                    &q.from.0,
                    &q.to.0,
                    &limit(q.limit),
                ],
                "querying candles",
            )
            .await?;
        rows.iter()
            .map(|r| candle_from_row(r, q.exchange, &q.instrument, interval))
            .collect()
    }
}

/// The writer's caches, lent to one write.
struct WriterState<'a> {
    ids: &'a mut HashMap<(Exchange, Instrument), i64>,
    conflict_batches: &'a mut u32,
}

/// The candle range query, in one order.
macro_rules! candle_range_sql {
    ($order:literal) => {
        concat!(
            "SELECT ",
            candle_columns!(),
            " FROM candles \
             WHERE instrument_id = (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2) \
             AND interval = $3 AND source = $4 AND open_time >= $5 AND open_time < $6 \
             ORDER BY open_time ",
            $order,
            " LIMIT $7"
        )
    };
}
use candle_range_sql;

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn instrument_id(
    tx: &tokio_postgres::Transaction<'_>,
    ids: &mut HashMap<(Exchange, Instrument), i64>,
    exchange: Exchange,
    instrument: &Instrument,
) -> Result<i64, Error> {
    if let Some(id) = ids.get(&(exchange, instrument.clone())) {
        return Ok(*id);
    }
    let row = tx
        .query_one(
            "WITH new AS (
                 INSERT INTO instruments (exchange, instrument) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING RETURNING id)
             SELECT id FROM new UNION ALL
             SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2",
            &[&exchange.as_str(), &instrument.as_str()],
        )
        .await
        .map_err(pg("finding instrument"))?;
    let id: i64 = row.get(0);
    ids.insert((exchange, instrument.clone()), id);
    Ok(id)
}

/// The fast path, a plain insert (the batch holds each key once). When a
/// trade is stored already it fails with a unique violation, and
/// [`TRADE_INSERT_ON_CONFLICT`] runs instead. (`ON CONFLICT`'s speculative
/// insertion per row costs about a fifth of ingest time on the 2-core
/// machine; see BENCHMARKS.md.)
#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> String {
        match &self.inner.extension {
            Extension::None => "postgresql".to_owned(),
            Extension::Timescale(version) => format!("postgresql+timescaledb {version}"),
        }
    }

    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteSummary, Error> {
        self.with_writer(async |conn, state| write_batch(conn, state, &batch).await)
            .await
    }

    async fn candles(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
    ) -> Result<Vec<Candle>, Error> {
        self.candle_range(q, interval, source, false).await
    }

    async fn candles_newest_first(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
    ) -> Result<Vec<Candle>, Error> {
        self.candle_range(q, interval, source, true).await
    }

    async fn candle_records(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
        newest_first: bool,
        form: RecordForm,
    ) -> Result<CandleRecords, Error> {
        candle_days::read_records(self, q, (interval, source), newest_first, form).await
    }

    async fn pack_candle_days(&self, settled_before: Ts) -> Result<PackReport, Error> {
        candle_days::pack(self, settled_before).await
    }

    async fn trades(&self, q: &RangeQuery) -> Result<Vec<Trade>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            trade_columns!(),
            " FROM trades
             WHERE instrument_id = (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2)
               AND ts >= $3 AND ts < $4 ORDER BY ts, trade_seq NULLS LAST, trade_id LIMIT $5"
        );
        let rows = self.range_rows(SQL, q, "querying trades").await?;
        rows.iter()
            .map(|r| trade_from_row(r, q.exchange, &q.instrument))
            .collect()
    }

    async fn quotes(&self, q: &RangeQuery) -> Result<Vec<Quote>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            quote_columns!(),
            " FROM quotes
             WHERE instrument_id = (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2)
               AND ts >= $3 AND ts < $4 ORDER BY ts, ts_received LIMIT $5"
        );
        let rows = self.range_rows(SQL, q, "querying quotes").await?;
        rows.iter()
            .map(|r| quote_from_row(r, q.exchange, &q.instrument))
            .collect()
    }

    async fn latest_candle(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        interval: Interval,
    ) -> Result<Option<Candle>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            candle_columns!(),
            " FROM candles \
             WHERE instrument_id = (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2) \
             AND interval = $3 AND source = 'ours' ORDER BY open_time DESC LIMIT 1"
        );
        let conn = self.reader().await?;
        conn.query_opt(
            SQL,
            &[&exchange.as_str(), &instrument.as_str(), &interval.as_str()],
            "querying latest candle",
        )
        .await?
        .map(|r| candle_from_row(&r, exchange, instrument, interval))
        .transpose()
    }

    async fn alert_rules(&self) -> Result<Vec<StoredRule>, Error> {
        let conn = self.reader().await?;
        let rows = conn
            .query(
                "SELECT id, rule, updated_at FROM alert_rules ORDER BY id",
                &[],
                "reading alert rules",
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredRule {
                id: r.get(0),
                rule: r.get(1),
                updated_at: Ts(r.get(2)),
            })
            .collect())
    }

    async fn put_alert_rule(&self, id: Option<i64>, rule: &str) -> Result<Option<i64>, Error> {
        let now = Ts::now().0;
        self.with_writer(async |conn, _| match id {
            None => {
                let row = conn
                    .query_opt(
                        "INSERT INTO alert_rules (rule, updated_at) VALUES ($1, $2) RETURNING id",
                        &[&rule, &now],
                        "storing alert rule",
                    )
                    .await?;
                Ok(row.map(|r| r.get(0)))
            }
            Some(id) => {
                let n = conn
                    .execute(
                        "UPDATE alert_rules SET rule = $2, updated_at = $3 WHERE id = $1",
                        &[&id, &rule, &now],
                        "updating alert rule",
                    )
                    .await?;
                Ok((n > 0).then_some(id))
            }
        })
        .await
    }

    async fn delete_alert_rule(&self, id: i64) -> Result<bool, Error> {
        self.with_writer(async |conn, _| {
            conn.execute(
                "DELETE FROM alert_rules WHERE id = $1",
                &[&id],
                "deleting alert rule",
            )
            .await
            .map(|n| n > 0)
        })
        .await
    }

    async fn record_firing(&self, rule_id: &str, at: Ts, firing: &str) -> Result<i64, Error> {
        self.with_writer(async |conn, _| {
            let row = conn
                .query_opt(
                    "INSERT INTO alert_firings (rule_id, fired_at, firing) VALUES ($1, $2, $3) RETURNING id",
                    &[&rule_id, &at.0, &firing],
                    "recording firing",
                )
                .await?;
            row.map(|r| r.get(0)).ok_or(Error::Corrupt {
                what: "firing id",
                value: "none returned".into(),
            })
        })
        .await
    }

    async fn set_firing_deliveries(&self, id: i64, deliveries: &str) -> Result<(), Error> {
        self.with_writer(async |conn, _| {
            conn.execute(
                "UPDATE alert_firings SET deliveries = $2 WHERE id = $1",
                &[&id, &deliveries],
                "recording deliveries",
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn firings(&self, max: usize) -> Result<Vec<StoredFiring>, Error> {
        let conn = self.reader().await?;
        let rows = conn
            .query(
                "SELECT id, rule_id, fired_at, firing, deliveries FROM alert_firings ORDER BY fired_at DESC, id DESC LIMIT $1",
                &[&limit(max)],
                "reading firings",
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredFiring {
                id: r.get(0),
                rule_id: r.get(1),
                fired_at: Ts(r.get(2)),
                firing: r.get(3),
                deliveries: r.get(4),
            })
            .collect())
    }

    async fn prune(&self, plan: &PrunePlan) -> Result<PruneReport, Error> {
        prune::prune(self, plan).await
    }

    async fn last_trade(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
    ) -> Result<Option<Trade>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            trade_columns!(),
            " FROM trades WHERE instrument_id = ",
            instrument_id!(),
            " ORDER BY ts DESC, trade_seq DESC NULLS FIRST, trade_id DESC LIMIT 1"
        );
        self.newest_row(
            SQL,
            exchange,
            instrument,
            "querying last trade",
            trade_from_row,
        )
        .await
    }

    async fn backfill_progress(&self, job: &str) -> Result<Option<BackfillProgress>, Error> {
        let conn = self.reader().await?;
        Ok(conn
            .query_opt(
                "SELECT cursor, done, updated_at FROM backfill_progress WHERE job = $1",
                &[&job],
                "querying backfill progress",
            )
            .await?
            .map(|r| BackfillProgress {
                job: job.to_owned(),
                cursor: r.get(0),
                done: r.get(1),
                updated_at: Ts(r.get(2)),
            }))
    }

    async fn backfill_jobs(&self) -> Result<Vec<BackfillProgress>, Error> {
        let conn = self.reader().await?;
        let rows = conn
            .query(
                "SELECT job, cursor, done, updated_at FROM backfill_progress ORDER BY job",
                &[],
                "reading backfill jobs",
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| BackfillProgress {
                job: r.get(0),
                cursor: r.get(1),
                done: r.get(2),
                updated_at: Ts(r.get(3)),
            })
            .collect())
    }

    async fn forget_jobs(&self, prefix: &str, updated_before: Ts) -> Result<u64, Error> {
        self.with_writer(async |conn, _| {
            conn.execute(
                "DELETE FROM backfill_progress WHERE starts_with(job, $1) AND updated_at < $2",
                &[&prefix, &updated_before.0],
                "forgetting job positions",
            )
            .await
        })
        .await
    }

    async fn restore_alert_rule(&self, rule: &StoredRule) -> Result<(), Error> {
        self.with_writer(async |conn, _| {
            conn.execute(
                "INSERT INTO alert_rules (id, rule, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET rule = excluded.rule, updated_at = excluded.updated_at",
                &[&rule.id, &rule.rule, &rule.updated_at.0],
                "restoring alert rule",
            )
            .await?;
            // New rules must not take a restored id.
            conn.execute(
                "SELECT setval(pg_get_serial_sequence('alert_rules', 'id'), GREATEST((SELECT MAX(id) FROM alert_rules), 1))",
                &[],
                "moving the rule id sequence",
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn latest_quote(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
    ) -> Result<Option<Quote>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            quote_columns!(),
            " FROM quotes WHERE instrument_id = ",
            instrument_id!(),
            " ORDER BY ts DESC, ts_received DESC LIMIT 1"
        );
        self.newest_row(
            SQL,
            exchange,
            instrument,
            "querying latest quote",
            quote_from_row,
        )
        .await
    }

    async fn instruments(&self) -> Result<Vec<StoredInstrument>, Error> {
        let conn = self.reader().await?;
        let rows = conn
            .query(
                "SELECT i.exchange, i.instrument, i.native_symbol, i.status,
                        (SELECT MAX(ts) FROM trades t WHERE t.instrument_id = i.id)
                 FROM instruments i ORDER BY i.exchange, i.instrument",
                &[],
                "querying instruments",
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredInstrument {
                    info: ck_model::InstrumentInfo {
                        exchange: exchange_from(r.get(0))?,
                        instrument: instrument_from(r.get(1))?,
                        native_symbol: r.get::<_, Option<String>>(2).unwrap_or_default(),
                        status: r.get(3),
                    },
                    last_trade_time: r.get::<_, Option<i64>>(4).map(Ts),
                })
            })
            .collect()
    }

    async fn ingest_errors(&self, max: usize) -> Result<Vec<IngestError>, Error> {
        let conn = self.reader().await?;
        let rows = conn
            .query(
                "SELECT ts, exchange, origin, message, excerpt FROM ingest_errors ORDER BY id DESC LIMIT $1",
                &[&limit(max)],
                "querying errors",
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| IngestError {
                ts: Ts(r.get(0)),
                exchange: r.get::<_, Option<&str>>(1).and_then(|e| e.parse().ok()),
                origin: r.get(2),
                message: r.get(3),
                excerpt: r.get(4),
                skipped_trade: None,
            })
            .collect())
    }

    async fn gaps(
        &self,
        exchange: Option<Exchange>,
        instrument: Option<&Instrument>,
        max: usize,
    ) -> Result<Vec<Gap>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            gap_columns!(),
            " FROM gaps g JOIN instruments i ON i.id = g.instrument_id
             WHERE ($1::text IS NULL OR i.exchange = $1) AND ($2::text IS NULL OR i.instrument = $2)
             ORDER BY g.from_ts DESC, g.id DESC LIMIT $3"
        );
        let conn = self.reader().await?;
        let rows = conn
            .query(
                SQL,
                &[
                    &exchange.map(Exchange::as_str),
                    &instrument.map(Instrument::as_str),
                    &limit(max),
                ],
                "querying gaps",
            )
            .await?;
        rows.iter().map(gap_from_row).collect()
    }

    async fn counts(&self) -> Result<StoreCounts, Error> {
        let conn = self.reader().await?;
        let row = conn
            .query_opt(
                "SELECT (SELECT count(*) FROM instruments), (SELECT count(*) FROM trades),
                        (SELECT count(*) FROM quotes), (SELECT count(*) FROM candles WHERE source = 'ours'),
                        (SELECT count(*) FROM ingest_errors)",
                &[],
                "counting rows",
            )
            .await?
            .ok_or(Error::Corrupt {
                what: "counts",
                value: "no row".into(),
            })?;
        let n = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
        Ok(StoreCounts {
            instruments: n(0),
            trades: n(1),
            quotes: n(2),
            candles: n(3),
            errors: n(4),
        })
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
        // VACUUM runs outside a transaction: one simple query each (several
        // statements in one query are one transaction).
        let conn = self.reader().await?;
        for table in ["trades", "quotes", "candles"] {
            conn.client
                .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
                .await
                .map_err(pg("vacuuming after an archive pass"))?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), Error> {
        let conn = self.reader().await?;
        conn.query_opt("SELECT 1", &[], "pinging the database")
            .await
            .map(|_| ())
    }
}
