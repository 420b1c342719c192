//! The L2 book engine: exact, pure and small.
//!
//! Each side is a [`Ladder`]: levels sorted by a key (bids by price, asks
//! by negated price), the best ones in a vector with the best last, where
//! venues change levels far more often than deep down, the rest in a
//! B-tree. Prices are kept as integers at one scale for the whole book
//! (the largest a venue has written for it, raised when a finer price
//! comes); each level also keeps the scales its price and size were
//! written with, so the venue's own text, and a checksum over it, can be
//! made again.

use crate::fixed::Fixed;
use crate::ladder::{Ladder, Slot};

/// A bid or an ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookSide {
    /// Buy orders: best is the highest price.
    Bid,
    /// Sell orders: best is the lowest price.
    Ask,
}

/// One level as read from a book: its price and size as the venue wrote
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// The price.
    pub price: Fixed,
    /// The size at that price.
    pub size: Fixed,
}

/// Why a change cannot go into a book.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// A price or size does not fit the book's integers.
    #[error("price {price} cannot be held at scale {scale} (too large)")]
    OutOfRange {
        /// The price.
        price: Fixed,
        /// The book's scale.
        scale: u8,
    },
    /// A number with more digits than a book holds (18 significant).
    #[error("{0} has more digits than a book holds")]
    TooPrecise(String),
    /// A size below zero.
    #[error("a negative size {size} at {price}")]
    NegativeSize {
        /// The price.
        price: Fixed,
        /// The size.
        size: Fixed,
    },
}

/// An exact L2 order book (module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    /// Scale of every key.
    scale: u8,
    /// Keyed by price.
    bids: Ladder,
    /// Keyed by negated price.
    asks: Ladder,
}

/// 10^n for n up to 18.
const POW10: [i64; 19] = {
    let mut t = [1i64; 19];
    let mut i = 1;
    while i < 19 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

impl Book {
    /// An empty book.
    #[must_use]
    pub fn new() -> Book {
        Book::default()
    }

    /// Sets the level at `price` on `side` to `size`; a zero size removes
    /// it (a removal of a level the book does not hold changes nothing).
    pub fn apply(&mut self, side: BookSide, price: Fixed, size: Fixed) -> Result<(), BookError> {
        let key = self.key_of(price, size)?;
        let (levels, key) = match side {
            BookSide::Bid => (&mut self.bids, key),
            BookSide::Ask => (&mut self.asks, -key),
        };
        levels.apply(
            Slot {
                key,
                size: size.mantissa,
                price_scale: price.scale,
                size_scale: size.scale,
            },
            size.is_zero(),
        );
        Ok(())
    }

    /// Replaces the whole book with `levels` (a snapshot): each side is
    /// sorted once rather than inserted into level by level (a snapshot
    /// comes best first, the far end of each side's vector: it is
    /// reversed). Where a price comes twice, the last wins; zero sizes are
    /// left out. On an error the book is empty.
    pub fn load(
        &mut self,
        levels: impl IntoIterator<Item = (BookSide, Fixed, Fixed)>,
    ) -> Result<(), BookError> {
        self.clear();
        let levels: Vec<(BookSide, Fixed, Fixed)> = levels.into_iter().collect();
        // Keys at the snapshot's finest scale.
        if let Some(finest) = levels.iter().map(|l| l.1).max_by_key(|p| p.scale)
            && finest.scale > self.scale
        {
            self.raise_scale(finest)?;
        }
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        for (side, price, size) in levels {
            let key = self.key_of(price, size)?;
            let (slots, key) = match side {
                BookSide::Bid => (&mut bids, key),
                BookSide::Ask => (&mut asks, -key),
            };
            slots.push(Slot {
                key,
                size: size.mantissa,
                price_scale: price.scale,
                size_scale: size.scale,
            });
        }
        for (side, mut slots) in [(&mut self.bids, bids), (&mut self.asks, asks)] {
            if slots.windows(2).all(|w| w[0].key >= w[1].key) {
                slots.reverse();
                // Equal keys are now last-written first: keep the first.
                slots.dedup_by_key(|s| s.key);
            } else {
                // Stable: of equal keys, the last written stays last.
                slots.sort_by_key(|s| s.key);
                slots.dedup_by(|later, kept| {
                    let same = later.key == kept.key;
                    if same {
                        *kept = *later;
                    }
                    same
                });
            }
            slots.retain(|s| s.size != 0);
            side.load_sorted(slots);
        }
        Ok(())
    }

    /// The key of `price` at the book's scale (raised first if `price` is
    /// finer), after checking `size`.
    fn key_of(&mut self, price: Fixed, size: Fixed) -> Result<i64, BookError> {
        if size.mantissa < 0 {
            return Err(BookError::NegativeSize { price, size });
        }
        if price.scale > self.scale {
            self.raise_scale(price)?;
        }
        price.mantissa_at(self.scale).ok_or(BookError::OutOfRange {
            price,
            scale: self.scale,
        })
    }

    /// Every key times 10^(price's scale - the book's): a finer price came.
    fn raise_scale(&mut self, price: Fixed) -> Result<(), BookError> {
        let up = usize::from(price.scale - self.scale);
        let factor = POW10.get(up).copied().ok_or(BookError::OutOfRange {
            price,
            scale: price.scale,
        })?;
        if !(self.bids.keys_fit(factor) && self.asks.keys_fit(factor)) {
            return Err(BookError::OutOfRange {
                price,
                scale: price.scale,
            });
        }
        self.bids.scale_keys(factor);
        self.asks.scale_keys(factor);
        self.scale = price.scale;
        Ok(())
    }

    /// Empties the book (a snapshot follows).
    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    /// Levels on `side`.
    #[must_use]
    pub fn len(&self, side: BookSide) -> usize {
        self.side(side).len()
    }

    /// True when neither side has a level.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    /// The best level on `side`.
    #[must_use]
    pub fn best(&self, side: BookSide) -> Option<Level> {
        self.side(side).best().map(|s| self.level(side, s))
    }

    /// The levels of `side`, best first.
    pub fn levels(&self, side: BookSide) -> impl Iterator<Item = Level> + '_ {
        self.side(side)
            .best_first()
            .map(move |s| self.level(side, &s))
    }

    /// Keeps the best `depth` levels of each side (venues whose checksum
    /// covers a book cut to the depth subscribed).
    pub fn truncate(&mut self, depth: usize) {
        self.bids.truncate(depth, None);
        self.asks.truncate(depth, None);
    }

    /// [`Book::truncate`], appending each level dropped (with its side) to
    /// `dropped`: a recorder stores their removal.
    pub fn truncate_into(&mut self, depth: usize, dropped: &mut Vec<(BookSide, Level)>) {
        let mut cut = Vec::new();
        for side in [BookSide::Bid, BookSide::Ask] {
            cut.clear();
            match side {
                BookSide::Bid => self.bids.truncate(depth, Some(&mut cut)),
                BookSide::Ask => self.asks.truncate(depth, Some(&mut cut)),
            }
            dropped.extend(cut.iter().map(|s| (side, self.level(side, s))));
        }
    }

    /// Bytes the book holds: its top levels' vectors with their spare
    /// capacity, and an estimate for the levels in the B-trees.
    #[must_use]
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Book>() + self.bids.state_bytes() + self.asks.state_bytes()
    }

    fn side(&self, side: BookSide) -> &Ladder {
        match side {
            BookSide::Bid => &self.bids,
            BookSide::Ask => &self.asks,
        }
    }

    fn level(&self, side: BookSide, s: &Slot) -> Level {
        let key = match side {
            BookSide::Bid => s.key,
            BookSide::Ask => -s.key,
        };
        // Exact: the key was the price's mantissa raised to the book's scale.
        let down = POW10[usize::from(self.scale - s.price_scale)];
        Level {
            price: Fixed::new(key / down, s.price_scale),
            size: Fixed::new(s.size, s.size_scale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn f(t: &str) -> Fixed {
        Fixed::parse(t.as_bytes()).expect(t)
    }

    fn texts(book: &Book, side: BookSide) -> Vec<(String, String)> {
        book.levels(side)
            .map(|l| (l.price.text(), l.size.text()))
            .collect()
    }

    #[test]
    fn levels_come_best_first_as_written() {
        let mut b = Book::new();
        for (p, s) in [("100.5", "1"), ("101", "2.50"), ("99.25", "3")] {
            b.apply(BookSide::Bid, f(p), f(s)).expect("bid");
        }
        for (p, s) in [("102", "1"), ("101.75", "0.1"), ("103.125", "7")] {
            b.apply(BookSide::Ask, f(p), f(s)).expect("ask");
        }
        assert_eq!(
            texts(&b, BookSide::Bid),
            [("101", "2.50"), ("100.5", "1"), ("99.25", "3")].map(|(a, b)| (a.into(), b.into()))
        );
        assert_eq!(
            texts(&b, BookSide::Ask),
            [("101.75", "0.1"), ("102", "1"), ("103.125", "7")].map(|(a, b)| (a.into(), b.into()))
        );
        assert_eq!(b.best(BookSide::Bid).map(|l| l.price), Some(f("101")));
        // Replace, remove, remove what is not there.
        b.apply(BookSide::Bid, f("100.500"), f("4"))
            .expect("replace");
        b.apply(BookSide::Ask, f("102"), f("0.000"))
            .expect("remove");
        b.apply(BookSide::Ask, f("150"), f("0")).expect("absent");
        assert_eq!(
            texts(&b, BookSide::Bid)[1],
            ("100.500".to_owned(), "4".to_owned())
        );
        assert_eq!(b.len(BookSide::Ask), 2);
        b.truncate(1);
        assert_eq!(b.len(BookSide::Bid), 1);
        assert_eq!(b.best(BookSide::Ask).map(|l| l.price), Some(f("101.75")));
    }

    #[test]
    fn a_snapshot_loads_as_its_levels_applied_one_by_one() {
        let levels = [
            (BookSide::Bid, "100", "1"),
            (BookSide::Bid, "99.5", "2"),
            (BookSide::Ask, "101", "1"),
            (BookSide::Bid, "100.0", "3"),
            (BookSide::Ask, "102.25", "0"),
            (BookSide::Ask, "100.75", "4"),
            (BookSide::Bid, "98", "5"),
            (BookSide::Bid, "98", "0"),
        ];
        let mut one_by_one = Book::new();
        for (side, p, sz) in levels {
            one_by_one.apply(side, f(p), f(sz)).expect("apply");
        }
        let mut loaded = Book::new();
        loaded.apply(BookSide::Ask, f("500"), f("1")).expect("old");
        loaded
            .load(levels.map(|(side, p, sz)| (side, f(p), f(sz))))
            .expect("load");
        for side in [BookSide::Bid, BookSide::Ask] {
            assert_eq!(texts(&loaded, side), texts(&one_by_one, side));
        }
        // Best first, as venues send them, with a price twice: the last wins.
        loaded
            .load([
                (BookSide::Bid, f("101"), f("1")),
                (BookSide::Bid, f("100"), f("2")),
                (BookSide::Bid, f("100"), f("5")),
                (BookSide::Bid, f("99"), f("1")),
            ])
            .expect("load");
        assert_eq!(
            texts(&loaded, BookSide::Bid),
            [("101", "1"), ("100", "5"), ("99", "1")].map(|(a, b)| (a.into(), b.into()))
        );
        assert!(loaded.load([(BookSide::Bid, f("1"), f("-1"))]).is_err());
        assert!(loaded.is_empty());
    }

    #[test]
    fn bad_changes_are_refused_and_change_nothing() {
        let mut b = Book::new();
        b.apply(BookSide::Bid, f("1"), f("1")).expect("bid");
        let before = b.clone();
        assert!(matches!(
            b.apply(BookSide::Bid, f("2"), f("-1")),
            Err(BookError::NegativeSize { .. })
        ));
        assert!(matches!(
            b.apply(BookSide::Bid, f("999999999999999999"), f("1"))
                .and_then(|()| b.apply(BookSide::Bid, f("0.01"), f("1"))),
            Err(BookError::OutOfRange { .. })
        ));
        b.apply(BookSide::Bid, f("999999999999999999"), f("0"))
            .expect("remove");
        assert_eq!(b, before);
    }

    /// The engine against a plain map on a long stream of pseudo-random
    /// changes, at prices of varying scales.
    #[test]
    fn a_long_random_stream_matches_a_plain_map() {
        let mut b = Book::new();
        let mut model: [BTreeMap<(i64, u8), String>; 2] = Default::default();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let side = if x & 1 == 0 {
                BookSide::Bid
            } else {
                BookSide::Ask
            };
            // Prices cluster near 1000, now and then far; a third written
            // with an extra digit.
            let ticks = 100_000 + ((x >> 8) % 400) as i64 - 200 + ((x >> 20) % 7 * 3_000) as i64;
            let price = if (x >> 30).is_multiple_of(3) {
                Fixed::new(ticks * 10, 3)
            } else {
                Fixed::new(ticks, 2)
            };
            let size = if (x >> 33).is_multiple_of(4) {
                Fixed::new(0, 0)
            } else {
                Fixed::new(((x >> 40) % 10_000) as i64, 4)
            };
            b.apply(side, price, size).expect("apply");
            let m = &mut model[usize::from(side == BookSide::Ask)];
            let key = (
                price.normalized().mantissa * 10_i64.pow(u32::from(3 - price.normalized().scale)),
                0,
            );
            if size.is_zero() {
                m.remove(&key);
            } else {
                m.insert(key, size.text());
            }
            if step % 20_000 == 0 || step == 199_999 {
                let bids: Vec<(i64, String)> = b
                    .levels(BookSide::Bid)
                    .map(|l| (l.price.mantissa_at(3).expect("fits"), l.size.text()))
                    .collect();
                let want: Vec<(i64, String)> = model[0]
                    .iter()
                    .rev()
                    .map(|(k, v)| (k.0, v.clone()))
                    .collect();
                assert_eq!(bids, want, "bids at step {step}");
                let asks: Vec<(i64, String)> = b
                    .levels(BookSide::Ask)
                    .map(|l| (l.price.mantissa_at(3).expect("fits"), l.size.text()))
                    .collect();
                let want: Vec<(i64, String)> =
                    model[1].iter().map(|(k, v)| (k.0, v.clone())).collect();
                assert_eq!(asks, want, "asks at step {step}");
            }
        }
        // A top level is 24 bytes, a top vector's room at most a spill's
        // worth more; a deep level is estimated at 40.
        let levels = b.len(BookSide::Bid) + b.len(BookSide::Ask);
        assert!(levels > 2 * crate::ladder::TOP_MAX, "deep levels: {levels}");
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert!(
            b.state_bytes()
                <= std::mem::size_of::<Book>()
                    + 2 * (crate::ladder::TOP_MAX + 1) * 24
                    + levels * crate::ladder::DEEP_LEVEL_BYTES,
            "{} bytes for {levels} levels",
            b.state_bytes()
        );
    }
}
