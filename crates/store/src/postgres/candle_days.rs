//! PostgreSQL's packed days of candles (table `candle_days`): see
//! [`crate::packed`] for what a pack is and the rules that keep it true.
//!
//! Several processes may write one database, so the rules are kept with
//! row locks rather than one writer's mutex:
//! - a candle write marks its days stale in its own transaction, after the
//!   candles (`INSERT … ON CONFLICT DO UPDATE` locks each day's row);
//! - [`pack`] packs one day per transaction: it locks the stale day's row
//!   (`FOR UPDATE SKIP LOCKED`, so packers in other processes take other
//!   days, and a day a writer is marking waits for the next run), then
//!   reads the rows in a statement of its own, which sees every candle
//!   committed before the lock. A writer that changes the day afterwards
//!   marks it stale again once the pack commits.
//!
//! Readers do not need one snapshot for the packs and the rows: each day
//! is answered either by its pack, read only while current (a day marked
//! stale since the listing is read from its rows), or by its rows.

use std::collections::{BTreeSet, HashMap};

use ck_model::{Candle, Interval, Ts};

use super::rows::{candle_columns, candle_from_row, exchange_from, instrument_from};
use super::{Conn, PgStore, limit, pg};
use crate::packed::{
    DAY_NS, DayKey, Pack, PackDay, RECORD_FORMAT, STALE, Segment, append_pack, day_of,
    decompressor, packable, records_for, segments, stale_pack, whole_days,
};
use crate::{CandleRecords, CandleSource, Error, PackReport, RangeQuery, RecordForm};

/// Marks `days` stale, in the caller's write transaction (sorted, so that
/// writers in several processes lock the day rows in one order).
pub(super) async fn mark_stale(
    tx: &tokio_postgres::Transaction<'_>,
    days: &BTreeSet<DayKey>,
) -> Result<(), Error> {
    if days.is_empty() {
        return Ok(());
    }
    let mut cols: (Vec<i64>, Vec<&str>, Vec<&str>, Vec<i64>) = Default::default();
    for &(id, interval, source, day) in days {
        cols.0.push(id);
        cols.1.push(interval);
        cols.2.push(source);
        cols.3.push(day);
    }
    tx.execute(
        &format!(
            "INSERT INTO candle_days (instrument_id, interval, source, day)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[])
             ON CONFLICT (instrument_id, interval, source, day) DO UPDATE SET {STALE}
             WHERE candle_days.records IS NOT NULL"
        ),
        &[&cols.0, &cols.1, &cols.2, &cols.3],
    )
    .await
    .map_err(pg("marking candle days stale"))?;
    Ok(())
}

/// After retention removed one instrument's candles of `interval` before
/// `cut` (and before it does, so no pack outlives its rows meanwhile):
/// drops the packs of the days wholly before it and marks the day holding
/// it stale.
pub(super) async fn after_prune(
    conn: &Conn,
    instrument_id: i64,
    interval: &str,
    cut: Ts,
) -> Result<(), Error> {
    let day = day_of(cut.0);
    conn.execute(
        "DELETE FROM candle_days WHERE instrument_id = $1 AND interval = $2 AND day < $3",
        &[&instrument_id, &interval, &day],
        "dropping pruned candle days",
    )
    .await?;
    conn.execute(
        concat!(
            "UPDATE candle_days SET ",
            stale_pack!(),
            " WHERE instrument_id = $1 AND interval = $2 AND day = $3 AND records IS NOT NULL"
        ),
        &[&instrument_id, &interval, &day],
        "marking pruned candle day stale",
    )
    .await?;
    Ok(())
}

/// Candle records in `form` in `q`'s range: packed days where they are
/// current, the rows elsewhere.
pub(super) async fn read_records(
    store: &PgStore,
    q: &RangeQuery,
    (interval, source): (Interval, CandleSource),
    newest_first: bool,
    form: RecordForm,
) -> Result<CandleRecords, Error> {
    macro_rules! list {
        ($len:literal) => {
            concat!(
                "SELECT day, count, ",
                $len,
                " FROM candle_days
                 WHERE instrument_id = (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2)
                   AND interval = $3 AND source = $4 AND day >= $5 AND day < $6 AND format = $7
                   AND records IS NOT NULL ORDER BY day"
            )
        };
    }
    let list = match form {
        RecordForm::Json => list!("records_len"),
        RecordForm::Csv => list!("csv_len"),
    };
    let listed: Vec<(i64, i64, i64)> = match whole_days(q, interval) {
        Some((first, end)) => store
            .reader()
            .await?
            .query(
                list,
                &[
                    &q.exchange.as_str(),
                    &q.instrument.as_str(),
                    &interval.as_str(),
                    &source.as_str(),
                    &first,
                    &end,
                    &RECORD_FORMAT,
                ],
                "listing candle days",
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
        None => Vec::new(),
    };
    let counts: HashMap<i64, usize> = listed
        .iter()
        .map(|&(day, n, _)| (day, usize::try_from(n).unwrap_or(0)))
        .collect();
    let packed: Vec<i64> = listed.iter().map(|d| d.0).collect();
    let mut records = records_for(&listed, q.limit, form);
    let mut parts = segments(q.from.0, q.to.0, &packed);
    if newest_first {
        parts.reverse();
    }
    let read = Read {
        store,
        q,
        interval,
        source,
        newest_first,
    };
    let mut unpack = decompressor()?;
    let mut at = 0;
    while at < parts.len() {
        let room = q.limit.saturating_sub(records.len());
        if room == 0 {
            break;
        }
        if let Segment::Rows(from, to) = parts[at] {
            read.rows(from, to, room, &mut records).await?;
            at += 1;
            continue;
        }
        // The run of packs from here, as far as fills the room: one query.
        let mut days = Vec::new();
        let mut expected = 0;
        while let Some(&Segment::Pack(day)) = parts.get(at) {
            if expected >= room {
                break;
            }
            days.push(day);
            expected += counts.get(&day).copied().unwrap_or(0);
            at += 1;
        }
        let mut packs = read.packs(&days, form).await?;
        for day in days {
            let room = q.limit.saturating_sub(records.len());
            if room == 0 {
                break;
            }
            // Gone or stale since the listing: the rows answer.
            let answered = packs.remove(&day).is_some_and(|pack| {
                append_pack(
                    &pack,
                    &mut unpack,
                    &mut records,
                    room,
                    newest_first,
                    q,
                    interval,
                    day,
                )
            });
            if !answered {
                read.rows(day * DAY_NS, (day + 1) * DAY_NS, room, &mut records)
                    .await?;
            }
        }
    }
    Ok(records)
}

/// One range read's series and order.
struct Read<'a> {
    store: &'a PgStore,
    q: &'a RangeQuery,
    interval: Interval,
    source: CandleSource,
    newest_first: bool,
}

impl Read<'_> {
    /// The current packs of `days`, by day, with their records in `form`.
    async fn packs(&self, days: &[i64], form: RecordForm) -> Result<HashMap<i64, Pack>, Error> {
        macro_rules! packs {
            ($columns:literal) => {
                concat!(
                    "SELECT day, count, ",
                    $columns,
                    ", idx FROM candle_days
                     WHERE instrument_id = (SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2)
                       AND interval = $3 AND source = $4 AND day = ANY($5) AND format = $6
                       AND records IS NOT NULL"
                )
            };
        }
        let sql = match form {
            RecordForm::Json => packs!("records_len, records"),
            RecordForm::Csv => packs!("csv_len, csv"),
        };
        let q = self.q;
        let rows = self
            .store
            .reader()
            .await?
            .query(
                sql,
                &[
                    &q.exchange.as_str(),
                    &q.instrument.as_str(),
                    &self.interval.as_str(),
                    &self.source.as_str(),
                    &days,
                    &RECORD_FORMAT,
                ],
                "reading candle days",
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let size = |i| usize::try_from(r.get::<_, i64>(i)).unwrap_or(usize::MAX);
                let pack = Pack {
                    count: size(1),
                    records_len: size(2),
                    records: r.get(3),
                    idx: r.get(4),
                };
                (r.get(0), pack)
            })
            .collect())
    }

    /// Appends the records of rows with open time in `[from, to)`, at most
    /// `room`, in `out`'s form.
    async fn rows(
        &self,
        from: i64,
        to: i64,
        room: usize,
        out: &mut CandleRecords,
    ) -> Result<(), Error> {
        let part = RangeQuery {
            from: Ts(from),
            to: Ts(to),
            limit: room,
            ..self.q.clone()
        };
        for c in self
            .store
            .candle_range(&part, self.interval, self.source, self.newest_first)
            .await?
        {
            out.push_candle(&c);
        }
        Ok(())
    }
}

/// Packs every stale day that ended at or before `settled_before`, one day
/// per transaction; days left with no rows are forgotten.
pub(super) async fn pack(store: &PgStore, settled_before: Ts) -> Result<PackReport, Error> {
    // Packs of another record format are rebuilt.
    store
        .with_writer(async |conn, _| {
            conn.execute(
                concat!(
                    "UPDATE candle_days SET ",
                    stale_pack!(),
                    " WHERE records IS NOT NULL AND format <> $1"
                ),
                &[&RECORD_FORMAT],
                "marking old candle day packs stale",
            )
            .await
        })
        .await?;
    // Day d has settled when (d + 1) * DAY_NS <= settled_before.
    let last_day = day_of(settled_before.0) - 1;
    let mut report = PackReport::default();
    while store
        .with_writer(async |conn, _| pack_one(conn, last_day, &mut report).await)
        .await?
    {}
    Ok(report)
}

/// Packs the oldest stale day up to `last_day` that no one else holds;
/// false when there is none.
async fn pack_one(conn: &mut Conn, last_day: i64, report: &mut PackReport) -> Result<bool, Error> {
    const DAY_ROWS: &str = concat!(
        "SELECT ",
        candle_columns!(),
        " FROM candles WHERE instrument_id = $1 AND interval = $2 AND source = $3
           AND open_time >= $4 AND open_time < $5 ORDER BY open_time"
    );
    let tx = conn
        .client
        .transaction()
        .await
        .map_err(pg("starting candle day pack"))?;
    let Some(day) = tx
        .query_opt(
            "SELECT d.instrument_id, d.interval, d.source, d.day, i.exchange, i.instrument
             FROM candle_days d JOIN instruments i ON i.id = d.instrument_id
             WHERE d.records IS NULL AND d.day <= $1
             ORDER BY d.day LIMIT 1 FOR UPDATE OF d SKIP LOCKED",
            &[&last_day],
        )
        .await
        .map_err(pg("listing stale candle days"))?
    else {
        return Ok(false);
    };
    let (id, interval_name, source, n): (i64, String, String, i64) =
        (day.get(0), day.get(1), day.get(2), day.get(3));
    let mut records = PackDay::new();
    if let Ok(interval) = interval_name.parse::<Interval>()
        && packable(interval)
    {
        let exchange = exchange_from(day.get(4))?;
        let instrument = instrument_from(day.get(5))?;
        let rows = tx
            .query(
                DAY_ROWS,
                &[
                    &id,
                    &interval_name,
                    &source,
                    &(n * DAY_NS),
                    &((n + 1) * DAY_NS),
                ],
            )
            .await
            .map_err(pg("reading a candle day"))?;
        for r in &rows {
            let c: Candle = candle_from_row(r, exchange, &instrument, interval)?;
            records.push(c.open_time, &c.record_fields());
        }
    }
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&id, &interval_name, &source, &n];
    if records.is_empty() {
        tx.execute(
            "DELETE FROM candle_days WHERE instrument_id = $1 AND interval = $2 AND source = $3 AND day = $4",
            &key,
        )
        .await
        .map_err(pg("forgetting an empty candle day"))?;
        report.days_dropped += 1;
    } else {
        let packed = records.encode()?;
        tx.execute(
            "UPDATE candle_days SET format = $5, count = $6, records_len = $7, records = $8,
                csv_len = $9, csv = $10, idx = $11
             WHERE instrument_id = $1 AND interval = $2 AND source = $3 AND day = $4",
            &[
                key[0],
                key[1],
                key[2],
                key[3],
                &RECORD_FORMAT,
                &limit(packed.count),
                &limit(packed.records_len),
                &packed.records,
                &limit(packed.csv_len),
                &packed.csv,
                &packed.idx,
            ],
        )
        .await
        .map_err(pg("writing a candle day pack"))?;
        report.days_packed += 1;
        report.candles += packed.count as u64;
        report.bytes += packed.stored_bytes() as u64;
    }
    tx.commit()
        .await
        .map_err(pg("committing a candle day pack"))?;
    Ok(true)
}
