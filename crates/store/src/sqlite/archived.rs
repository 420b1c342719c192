//! What the archive needs of SQLite: where an instrument's oldest rows
//! are, and deleting the rows it has taken, by key.

use ck_model::{Exchange, Instrument, Ts};
use rusqlite::{OptionalExtension, params};

use super::rows::id_param;
use super::{INSTRUMENT_ID, SqliteStore, lock, sql};
use crate::{ArchivedRows, Error, RowKind};

/// Rows deleted per write transaction.
const ROWS_PER_TRANSACTION: usize = 5_000;

pub(super) async fn oldest_time(
    store: &SqliteStore,
    kind: RowKind,
    exchange: Exchange,
    instrument: &Instrument,
    from: Ts,
) -> Result<Option<Ts>, Error> {
    let table = match kind {
        RowKind::Trades => "trades",
        RowKind::Quotes => "quotes",
    };
    let instrument = instrument.clone();
    store
        .read(move |c| {
            let oldest: Option<i64> = c
                .prepare_cached(&format!(
                    "SELECT min(ts) FROM {table} WHERE instrument_id = {INSTRUMENT_ID} AND ts >= ?3"
                ))
                .and_then(|mut s| {
                    s.query_row(
                        params![exchange.as_str(), instrument.as_str(), from.0],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .map_err(sql("finding the oldest row"))?
                .flatten();
            Ok(oldest.map(Ts))
        })
        .await
}

pub(super) async fn delete(store: &SqliteStore, rows: ArchivedRows<'_>) -> Result<u64, Error> {
    let mut deleted = 0;
    match rows {
        ArchivedRows::Trades {
            exchange,
            instrument,
            ids,
        } => {
            for chunk in ids.chunks(ROWS_PER_TRANSACTION) {
                let ids = chunk.to_vec();
                deleted += in_transaction(store, (exchange, instrument.clone()), move |tx, id| {
                    let mut stmt = tx
                        .prepare_cached(
                            "DELETE FROM trades WHERE instrument_id = ?1 AND trade_id = ?2",
                        )
                        .map_err(sql("preparing archived trade delete"))?;
                    let mut n = 0;
                    for trade_id in &ids {
                        n += stmt
                            .execute(params![id, id_param(trade_id)])
                            .map_err(sql("deleting archived trades"))?;
                    }
                    Ok(n as u64)
                })
                .await?;
                tokio::task::yield_now().await;
            }
        }
        ArchivedRows::Quotes {
            exchange,
            instrument,
            keys,
        } => {
            for chunk in keys.chunks(ROWS_PER_TRANSACTION) {
                let keys = chunk.to_vec();
                deleted += in_transaction(store, (exchange, instrument.clone()), move |tx, id| {
                    let mut stmt = tx
                        .prepare_cached(
                            "DELETE FROM quotes WHERE instrument_id = ?1 AND ts = ?2 AND ts_received = ?3",
                        )
                        .map_err(sql("preparing archived quote delete"))?;
                    let mut n = 0;
                    for (ts, received) in &keys {
                        n += stmt
                            .execute(params![id, ts.0, received.0])
                            .map_err(sql("deleting archived quotes"))?;
                    }
                    Ok(n as u64)
                })
                .await?;
                tokio::task::yield_now().await;
            }
        }
    }
    Ok(deleted)
}

/// Runs `f` in one write transaction with the instrument's id (nothing
/// when the store does not know the instrument).
async fn in_transaction(
    store: &SqliteStore,
    (exchange, instrument): (Exchange, Instrument),
    f: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<u64, Error> + Send + 'static,
) -> Result<u64, Error> {
    let inner = store.inner.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = lock(&inner.writer);
        let tx = guard
            .conn
            .transaction()
            .map_err(sql("starting archived delete"))?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM instruments WHERE exchange = ?1 AND instrument = ?2",
                params![exchange.as_str(), instrument.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("finding instrument"))?;
        let Some(id) = id else { return Ok(0) };
        let n = f(&tx, id)?;
        tx.commit().map_err(sql("committing archived delete"))?;
        Ok(n)
    })
    .await
    .map_err(Error::Worker)?
}
