//! What the archive needs of PostgreSQL: where an instrument's oldest rows
//! are, and deleting the rows it has taken, by key.

use std::collections::BTreeSet;

use ck_model::{Candle, Exchange, Instrument, Interval, Ts};

use super::rows::id_text;
use super::{PgStore, pg};
use crate::{ArchivedRows, CandleSource, Error, RowKind};

/// Rows deleted per statement.
const ROWS_PER_STATEMENT: usize = 5_000;

pub(super) async fn oldest_time(
    store: &PgStore,
    kind: RowKind,
    exchange: Exchange,
    instrument: &Instrument,
    from: Ts,
) -> Result<Option<Ts>, Error> {
    const TRADES: &str = "SELECT min(ts) FROM trades WHERE instrument_id = \
        (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2) AND ts >= $3";
    const QUOTES: &str = "SELECT min(ts) FROM quotes WHERE instrument_id = \
        (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2) AND ts >= $3";
    const CANDLES: &str = "SELECT min(open_time) FROM candles WHERE instrument_id = \
        (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2) \
        AND source = $4 AND interval = ANY($5::TEXT[]) AND open_time >= $3";
    let reader = store.reader().await?;
    let (exchange, instrument) = (exchange.as_str(), instrument.as_str());
    let row = match kind {
        RowKind::Trades | RowKind::Quotes => {
            let sql = if kind == RowKind::Trades {
                TRADES
            } else {
                QUOTES
            };
            reader
                .query_opt(
                    sql,
                    &[&exchange, &instrument, &from.0],
                    "finding the oldest row",
                )
                .await?
        }
        RowKind::Candles(source) => {
            let intervals = archived_intervals();
            reader
                .query_opt(
                    CANDLES,
                    &[
                        &exchange,
                        &instrument,
                        &from.0,
                        &source.as_str(),
                        &intervals,
                    ],
                    "finding the oldest candle",
                )
                .await?
        }
    };
    Ok(row.and_then(|r| r.get::<_, Option<i64>>(0)).map(Ts))
}

pub(super) async fn delete(store: &PgStore, rows: ArchivedRows<'_>) -> Result<u64, Error> {
    const TRADES: &str = "DELETE FROM trades WHERE instrument_id = \
        (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2) \
        AND trade_id = ANY($3::TEXT[])";
    const QUOTES: &str = "DELETE FROM quotes q USING unnest($3::BIGINT[], $4::BIGINT[]) AS k(ts, received) \
        WHERE q.instrument_id = (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2) \
        AND q.ts = k.ts AND q.ts_received = k.received";
    let mut deleted = 0;
    match rows {
        ArchivedRows::Trades {
            exchange,
            instrument,
            ids,
        } => {
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let ids: Vec<String> = chunk.iter().map(id_text).collect();
                let (exchange, instrument) = (exchange.as_str(), instrument.as_str());
                deleted += store
                    .with_writer(async |conn, _| {
                        conn.execute(
                            TRADES,
                            &[&exchange, &instrument, &ids],
                            "deleting archived trades",
                        )
                        .await
                    })
                    .await?;
            }
        }
        ArchivedRows::Quotes {
            exchange,
            instrument,
            keys,
        } => {
            for chunk in keys.chunks(ROWS_PER_STATEMENT) {
                let times: Vec<i64> = chunk.iter().map(|k| k.0.0).collect();
                let received: Vec<i64> = chunk.iter().map(|k| k.1.0).collect();
                let (exchange, instrument) = (exchange.as_str(), instrument.as_str());
                deleted += store
                    .with_writer(async |conn, _| {
                        conn.execute(
                            QUOTES,
                            &[&exchange, &instrument, &times, &received],
                            "deleting archived quotes",
                        )
                        .await
                    })
                    .await?;
            }
        }
        ArchivedRows::Candles {
            exchange,
            instrument,
            source,
            candles,
        } => {
            for chunk in candles.chunks(ROWS_PER_STATEMENT) {
                deleted += delete_candles(store, exchange, instrument, source, chunk).await?;
            }
        }
    }
    Ok(deleted)
}

/// The intervals the archive takes.
fn archived_intervals() -> Vec<&'static str> {
    Interval::ALL
        .iter()
        .filter(|i| crate::archived_interval(**i))
        .map(|i| i.as_str())
        .collect()
}

/// Deletes candles still as archived, and marks their packed days stale,
/// in one transaction.
async fn delete_candles(
    store: &PgStore,
    exchange: Exchange,
    instrument: &Instrument,
    source: CandleSource,
    candles: &[Candle],
) -> Result<u64, Error> {
    const SQL: &str = "DELETE FROM candles c \
        USING unnest($4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[]) \
            AS k(interval, open_time, trades, state, close, volume, high, low) \
        WHERE c.instrument_id = (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2) \
          AND c.source = $3 AND c.interval = k.interval AND c.open_time = k.open_time \
          AND c.trades = k.trades AND c.state = k.state AND c.close = k.close::NUMERIC \
          AND c.volume = k.volume::NUMERIC AND c.high = k.high::NUMERIC AND c.low = k.low::NUMERIC \
        RETURNING c.instrument_id, c.interval, c.open_time";
    let intervals: Vec<&str> = candles.iter().map(|c| c.interval.as_str()).collect();
    let opens: Vec<i64> = candles.iter().map(|c| c.open_time.0).collect();
    let trades: Vec<i64> = candles
        .iter()
        .map(|c| i64::try_from(c.trades).unwrap_or(i64::MAX))
        .collect();
    let states: Vec<&str> = candles.iter().map(|c| c.state.as_str()).collect();
    let text = |f: fn(&Candle) -> String| candles.iter().map(f).collect::<Vec<String>>();
    let (close, volume) = (
        text(|c| c.close.to_string()),
        text(|c| c.volume.to_string()),
    );
    let (high, low) = (text(|c| c.high.to_string()), text(|c| c.low.to_string()));
    let (exchange, instrument, source_text) =
        (exchange.as_str(), instrument.as_str(), source.as_str());
    store
        .with_writer(async |conn, _| {
            let tx = conn
                .client
                .transaction()
                .await
                .map_err(pg("starting archived candle delete"))?;
            let gone = tx
                .query(
                    SQL,
                    &[
                        &exchange,
                        &instrument,
                        &source_text,
                        &intervals,
                        &opens,
                        &trades,
                        &states,
                        &close,
                        &volume,
                        &high,
                        &low,
                    ],
                )
                .await
                .map_err(pg("deleting archived candles"))?;
            let mut days = BTreeSet::new();
            for row in &gone {
                let interval: Option<Interval> = row.get::<_, &str>(1).parse().ok();
                if let Some(interval) = interval.filter(|i| crate::packed::packable(*i)) {
                    days.insert((
                        row.get::<_, i64>(0),
                        interval.as_str(),
                        source.as_str(),
                        crate::packed::day_of(row.get::<_, i64>(2)),
                    ));
                }
            }
            super::candle_days::mark_stale(&tx, &days).await?;
            tx.commit()
                .await
                .map_err(pg("committing archived candle delete"))?;
            Ok(gone.len() as u64)
        })
        .await
}
