//! The venues' book checksums, computed from a [`Book`] as the venue
//! documents them, over the text the venue wrote (each level keeps its
//! scales, see [`Book`]).
//!
//! - **OKX** (`books`, `checksum`): CRC-32 of the best 25 bids and asks
//!   interleaved, `bid price:bid size:ask price:ask size:…` (a side that
//!   runs out leaves its pairs out), as a signed 32-bit integer.
//! - **Bitfinex** (`cs` messages, flag `OB_CHECKSUM`): the same shape over
//!   the best 25, each amount signed as Bitfinex sends it (asks negative),
//!   numbers written as JavaScript writes them.
//! - **Kraken** (`book`, v1 `c` and v2 `checksum`): CRC-32, unsigned, of
//!   the best 10 asks, then the best 10 bids, each price and then size
//!   with the point removed and leading zeros dropped. v1 writes prices
//!   and sizes at the pair's precision; v2 sends JSON numbers, so they are
//!   written at the pair's precision here ([`kraken_with_precision`]).

use crate::{Book, BookSide, Fixed, Level};

/// OKX's checksum of `book`.
#[must_use]
pub fn okx(book: &Book) -> i32 {
    interleaved(book, 25, |l, _, out| {
        l.price.write(out);
        out.push(':');
        l.size.write(out);
    })
}

/// Bitfinex's checksum of `book` (P0 to P4 books: price and amount).
#[must_use]
pub fn bitfinex(book: &Book) -> i32 {
    interleaved(book, 25, |l, side, out| {
        l.price.write_js(out);
        out.push(':');
        let amount = match side {
            BookSide::Bid => l.size,
            BookSide::Ask => Fixed::new(-l.size.mantissa, l.size.scale),
        };
        amount.write_js(out);
    })
}

/// The CRC-32 (as a signed integer) of the best `n` levels of each side,
/// interleaved bid, ask, bid, …, each written by `write`, joined by `:`.
fn interleaved(book: &Book, n: usize, write: impl Fn(&Level, BookSide, &mut String)) -> i32 {
    let mut text = String::with_capacity(n * 2 * 24);
    let mut bids = book.levels(BookSide::Bid).take(n);
    let mut asks = book.levels(BookSide::Ask).take(n);
    for _ in 0..n {
        for (level, side) in [(bids.next(), BookSide::Bid), (asks.next(), BookSide::Ask)] {
            if let Some(l) = level {
                if !text.is_empty() {
                    text.push(':');
                }
                write(&l, side, &mut text);
            }
        }
    }
    crc32fast::hash(text.as_bytes()) as i32
}

/// Kraken's checksum of `book`, over prices and sizes as written (v1).
#[must_use]
pub fn kraken(book: &Book) -> u32 {
    kraken_text(book, |f| f)
}

/// Kraken's checksum of `book` with prices written at `price_decimals`
/// and sizes at `qty_decimals` (v2, whose numbers come without trailing
/// zeros). `None` where a level's number has more decimals than that.
#[must_use]
pub fn kraken_with_precision(book: &Book, price_decimals: u8, qty_decimals: u8) -> Option<u32> {
    let mut fits = true;
    let sum = kraken_text(book, |f| {
        let decimals = if f.1 { price_decimals } else { qty_decimals };
        let n = f.0.normalized();
        match n.mantissa_at(decimals) {
            Some(m) if n.scale <= decimals => (Fixed::new(m, decimals), f.1),
            _ => {
                fits = false;
                f
            }
        }
    });
    fits.then_some(sum)
}

fn kraken_text(book: &Book, mut at: impl FnMut((Fixed, bool)) -> (Fixed, bool)) -> u32 {
    let mut text = String::with_capacity(20 * 2 * 20);
    let mut digits = String::with_capacity(24);
    for side in [BookSide::Ask, BookSide::Bid] {
        for l in book.levels(side).take(10) {
            for (value, is_price) in [(l.price, true), (l.size, false)] {
                digits.clear();
                at((value, is_price)).0.write(&mut digits);
                let plain = digits.replace('.', "");
                let trimmed = plain.trim_start_matches('0');
                text.push_str(trimmed);
            }
        }
    }
    crc32fast::hash(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(bids: &[(&str, &str)], asks: &[(&str, &str)]) -> Book {
        let mut b = Book::new();
        for (side, levels) in [(BookSide::Bid, bids), (BookSide::Ask, asks)] {
            for (p, s) in levels {
                b.apply(
                    side,
                    Fixed::parse(p.as_bytes()).expect("price"),
                    Fixed::parse(s.as_bytes()).expect("size"),
                )
                .expect("level");
            }
        }
        b
    }

    #[test]
    fn okx_checksums_the_documented_example() {
        // OKX's documentation: bids 3366.1/7, 3366/6; asks 3366.8/9,
        // 3368/8 are checksummed as "3366.1:7:3366.8:9:3366:6:3368:8".
        let b = book(
            &[("3366.1", "7"), ("3366", "6")],
            &[("3366.8", "9"), ("3368", "8")],
        );
        assert_eq!(
            crc32fast::hash(b"3366.1:7:3366.8:9:3366:6:3368:8") as i32,
            okx(&b)
        );
        // One side longer: its extra levels follow alone.
        let b = book(&[("3366.1", "7")], &[("3366.8", "9"), ("3368", "8")]);
        assert_eq!(okx(&b), crc32fast::hash(b"3366.1:7:3366.8:9:3368:8") as i32);
    }

    #[test]
    fn kraken_checksums_the_documented_example() {
        // Kraken's "Book checksum" guide: the first asks 0.05005/0.00000500
        // and bids 0.05000/0.00000500 read "5005500" and "5000500".
        let b = book(&[("0.05000", "0.00000500")], &[("0.05005", "0.00000500")]);
        assert_eq!(kraken(&b), crc32fast::hash(b"50055005000500"));
        let v2 = book(&[("0.05", "0.000005")], &[("0.05005", "0.000005")]);
        assert_eq!(kraken_with_precision(&v2, 5, 8), Some(kraken(&b)));
        assert_eq!(
            kraken_with_precision(&v2, 4, 8),
            None,
            "0.05005 has 5 decimals"
        );
    }

    #[test]
    fn bitfinex_signs_ask_amounts_and_writes_javascript_numbers() {
        let b = book(
            &[("0.068965", "60157.36709703")],
            &[("0.0774", "0.0000001")],
        );
        assert_eq!(
            bitfinex(&b),
            crc32fast::hash(b"0.068965:60157.36709703:0.0774:-1e-7") as i32
        );
    }
}
