//! Retention for SQLite: deletes in small transactions (the writer is free
//! between them, so ingest never waits long), then gives the freed pages
//! back to the file system with `PRAGMA incremental_vacuum`.

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::{SqliteStore, candle_days, lock, sql};
use ck_model::{Interval, Ts};

use crate::{Error, PrunePlan, PruneReport};

/// One kind of row, by instrument: how to count and delete those before a cutoff.
struct Kind {
    count: &'static str,
    delete: &'static str,
}

// ?1 instrument id, ?2 cutoff, ?3 batch size, ?4 interval (candles only).
const TRADES: Kind = Kind {
    count: "SELECT count(*) FROM trades WHERE instrument_id = ?1 AND ts < ?2",
    delete: "DELETE FROM trades WHERE instrument_id = ?1 AND trade_id IN
               (SELECT trade_id FROM trades WHERE instrument_id = ?1 AND ts < ?2 LIMIT ?3)",
};
const QUOTES: Kind = Kind {
    count: "SELECT count(*) FROM quotes WHERE instrument_id = ?1 AND ts < ?2",
    delete: "DELETE FROM quotes WHERE instrument_id = ?1 AND (ts, ts_received) IN
               (SELECT ts, ts_received FROM quotes WHERE instrument_id = ?1 AND ts < ?2 LIMIT ?3)",
};
const CANDLES: Kind = Kind {
    count: "SELECT count(*) FROM candles WHERE instrument_id = ?1 AND interval = ?4 AND open_time < ?2",
    delete: "DELETE FROM candles WHERE instrument_id = ?1 AND interval = ?4 AND (source, open_time) IN
               (SELECT source, open_time FROM candles WHERE instrument_id = ?1 AND interval = ?4 AND open_time < ?2 LIMIT ?3)",
};

pub(super) async fn prune(store: &SqliteStore, plan: &PrunePlan) -> Result<PruneReport, Error> {
    let mut report = PruneReport {
        bytes_before: size(store).await?,
        ..PruneReport::default()
    };
    let ids: Vec<i64> = store
        .read(|c| {
            let mut stmt = c
                .prepare("SELECT id FROM instruments ORDER BY id")
                .map_err(sql("listing instruments"))?;
            let ids = stmt
                .query_map([], |r| r.get(0))
                .map_err(sql("listing instruments"))?
                .collect::<Result<Vec<i64>, _>>()
                .map_err(sql("listing instruments"))?;
            Ok(ids)
        })
        .await?;
    let total = |kind: &'static Kind, cut: Ts, interval: Option<Interval>| {
        let ids = &ids;
        async move {
            let interval = interval.map(|i| Value::Text(i.as_str().to_owned()));
            let mut removed = 0;
            for &id in ids {
                removed += remove(store, kind, id, cut.0, interval.clone(), plan).await?;
            }
            Ok::<u64, Error>(removed)
        }
    };
    if let Some(cut) = plan.trades_before {
        report.trades = total(&TRADES, cut, None).await?;
    }
    if let Some(cut) = plan.quotes_before {
        report.quotes = total(&QUOTES, cut, None).await?;
    }
    for &(interval, cut) in &plan.candles_before {
        report
            .candles
            .push((interval, total(&CANDLES, cut, Some(interval)).await?));
    }
    let removed_any =
        report.trades + report.quotes + report.candles.iter().map(|c| c.1).sum::<u64>() > 0;
    if !plan.dry_run && removed_any {
        give_back_space(store).await?;
    }
    report.bytes_after = size(store).await?;
    Ok(report)
}

/// Counts (dry run) or deletes, batch by batch, one instrument's rows of one kind.
async fn remove(
    store: &SqliteStore,
    kind: &'static Kind,
    id: i64,
    cut: i64,
    interval: Option<Value>,
    plan: &PrunePlan,
) -> Result<u64, Error> {
    let batch = i64::try_from(plan.batch_rows.max(1)).unwrap_or(i64::MAX);
    let mut args = vec![
        Value::Integer(id),
        Value::Integer(cut),
        Value::Integer(batch),
    ];
    args.extend(interval);
    if plan.dry_run {
        return store
            .read(move |c| {
                let n: i64 = c
                    .prepare_cached(kind.count)
                    .and_then(|mut s| {
                        // Counting needs no batch size: bind what the statement names.
                        let named = s.parameter_count();
                        s.query_row(params_from_iter(args.iter().take(named)), |r| r.get(0))
                    })
                    .map_err(sql("counting rows to prune"))?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .await;
    }
    let mut total = 0u64;
    loop {
        let args = args.clone();
        let inner = store.clone();
        let n = tokio::task::spawn_blocking(move || {
            let mut guard = lock(&inner.inner.writer);
            let tx = guard.conn.transaction().map_err(sql("starting prune"))?;
            let n = tx
                .prepare_cached(kind.delete)
                .and_then(|mut s| s.execute(params_from_iter(args.iter())))
                .map_err(sql("pruning rows"))?;
            if let Some(Value::Text(interval)) = args.get(3) {
                // The packed days of what went, in the same transaction.
                candle_days::after_prune(&tx, id, interval, cut)?;
            }
            tx.commit().map_err(sql("committing prune"))?;
            Ok::<u64, Error>(n as u64)
        })
        .await
        .map_err(Error::Worker)??;
        total += n;
        if n < u64::try_from(batch).unwrap_or(u64::MAX) {
            return Ok(total);
        }
        // Let the writer commit what is waiting before the next batch.
        tokio::task::yield_now().await;
    }
}

/// Returns free pages to the file system, a thousand at a time.
pub(super) async fn give_back_space(store: &SqliteStore) -> Result<(), Error> {
    loop {
        let inner = store.clone();
        let left = tokio::task::spawn_blocking(move || {
            let guard = lock(&inner.inner.writer);
            incremental_vacuum(&guard.conn)
        })
        .await
        .map_err(Error::Worker)??;
        if left == 0 {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
}

/// One step of incremental vacuum; the free pages left (0 when the
/// database was created without incremental vacuum: SQLite then reuses the
/// pages but does not shrink the file).
fn incremental_vacuum(conn: &Connection) -> Result<i64, Error> {
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .map_err(sql("reading auto_vacuum"))?;
    if mode != 2 {
        tracing::info!(
            "this database was created without incremental vacuum: freed pages are reused, the file keeps its size (VACUUM once to change that)"
        );
        return Ok(0);
    }
    let mut stmt = conn
        .prepare("PRAGMA incremental_vacuum(1000)")
        .map_err(sql("incremental vacuum"))?;
    let mut rows = stmt.query([]).map_err(sql("incremental vacuum"))?;
    while rows.next().map_err(sql("incremental vacuum"))?.is_some() {}
    conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .map_err(sql("reading freelist"))
}

/// The database's size in bytes (pages in use and free).
async fn size(store: &SqliteStore) -> Result<u64, Error> {
    store
        .read(|c| {
            let pages: i64 = c
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .map_err(sql("reading page count"))?;
            let page: i64 = c
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(sql("reading page size"))?;
            Ok(u64::try_from(pages * page).unwrap_or(0))
        })
        .await
}
