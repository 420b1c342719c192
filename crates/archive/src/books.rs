//! One instrument's order book as Parquet files (and, at a cadence, its
//! best levels alone: [`BookFile::Top`]): every level change of
//! every delta applied ([`BookFile::Deltas`], kind `book_deltas`), and every
//! level of the whole book at each snapshot ([`BookFile::Snapshots`], kind
//! `book_snapshots`: at the start, after each resync, and at a cadence), so
//! that the exact book at any instant is its last snapshot before it and
//! the deltas after that snapshot. One schema for both:
//!
//! ```text
//! message candlekeep_book_deltas {
//!   REQUIRED INT64 ts_received (TIMESTAMP(NANOS,true));   -- delta-encoded
//!   OPTIONAL INT64 ts_exchange (TIMESTAMP(NANOS,true));   -- delta-encoded
//!   REQUIRED INT64 message;                               -- delta-encoded
//!   REQUIRED BYTE_ARRAY side (STRING);                    -- dictionary: bid, ask
//!   REQUIRED INT64 price (DECIMAL(18,P));                 -- dictionary
//!   REQUIRED INT64 size (DECIMAL(18,S));                  -- dictionary
//! }
//! ```
//!
//! `message` numbers the venue's messages of the instrument in the order
//! they were applied; the rows of one message share it, in the message's
//! order (a price set twice in one message keeps the last). A size of zero
//! in a delta removes the level. Rows are kept in the order written, which
//! is the order of `message`. Decimals widen to 16-byte `DECIMAL(38, s)`
//! where a value needs it, as in [`crate::trades`]. Prices are
//! dictionary-encoded, not delta-encoded as trades' are: a book's changes
//! come back to the same few hundred prices, and move between bids and
//! asks (5.0 bytes a delta row against 6.6 on hftbacktest's BTCUSDT
//! depth).

use std::path::{Path, PathBuf};

use ck_model::{Decimal, Exchange, Instrument, Ts};

use crate::Error;
use crate::columns::{Column, DecimalShape, Enc, Values, read_file_span};

/// Which of the two book files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookFile {
    /// Every level change of every delta.
    Deltas,
    /// Every level of each snapshot.
    Snapshots,
    /// The best levels a side at a fixed cadence (`book_top`), for those
    /// who want only those.
    Top,
}

impl BookFile {
    /// The kind's name: `book_deltas` or `book_snapshots`.
    #[must_use]
    pub const fn kind(self) -> &'static str {
        match self {
            BookFile::Deltas => "book_deltas",
            BookFile::Snapshots => "book_snapshots",
            BookFile::Top => "book_top",
        }
    }
}

/// One level of one book message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookRow {
    /// When candlekeep received the message.
    pub ts_received: Ts,
    /// The venue's time of the message, where it sends one.
    pub ts_exchange: Option<Ts>,
    /// The message's number (module docs).
    pub message: i64,
    /// True for a bid, false for an ask.
    pub bid: bool,
    /// The price.
    pub price: Decimal,
    /// The size now at that price (zero in a delta: removed).
    pub size: Decimal,
}

/// One instrument's book rows read back.
#[derive(Debug, Clone, PartialEq)]
pub struct BookRows {
    /// The venue.
    pub exchange: Exchange,
    /// The instrument.
    pub instrument: Instrument,
    /// The rows, in the order written.
    pub rows: Vec<BookRow>,
}

/// What a book file must be able to hold: the prices' and sizes' shapes,
/// learnt from its rows before they are written.
#[derive(Debug, Clone, PartialEq)]
pub struct BookShape {
    exchange: Exchange,
    instrument: Instrument,
    prices: DecimalShape,
    sizes: DecimalShape,
}

impl BookShape {
    /// The shape of no rows yet.
    #[must_use]
    pub fn new(exchange: Exchange, instrument: &Instrument) -> BookShape {
        BookShape {
            exchange,
            instrument: instrument.clone(),
            prices: DecimalShape::default(),
            sizes: DecimalShape::default(),
        }
    }

    /// Takes `row` into account.
    pub fn observe(&mut self, row: &BookRow) {
        self.prices.observe(row.price);
        self.sizes.observe(row.size);
    }

    fn columns(&self, rows: &[&BookRow]) -> Result<Vec<Column>, String> {
        Ok(vec![
            Column::times("ts_received", rows.iter().map(|r| r.ts_received.0)),
            Column {
                name: "ts_exchange",
                logical: "TIMESTAMP(NANOS,true)".into(),
                optional: true,
                enc: Enc::Delta,
                values: Values::I64(rows.iter().map(|r| r.ts_exchange.map(|t| t.0)).collect()),
            },
            Column {
                name: "message",
                logical: String::new(),
                optional: false,
                enc: Enc::Delta,
                values: Values::I64(rows.iter().map(|r| Some(r.message)).collect()),
            },
            Column::words(
                "side",
                rows.iter().map(|r| if r.bid { "bid" } else { "ask" }),
            ),
            Column::decimals_as(
                "price",
                false,
                Enc::Dictionary,
                self.prices,
                rows.iter().map(|r| Some(r.price)),
            )?,
            Column::decimals_as(
                "size",
                false,
                Enc::Dictionary,
                self.sizes,
                rows.iter().map(|r| Some(r.size)),
            )?,
        ])
    }
}

crate::columns::batch_writer!(
    /// A file of book deltas written a batch at a time, in the order given.
    BookDeltaWriter,
    BookShape,
    BookRow,
    "book_deltas"
);

crate::columns::batch_writer!(
    /// A file of book snapshots written a batch at a time, in the order given.
    BookSnapshotWriter,
    BookShape,
    BookRow,
    "book_snapshots"
);

crate::columns::batch_writer!(
    /// A file of a book's best levels at a cadence, written a batch at a time.
    BookTopWriter,
    BookShape,
    BookRow,
    "book_top"
);

/// Writes `rows` (one exchange and instrument, in message order) to `path`
/// as a file of `file`'s kind, and fsyncs it.
///
/// # Errors
/// When the file cannot be written, or a value has no exact representation.
pub fn write_book_rows(
    path: &Path,
    file: BookFile,
    (exchange, instrument): (Exchange, &Instrument),
    rows: &[BookRow],
) -> Result<crate::Written, Error> {
    let mut shape = BookShape::new(exchange, instrument);
    for r in rows {
        shape.observe(r);
    }
    match file {
        BookFile::Deltas => {
            let mut w = BookDeltaWriter::create(path, shape)?;
            w.write(rows)?;
            w.finish()
        }
        BookFile::Snapshots => {
            let mut w = BookSnapshotWriter::create(path, shape)?;
            w.write(rows)?;
            w.finish()
        }
        BookFile::Top => {
            let mut w = BookTopWriter::create(path, shape)?;
            w.write(rows)?;
            w.finish()
        }
    }
}

/// Reads a file [`write_book_rows`] wrote as `file`'s kind.
///
/// # Errors
/// When the file cannot be read, or is not such a file.
pub fn read_book_rows(path: &Path, file: BookFile) -> Result<BookRows, Error> {
    let data = read_file_span(path, file.kind(), None)?;
    let not = |why: String| Error::NotArchive {
        path: path.to_owned(),
        kind: file.kind(),
        why,
    };
    let (exchange, instrument) = data.owner().map_err(not)?;
    let ts_received = data.ints("ts_received").map_err(not)?;
    let ts_exchange = data.ints("ts_exchange").map_err(not)?;
    let message = data.ints("message").map_err(not)?;
    let side = data.strings("side").map_err(not)?;
    let price = data.decimals("price").map_err(not)?;
    let size = data.decimals("size").map_err(not)?;
    let mut rows = Vec::with_capacity(data.rows);
    for i in 0..data.rows {
        let missing = || not(format!("row {i} misses a required value"));
        let bid = match side[i].as_deref() {
            Some("bid") => true,
            Some("ask") => false,
            other => return Err(not(format!("row {i}: side {other:?}"))),
        };
        rows.push(BookRow {
            ts_received: Ts(ts_received[i].ok_or_else(missing)?),
            ts_exchange: ts_exchange[i].map(Ts),
            message: message[i].ok_or_else(missing)?,
            bid,
            price: price[i].ok_or_else(missing)?,
            size: size[i].ok_or_else(missing)?,
        });
    }
    Ok(BookRows {
        exchange,
        instrument,
        rows,
    })
}

/// The exact book at `at` (by receive time) from one instrument's rows:
/// the last snapshot received at or before `at`, then every delta after it
/// (a higher message number) received at or before `at`, in order.
/// `None` when no snapshot was received by then.
///
/// # Errors
/// A row the book cannot hold (more than 18 significant digits).
pub fn book_at(
    snapshots: &[BookRow],
    deltas: &[BookRow],
    at: Ts,
) -> Result<Option<ck_book::Book>, ck_book::BookError> {
    let Some(last) = snapshots
        .iter()
        .filter(|r| r.ts_received <= at)
        .map(|r| r.message)
        .max()
    else {
        return Ok(None);
    };
    let mut book = ck_book::Book::new();
    let levels: Vec<_> = snapshots
        .iter()
        .filter(|r| r.message == last)
        .map(|r| Ok((side(r), fixed(r.price)?, fixed(r.size)?)))
        .collect::<Result<_, ck_book::BookError>>()?;
    book.load(levels)?;
    for r in deltas
        .iter()
        .skip_while(|r| r.message <= last)
        .take_while(|r| r.ts_received <= at)
    {
        book.apply(side(r), fixed(r.price)?, fixed(r.size)?)?;
    }
    Ok(Some(book))
}

fn side(r: &BookRow) -> ck_book::BookSide {
    r.side()
}

/// A decimal as a book number.
fn fixed(d: Decimal) -> Result<ck_book::Fixed, ck_book::BookError> {
    i64::try_from(d.mantissa())
        .map(|m| ck_book::Fixed::new(m, d.scale()))
        .map_err(|_| ck_book::BookError::TooPrecise(d.to_string()))
}

impl BookRow {
    /// The row's side of the book.
    #[must_use]
    pub fn side(&self) -> ck_book::BookSide {
        if self.bid {
            ck_book::BookSide::Bid
        } else {
            ck_book::BookSide::Ask
        }
    }

    /// The row as a book level: side, price and size.
    ///
    /// # Errors
    /// A number the book cannot hold (more than 18 significant digits).
    pub fn level(
        &self,
    ) -> Result<(ck_book::BookSide, ck_book::Fixed, ck_book::Fixed), ck_book::BookError> {
        Ok((self.side(), fixed(self.price)?, fixed(self.size)?))
    }
}

/// One part of a book's recorded files: a `book_snapshots` file and a
/// `book_deltas` file of one name, `part-<from>-<to>.parquet` (receive
/// times in ns, 19 digits), in the folder of the UTC day of `from`. A part
/// begins with a snapshot at `from`, and the book is known from its rows
/// until `to`; a time in no part is a time the book was unknown (an
/// incident, a lost connection, before capture). A part being written is
/// `part-<from>.parquet.partial`, which readers pass over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookPart {
    /// When its first snapshot was received.
    pub from: Ts,
    /// Until when the book is known from it.
    pub to: Ts,
    /// Its snapshots file.
    pub snapshots: PathBuf,
    /// Its deltas file.
    pub deltas: PathBuf,
    /// Its file of the best levels at a cadence, if it was written.
    pub top: Option<PathBuf>,
}

/// The folder of one day of one instrument's book files of `file`'s kind.
#[must_use]
pub fn book_day_dir(
    root: &Path,
    file: BookFile,
    exchange: Exchange,
    instrument: &Instrument,
    day: i64,
) -> PathBuf {
    crate::layout::instrument_dir_named(root, file.kind(), exchange, instrument)
        .join(format!("date={}", crate::layout::date_text(day)))
}

/// The name of a finished part.
#[must_use]
pub fn part_name(from: Ts, to: Ts) -> String {
    format!("part-{:019}-{:019}.parquet", from.0, to.0)
}

/// The name of a part being written.
#[must_use]
pub fn open_part_name(from: Ts) -> String {
    format!("part-{:019}.parquet.partial", from.0)
}

pub(crate) fn parse_part_name(name: &str) -> Option<(Ts, Ts)> {
    let (from, to) = name
        .strip_prefix("part-")?
        .strip_suffix(".parquet")?
        .split_once('-')?;
    Some((Ts(from.parse().ok()?), Ts(to.parse().ok()?)))
}

/// The finished parts of one day of one instrument's book, by `from`:
/// those whose snapshots and deltas files are both there.
///
/// # Errors
/// When a folder cannot be read.
pub fn book_parts(
    root: &Path,
    exchange: Exchange,
    instrument: &Instrument,
    day: i64,
) -> Result<Vec<BookPart>, Error> {
    let snapshots_dir = book_day_dir(root, BookFile::Snapshots, exchange, instrument, day);
    let deltas_dir = book_day_dir(root, BookFile::Deltas, exchange, instrument, day);
    let entries = match std::fs::read_dir(&snapshots_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: snapshots_dir,
                source,
            });
        }
    };
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: snapshots_dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        let Some((from, to)) = name.to_str().and_then(parse_part_name) else {
            continue;
        };
        let deltas = deltas_dir.join(&name);
        if deltas.exists() {
            let top = book_day_dir(root, BookFile::Top, exchange, instrument, day).join(&name);
            parts.push(BookPart {
                from,
                to,
                snapshots: entry.path(),
                deltas,
                top: top.exists().then_some(top),
            });
        }
    }
    parts.sort_by_key(|p| p.from);
    Ok(parts)
}

/// The part that knows the book at `at`: the latest with `from <= at <=
/// to`, looked for in the day of `at` and the day before (a part lasts at
/// most a day: it ends at the first snapshot past its span).
///
/// # Errors
/// When a folder cannot be read.
pub fn book_part_at(
    root: &Path,
    exchange: Exchange,
    instrument: &Instrument,
    at: Ts,
) -> Result<Option<BookPart>, Error> {
    let day = crate::layout::day_of(at);
    for d in [day, day - 1] {
        let found = book_parts(root, exchange, instrument, d)?
            .into_iter()
            .rev()
            .find(|p| p.from <= at && at <= p.to);
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The last finished part of an instrument's book (the latest `from`).
///
/// # Errors
/// When a folder cannot be read.
pub fn latest_book_part(
    root: &Path,
    exchange: Exchange,
    instrument: &Instrument,
) -> Result<Option<BookPart>, Error> {
    let dir =
        crate::layout::instrument_dir_named(root, BookFile::Snapshots.kind(), exchange, instrument);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path: dir, source }),
    };
    let mut days: Vec<i64> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            crate::layout::parse_date(name.to_str()?.strip_prefix("date=")?)
        })
        .collect();
    days.sort_unstable();
    for day in days.into_iter().rev() {
        if let Some(last) = book_parts(root, exchange, instrument, day)?.pop() {
            return Ok(Some(last));
        }
    }
    Ok(None)
}

/// The exact book at `at` from the archive under `root`, with the part it
/// came from; `None` when the book was unknown then.
///
/// # Errors
/// When a file cannot be read, or holds a row the book cannot.
pub fn archived_book_at(
    root: &Path,
    exchange: Exchange,
    instrument: &Instrument,
    at: Ts,
) -> Result<Option<(ck_book::Book, BookPart)>, Error> {
    let Some(part) = book_part_at(root, exchange, instrument, at)? else {
        return Ok(None);
    };
    let snapshots = read_book_rows(&part.snapshots, BookFile::Snapshots)?;
    let deltas = read_book_rows(&part.deltas, BookFile::Deltas)?;
    let book = book_at(&snapshots.rows, &deltas.rows, at).map_err(|e| Error::NotArchive {
        path: part.deltas.clone(),
        kind: BookFile::Deltas.kind(),
        why: e.to_string(),
    })?;
    Ok(book.map(|b| (b, part)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(t: &str) -> Decimal {
        Decimal::parse(t).expect(t)
    }

    #[test]
    fn book_rows_round_trip_exactly_in_their_order() {
        let instrument = Instrument::parse("BTC-USDT").expect("instrument");
        let mut rows = Vec::new();
        for m in 0..50_000i64 {
            rows.push(BookRow {
                ts_received: Ts(1_723_161_600_000_000_000 + m * 100_000_000),
                ts_exchange: (m % 7 != 0).then(|| Ts(1_723_161_600_000_000_000 + m * 99_000_000)),
                message: m / 3,
                bid: m % 2 == 0,
                price: Decimal::new(6_000_000 + i128::from(m % 500) - 250, 2),
                size: if m % 5 == 0 {
                    d("0")
                } else {
                    Decimal::new(i128::from(m % 97), 4)
                },
            });
        }
        // A wide price and a size of another scale.
        rows[10].price = d("12345678901234567.8901");
        rows[11].size = d("0.000000001");
        let dir = tempfile::tempdir().expect("dir");
        for file in [BookFile::Deltas, BookFile::Snapshots] {
            let path = dir.path().join(format!("{}.parquet", file.kind()));
            write_book_rows(&path, file, (Exchange::Binance, &instrument), &rows).expect("written");
            let back = read_book_rows(&path, file).expect("read");
            assert_eq!(
                (back.exchange, &back.instrument),
                (Exchange::Binance, &instrument)
            );
            assert_eq!(back.rows, rows, "{file:?}");
            let other = match file {
                BookFile::Deltas => BookFile::Snapshots,
                BookFile::Snapshots | BookFile::Top => BookFile::Deltas,
            };
            assert!(read_book_rows(&path, other).is_err(), "the kind is checked");
        }
    }
}
