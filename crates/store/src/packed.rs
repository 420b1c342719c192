//! Packed days of candles: the fast read form of settled history, shared
//! by the backends (`sqlite::candle_days`, `postgres::candle_days`).
//!
//! A year of 1m candles is 525,600 rows of thirteen columns; stepping them
//! is most of the time of a long range read. So each settled UTC day of a
//! series (instrument, interval up to 1h, source) is also kept as one row:
//! the day's records in both forms, JSON and CSV (exactly what
//! [`Store::candle_records`](crate::Store::candle_records) writes from the
//! rows), each zstd-compressed, with an index of each record's open time
//! and its ends in either form. A CSV answer is then as quick to give as a
//! JSON one, for about 60% more bytes per pack (see BENCHMARKS.md).
//!
//! The rows stay the truth; a pack is derived from them and never read
//! unless it is current:
//! - a pack is built from the day's rows inside one write transaction;
//! - every write of a candle marks its day's pack stale (`records` NULL) in
//!   the same transaction, as retention does for what it prunes;
//! - a pack written by another record format ([`RECORD_FORMAT`]) is ignored
//!   and rebuilt;
//! - a pack that does not decode is logged, counted in
//!   `candlekeep_damaged_candle_days_total`, and read from the rows instead.
//!
//! This module holds what does not depend on the database: days, the split
//! of a range around packed days, and the pack's encoding.

use ck_model::{Interval, Ts};

use crate::{CandleRecords, Error, RangeQuery, RecordForm};

/// One UTC day in nanoseconds.
pub(crate) const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The version of the records a pack holds. Bump it whenever
/// [`ck_model::RecordFields`] writes different bytes or the pack's layout
/// changes: older packs are then ignored by readers and rebuilt by each
/// backend's packer (`Store::pack_candle_days`). 3: CSV beside JSON.
pub(crate) const RECORD_FORMAT: i64 = 3;

/// What marks a pack stale (`SET …`): its records gone. A macro, for
/// the `concat!` of PostgreSQL's cached statements.
macro_rules! stale_pack {
    () => {
        "records = NULL, csv = NULL, idx = NULL, format = NULL, count = NULL, \
         records_len = NULL, csv_len = NULL"
    };
}
pub(crate) use stale_pack;

/// [`stale_pack!`] as a constant.
pub(crate) const STALE: &str = stale_pack!();

/// A pack's columns of one form: its uncompressed length and its blob.
pub(crate) fn form_columns(form: RecordForm) -> (&'static str, &'static str) {
    match form {
        RecordForm::Json => ("records_len", "records"),
        RecordForm::Csv => ("csv_len", "csv"),
    }
}

/// zstd level for packs: they are written once and read many times.
const LEVEL: i32 = 3;

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

/// What a range read is made of, in the order it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Rows with open time in `[from, to)`.
    Rows(i64, i64),
    /// A packed day.
    Pack(i64),
}

/// Splits `[from, to)` around the packed days within it (given oldest first).
pub(crate) fn segments(from: i64, to: i64, packed: &[i64]) -> Vec<Segment> {
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

/// One day's pack as stored, with the records of one form.
pub(crate) struct Pack {
    pub(crate) count: usize,
    /// Bytes of the records, uncompressed.
    pub(crate) records_len: usize,
    /// The records of the form read, compressed.
    pub(crate) records: Vec<u8>,
    pub(crate) idx: Vec<u8>,
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
    /// Appends at most `room` of the pack's records to `out` (which are
    /// of `out`'s form): the oldest first, or with `newest_first` the
    /// newest first. Nothing is appended when the pack does not decode.
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
            .decompress(&self.idx, self.count * INDEX_BYTES)
            .map_err(PackError::Zstd)?;
        if idx.len() != self.count * INDEX_BYTES {
            return Err(PackError::Shape("index length does not match the count"));
        }
        let (times, ends) = idx.split_at(self.count * 8);
        let (json_ends, csv_ends) = ends.split_at(self.count * 4);
        let ends = match out.form {
            RecordForm::Json => json_ends,
            RecordForm::Csv => csv_ends,
        };
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
            let base = out.bytes.len();
            out.bytes.reserve(self.records_len);
            let mut cursor = std::io::Cursor::new(std::mem::take(&mut out.bytes));
            cursor.set_position(base as u64);
            let result = unpack.decompress_to_buffer(&self.records, &mut cursor);
            out.bytes = cursor.into_inner();
            let written = result.map_err(|e| {
                out.bytes.truncate(base);
                PackError::Zstd(e)
            })?;
            if written != self.records_len {
                out.bytes.truncate(base);
                return Err(PackError::Shape("records length does not match"));
            }
            out.bytes.truncate(base + ends[take - 1]);
            out.ends.extend(ends[..take].iter().map(|e| base + e));
            out.open_times
                .extend(open_times[..take].iter().map(|&t| Ts(t)));
            return Ok(());
        }
        let all = unpack
            .decompress(&self.records, self.records_len)
            .map_err(PackError::Zstd)?;
        if all.len() != self.records_len {
            return Err(PackError::Shape("records length does not match"));
        }
        for i in (self.count - take..self.count).rev() {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            out.bytes.extend_from_slice(&all[start..ends[i]]);
            out.ends.push(out.bytes.len());
            out.open_times.push(Ts(open_times[i]));
        }
        Ok(())
    }
}

/// Index bytes per record: its open time (i64), its ends in JSON and in
/// CSV (u32 each), little endian, all times first, then the JSON ends,
/// then the CSV ends.
const INDEX_BYTES: usize = 16;

/// One day's records in both forms, as a pack is built from them.
pub(crate) struct PackDay {
    json: CandleRecords,
    csv: CandleRecords,
}

/// A day packed: what a backend stores.
pub(crate) struct Packed {
    pub(crate) count: usize,
    pub(crate) records_len: usize,
    pub(crate) records: Vec<u8>,
    pub(crate) csv_len: usize,
    pub(crate) csv: Vec<u8>,
    pub(crate) idx: Vec<u8>,
}

impl Packed {
    /// Compressed bytes stored.
    pub(crate) fn stored_bytes(&self) -> usize {
        self.records.len() + self.csv.len() + self.idx.len()
    }
}

impl PackDay {
    pub(crate) fn new() -> PackDay {
        PackDay {
            json: CandleRecords::new(RecordForm::Json, 0),
            csv: CandleRecords::new(RecordForm::Csv, 0),
        }
    }

    /// Adds the next record (oldest first), written from its fields.
    pub(crate) fn push<D: ck_model::DecimalText + ?Sized>(
        &mut self,
        open_time: Ts,
        fields: &ck_model::RecordFields<'_, D>,
    ) {
        self.json
            .push(open_time, |out| RecordForm::Json.append(fields, out));
        self.csv
            .push(open_time, |out| RecordForm::Csv.append(fields, out));
    }

    pub(crate) fn len(&self) -> usize {
        self.json.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.json.is_empty()
    }

    /// The pack: each form's records compressed, and the compressed index.
    pub(crate) fn encode(&self) -> Result<Packed, Error> {
        let io = |source| Error::Io {
            path: "candle day pack".to_owned(),
            source,
        };
        let mut idx = Vec::with_capacity(self.len() * INDEX_BYTES);
        for t in &self.json.open_times {
            idx.extend_from_slice(&t.0.to_le_bytes());
        }
        for records in [&self.json, &self.csv] {
            for &e in &records.ends {
                let e = u32::try_from(e).map_err(|_| Error::Corrupt {
                    what: "candle day",
                    value: format!("{} bytes of records in one day", records.bytes.len()),
                })?;
                idx.extend_from_slice(&e.to_le_bytes());
            }
        }
        Ok(Packed {
            count: self.len(),
            records_len: self.json.bytes.len(),
            records: zstd::bulk::compress(&self.json.bytes, LEVEL).map_err(io)?,
            csv_len: self.csv.bytes.len(),
            csv: zstd::bulk::compress(&self.csv.bytes, LEVEL).map_err(io)?,
            idx: zstd::bulk::compress(&idx, LEVEL).map_err(io)?,
        })
    }
}

/// The days wholly inside `q`'s range, as `[first, end)`, when `interval`
/// is packed; `None` when no pack can answer any of it.
pub(crate) fn whole_days(q: &RangeQuery, interval: Interval) -> Option<(i64, i64)> {
    if !packable(interval) || q.from.0 >= q.to.0 {
        return None;
    }
    let first = day_of(q.from.0.saturating_add(DAY_NS - 1));
    let end = day_of(q.to.0);
    (first < end).then_some((first, end))
}

/// An empty answer with room for the listed packs (`(day, count,
/// records_len)`, oldest first) up to `limit`, and for some rows: growing a
/// 100 MB buffer by doubling costs more than reading it.
pub(crate) fn records_for(
    listed: &[(i64, i64, i64)],
    limit: usize,
    form: RecordForm,
) -> CandleRecords {
    let (mut count, mut len) = (0usize, 0usize);
    for &(_, n, bytes) in listed {
        if count >= limit {
            break;
        }
        count += usize::try_from(n).unwrap_or(0);
        len += usize::try_from(bytes).unwrap_or(0);
    }
    let rows = limit.saturating_sub(count).min(4_096);
    let mut records = CandleRecords::new(form, rows);
    records.bytes.reserve(len.min(1 << 31));
    records.ends.reserve(count);
    records.open_times.reserve(count);
    records
}

/// A decompressor for [`Pack::append_to`].
pub(crate) fn decompressor() -> Result<zstd::bulk::Decompressor<'static>, Error> {
    zstd::bulk::Decompressor::new().map_err(|source| Error::Io {
        path: "candle day decompressor".to_owned(),
        source,
    })
}

/// Appends at most `room` of `pack`'s records to `out`; false, logged and
/// counted when it does not decode (the caller reads the day's rows).
#[allow(clippy::too_many_arguments)]
pub(crate) fn append_pack(
    pack: &Pack,
    unpack: &mut zstd::bulk::Decompressor<'static>,
    out: &mut CandleRecords,
    room: usize,
    newest_first: bool,
    q: &RangeQuery,
    interval: Interval,
    day: i64,
) -> bool {
    match pack.append_to(unpack, out, room, newest_first) {
        Ok(()) => true,
        Err(e) => {
            ck_bus::metrics::counter("candlekeep_damaged_candle_days_total").inc();
            tracing::warn!(
                exchange = q.exchange.as_str(), instrument = %q.instrument,
                interval = interval.as_str(), day, error = %e,
                "a packed candle day does not decode; reading its rows"
            );
            false
        }
    }
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
