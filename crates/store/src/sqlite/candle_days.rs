//! Packed days of candles: the fast read form of settled history.
//!
//! A year of 1m candles is 525,600 rows of thirteen columns; stepping them
//! in SQLite is most of the time of a long range read. So each settled UTC
//! day of a series (instrument, interval up to 1h, source) is also kept as
//! one row of `candle_days`: the day's JSON records (exactly what
//! [`Store::candle_records`](crate::Store::candle_records) writes from the
//! rows), zstd-compressed, with each record's open time and end.
//!
//! The rows stay the truth; a pack is derived from them and never read
//! unless it is current:
//! - a pack is built from the day's rows inside one write transaction;
//! - every write of a candle marks its day's pack stale (`records` NULL) in
//!   the same transaction, as retention does for what it prunes;
//! - a pack written by another record format ([`RECORD_FORMAT`]) is ignored
//!   and rebuilt;
//! - readers take the packs and the rows from one snapshot, and a pack that
//!   does not decode is logged and read from the rows instead.
//!
//! Stale days are packed by [`pack`] once they have settled (the app runs
//! it on a schedule, and after backfills and replays).

use std::collections::BTreeSet;

use ck_model::{Interval, Ts};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::candle_record_from_row;
use super::{CANDLE_SELECT, INSTRUMENT_ID, SqliteStore, limit, lock, sql};
use crate::{CandleRecords, CandleSource, Error, PackReport, RangeQuery};

/// One UTC day in nanoseconds.
pub(crate) const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The version of the JSON record a pack holds. Bump it whenever
/// [`ck_model::RecordFields`] writes different bytes: older packs are then
/// ignored by readers and rebuilt by [`pack`].
pub(crate) const RECORD_FORMAT: i64 = 1;

/// zstd level for packs: they are written once and read many times.
const LEVEL: i32 = 3;

/// Days packed per write transaction, so that ingest waits briefly.
const DAYS_PER_TRANSACTION: usize = 8;

/// Whether `interval` is kept in packed days: those with at least 24
/// candles a day (1s to 1h).
pub(crate) fn packable(interval: Interval) -> bool {
    interval
        .fixed_nanos()
        .is_some_and(|n| n <= 3_600 * 1_000_000_000)
}

/// The UTC day number holding `ts`.
pub(crate) fn day_of(ts: i64) -> i64 {
    ts.div_euclid(DAY_NS)
}

/// A day whose pack must be (re)built: instrument id, interval, source, day.
pub(crate) type DayKey = (i64, &'static str, &'static str, i64);

/// Marks `days` stale, in the caller's write transaction.
pub(crate) fn mark_stale(tx: &Connection, days: &BTreeSet<DayKey>) -> Result<(), Error> {
    if days.is_empty() {
        return Ok(());
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO candle_days (instrument_id, interval, source, day) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (instrument_id, interval, source, day) DO UPDATE SET
                records = NULL, idx = NULL, format = NULL, count = NULL, records_len = NULL
             WHERE candle_days.records IS NOT NULL",
        )
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
        "UPDATE candle_days SET records = NULL, idx = NULL, format = NULL, count = NULL, records_len = NULL
         WHERE instrument_id = ?1 AND interval = ?2 AND day = ?3",
        params![instrument_id, interval, day],
    )
    .map_err(sql("marking pruned candle day stale"))?;
    Ok(())
}

/// What a range read is made of, in the order it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    /// Rows with open time in `[from, to)`.
    Rows(i64, i64),
    /// A packed day.
    Pack(i64),
}

/// Splits `[from, to)` around the packed days within it (given oldest first).
fn segments(from: i64, to: i64, packed: &[i64]) -> Vec<Segment> {
    let mut out = Vec::with_capacity(packed.len() * 2 + 1);
    let mut at = from;
    for &day in packed {
        let start = day * DAY_NS;
        if start > at {
            out.push(Segment::Rows(at, start));
        }
        out.push(Segment::Pack(day));
        at = start + DAY_NS;
    }
    if at < to {
        out.push(Segment::Rows(at, to));
    }
    out
}

/// Candle records in `q`'s range from one read snapshot: packed days where
/// they are current, the rows elsewhere.
pub(crate) fn read_records(
    c: &Connection,
    q: &RangeQuery,
    interval: Interval,
    source: CandleSource,
    newest_first: bool,
) -> Result<CandleRecords, Error> {
    // One snapshot for the packs and the rows (a deferred read transaction).
    let tx = c
        .unchecked_transaction()
        .map_err(sql("starting candle read"))?;
    // The packed days wholly inside [from, to), with their sizes.
    let listed: Vec<(i64, i64, i64)> = if packable(interval) && q.from.0 < q.to.0 {
        let first = day_of(q.from.0.saturating_add(DAY_NS - 1));
        let end = day_of(q.to.0);
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT day, count, records_len FROM candle_days WHERE instrument_id = {INSTRUMENT_ID}
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
    // Room for the packs up to the limit (growing a 100 MB buffer by
    // doubling costs more than reading it), and for some rows.
    let (mut count, mut len) = (0usize, 0usize);
    for &(_, n, bytes) in &listed {
        if count >= q.limit {
            break;
        }
        count += usize::try_from(n).unwrap_or(0);
        len += usize::try_from(bytes).unwrap_or(0);
    }
    let rows = q.limit.saturating_sub(count).min(4_096);
    let mut records = CandleRecords::with_capacity(rows);
    records.json.reserve(len.min(1 << 31));
    records.ends.reserve(count);
    records.open_times.reserve(count);
    let mut parts = segments(q.from.0, q.to.0, &packed);
    if newest_first {
        parts.reverse();
    }
    let mut unpack = zstd::bulk::Decompressor::new().map_err(|source| Error::Io {
        path: "candle day decompressor".to_owned(),
        source,
    })?;
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
                if let Some(pack) = read_pack(&tx, q, interval, source, day)? {
                    match pack.append_to(&mut unpack, &mut records, room, newest_first) {
                        Ok(()) => continue,
                        Err(e) => {
                            ck_bus::metrics::counter("candlekeep_damaged_candle_days_total").inc();
                            tracing::warn!(
                                exchange = q.exchange.as_str(), instrument = %q.instrument,
                                interval = interval.as_str(), day, error = %e,
                                "a packed candle day does not decode; reading its rows"
                            );
                        }
                    }
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

/// Appends the JSON records of rows with open time in `[from, to)`, at most `room`.
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
        candle_record_from_row(r, out)?;
    }
    Ok(())
}

/// One day's pack as stored.
struct Pack {
    count: usize,
    records_len: usize,
    records: Vec<u8>,
    idx: Vec<u8>,
}

fn read_pack(
    c: &Connection,
    q: &RangeQuery,
    interval: Interval,
    source: CandleSource,
    day: i64,
) -> Result<Option<Pack>, Error> {
    c.prepare_cached(&format!(
        "SELECT count, records_len, records, idx FROM candle_days
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

/// Why a pack could not be read.
#[derive(Debug, thiserror::Error)]
enum PackError {
    #[error("decompressing: {0}")]
    Zstd(std::io::Error),
    #[error("{0}")]
    Shape(&'static str),
}

impl Pack {
    /// Appends at most `room` of the pack's records to `out`: the oldest
    /// first, or with `newest_first` the newest first. Nothing is appended
    /// when the pack does not decode.
    fn append_to(
        &self,
        unpack: &mut zstd::bulk::Decompressor<'static>,
        out: &mut CandleRecords,
        room: usize,
        newest_first: bool,
    ) -> Result<(), PackError> {
        // At most one candle a second, of at most 8 KiB of JSON: a damaged
        // count or length must not ask for a huge buffer.
        if self.count == 0 || self.count > 86_400 || self.records_len > self.count * 8_192 {
            return Err(PackError::Shape("count or length out of bounds"));
        }
        let idx = unpack
            .decompress(&self.idx, self.count * 12)
            .map_err(PackError::Zstd)?;
        if idx.len() != self.count * 12 {
            return Err(PackError::Shape("index length does not match the count"));
        }
        let (times, ends) = idx.split_at(self.count * 8);
        let open_times: Vec<i64> = times
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect();
        let ends: Vec<usize> = ends
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as usize)
            .collect();
        if ends.windows(2).any(|w| w[0] >= w[1]) || ends.last().copied() != Some(self.records_len) {
            return Err(PackError::Shape("record ends out of order"));
        }
        let take = room.min(self.count);
        if !newest_first {
            // Decompress straight into the output's spare room (a cursor at
            // its end: nothing is zeroed first), then keep the first `take`.
            let base = out.json.len();
            out.json.reserve(self.records_len);
            let mut cursor = std::io::Cursor::new(std::mem::take(&mut out.json));
            cursor.set_position(base as u64);
            let result = unpack.decompress_to_buffer(&self.records, &mut cursor);
            out.json = cursor.into_inner();
            let written = result.map_err(|e| {
                out.json.truncate(base);
                PackError::Zstd(e)
            })?;
            if written != self.records_len {
                out.json.truncate(base);
                return Err(PackError::Shape("records length does not match"));
            }
            out.json.truncate(base + ends[take - 1]);
            out.ends.extend(ends[..take].iter().map(|e| base + e));
            out.open_times
                .extend(open_times[..take].iter().map(|&t| Ts(t)));
            return Ok(());
        }
        let json = unpack
            .decompress(&self.records, self.records_len)
            .map_err(PackError::Zstd)?;
        if json.len() != self.records_len {
            return Err(PackError::Shape("records length does not match"));
        }
        for i in (self.count - take..self.count).rev() {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            out.json.extend_from_slice(&json[start..ends[i]]);
            out.ends.push(out.json.len());
            out.open_times.push(Ts(open_times[i]));
        }
        Ok(())
    }
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
                "UPDATE candle_days SET records = NULL, idx = NULL, format = NULL, count = NULL, records_len = NULL
                 WHERE records IS NOT NULL AND format <> ?1",
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
                CandleRecords::default()
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
            let (packed, idx) = encode(&records)?;
            tx.execute(
                "UPDATE candle_days SET format = ?5, count = ?6, records_len = ?7, records = ?8, idx = ?9
                 WHERE instrument_id = ?1 AND interval = ?2 AND source = ?3 AND day = ?4",
                params![
                    id,
                    interval,
                    source,
                    day,
                    RECORD_FORMAT,
                    records.len() as i64,
                    records.json.len() as i64,
                    packed,
                    idx
                ],
            )
            .map_err(sql("writing a candle day pack"))?;
            report.days_packed += 1;
            report.candles += records.len() as u64;
            report.bytes += (packed.len() + idx.len()) as u64;
        }
        tx.commit().map_err(sql("committing candle day packs"))?;
    }
}

/// The JSON records of one day's rows, oldest first.
fn day_records(
    c: &Connection,
    id: i64,
    interval: &str,
    source: &str,
    day: i64,
) -> Result<CandleRecords, Error> {
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
    let mut out = CandleRecords::default();
    while let Some(r) = rows.next().map_err(sql("reading a candle day"))? {
        candle_record_from_row(r, &mut out)?;
    }
    Ok(out)
}

/// The pack of `records`: the compressed JSON, and the compressed index
/// (open times as i64, then ends as u32, little endian).
fn encode(records: &CandleRecords) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let io = |source| Error::Io {
        path: "candle day pack".to_owned(),
        source,
    };
    let mut idx = Vec::with_capacity(records.len() * 12);
    for t in &records.open_times {
        idx.extend_from_slice(&t.0.to_le_bytes());
    }
    for &e in &records.ends {
        let e = u32::try_from(e).map_err(|_| Error::Corrupt {
            what: "candle day",
            value: format!("{} bytes of records in one day", records.json.len()),
        })?;
        idx.extend_from_slice(&e.to_le_bytes());
    }
    Ok((
        zstd::bulk::compress(&records.json, LEVEL).map_err(io)?,
        zstd::bulk::compress(&idx, LEVEL).map_err(io)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_split_around_its_packed_days() {
        let d = DAY_NS;
        assert_eq!(
            segments(10, 5 * d + 7, &[1, 2, 4]),
            vec![
                Segment::Rows(10, d),
                Segment::Pack(1),
                Segment::Pack(2),
                Segment::Rows(3 * d, 4 * d),
                Segment::Pack(4),
                Segment::Rows(5 * d, 5 * d + 7),
            ]
        );
        assert_eq!(segments(d, 2 * d, &[1]), vec![Segment::Pack(1)]);
        assert_eq!(segments(0, 5, &[]), vec![Segment::Rows(0, 5)]);
    }

    #[test]
    fn days_are_utc_days_before_1970_too() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_NS - 1), 0);
        assert_eq!(day_of(-1), -1);
        assert!(packable(Interval::M1) && packable(Interval::H1) && packable(Interval::S1));
        assert!(!packable(Interval::H2) && !packable(Interval::D1) && !packable(Interval::Mo1));
    }
}
