//! What the archive needs of SQLite: where an instrument's oldest rows
//! are, and deleting the rows it has taken, by key.

use ck_model::{Exchange, Instrument, Ts};
use rusqlite::{OptionalExtension, params};

use super::rows::id_param;
use std::collections::BTreeSet;

use super::{INSTRUMENT_ID, SqliteStore, candle_days, lock, sql};
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
    let query = match kind {
        RowKind::Trades => {
            format!("SELECT min(ts) FROM trades WHERE instrument_id = {INSTRUMENT_ID} AND ts >= ?3")
        }
        RowKind::Quotes => {
            format!("SELECT min(ts) FROM quotes WHERE instrument_id = {INSTRUMENT_ID} AND ts >= ?3")
        }
        RowKind::Candles(source) => format!(
            "SELECT min(open_time) FROM candles WHERE instrument_id = {INSTRUMENT_ID}
               AND source = '{}' AND interval IN ({}) AND open_time >= ?3",
            source.as_str(),
            archived_intervals()
        ),
    };
    let instrument = instrument.clone();
    store
        .read(move |c| {
            let oldest: Option<i64> = c
                .prepare_cached(&query)
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
        ArchivedRows::Candles {
            exchange,
            instrument,
            source,
            candles,
        } => {
            for chunk in candles.chunks(ROWS_PER_TRANSACTION) {
                let candles = chunk.to_vec();
                deleted += in_transaction(store, (exchange, instrument.clone()), move |tx, id| {
                    let mut stmt = tx
                        .prepare_cached(
                            "DELETE FROM candles WHERE instrument_id = ?1 AND interval = ?2
                               AND source = ?3 AND open_time = ?4 AND trades = ?5 AND state = ?6
                               AND close = ?7 AND volume = ?8 AND high = ?9 AND low = ?10",
                        )
                        .map_err(sql("preparing archived candle delete"))?;
                    let mut n = 0;
                    let mut days = BTreeSet::new();
                    for c in &candles {
                        let gone = stmt
                            .execute(params![
                                id,
                                c.interval.as_str(),
                                source.as_str(),
                                c.open_time.0,
                                i64::try_from(c.trades).unwrap_or(i64::MAX),
                                c.state.as_str(),
                                c.close.to_string(),
                                c.volume.to_string(),
                                c.high.to_string(),
                                c.low.to_string(),
                            ])
                            .map_err(sql("deleting archived candles"))?;
                        if gone > 0 && crate::packed::packable(c.interval) {
                            days.insert((
                                id,
                                c.interval.as_str(),
                                source.as_str(),
                                crate::packed::day_of(c.open_time.0),
                            ));
                        }
                        n += gone;
                    }
                    // Their packs go stale in the same transaction (the
                    // next pack drops a day left without candles).
                    candle_days::mark_stale(tx, &days)?;
                    Ok(n as u64)
                })
                .await?;
                tokio::task::yield_now().await;
            }
        }
    }
    Ok(deleted)
}

/// The intervals the archive takes, as an SQL list: `'1s', '1m', …`.
pub(super) fn archived_intervals() -> String {
    ck_model::Interval::ALL
        .iter()
        .filter(|i| crate::archived_interval(**i))
        .map(|i| format!("'{}'", i.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
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
