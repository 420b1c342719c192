//! Retention for PostgreSQL: deletes in small transactions per instrument
//! (ingest never waits long on them), then `VACUUM` so the space is reused,
//! and returned to the file system where it lies at a table's end.
//!
//! On TimescaleDB, trades and quotes are hypertables in one-day chunks:
//! whole chunks before the cutoff are dropped at once (`drop_chunks`), and
//! only the rows of the chunk the cutoff falls in are deleted. The deletes
//! bound each batch by time, not by `ctid`: a `ctid` names a row only
//! within one chunk, and a compressed chunk's rows have none of their own.

use ck_model::{Interval, Ts};

use super::{Extension, PgStore, limit};
use crate::{Error, PrunePlan, PruneReport};

/// One kind of row: how to count and delete those of an instrument before a cutoff.
struct Kind {
    table: &'static str,
    count: &'static str,
    delete: &'static str,
    /// Counts and drops whole chunks before `$1` (hypertables only).
    chunks: Option<(&'static str, &'static str)>,
}

// Deletes: $1 instrument id, $2 cutoff, $3 batch size, $4 interval (candles
// only). Counts: $1 instrument id, $2 cutoff, $3 interval (candles only).
// A trade or quote batch ends at the time of its $3-th oldest row (rows
// sharing that time go too).
macro_rules! by_time {
    ($table:literal) => {
        Kind {
            table: $table,
            count: concat!(
                "SELECT count(*) FROM ",
                $table,
                " WHERE instrument_id = $1 AND ts < $2"
            ),
            delete: concat!(
                "DELETE FROM ",
                $table,
                " WHERE instrument_id = $1 AND ts < $2 AND ts <= COALESCE(
                   (SELECT ts FROM ",
                $table,
                " WHERE instrument_id = $1 AND ts < $2
                    ORDER BY ts OFFSET $3::BIGINT - 1 LIMIT 1), $2)"
            ),
            chunks: Some((
                concat!("SELECT count(*) FROM ", $table, " WHERE ts < $1"),
                concat!(
                    "SELECT count(*) FROM drop_chunks('",
                    $table,
                    "', older_than => $1::BIGINT)"
                ),
            )),
        }
    };
}
const TRADES: Kind = by_time!("trades");
const QUOTES: Kind = by_time!("quotes");
const CANDLES: Kind = Kind {
    table: "candles",
    count: "SELECT count(*) FROM candles WHERE instrument_id = $1 AND interval = $3 AND open_time < $2",
    delete: "DELETE FROM candles WHERE instrument_id = $1 AND interval = $4 AND open_time < $2
               AND ctid = ANY(ARRAY(SELECT ctid FROM candles
                 WHERE instrument_id = $1 AND interval = $4 AND open_time < $2 LIMIT $3))",
    chunks: None,
};

pub(super) async fn prune(store: &PgStore, plan: &PrunePlan) -> Result<PruneReport, Error> {
    let mut report = PruneReport {
        bytes_before: size(store).await?,
        ..PruneReport::default()
    };
    let ids: Vec<i64> = store
        .reader()
        .await?
        .query(
            "SELECT id FROM instruments ORDER BY id",
            &[],
            "listing instruments",
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut touched = Vec::new();
    let hypertables = matches!(store.extension(), Extension::Timescale(_));
    let mut run = async |kind: &'static Kind, cut: Ts, interval: Option<Interval>| {
        let mut removed = 0;
        if let Some(chunks) = kind.chunks.filter(|_| hypertables && !plan.dry_run) {
            removed += drop_chunks(store, chunks, cut).await?;
        }
        for &id in &ids {
            removed += remove(store, kind, id, cut, interval, plan).await?;
        }
        if removed > 0 && !touched.contains(&kind.table) {
            touched.push(kind.table);
        }
        Ok::<u64, Error>(removed)
    };
    if let Some(cut) = plan.trades_before {
        report.trades = run(&TRADES, cut, None).await?;
    }
    if let Some(cut) = plan.quotes_before {
        report.quotes = run(&QUOTES, cut, None).await?;
    }
    for &(interval, cut) in &plan.candles_before {
        let n = run(&CANDLES, cut, Some(interval)).await?;
        report.candles.push((interval, n));
    }
    if !plan.dry_run {
        let conn = store.reader().await?;
        for table in touched {
            // VACUUM runs outside a transaction; a simple query is one.
            conn.client
                .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
                .await
                .map_err(super::pg("vacuuming"))?;
        }
    }
    report.bytes_after = size(store).await?;
    Ok(report)
}

async fn remove(
    store: &PgStore,
    kind: &'static Kind,
    id: i64,
    cut: Ts,
    interval: Option<Interval>,
    plan: &PrunePlan,
) -> Result<u64, Error> {
    let interval = interval.map(Interval::as_str);
    let batch = limit(plan.batch_rows.max(1));
    if plan.dry_run {
        let conn = store.reader().await?;
        let row = if let Some(iv) = interval {
            conn.query_opt(kind.count, &[&id, &cut.0, &iv], "counting rows to prune")
                .await?
        } else {
            conn.query_opt(kind.count, &[&id, &cut.0], "counting rows to prune")
                .await?
        };
        return Ok(row.map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)));
    }
    // Packs of what goes are dropped before the rows and again after (a
    // write meanwhile may have marked a pruned day stale).
    let unpack = async || match interval {
        Some(iv) => {
            store
                .with_writer(async |conn, _| {
                    super::candle_days::after_prune(conn, id, iv, cut).await
                })
                .await
        }
        None => Ok(()),
    };
    unpack().await?;
    let mut removed = 0;
    loop {
        // Each batch is its own transaction on the writer: ingest commits
        // interleave with the deletes.
        let n = store
            .with_writer(async |conn, _| {
                if let Some(iv) = interval {
                    conn.execute(kind.delete, &[&id, &cut.0, &batch, &iv], "pruning")
                        .await
                } else {
                    conn.execute(kind.delete, &[&id, &cut.0, &batch], "pruning")
                        .await
                }
            })
            .await?;
        removed += n;
        if n == 0 {
            unpack().await?;
            return Ok(removed);
        }
    }
}

/// Drops the chunks wholly before `cut`, counting their rows first (in one
/// transaction, so no row is missed or counted twice).
async fn drop_chunks(
    store: &PgStore,
    (count, drop): (&'static str, &'static str),
    cut: Ts,
) -> Result<u64, Error> {
    // Chunks of an integer time column start at multiples of their width.
    let boundary = cut.0.div_euclid(super::schema::CHUNK_NS) * super::schema::CHUNK_NS;
    store
        .with_writer(async |conn, _| {
            let tx = conn
                .client
                .transaction()
                .await
                .map_err(super::pg("starting a chunk drop"))?;
            let rows: i64 = tx
                .query_one(count, &[&boundary])
                .await
                .map_err(super::pg("counting rows of old chunks"))?
                .get(0);
            let chunks: i64 = tx
                .query_one(drop, &[&boundary])
                .await
                .map_err(super::pg("dropping old chunks"))?
                .get(0);
            tx.commit()
                .await
                .map_err(super::pg("committing a chunk drop"))?;
            tracing::debug!(chunks, rows, "dropped whole chunks before the cutoff");
            Ok(u64::try_from(rows).unwrap_or(0))
        })
        .await
}

/// Bytes the store's tables (with indexes and TOAST) use; on TimescaleDB
/// with the chunks of its hypertables, which live in another schema.
async fn size(store: &PgStore) -> Result<u64, Error> {
    const PLAIN: &str = "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')";
    const WITH_CHUNKS: &str = "SELECT (
             (SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p'))
           + (SELECT COALESCE(SUM(hypertable_size(format('%I.%I', hypertable_schema, hypertable_name)::regclass)), 0)
              FROM timescaledb_information.hypertables
              WHERE hypertable_schema = current_schema()))::BIGINT";
    let sql = if matches!(store.extension(), Extension::Timescale(_)) {
        WITH_CHUNKS
    } else {
        PLAIN
    };
    let row = store
        .reader()
        .await?
        .query_opt(sql, &[], "measuring the store")
        .await?;
    Ok(row.map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
}
