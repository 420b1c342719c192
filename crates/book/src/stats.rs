//! What a book says at a glance, the series candlekeep derives from every
//! book: mid, spread, microprice, the depth within 10, 50 and 100 basis
//! points of the mid on each side, and the imbalance of the best level.
//! Prices and sizes stay exact (mid, spread and depths are [`Fixed`]);
//! the ratios (spread in basis points, microprice, imbalance) are `f64`.

use crate::{Book, BookSide, Fixed};

/// The bands the depth is summed over, in basis points of the mid.
pub const DEPTH_BANDS_BPS: [u32; 3] = [10, 50, 100];

/// A book's derived values at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct BookStats {
    /// The best bid.
    pub best_bid: Fixed,
    /// The best ask.
    pub best_ask: Fixed,
    /// The size at the best bid.
    pub bid_size: Fixed,
    /// The size at the best ask.
    pub ask_size: Fixed,
    /// `(best bid + best ask) / 2`, exact.
    pub mid: Fixed,
    /// `best ask - best bid`, exact (negative when the book is crossed).
    pub spread: Fixed,
    /// The spread in basis points of the mid.
    pub spread_bps: f64,
    /// The mid weighted by the opposite side's size at the top:
    /// `(bid × ask size + ask × bid size) / (bid size + ask size)`.
    pub microprice: f64,
    /// Size on the bid side at or above `mid × (1 - band)`, one per
    /// [`DEPTH_BANDS_BPS`], exact.
    pub bid_depth: [Fixed; 3],
    /// Size on the ask side at or below `mid × (1 + band)`.
    pub ask_depth: [Fixed; 3],
    /// `(bid size - ask size) / (bid size + ask size)` at the best level,
    /// from -1 (all asks) to 1 (all bids).
    pub imbalance: f64,
}

impl BookStats {
    /// The stats of `book`; `None` while a side is empty, or where a sum
    /// would not fit.
    #[must_use]
    pub fn of(book: &Book) -> Option<BookStats> {
        let bid = book.best(BookSide::Bid)?;
        let ask = book.best(BookSide::Ask)?;
        let mut stats = BookStats::from_top(
            (bid.price, bid.size),
            (ask.price, ask.size),
            [Fixed::default(); 3],
            [Fixed::default(); 3],
        )?;
        for (i, bps) in DEPTH_BANDS_BPS.into_iter().enumerate() {
            stats.bid_depth[i] = depth(book, BookSide::Bid, stats.mid, bps)?;
            stats.ask_depth[i] = depth(book, BookSide::Ask, stats.mid, bps)?;
        }
        Some(stats)
    }

    /// The same stats with every exact number in its shortest form
    /// (`100.50` as `100.5`): what a file read back or a venue's text
    /// gives differs only in trailing zeros.
    #[must_use]
    pub fn normalized(&self) -> BookStats {
        BookStats {
            best_bid: self.best_bid.normalized(),
            best_ask: self.best_ask.normalized(),
            bid_size: self.bid_size.normalized(),
            ask_size: self.ask_size.normalized(),
            mid: self.mid.normalized(),
            spread: self.spread.normalized(),
            bid_depth: self.bid_depth.map(Fixed::normalized),
            ask_depth: self.ask_depth.map(Fixed::normalized),
            ..*self
        }
    }

    /// The stats of a book whose best levels are `bid` and `ask` (price,
    /// size) and whose depths within [`DEPTH_BANDS_BPS`] are `bid_depth`
    /// and `ask_depth`: everything else follows from those exactly, so a
    /// stored series keeps only them. `None` where a sum would not fit.
    #[must_use]
    pub fn from_top(
        bid: (Fixed, Fixed),
        ask: (Fixed, Fixed),
        bid_depth: [Fixed; 3],
        ask_depth: [Fixed; 3],
    ) -> Option<BookStats> {
        let scale = bid.0.scale.max(ask.0.scale);
        let (b, a) = (bid.0.mantissa_at(scale)?, ask.0.mantissa_at(scale)?);
        // (b + a) / 2 exactly: one more digit.
        let mid = Fixed::new(b.checked_add(a)?.checked_mul(5)?, scale.checked_add(1)?);
        let spread = Fixed::new(a.checked_sub(b)?, scale);
        let mid_f = mid.to_f64();
        let (bs, as_) = (bid.1.to_f64(), ask.1.to_f64());
        let microprice = if bs + as_ > 0.0 {
            (bid.0.to_f64() * as_ + ask.0.to_f64() * bs) / (bs + as_)
        } else {
            mid_f
        };
        let imbalance = if bs + as_ > 0.0 {
            (bs - as_) / (bs + as_)
        } else {
            0.0
        };
        Some(BookStats {
            best_bid: bid.0,
            best_ask: ask.0,
            bid_size: bid.1,
            ask_size: ask.1,
            mid,
            spread,
            spread_bps: if mid_f > 0.0 {
                spread.to_f64() / mid_f * 1e4
            } else {
                0.0
            },
            microprice,
            bid_depth,
            ask_depth,
            imbalance,
        })
    }
}

/// The size on `side` within `bps` basis points of `mid`, exactly: a bid
/// counts when `price × 10^4 >= mid × (10^4 - bps)`, an ask when
/// `price × 10^4 <= mid × (10^4 + bps)`, compared as integers.
fn depth(book: &Book, side: BookSide, mid: Fixed, bps: u32) -> Option<Fixed> {
    let factor = match side {
        BookSide::Bid => 10_000 - i128::from(bps),
        BookSide::Ask => 10_000 + i128::from(bps),
    };
    let mut sum: i128 = 0;
    let mut sum_scale: u8 = 0;
    for level in book.levels(side) {
        let scale = level.price.scale.max(mid.scale);
        let p = i128::from(level.price.mantissa) * pow10(scale - level.price.scale)? * 10_000;
        let m = i128::from(mid.mantissa) * pow10(scale - mid.scale)? * factor;
        let inside = match side {
            BookSide::Bid => p >= m,
            BookSide::Ask => p <= m,
        };
        if !inside {
            break; // levels come best first: the rest are further away
        }
        let size = level.size;
        if size.scale > sum_scale {
            sum = sum.checked_mul(pow10(size.scale - sum_scale)?)?;
            sum_scale = size.scale;
        }
        sum = sum.checked_add(i128::from(size.mantissa) * pow10(sum_scale - size.scale)?)?;
    }
    Some(Fixed::new(i64::try_from(sum).ok()?, sum_scale).normalized())
}

fn pow10(n: u8) -> Option<i128> {
    10i128.checked_pow(u32::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(t: &str) -> Fixed {
        Fixed::parse(t.as_bytes()).expect(t)
    }

    #[test]
    fn a_book_s_stats_are_exact_where_they_can_be() {
        let mut b = Book::new();
        assert_eq!(BookStats::of(&b), None, "an empty book has none");
        // Mid 100.05; 10 bps of it is 0.10005.
        for (p, s) in [("100", "2"), ("99.95", "1.5"), ("99.9", "4"), ("99", "100")] {
            b.apply(BookSide::Bid, f(p), f(s)).expect("bid");
        }
        assert_eq!(BookStats::of(&b), None, "one side only");
        for (p, s) in [
            ("100.1", "1"),
            ("100.15", "0.25"),
            ("100.2", "3"),
            ("101", "50"),
        ] {
            b.apply(BookSide::Ask, f(p), f(s)).expect("ask");
        }
        let s = BookStats::of(&b).expect("stats");
        assert_eq!(s.mid.normalized(), f("100.05"));
        assert_eq!(s.spread, f("0.1"));
        assert!((s.spread_bps - 0.1 / 100.05 * 1e4).abs() < 1e-9);
        // (100 × 1 + 100.1 × 2) / 3
        assert!((s.microprice - (100.0 + 200.2) / 3.0).abs() < 1e-9);
        assert!((s.imbalance - 1.0 / 3.0).abs() < 1e-12);
        // 10 bps: bids down to 99.94995 (100, 99.95), asks up to 100.15005
        // (100.1, 100.15); 50 bps: down to 99.54975, up to 100.55025;
        // 100 bps: down to 99.0495, up to 101.0505.
        assert_eq!(s.bid_depth, [f("3.5"), f("7.5"), f("7.5")]);
        assert_eq!(s.ask_depth, [f("1.25"), f("4.25"), f("54.25")]);
        assert_eq!((s.bid_size, s.ask_size), (f("2"), f("1")));
        let again = BookStats::from_top(
            (s.best_bid, s.bid_size),
            (s.best_ask, s.ask_size),
            s.bid_depth,
            s.ask_depth,
        );
        assert_eq!(again, Some(s), "the stored parts give the same stats");
    }
}
