//! The order books held live: the book recorder keeps one per captured
//! instrument, the API reads them (`GET /api/v1/book`).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use ck_book::{Book, BookError, BookSide, Fixed};
use ck_model::{Exchange, Instrument, Ts};

/// One instrument's book as it stands.
#[derive(Debug, Clone, Default)]
pub struct LiveBook {
    /// The levels (empty while the book is unknown).
    pub book: Book,
    /// Receive time of the last message applied.
    pub time: Option<Ts>,
    /// False from an incident or a lost connection until the next snapshot.
    pub valid: bool,
    /// The last message number applied (numbered per connection).
    pub message: i64,
    /// The rows of the part of the book's files being written (which
    /// cannot be read until it is finished), so that a book at an instant
    /// since it began is rebuilt from memory: its snapshot, then deltas.
    pub recent: Vec<RecentRow>,
    /// The book's statistics at each second of the part being written
    /// (the stored series of the finished parts is in the archive).
    pub series: Vec<(Ts, ck_book::stats::BookStats)>,
}

/// One level of a snapshot or delta of the part being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentRow {
    /// Receive time.
    pub at: Ts,
    /// Of a snapshot (else of a delta).
    pub snapshot: bool,
    /// The message's number.
    pub message: i64,
    /// The side.
    pub side: BookSide,
    /// The price.
    pub price: Fixed,
    /// The size (zero in a delta: removed).
    pub size: Fixed,
}

impl LiveBook {
    /// The exact book at `at` from the rows of the part being written:
    /// its last snapshot received by then, and the deltas after it
    /// received by then; `None` when `at` is before the part, or after the
    /// book stopped being known.
    ///
    /// # Errors
    /// A row the book cannot hold.
    pub fn book_at(&self, at: Ts) -> Result<Option<Book>, BookError> {
        let known_until = if self.valid {
            Ts(i64::MAX)
        } else {
            self.time.unwrap_or(Ts(i64::MIN))
        };
        if at > known_until {
            return Ok(None);
        }
        let Some(last) = self
            .recent
            .iter()
            .filter(|r| r.snapshot && r.at <= at)
            .map(|r| r.message)
            .max()
        else {
            return Ok(None);
        };
        let mut book = Book::new();
        book.load(
            self.recent
                .iter()
                .filter(|r| r.snapshot && r.message == last)
                .map(|r| (r.side, r.price, r.size)),
        )?;
        for r in self
            .recent
            .iter()
            .filter(|r| !r.snapshot && r.message > last && r.at <= at)
        {
            book.apply(r.side, r.price, r.size)?;
        }
        Ok(Some(book))
    }
}

/// Every live book, shared (cheap to clone).
#[derive(Debug, Clone)]
pub struct LiveBooks {
    inner: Arc<RwLock<HashMap<(Exchange, Instrument), LiveBook>>>,
    /// Which book changed, for the WebSocket `book` channel; a reader that
    /// falls behind loses the oldest notices (and sends a fresh book).
    changed: tokio::sync::broadcast::Sender<Arc<(Exchange, Instrument)>>,
}

impl Default for LiveBooks {
    fn default() -> Self {
        LiveBooks {
            inner: Arc::default(),
            changed: tokio::sync::broadcast::channel(4_096).0,
        }
    }
}

impl LiveBooks {
    /// Tells the readers of [`LiveBooks::changes`] that this book changed.
    pub fn notify(&self, exchange: Exchange, instrument: &Instrument) {
        if self.changed.receiver_count() > 0 {
            let _ = self.changed.send(Arc::new((exchange, instrument.clone())));
        }
    }

    /// The books that change from now on, by name.
    #[must_use]
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<(Exchange, Instrument)>> {
        self.changed.subscribe()
    }

    /// `f` of the book of `instrument` on `exchange`, if one is held.
    pub fn read<R>(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        f: impl FnOnce(&LiveBook) -> R,
    ) -> Option<R> {
        let books = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        books.get(&(exchange, instrument.clone())).map(f)
    }

    /// `f` of the book of `instrument` on `exchange`, made empty and
    /// invalid if none was held.
    pub fn update<R>(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        f: impl FnOnce(&mut LiveBook) -> R,
    ) -> R {
        let mut books = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        f(books.entry((exchange, instrument.clone())).or_default())
    }

    /// Every book held, with whether it is valid, in order.
    #[must_use]
    pub fn list(&self) -> Vec<(Exchange, Instrument, bool)> {
        let books = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = books
            .iter()
            .map(|((e, i), b)| (*e, i.clone(), b.valid))
            .collect();
        out.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        out
    }
}
