//! The API's large candle answers over archived days, fast: each archived
//! day's candles of one interval, written once as their records of the
//! form asked (JSON or CSV) and kept compressed in memory (a cache bounded in bytes, keyed by the file
//! and checked against its size and time, so a rewritten day is read
//! again), then merged with the store's records, the store's winning for
//! one open time. This is what the store's packed days do for its rows.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use ck_archive::layout::{self, Kind};
use ck_model::{Exchange, Instrument, Interval, Ts};

use super::files;
use crate::{CandleRecords, Error, RecordForm};

/// Bytes of cached days kept, at most.
const CACHE_BYTES: usize = 96 << 20;
/// zstd level of cached records: fast to write, a tenth of the JSON.
const LEVEL: i32 = 1;

/// One archived day's records of one interval, in one form.
pub(super) struct DayRecords {
    stamp: (u64, Option<SystemTime>),
    /// The records ([`CandleRecords::bytes`]), compressed.
    bytes: Vec<u8>,
    bytes_len: usize,
    open_times: Vec<i64>,
    ends: Vec<u32>,
}

impl DayRecords {
    /// How many records.
    pub(super) fn len(&self) -> usize {
        self.open_times.len()
    }

    fn bytes(&self) -> usize {
        self.bytes.len() + self.open_times.len() * 12 + 64
    }
}

/// A cached day: its file, interval and form.
type DayKey = (PathBuf, Interval, RecordForm);

/// The cache (module docs).
#[derive(Default)]
pub(super) struct RecordsCache {
    days: HashMap<DayKey, Arc<DayRecords>>,
    order: VecDeque<DayKey>,
    bytes: usize,
}

impl RecordsCache {
    fn get(&self, key: &DayKey, stamp: &(u64, Option<SystemTime>)) -> Option<Arc<DayRecords>> {
        self.days.get(key).filter(|d| d.stamp == *stamp).cloned()
    }

    fn put(&mut self, key: DayKey, day: Arc<DayRecords>) {
        self.bytes += day.bytes();
        if let Some(old) = self.days.insert(key.clone(), day) {
            self.bytes -= old.bytes();
        } else {
            self.order.push_back(key);
        }
        while self.bytes > CACHE_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.days.remove(&oldest) {
                self.bytes -= gone.bytes();
            }
        }
    }
}

/// The file's size and modification time.
fn stamp(file: &Path) -> Result<(u64, Option<SystemTime>), Error> {
    let meta = std::fs::metadata(file).map_err(|source| Error::Io {
        path: file.display().to_string(),
        source,
    })?;
    Ok((meta.len(), meta.modified().ok()))
}

/// A day's records of `interval` in `form` from the cache, or read and
/// cached.
pub(super) fn day_records(
    cache: &Mutex<RecordsCache>,
    root: &Path,
    (kind, exchange, instrument): (Kind, Exchange, &Instrument),
    (interval, form): (Interval, RecordForm),
    day: i64,
) -> Result<Option<Arc<DayRecords>>, Error> {
    let file = layout::day_file(root, kind, exchange, instrument, day);
    let stamp = match stamp(&file) {
        Ok(s) => s,
        // Retention or a pass removed it since it was listed.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let key = (file, interval, form);
    if let Some(day) = lock(cache).get(&key, &stamp) {
        return Ok(Some(day));
    }
    let (start, end) = files::day_span(day);
    let candles = ck_archive::candles::read_candles_of(&key.0, interval, start, end)
        .map_err(Error::Archive)?
        .candles;
    let mut records = CandleRecords::new(form, candles.len());
    for c in &candles {
        records.push_candle(c);
    }
    let bytes = zstd::bulk::compress(&records.bytes, LEVEL).map_err(|source| Error::Io {
        path: "archived candle records".to_owned(),
        source,
    })?;
    let day = Arc::new(DayRecords {
        stamp,
        bytes,
        bytes_len: records.bytes.len(),
        open_times: records.open_times.iter().map(|t| t.0).collect(),
        ends: records
            .ends
            .iter()
            .map(|&e| u32::try_from(e).unwrap_or(u32::MAX))
            .collect(),
    });
    lock(cache).put(key, day.clone());
    Ok(Some(day))
}

fn lock(cache: &Mutex<RecordsCache>) -> std::sync::MutexGuard<'_, RecordsCache> {
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records in `[from, to)` of archived `days` (in reading order) merged
/// with the store's `hot` records (in the same order and form), the
/// store's record winning for one open time; at most `limit`.
pub(super) fn merge(
    days: &[Arc<DayRecords>],
    hot: &CandleRecords,
    (from, to): (Ts, Ts),
    limit: usize,
    newest_first: bool,
) -> Result<CandleRecords, Error> {
    let form = hot.form;
    let mut out = CandleRecords::new(form, limit.min(hot.len() + 1_440 * days.len()));
    let mut h = 0;
    let before = |a: i64, b: i64| if newest_first { a > b } else { a < b };
    let hot_record = |i: usize| hot.record(i);
    let mut unpack = zstd::bulk::Decompressor::new().map_err(|source| Error::Io {
        path: "archived candle records".to_owned(),
        source,
    })?;
    for day in days {
        let bytes = unpack
            .decompress(&day.bytes, day.bytes_len)
            .map_err(|source| Error::Io {
                path: "archived candle records".to_owned(),
                source,
            })?;
        let n = day.open_times.len();
        // The whole day, when it lies in the range, fits the limit and no
        // record of the store falls in it: appended at once.
        if let (false, Some(&first), Some(&last)) =
            (newest_first, day.open_times.first(), day.open_times.last())
            && first >= from.0
            && last < to.0
        {
            while h < hot.len() && hot.open_times[h].0 < first && out.len() < limit {
                out.push(hot.open_times[h], |o| o.extend_from_slice(hot_record(h)));
                h += 1;
            }
            if out.len() >= limit {
                return Ok(out);
            }
            if hot.open_times.get(h).is_none_or(|t| t.0 > last) && out.len() + n <= limit {
                let base = out.bytes.len();
                out.bytes.extend_from_slice(&bytes);
                out.ends.extend(day.ends.iter().map(|&e| base + e as usize));
                out.open_times.extend(day.open_times.iter().map(|&t| Ts(t)));
                continue;
            }
        }
        let order: Box<dyn Iterator<Item = usize>> = if newest_first {
            Box::new((0..n).rev())
        } else {
            Box::new(0..n)
        };
        for i in order {
            if out.len() >= limit {
                return Ok(out);
            }
            let at = day.open_times[i];
            if at < from.0 || at >= to.0 {
                continue;
            }
            // The store's records that come first.
            while h < hot.len() && before(hot.open_times[h].0, at) {
                out.push(hot.open_times[h], |o| o.extend_from_slice(hot_record(h)));
                h += 1;
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            if h < hot.len() && hot.open_times[h].0 == at {
                out.push(hot.open_times[h], |o| o.extend_from_slice(hot_record(h)));
                h += 1;
                continue;
            }
            let start = if i == 0 { 0 } else { day.ends[i - 1] as usize };
            let end = day.ends[i] as usize;
            let record = bytes.get(start + form.lead()..end).ok_or(Error::Corrupt {
                what: "archived candle records",
                value: format!("record {i} at {start}..{end} of {}", bytes.len()),
            })?;
            out.push(Ts(at), |o| o.extend_from_slice(record));
        }
    }
    while h < hot.len() && out.len() < limit {
        out.push(hot.open_times[h], |o| o.extend_from_slice(hot_record(h)));
        h += 1;
    }
    Ok(out)
}
