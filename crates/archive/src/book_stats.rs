//! One instrument's book statistics at every second (`book_stats`): the
//! best bid and ask with their sizes, and the depth within 10, 50 and 100
//! basis points of the mid on each side, all exact. Mid, spread,
//! microprice and imbalance follow from these exactly
//! ([`ck_book::stats::BookStats::from_top`]), so they are not stored.
//!
//! A row at second `t` is the book after every message received at or
//! before `t`. Files sit beside the book's parts
//! (`book_stats/exchange=/instrument=/date=/part-<from>-<to>.parquet`, the
//! same name as the part they were sampled from), and hold a row for each
//! whole second within the part's span at which both sides had a level.
//!
//! ```text
//! message candlekeep_book_stats {
//!   REQUIRED INT64 time (TIMESTAMP(NANOS,true));   -- delta-encoded
//!   REQUIRED INT64 best_bid (DECIMAL(18,P));       -- and best_ask
//!   REQUIRED INT64 bid_size (DECIMAL(18,S));       -- and ask_size,
//!   REQUIRED INT64 bid_depth_10bps (DECIMAL(18,S)); -- 50, 100; asks alike
//! }
//! ```

use std::path::{Path, PathBuf};

use ck_book::Fixed;
use ck_book::stats::BookStats;
use ck_model::{Decimal, Exchange, Instrument, Ts};

use crate::Error;
use crate::columns::{Column, DecimalShape, Enc, read_file_span};

/// The kind's name.
pub const KIND: &str = "book_stats";

/// The book's statistics at one second.
#[derive(Debug, Clone, PartialEq)]
pub struct BookStatsRow {
    /// The second (ns since the epoch, a multiple of 10^9).
    pub time: Ts,
    /// The book's statistics then.
    pub stats: BookStats,
}

const DEPTHS: [[&str; 3]; 2] = [
    ["bid_depth_10bps", "bid_depth_50bps", "bid_depth_100bps"],
    ["ask_depth_10bps", "ask_depth_50bps", "ask_depth_100bps"],
];

/// The shape of a file of rows, learnt from them.
#[derive(Debug, Clone)]
pub struct BookStatsShape {
    exchange: Exchange,
    instrument: Instrument,
    prices: DecimalShape,
    sizes: DecimalShape,
}

fn decimal(f: Fixed) -> Decimal {
    Decimal::new(i128::from(f.mantissa), f.scale)
}

fn fixed(d: Decimal) -> Option<Fixed> {
    i64::try_from(d.mantissa())
        .ok()
        .map(|m| Fixed::new(m, d.scale()))
}

impl BookStatsShape {
    /// The shape that holds every row of `rows`.
    #[must_use]
    pub fn of(exchange: Exchange, instrument: &Instrument, rows: &[BookStatsRow]) -> Self {
        let mut shape = BookStatsShape {
            exchange,
            instrument: instrument.clone(),
            prices: DecimalShape::default(),
            sizes: DecimalShape::default(),
        };
        for r in rows {
            let s = &r.stats;
            shape.prices.observe(decimal(s.best_bid));
            shape.prices.observe(decimal(s.best_ask));
            for size in [s.bid_size, s.ask_size]
                .into_iter()
                .chain(s.bid_depth)
                .chain(s.ask_depth)
            {
                shape.sizes.observe(decimal(size));
            }
        }
        shape
    }

    fn columns(&self, rows: &[&BookStatsRow]) -> Result<Vec<Column>, String> {
        let price = |name, get: fn(&BookStats) -> Fixed| {
            Column::decimals_as(
                name,
                false,
                Enc::Delta,
                self.prices,
                rows.iter().map(|r| Some(decimal(get(&r.stats)))),
            )
        };
        let size = |name, get: &dyn Fn(&BookStats) -> Fixed| {
            Column::decimals_as(
                name,
                false,
                Enc::Dictionary,
                self.sizes,
                rows.iter().map(|r| Some(decimal(get(&r.stats)))),
            )
        };
        let mut columns = vec![
            Column::times("time", rows.iter().map(|r| r.time.0)),
            price("best_bid", |s| s.best_bid)?,
            price("best_ask", |s| s.best_ask)?,
            size("bid_size", &|s| s.bid_size)?,
            size("ask_size", &|s| s.ask_size)?,
        ];
        for (band, [bid, ask]) in [0, 1, 2].map(|i| (i, [DEPTHS[0][i], DEPTHS[1][i]])) {
            columns.push(size(bid, &|s| s.bid_depth[band])?);
            columns.push(size(ask, &|s| s.ask_depth[band])?);
        }
        Ok(columns)
    }
}

crate::columns::batch_writer!(
    /// A file of a book's statistics at every second.
    BookStatsWriter,
    BookStatsShape,
    BookStatsRow,
    "book_stats"
);

/// Writes `rows` (in time order) to `path` and fsyncs it.
///
/// # Errors
/// When the file cannot be written.
pub fn write_book_stats(
    path: &Path,
    (exchange, instrument): (Exchange, &Instrument),
    rows: &[BookStatsRow],
) -> Result<crate::Written, Error> {
    let mut w = BookStatsWriter::create(path, BookStatsShape::of(exchange, instrument, rows))?;
    w.write(rows)?;
    w.finish()
}

/// Reads a file [`write_book_stats`] wrote.
///
/// # Errors
/// When the file cannot be read, or is not such a file.
pub fn read_book_stats(path: &Path) -> Result<Vec<BookStatsRow>, Error> {
    let data = read_file_span(path, KIND, None)?;
    let not = |why: String| Error::NotArchive {
        path: path.to_owned(),
        kind: KIND,
        why,
    };
    let time = data.ints("time").map_err(not)?;
    let column = |name: &str| data.decimals(name).map_err(not);
    let (best_bid, best_ask) = (column("best_bid")?, column("best_ask")?);
    let (bid_size, ask_size) = (column("bid_size")?, column("ask_size")?);
    let bid_depth = [
        column(DEPTHS[0][0])?,
        column(DEPTHS[0][1])?,
        column(DEPTHS[0][2])?,
    ];
    let ask_depth = [
        column(DEPTHS[1][0])?,
        column(DEPTHS[1][1])?,
        column(DEPTHS[1][2])?,
    ];
    let mut rows = Vec::with_capacity(data.rows);
    for i in 0..data.rows {
        let bad = || not(format!("row {i} misses a value or holds one out of range"));
        let at = |c: &[Option<Decimal>]| c[i].and_then(fixed).ok_or_else(bad);
        let depths = |c: &[Vec<Option<Decimal>>; 3]| -> Result<[Fixed; 3], Error> {
            Ok([at(&c[0])?, at(&c[1])?, at(&c[2])?])
        };
        let stats = BookStats::from_top(
            (at(&best_bid)?, at(&bid_size)?),
            (at(&best_ask)?, at(&ask_size)?),
            depths(&bid_depth)?,
            depths(&ask_depth)?,
        )
        .ok_or_else(bad)?;
        rows.push(BookStatsRow {
            time: Ts(time[i].ok_or_else(bad)?),
            stats,
        });
    }
    Ok(rows)
}

/// The folder of one day of an instrument's book statistics.
#[must_use]
pub fn book_stats_day_dir(
    root: &Path,
    exchange: Exchange,
    instrument: &Instrument,
    day: i64,
) -> PathBuf {
    crate::layout::instrument_dir_named(root, KIND, exchange, instrument)
        .join(format!("date={}", crate::layout::date_text(day)))
}

/// Every stored row with `from <= time <= to`, in time order, from the
/// finished parts' files.
///
/// # Errors
/// When a folder or a file cannot be read.
pub fn book_stats_between(
    root: &Path,
    exchange: Exchange,
    instrument: &Instrument,
    from: Ts,
    to: Ts,
) -> Result<Vec<BookStatsRow>, Error> {
    let mut rows = Vec::new();
    if to < from {
        return Ok(rows);
    }
    // A part lasts at most a day, in the folder of the day it began.
    let (first, last) = (crate::layout::day_of(from) - 1, crate::layout::day_of(to));
    let base = crate::layout::instrument_dir_named(root, KIND, exchange, instrument);
    let mut days: Vec<i64> = match std::fs::read_dir(&base) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                crate::layout::parse_date(name.to_str()?.strip_prefix("date=")?)
            })
            .filter(|d| (first..=last).contains(d))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(rows),
        Err(source) => return Err(Error::Io { path: base, source }),
    };
    days.sort_unstable();
    for day in days {
        let dir = book_stats_day_dir(root, exchange, instrument, day);
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let mut files: Vec<(Ts, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some((a, b)) = name.to_str().and_then(crate::books::parse_part_name) else {
                continue;
            };
            if a <= to && from <= b {
                files.push((a, entry.path()));
            }
        }
        files.sort();
        for (_, path) in files {
            rows.extend(
                read_book_stats(&path)?
                    .into_iter()
                    .filter(|r| from <= r.time && r.time <= to),
            );
        }
    }
    rows.sort_by_key(|r| r.time);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(t: &str) -> Fixed {
        Fixed::parse(t.as_bytes()).expect(t)
    }

    #[test]
    fn stats_rows_round_trip_exactly_and_are_found_by_time() {
        let dir = tempfile::tempdir().expect("dir");
        let (e, i) = (
            Exchange::Binance,
            Instrument::parse("BTC-USDT").expect("instrument"),
        );
        let row = |sec: i64, bid: &str, ask: &str, depth: &str| BookStatsRow {
            time: Ts(sec * 1_000_000_000),
            stats: BookStats::from_top(
                (f(bid), f("1.5")),
                (f(ask), f("0.25")),
                [f(depth), f("1234567890.12345678"), f("3")],
                [f("1"), f("2"), f(depth)],
            )
            .expect("stats"),
        };
        let day = 20_000 * 86_400;
        let rows = vec![
            row(day + 10, "100.5", "100.75", "7"),
            row(day + 11, "100.25", "101", "0.001"),
        ];
        let part = crate::books::part_name(
            Ts((day + 10) * 1_000_000_000),
            Ts((day + 12) * 1_000_000_000),
        );
        let folder = book_stats_day_dir(dir.path(), e, &i, day / 86_400);
        std::fs::create_dir_all(&folder).expect("mkdir");
        write_book_stats(&folder.join(part), (e, &i), &rows).expect("write");
        let all = book_stats_between(dir.path(), e, &i, Ts(0), Ts(i64::MAX)).expect("read");
        let norm = |rows: &[BookStatsRow]| -> Vec<(Ts, BookStats)> {
            rows.iter()
                .map(|r| (r.time, r.stats.normalized()))
                .collect()
        };
        assert_eq!(
            norm(&all),
            norm(&rows),
            "equal numbers, trailing zeros aside"
        );
        assert_eq!(
            all[1].stats.mid.normalized(),
            f("100.625"),
            "mid from the stored top"
        );
        let one = book_stats_between(
            dir.path(),
            e,
            &i,
            Ts((day + 11) * 1_000_000_000),
            Ts((day + 20) * 1_000_000_000),
        )
        .expect("read");
        assert_eq!(norm(&one), norm(&rows[1..]));
    }
}
