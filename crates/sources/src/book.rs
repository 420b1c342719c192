//! Book channels: each venue's book messages (WebSocket diffs and
//! snapshots, REST snapshots) read into [`ck_book::sync::BookMessage`]s,
//! which [`ck_book::sync::BookSync`] checks and applies. A venue's reader
//! lives in its folder (`<venue>/book.rs`) and is listed in its
//! [`crate::venues::Venue`] (`book`). One reader reads one connection: it
//! keeps what the venue numbers per connection (channel ids, sequence
//! numbers across channels).

use ck_book::sync::{BookMessage, Change, MessageKind};
use ck_book::{BookSide, Fixed};
use ck_bus::RawMessage;
use ck_model::Exchange;

use crate::parse::ParseError;

/// One book message, for the book of `symbol` (as the venue writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolBook {
    /// The venue's symbol.
    pub symbol: String,
    /// What the message says.
    pub message: BookMessage,
}

/// Reads a venue's book messages (module docs).
pub trait BookReader: Send {
    /// The book messages in one raw message, appended to `out`; a message
    /// of another channel adds nothing.
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError>;

    /// The depth each book is cut to after every message, for `symbol`
    /// (venues whose checksum covers the book cut to the depth
    /// subscribed), once the reader has seen the subscription.
    fn depth(&self, _symbol: &str) -> Option<usize> {
        None
    }
}

/// A reader of `exchange`'s book channel, if candlekeep reads it.
#[must_use]
pub fn book_reader_for(exchange: Exchange) -> Option<Box<dyn BookReader>> {
    crate::venues::venue(exchange).and_then(|v| v.book.map(|make| make()))
}

/// The recordings with book traffic, by venue (tests and the engine bench
/// replay them): cryptofeed's, and hftbacktest's six minutes of Binance
/// BTCUSDT depth.
pub const BOOK_RECORDINGS: [(Exchange, &str); 9] = [
    (Exchange::Binance, "cryptofeed/BINANCE.jsonl.zst"),
    (
        Exchange::Binance,
        "hftbacktest/binance_spot_btcusdt_20240808.gz",
    ),
    (Exchange::Bitfinex, "cryptofeed/BITFINEX.jsonl.zst"),
    (Exchange::Bitstamp, "cryptofeed/BITSTAMP.jsonl.zst"),
    (Exchange::Bybit, "cryptofeed/BYBIT.jsonl.zst"),
    (Exchange::Coinbase, "cryptofeed/COINBASE.jsonl.zst"),
    (
        Exchange::CoinbaseExchange,
        "cryptofeed/COINBASE_EXCHANGE.ws.28.0",
    ),
    (Exchange::Kraken, "cryptofeed/KRAKEN.jsonl.zst"),
    (Exchange::Okx, "cryptofeed/OKX.jsonl.zst"),
];

/// A message's kind from the venue's word for it.
pub(crate) fn kind(
    exchange: Exchange,
    field: &'static str,
    text: &str,
    (snapshot, delta): (&str, &str),
) -> Result<MessageKind, ParseError> {
    if text == snapshot {
        Ok(MessageKind::Snapshot)
    } else if text == delta {
        Ok(MessageKind::Delta)
    } else {
        Err(ParseError::BadField {
            exchange,
            field,
            value: text.to_owned(),
        })
    }
}

/// A level's side from the venue's words for bids and asks.
pub(crate) fn side(
    exchange: Exchange,
    text: &str,
    (bids, asks): (&[&str], &[&str]),
) -> Result<BookSide, ParseError> {
    if bids.contains(&text) {
        Ok(BookSide::Bid)
    } else if asks.contains(&text) {
        Ok(BookSide::Ask)
    } else {
        Err(ParseError::BadField {
            exchange,
            field: "side",
            value: text.to_owned(),
        })
    }
}

/// A number of a book level, as written.
pub(crate) fn number(
    exchange: Exchange,
    field: &'static str,
    text: &str,
) -> Result<Fixed, ParseError> {
    Fixed::parse(text.as_bytes()).map_err(|e| ParseError::BadField {
        exchange,
        field,
        value: e.text,
    })
}

/// Changes of `side` from `[price, size, …]` rows of strings.
pub(crate) fn changes<S: AsRef<str>>(
    exchange: Exchange,
    side: BookSide,
    rows: &[Vec<S>],
    out: &mut Vec<Change>,
) -> Result<(), ParseError> {
    for row in rows {
        let (Some(price), Some(size)) = (row.first(), row.get(1)) else {
            return Err(ParseError::BadField {
                exchange,
                field: "book level",
                value: format!("{} fields", row.len()),
            });
        };
        out.push(Change {
            side,
            price: number(exchange, "price", price.as_ref())?,
            size: number(exchange, "size", size.as_ref())?,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    //! Every venue's recorded book traffic, replayed through its reader and
    //! [`BookSync`]: every sequence rule and every checksum the recording
    //! carries holds, with no incident, and after every message the engine's
    //! book is the one a plain map of decimals builds from the same
    //! messages.

    use std::collections::{BTreeMap, HashMap};

    use ck_book::sync::{BookSync, MessageKind, Outcome, Sequence, State};
    use ck_model::Exchange;

    use super::*;
    use crate::recordings::Recording;

    /// What a replay found, over all books.
    #[derive(Debug, Default)]
    pub(crate) struct Replayed {
        pub(crate) books: usize,
        pub(crate) valid: usize,
        pub(crate) applied: u64,
        pub(crate) checksums: u64,
        pub(crate) stale: u64,
        /// Deltas without the venue's time.
        pub(crate) untimed: u64,
        pub(crate) incidents: Vec<String>,
    }

    /// The plainest book there is, to check the engine against on real
    /// traffic: two maps of exact decimals to the size's text.
    #[derive(Debug, Default)]
    struct Plain {
        bids: BTreeMap<ck_model::Decimal, String>,
        asks: BTreeMap<ck_model::Decimal, String>,
        /// Diffs received before the snapshot.
        held: Vec<BookMessage>,
    }

    /// Whether a held diff is newer than the snapshot that came after it.
    fn newer(diff: Sequence, snapshot: Sequence) -> bool {
        match (diff, snapshot) {
            (Sequence::Range { last, .. }, Sequence::Range { last: id, .. }) => last > id,
            (Sequence::Time(t), Sequence::Time(at)) => t > at,
            _ => true,
        }
    }

    impl Plain {
        fn apply(&mut self, message: &BookMessage, depth: Option<usize>) {
            if message.kind == MessageKind::Snapshot {
                self.bids.clear();
                self.asks.clear();
            }
            for c in &message.changes {
                let price = ck_model::Decimal::parse(&c.price.text()).expect("price");
                let side = match c.side {
                    BookSide::Bid => &mut self.bids,
                    BookSide::Ask => &mut self.asks,
                };
                if c.size.is_zero() {
                    side.remove(&price);
                } else {
                    side.insert(price, c.size.text());
                }
            }
            if let Some(depth) = depth {
                while self.bids.len() > depth {
                    self.bids.pop_first();
                }
                while self.asks.len() > depth {
                    self.asks.pop_last();
                }
            }
        }

        /// The engine's book holds the same levels, best first (the top 50
        /// of each side, and how many).
        fn assert_same(&self, book: &ck_book::Book, symbol: &str) {
            let ours = |side| {
                book.levels(side)
                    .take(50)
                    .map(|l| {
                        (
                            ck_model::Decimal::parse(&l.price.text()).expect("price"),
                            l.size.text(),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            let bids: Vec<_> = self
                .bids
                .iter()
                .rev()
                .take(50)
                .map(|(p, s)| (*p, s.clone()))
                .collect();
            let asks: Vec<_> = self
                .asks
                .iter()
                .take(50)
                .map(|(p, s)| (*p, s.clone()))
                .collect();
            assert_eq!(ours(BookSide::Bid), bids, "{symbol} bids");
            assert_eq!(ours(BookSide::Ask), asks, "{symbol} asks");
            assert_eq!(
                (book.len(BookSide::Bid), book.len(BookSide::Ask)),
                (self.bids.len(), self.asks.len()),
                "{symbol} levels"
            );
        }
    }

    /// Replays the fixture `relative` through `exchange`'s book reader.
    pub(crate) fn replay(exchange: Exchange, relative: &str) -> Replayed {
        replay_without(exchange, relative, None)
    }

    /// [`replay`], which must find `books` books, all valid at the end,
    /// no incident, at least `applied` messages applied, and (`timed`)
    /// the venue's time on every delta.
    pub(crate) fn replay_clean(
        exchange: Exchange,
        relative: &str,
        books: usize,
        applied: u64,
        timed: bool,
    ) -> Replayed {
        let r = replay(exchange, relative);
        assert!(r.incidents.is_empty(), "{exchange}: {:?}", r.incidents);
        assert_eq!((r.books, r.valid), (books, books), "{exchange}: {r:?}");
        assert!(r.applied >= applied, "{exchange}: {r:?}");
        if timed {
            assert_eq!(
                r.untimed, 0,
                "{exchange}: every delta has the venue's time: {r:?}"
            );
        }
        r
    }

    /// Replays the fixture `relative` with the `nth` raw message that
    /// carries a book delta lost on the way (`None`: every message).
    pub(crate) fn replay_without(
        exchange: Exchange,
        relative: &str,
        nth: Option<usize>,
    ) -> Replayed {
        let path = ck_testkit::fixture(relative);
        let mut reader = book_reader_for(exchange).expect("a book reader");
        // Which raw messages carry deltas, read by a reader of their own.
        let lost = nth.map(|nth| {
            let mut finder = book_reader_for(exchange).expect("a book reader");
            let mut read = Vec::new();
            Recording::open_as(&path, Some(exchange))
                .expect("open")
                .enumerate()
                .filter(|(_, raw)| {
                    read.clear();
                    let raw = raw.as_ref().expect("a recorded line");
                    finder.read(raw, &mut read).is_ok()
                        && read
                            .iter()
                            .any(|b| b.message.kind == ck_book::sync::MessageKind::Delta)
                })
                .nth(nth)
                .map(|(i, _)| i)
                .expect("that many deltas")
        });
        let mut books: HashMap<String, BookSync> = HashMap::new();
        let mut plains: HashMap<String, Plain> = HashMap::new();
        let mut out = Replayed::default();
        let mut read = Vec::new();
        for (i, raw) in Recording::open_as(&path, Some(exchange))
            .expect("open")
            .enumerate()
        {
            let raw = raw.expect("a recorded line");
            if Some(i) == lost {
                continue;
            }
            read.clear();
            reader
                .read(&raw, &mut read)
                .unwrap_or_else(|e| panic!("{e}: {}", &raw.data[..raw.data.len().min(300)]));
            for SymbolBook { symbol, message } in read.drain(..) {
                let depth = reader.depth(&symbol);
                let sync = books
                    .entry(symbol.clone())
                    .or_insert_with(|| BookSync::new(depth));
                let plain = plains.entry(symbol.clone()).or_default();
                if message.kind == MessageKind::Delta && message.time.is_none() {
                    out.untimed += 1;
                }
                let waiting = sync.state() == State::Waiting;
                match sync.on_message(&message) {
                    Ok(Outcome::Stale) => out.stale += 1,
                    Ok(Outcome::Held) => plain.held.push(message),
                    Ok(Outcome::Applied) if !waiting || message.kind == MessageKind::Snapshot => {
                        plain.apply(&message, depth);
                        // Diffs held for the snapshot: those newer than it.
                        for held in std::mem::take(&mut plain.held) {
                            if newer(held.sequence, message.sequence) {
                                plain.apply(&held, depth);
                            }
                        }
                        plain.assert_same(sync.book(), &symbol);
                    }
                    Ok(_) => {}
                    Err(incident) => out.incidents.push(format!("{symbol}: {incident}")),
                }
            }
        }
        out.books = books.len();
        for sync in books.values() {
            out.applied += sync.applied();
            out.checksums += sync.checksums_checked();
            out.valid += usize::from(sync.state() == State::Valid);
        }
        eprintln!("{exchange} {relative} without {nth:?}: {out:?}");
        out
    }

    /// A diff lost on the way is found by each venue's check that can find
    /// it: the sequence rule, or the next checksum. (Bitstamp's and
    /// Coinbase Exchange's channels carry neither: a lost diff there is
    /// found only by a later snapshot.)
    #[test]
    fn a_lost_diff_is_an_incident_on_every_venue_that_can_tell() {
        for (exchange, file, nth, cause) in [
            (
                Exchange::Binance,
                "cryptofeed/BINANCE.jsonl.zst",
                50,
                "sequence gap",
            ),
            (
                Exchange::Binance,
                "hftbacktest/binance_spot_btcusdt_20240808.gz",
                2_000,
                "sequence gap",
            ),
            (
                Exchange::Bybit,
                "cryptofeed/BYBIT.jsonl.zst",
                100,
                "sequence gap",
            ),
            (
                Exchange::Coinbase,
                "cryptofeed/COINBASE.jsonl.zst",
                100,
                "sequence gap",
            ),
            (
                Exchange::Bitfinex,
                "cryptofeed/BITFINEX.jsonl.zst",
                100,
                "sequence gap",
            ),
            (
                Exchange::Okx,
                "cryptofeed/OKX.jsonl.zst",
                100,
                "checksum mismatch",
            ),
            (
                Exchange::Kraken,
                "cryptofeed/KRAKEN.jsonl.zst",
                1_000,
                "checksum mismatch",
            ),
        ] {
            let r = replay_without(exchange, file, Some(nth));
            assert!(
                r.incidents.first().is_some_and(|i| i.contains(cause)),
                "{exchange}: {r:?}"
            );
        }
    }
}
