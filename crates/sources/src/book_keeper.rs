//! One connection's books, kept and recorded: each raw message goes
//! through the venue's [`BookReader`] and each book's [`BookSync`]; what
//! was applied comes out as rows for the archive's book files
//! ([`ck_archive::books`]), what found a book wrong as an incident.
//!
//! - Every message applied gets the next number of its book (the
//!   `message` column), so the rows of a book, snapshots and deltas alike,
//!   are in one order.
//! - A venue's snapshot is recorded as the book it made: its levels, cut
//!   to depth where the venue's book is, with any diffs held while it was
//!   awaited applied after it (setting a level is idempotent, so the
//!   recorded book is exactly the live one).
//! - A delta is recorded as its changes, plus a removal for each level the
//!   cut to depth dropped after it.
//! - At the cadence (default every 10 minutes of receive time) the whole
//!   book is recorded again as a snapshot after a delta, with that delta's
//!   number, so a book at any instant is rebuilt from a snapshot at most
//!   that old and the deltas after it ([`ck_archive::books::book_at`]).
//! - After an incident a book records nothing until its next snapshot.

use std::collections::HashMap;

use ck_archive::books::{BookFile, BookRow};
use ck_book::sync::{BookMessage, BookSync, Incident, MessageKind, Outcome, State};
use ck_book::{Book, BookSide, Fixed};
use ck_bus::RawMessage;
use ck_model::{Decimal, Exchange, Ts};

use crate::book::{BookReader, SymbolBook, book_reader_for};
use crate::parse::ParseError;

/// The default cadence of recorded snapshots: 10 minutes.
pub const SNAPSHOT_EVERY_NS: i64 = 600 * 1_000_000_000;

/// What keeping the books gave.
#[derive(Debug, Clone, PartialEq)]
pub enum BookOutput {
    /// Rows for one of a book's files, in order.
    Rows {
        /// The venue's symbol.
        symbol: String,
        /// Snapshots or deltas.
        file: BookFile,
        /// The rows.
        rows: Vec<BookRow>,
    },
    /// A diff of a book that waits for its snapshot was held: where the
    /// snapshot comes from REST, it is time to ask for it.
    Held {
        /// The venue's symbol.
        symbol: String,
    },
    /// A book was found wrong: invalid until its next snapshot.
    Incident {
        /// The venue's symbol.
        symbol: String,
        /// When (receive time of the message that showed it).
        at: Ts,
        /// Why.
        incident: Incident,
    },
}

/// One book and what is recorded of it.
#[derive(Debug)]
struct Kept {
    sync: BookSync,
    /// The last message number given.
    message: i64,
    /// Receive time of the last snapshot recorded.
    last_snapshot: Option<Ts>,
    /// Receive time of the last rows recorded.
    last_at: Ts,
}

/// One connection's books (module docs).
pub struct BookKeeper {
    reader: Box<dyn BookReader>,
    books: HashMap<String, Kept>,
    cadence: i64,
    read: Vec<SymbolBook>,
}

impl std::fmt::Debug for BookKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BookKeeper")
            .field("books", &self.books.len())
            .finish_non_exhaustive()
    }
}

impl BookKeeper {
    /// The books of one connection to `exchange`, with a snapshot recorded
    /// every `cadence_ns` of receive time; `None` where candlekeep reads
    /// no book of the venue.
    #[must_use]
    pub fn new(exchange: Exchange, cadence_ns: i64) -> Option<BookKeeper> {
        Some(BookKeeper {
            reader: book_reader_for(exchange)?,
            books: HashMap::new(),
            cadence: cadence_ns.max(1),
            read: Vec::new(),
        })
    }

    /// The book of `symbol`, while it is valid.
    #[must_use]
    pub fn book(&self, symbol: &str) -> Option<&Book> {
        self.books
            .get(symbol)
            .filter(|k| k.sync.state() == State::Valid)
            .map(|k| k.sync.book())
    }

    /// Every symbol with a book, valid or waiting.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.books.keys().map(String::as_str)
    }

    /// Takes one raw message; what it gave goes to `out`.
    ///
    /// # Errors
    /// When the message is a book message that cannot be read (nothing is
    /// applied from it).
    pub fn take(&mut self, raw: &RawMessage, out: &mut Vec<BookOutput>) -> Result<(), ParseError> {
        self.read.clear();
        self.reader.read(raw, &mut self.read)?;
        for SymbolBook { symbol, message } in self.read.drain(..) {
            let depth = self.reader.depth(&symbol);
            let kept = self.books.entry(symbol.clone()).or_insert_with(|| Kept {
                sync: BookSync::new(depth),
                message: 0,
                last_snapshot: None,
                last_at: Ts(i64::MIN),
            });
            let time = message.time;
            match kept.sync.on_message(&message) {
                Ok(Outcome::Applied) => {
                    // Rows are in arrival order; their receive times are
                    // kept from going back (a REST answer can be stamped
                    // after frames that came behind it), so that a book at
                    // an instant is the rows up to it.
                    let at = Ts(raw.ts_received.0.max(kept.last_at.0));
                    kept.last_at = at;
                    if message.kind == MessageKind::Snapshot {
                        kept.message += 1;
                        kept.last_snapshot = Some(at);
                        out.push(BookOutput::Rows {
                            symbol: symbol.clone(),
                            file: BookFile::Snapshots,
                            rows: book_rows(kept.sync.book(), usize::MAX, kept.message, at, time),
                        });
                    } else {
                        kept.message += 1;
                        let mut out_rows = rows_of(kept.message, at, &message);
                        // Levels the cut to depth dropped: removed.
                        out_rows.extend(kept.sync.dropped().iter().map(|(side, l)| {
                            row(kept.message, at, time, *side, l.price, Fixed::new(0, 0))
                        }));
                        out.push(BookOutput::Rows {
                            symbol: symbol.clone(),
                            file: BookFile::Deltas,
                            rows: out_rows,
                        });
                        if kept
                            .last_snapshot
                            .is_none_or(|last| at.0.saturating_sub(last.0) >= self.cadence)
                        {
                            kept.last_snapshot = Some(at);
                            out.push(BookOutput::Rows {
                                symbol: symbol.clone(),
                                file: BookFile::Snapshots,
                                rows: book_rows(
                                    kept.sync.book(),
                                    usize::MAX,
                                    kept.message,
                                    at,
                                    time,
                                ),
                            });
                        }
                    }
                }
                Ok(Outcome::Held) => out.push(BookOutput::Held { symbol }),
                Ok(Outcome::Stale | Outcome::Ignored) => {}
                Err(incident) => out.push(BookOutput::Incident {
                    symbol,
                    at: raw.ts_received,
                    incident,
                }),
            }
        }
        Ok(())
    }
}

/// The ingest error of a book message its keeper could not read (counted
/// in `candlekeep_ingest_errors_total`); `None` for text that is not JSON
/// at all, which the normalizer refuses and counts already: one bad frame
/// is one ingest error.
pub(crate) fn unreadable_book_message(
    raw: &RawMessage,
    origin: String,
    error: &ParseError,
) -> Option<ck_bus::Event> {
    let exchange = raw.exchange;
    if serde_json::from_str::<serde::de::IgnoredAny>(&raw.data).is_err() {
        tracing::debug!(%exchange, %error, "book frame not JSON; the parser reports it");
        return None;
    }
    ck_bus::metrics::counter(&format!(
        "candlekeep_ingest_errors_total{{exchange=\"{exchange}\"}}"
    ))
    .inc();
    tracing::warn!(%exchange, %error, "book message unreadable");
    Some(ck_bus::Event::IngestError(ck_bus::IngestError::new(
        Some(exchange),
        origin,
        format!("book message: {error}"),
        &raw.data,
    )))
}

/// A book's incident as the recorder's update, counted in
/// `candlekeep_book_incidents_total`.
pub(crate) fn incident_update(
    exchange: Exchange,
    at: Ts,
    incident: &ck_book::sync::Incident,
) -> crate::live::books::BookUpdate {
    let kind = incident.cause.kind();
    ck_bus::metrics::counter(&format!(
        "candlekeep_book_incidents_total{{exchange=\"{exchange}\",cause=\"{kind}\"}}"
    ))
    .inc();
    crate::live::books::BookUpdate::Incident {
        at,
        kind,
        cause: incident.cause.to_string(),
    }
}

fn rows_of(message: i64, at: Ts, msg: &BookMessage) -> Vec<BookRow> {
    msg.changes
        .iter()
        .map(|c| row(message, at, msg.time, c.side, c.price, c.size))
        .collect()
}

/// The best `depth` levels a side of `book` (every level: `usize::MAX`)
/// as snapshot rows.
pub(crate) fn book_rows(
    book: &Book,
    depth: usize,
    message: i64,
    at: Ts,
    time: Option<i64>,
) -> Vec<BookRow> {
    [BookSide::Bid, BookSide::Ask]
        .into_iter()
        .flat_map(|side| {
            book.levels(side)
                .take(depth)
                .map(move |l| row(message, at, time, side, l.price, l.size))
        })
        .collect()
}

fn row(
    message: i64,
    at: Ts,
    time: Option<i64>,
    side: BookSide,
    price: Fixed,
    size: Fixed,
) -> BookRow {
    BookRow {
        ts_received: at,
        ts_exchange: time.map(Ts),
        message,
        bid: side == BookSide::Bid,
        price: decimal(price),
        size: decimal(size),
    }
}

fn decimal(f: Fixed) -> Decimal {
    Decimal::new(i128::from(f.mantissa), f.scale)
}

#[cfg(test)]
mod tests {
    //! Every venue's recorded book traffic through the keeper, its rows
    //! written to the archive's book files and read back: the book rebuilt
    //! at an instant from them ([`ck_archive::books::book_at`]) is the live
    //! book at that instant, level for level, at thousands of instants.

    use std::collections::HashMap;
    use std::io::Write;

    use ck_archive::books::{BookFile, BookRow, book_at, read_book_rows, write_book_rows};
    use ck_book::{Book, BookSide};
    use ck_model::{Exchange, Instrument, Ts};

    use super::{BookKeeper, BookOutput};
    use crate::recordings::Recording;

    /// A book's levels by value: the archive keeps each value exactly at
    /// its column's scale, not the trailing zeros the venue wrote.
    type Levels = Vec<(bool, String, String)>;

    fn levels(book: &Book) -> Levels {
        [BookSide::Bid, BookSide::Ask]
            .into_iter()
            .flat_map(|side| {
                book.levels(side).map(move |l| {
                    (
                        side == BookSide::Bid,
                        l.price.normalized().text(),
                        l.size.normalized().text(),
                    )
                })
            })
            .collect()
    }

    /// What one recording gave: delta rows, their file's bytes, and the
    /// bytes of the raw messages that gave them (as sent, and zstd level 1
    /// as a tape keeps them).
    struct Recorded {
        deltas: usize,
        delta_bytes: u64,
        raw_bytes: usize,
        raw_zstd: usize,
        checked: usize,
    }

    fn record(exchange: Exchange, file: &str) -> Recorded {
        let path = ck_testkit::fixture(file);
        // A snapshot every 5 s of receive time: many cadence snapshots.
        let mut keeper = BookKeeper::new(exchange, 5_000_000_000).expect("a keeper");
        let mut rows: HashMap<String, (Vec<BookRow>, Vec<BookRow>)> = HashMap::new();
        let mut checkpoints: Vec<(String, Ts, Levels)> = Vec::new();
        let mut pending: Vec<(String, Ts, Levels)> = Vec::new();
        let mut out = Vec::new();
        let mut raw_text = Vec::new();
        let mut now = Ts(i64::MIN);
        for (i, raw) in Recording::open_as(&path, Some(exchange))
            .expect("open")
            .enumerate()
        {
            let raw = raw.expect("line");
            // Receive times as the keeper keeps them: never going back. A
            // book's state counts at an instant once no later message
            // shares that time.
            now = now.max(raw.ts_received);
            for p in pending.drain(..) {
                if now > p.1 {
                    checkpoints.push(p);
                }
            }
            out.clear();
            keeper.take(&raw, &mut out).expect("book message");
            let deltas = |o: &BookOutput| {
                matches!(
                    o,
                    BookOutput::Rows {
                        file: BookFile::Deltas,
                        ..
                    }
                )
            };
            if out.iter().any(deltas) {
                raw_text.extend_from_slice(raw.data.as_bytes());
                raw_text.push(b'\n');
            }
            for o in out.drain(..) {
                match o {
                    BookOutput::Rows {
                        symbol,
                        file,
                        rows: r,
                    } => {
                        let (snapshots, deltas) = rows.entry(symbol).or_default();
                        match file {
                            BookFile::Snapshots => snapshots.extend(r),
                            BookFile::Deltas => deltas.extend(r),
                            BookFile::Top => panic!("the keeper records no top"),
                        }
                    }
                    BookOutput::Incident {
                        symbol, incident, ..
                    } => {
                        panic!("{exchange} {symbol}: {incident}")
                    }
                    BookOutput::Held { .. } => {}
                }
            }
            // Every fifth message, up to 400 instants a recording.
            if i % 5 == 0 && checkpoints.len() + pending.len() < 400 {
                for symbol in keeper.symbols().map(str::to_owned).collect::<Vec<_>>() {
                    if let Some(book) = keeper.book(&symbol) {
                        pending.push((symbol, now, levels(book)));
                    }
                }
            }
        }
        // Through the archive's files and back.
        let dir = tempfile::tempdir().expect("dir");
        let instrument = Instrument::parse("BTC-USD").expect("instrument");
        let mut back: HashMap<String, (Vec<BookRow>, Vec<BookRow>)> = HashMap::new();
        let (mut deltas, mut delta_bytes) = (0, 0);
        for (n, (symbol, (snapshots, delta_rows))) in rows.iter().enumerate() {
            let mut read = |file: BookFile, rows: &[BookRow]| {
                let path = dir.path().join(format!("{n}-{}.parquet", file.kind()));
                let written =
                    write_book_rows(&path, file, (exchange, &instrument), rows).expect("written");
                if file == BookFile::Deltas {
                    delta_bytes += written.bytes;
                }
                read_book_rows(&path, file).expect("read").rows
            };
            let s = read(BookFile::Snapshots, snapshots);
            let d = read(BookFile::Deltas, delta_rows);
            assert_eq!(
                (&s, &d),
                (snapshots, delta_rows),
                "{symbol}: exact round trip"
            );
            deltas += d.len();
            back.insert(symbol.clone(), (s, d));
        }
        for (symbol, at, want) in &checkpoints {
            let (snapshots, deltas) = &back[symbol];
            let book = book_at(snapshots, deltas, *at)
                .expect("rebuilt")
                .expect("a snapshot before");
            assert_eq!(&levels(&book), want, "{exchange} {symbol} at {at}");
        }
        let mut zstd = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("zstd");
        zstd.write_all(&raw_text).expect("compress");
        Recorded {
            deltas,
            delta_bytes,
            raw_bytes: raw_text.len(),
            raw_zstd: zstd.finish().expect("compress").len(),
            checked: checkpoints.len(),
        }
    }

    #[test]
    fn the_book_at_any_instant_is_rebuilt_exactly_from_the_archive() {
        let mut total = (0, 0, 0, 0);
        for (exchange, file) in crate::book::BOOK_RECORDINGS {
            let r = record(exchange, file);
            assert!(r.checked > 10, "{exchange}: {} instants", r.checked);
            assert!(r.deltas > 0, "{exchange}");
            println!(
                "{exchange}: {} instants rebuilt; {} delta rows, {:.1} B each in book_deltas; the messages: {:.1} B a delta row as sent, {:.1} zstd-1",
                r.checked,
                r.deltas,
                r.delta_bytes as f64 / r.deltas as f64,
                r.raw_bytes as f64 / r.deltas as f64,
                r.raw_zstd as f64 / r.deltas as f64
            );
            total.0 += r.deltas;
            total.1 += r.delta_bytes as usize;
            total.2 += r.raw_bytes;
            total.3 += r.raw_zstd;
        }
        println!(
            "all: {} delta rows, {:.1} B each stored; the messages {:.1} B as sent, {:.1} B zstd-1",
            total.0,
            total.1 as f64 / total.0 as f64,
            total.2 as f64 / total.0 as f64,
            total.3 as f64 / total.0 as f64
        );
    }
}
