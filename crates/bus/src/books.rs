//! The order books held live: the book recorder keeps one per captured
//! instrument, the API reads them (`GET /api/v1/book`).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use ck_book::Book;
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
}

/// Every live book, shared (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct LiveBooks {
    inner: Arc<RwLock<HashMap<(Exchange, Instrument), LiveBook>>>,
}

impl LiveBooks {
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
