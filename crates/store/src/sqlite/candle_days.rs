//! SQLite's packed days of candles (table `candle_days`): see
//! [`crate::packed`] for what a pack is and the rules that keep it true.
//! Readers here take the packs and the rows from one snapshot (a deferred
//! read transaction). Stale days are packed by [`pack`] once they have
//! settled (the app runs it on a schedule, and after backfills and replays).

use std::collections::BTreeSet;

use ck_model::{Interval, Ts};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::candle_record_from_row;
use super::{CANDLE_SELECT, INSTRUMENT_ID, SqliteStore, limit, lock, sql};
use crate::packed::{
    DAY_NS, DayKey, Pack, PackDay, RECORD_FORMAT, STALE, Segment, append_pack, day_of,
    decompressor, form_columns, packable, records_for, segments, whole_days,
};
use crate::{CandleRecords, CandleSource, Error, PackReport, RangeQuery, RecordForm};

/// Days packed per write transaction, so that ingest waits briefly.
const DAYS_PER_TRANSACTION: usize = 8;

/// Marks `days` stale, in the caller's write transaction.
pub(crate) fn mark_stale(tx: &Connection, days: &BTreeSet<DayKey>) -> Result<(), Error> {
    if days.is_empty() {
        return Ok(());
    }
    let mut stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO candle_days (instrument_id, interval, source, day) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (instrument_id, interval, source, day) DO UPDATE SET {STALE}
             WHERE candle_days.records IS NOT NULL"
        ))
        .map_err(sql("preparing candle day mark"))?;
    for (id, interval, source, day) in days {
        stmt.execute(params![id, interval, source, day])
            .map_err(sql("marking candle day stale"))?;
    }
    Ok(())
}

/// After retention removed one instrument's candles of `interval` before
/// `cut`: drops the packs of the days wholly before it and marks the day
/// holding it stale (its remaining rows are packed again).
pub(crate) fn after_prune(
    tx: &Connection,
    instrument_id: i64,
    interval: &str,
    cut: i64,
) -> Result<(), Error> {
    let day = day_of(cut);
    tx.execute(
        "DELETE FROM candle_days WHERE instrument_id = ?1 AND interval = ?2 AND day < ?3",
        params![instrument_id, interval, day],
    )
    .map_err(sql("dropping pruned candle days"))?;
    tx.execute(
        &format!(
            "UPDATE candle_days SET {STALE} WHERE instrument_id = ?1 AND interval = ?2 AND day = ?3"
        ),
        params![instrument_id, interval, day],
    )
    .map_err(sql("marking pruned candle day stale"))?;
    Ok(())
}

/// Candle records in `form` in `q`'s range from one read snapshot: packed
/// days where they are current, the rows elsewhere.
pub(crate) fn read_records(
    c: &Connection,
    q: &RangeQuery,
    interval: Interval,
    source: CandleSource,
    newest_first: bool,
    form: RecordForm,
) -> Result<CandleRecords, Error> {
    let (len_column, _) = form_columns(form);
    // One snapshot for the packs and the rows (a deferred read transaction).
    let tx = c
        .unchecked_transaction()
        .map_err(sql("starting candle read"))?;
    // The packed days wholly inside [from, to), with their sizes.
    let listed: Vec<(i64, i64, i64)> = if let Some((first, end)) = whole_days(q, interval) {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT day, count, {len_column} FROM candle_days WHERE instrument_id = {INSTRUMENT_ID}
                   AND interval = ?3 AND source = ?4 AND day >= ?5 AND day < ?6 AND format = ?7
                   AND records IS NOT NULL
                 ORDER BY day"
            ))
            .map_err(sql("preparing candle day list"))?;
        stmt.query_map(
            params![
                q.exchange.as_str(),
                q.instrument.as_str(),
                interval.as_str(),
                source.as_str(),
                first,
                end,
                RECORD_FORMAT
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(sql("listing candle days"))?
        .collect::<Result<_, _>>()
        .map_err(sql("listing candle days"))?
    } else {
        Vec::new()
    };
    let packed: Vec<i64> = listed.iter().map(|d| d.0).collect();
    let mut records = records_for(&listed, q.limit, form);
    let mut parts = segments(q.from.0, q.to.0, &packed);
    if newest_first {
        parts.reverse();
    }
    let mut unpack = decompressor()?;
    for part in parts {
        let room = q.limit.saturating_sub(records.len());
        if room == 0 {
            break;
        }
        let (from, to) = match part {
            Segment::Rows(from, to) => (from, to),
            Segment::Pack(day) => {
                // None: gone since the listing (impossible in one snapshot,
                // and harmless): the rows answer.
                if let Some(pack) = read_pack(&tx, q, (interval, source, form), day)?
                    && append_pack(
                        &pack,
                        &mut unpack,
                        &mut records,
                        room,
                        newest_first,
                        q,
                        interval,
                        day,
                    )
                {
                    continue;
                }
                (day * DAY_NS, (day + 1) * DAY_NS)
            }
        };
        read_rows(
            &tx,
            q,
            interval,
            source,
            from,
            to,
            room,
            newest_first,
            &mut records,
        )?;
    }
    Ok(records)
}

/// Appends the records of rows with open time in `[from, to)`, at most
/// `room`, in `out`'s form.
#[allow(clippy::too_many_arguments)]
fn read_rows(
    c: &Connection,
    q: &RangeQuery,
    interval: Interval,
    source: CandleSource,
    from: i64,
    to: i64,
    room: usize,
    newest_first: bool,
    out: &mut CandleRecords,
) -> Result<(), Error> {
    let order = if newest_first { "DESC" } else { "ASC" };
    let out_form = out.form;
    let mut stmt = c
        .prepare_cached(&format!(
            "{CANDLE_SELECT} WHERE instrument_id = {INSTRUMENT_ID} AND interval = ?3 AND source = ?4
               AND open_time >= ?5 AND open_time < ?6 ORDER BY open_time {order} LIMIT ?7"
        ))
        .map_err(sql("preparing candle query"))?;
    let mut rows = stmt
        .query(params![
            q.exchange.as_str(),
            q.instrument.as_str(),
            interval.as_str(),
            source.as_str(),
            from,
            to,
            limit(room)
        ])
        .map_err(sql("querying candles"))?;
    while let Some(r) = rows.next().map_err(sql("reading candles"))? {
        candle_record_from_row(r, |open_time, fields| {
            out.push(open_time, |o| out_form.append(fields, o));
        })?;
    }
    Ok(())
}

/// One day's pack, with its records in `form`.
fn read_pack(
    c: &Connection,
    q: &RangeQuery,
    (interval, source, form): (Interval, CandleSource, RecordForm),
    day: i64,
) -> Result<Option<Pack>, Error> {
    let (len_column, records_column) = form_columns(form);
    c.prepare_cached(&format!(
        "SELECT count, {len_column}, {records_column}, idx FROM candle_days
         WHERE instrument_id = {INSTRUMENT_ID} AND interval = ?3 AND source = ?4 AND day = ?5
           AND format = ?6 AND records IS NOT NULL"
    ))
    .and_then(|mut s| {
        s.query_row(
            params![
                q.exchange.as_str(),
                q.instrument.as_str(),
                interval.as_str(),
                source.as_str(),
                day,
                RECORD_FORMAT
            ],
            |r| {
                Ok(Pack {
                    count: usize::try_from(r.get::<_, i64>(0)?).unwrap_or(usize::MAX),
                    records_len: usize::try_from(r.get::<_, i64>(1)?).unwrap_or(usize::MAX),
                    records: r.get(2)?,
                    idx: r.get(3)?,
                })
            },
        )
        .optional()
    })
    .map_err(sql("reading candle day"))
}

/// Packs every stale day that ended at or before `settled_before`, a few
/// days per write transaction; days left with no rows are forgotten.
pub(crate) fn pack(store: &SqliteStore, settled_before: Ts) -> Result<PackReport, Error> {
    let mut report = PackReport::default();
    {
        // Packs of another record format are rebuilt.
        let guard = lock(&store.inner.writer);
        guard
            .conn
            .execute(
                &format!(
                    "UPDATE candle_days SET {STALE} WHERE records IS NOT NULL AND format <> ?1"
                ),
                params![RECORD_FORMAT],
            )
            .map_err(sql("marking old candle day packs stale"))?;
    }
    // Day d has settled when (d + 1) * DAY_NS <= settled_before.
    let last_day = day_of(settled_before.0) - 1;
    loop {
        let mut guard = lock(&store.inner.writer);
        let tx = guard
            .conn
            .transaction()
            .map_err(sql("starting candle day pack"))?;
        let stale: Vec<(i64, String, String, i64)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT instrument_id, interval, source, day FROM candle_days
                     WHERE records IS NULL AND day <= ?1 ORDER BY day LIMIT ?2",
                )
                .map_err(sql("listing stale candle days"))?;
            stmt.query_map(params![last_day, DAYS_PER_TRANSACTION as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(sql("listing stale candle days"))?
            .collect::<Result<_, _>>()
            .map_err(sql("listing stale candle days"))?
        };
        if stale.is_empty() {
            return Ok(report);
        }
        for (id, interval, source, day) in &stale {
            let records = if interval.parse::<Interval>().is_ok_and(packable) {
                day_records(&tx, *id, interval, source, *day)?
            } else {
                PackDay::new()
            };
            if records.is_empty() {
                tx.execute(
                    "DELETE FROM candle_days WHERE instrument_id = ?1 AND interval = ?2 AND source = ?3 AND day = ?4",
                    params![id, interval, source, day],
                )
                .map_err(sql("forgetting an empty candle day"))?;
                report.days_dropped += 1;
                continue;
            }
            let packed = records.encode()?;
            tx.execute(
                "UPDATE candle_days SET format = ?5, count = ?6, records_len = ?7, records = ?8,
                    csv_len = ?9, csv = ?10, idx = ?11
                 WHERE instrument_id = ?1 AND interval = ?2 AND source = ?3 AND day = ?4",
                params![
                    id,
                    interval,
                    source,
                    day,
                    RECORD_FORMAT,
                    packed.count as i64,
                    packed.records_len as i64,
                    packed.records,
                    packed.csv_len as i64,
                    packed.csv,
                    packed.idx
                ],
            )
            .map_err(sql("writing a candle day pack"))?;
            report.days_packed += 1;
            report.candles += packed.count as u64;
            report.bytes += packed.stored_bytes() as u64;
        }
        tx.commit().map_err(sql("committing candle day packs"))?;
    }
}

/// The records of one day's rows in both forms, oldest first.
fn day_records(
    c: &Connection,
    id: i64,
    interval: &str,
    source: &str,
    day: i64,
) -> Result<PackDay, Error> {
    let mut stmt = c
        .prepare_cached(&format!(
            "{CANDLE_SELECT} WHERE instrument_id = ?1 AND interval = ?2 AND source = ?3
               AND open_time >= ?4 AND open_time < ?5 ORDER BY open_time"
        ))
        .map_err(sql("preparing candle day read"))?;
    let mut rows = stmt
        .query(params![
            id,
            interval,
            source,
            day * DAY_NS,
            (day + 1) * DAY_NS
        ])
        .map_err(sql("reading a candle day"))?;
    let mut out = PackDay::new();
    while let Some(r) = rows.next().map_err(sql("reading a candle day"))? {
        candle_record_from_row(r, |open_time, fields| out.push(open_time, fields))?;
    }
    Ok(out)
}
