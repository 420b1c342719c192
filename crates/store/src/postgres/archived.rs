//! What the archive needs of PostgreSQL: where an instrument's oldest rows
//! are, and deleting the rows it has taken, by key.

use ck_model::{Exchange, Instrument, Ts};

use super::PgStore;
use super::rows::id_text;
use crate::{ArchivedRows, Error, RowKind};

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
    let sql = match kind {
        RowKind::Trades => TRADES,
        RowKind::Quotes => QUOTES,
    };
    let row = store
        .reader()
        .await?
        .query_opt(
            sql,
            &[&exchange.as_str(), &instrument.as_str(), &from.0],
            "finding the oldest row",
        )
        .await?;
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
    }
    Ok(deleted)
}
