//! candlekeep's order books: an exact L2 book engine ([`Book`]), the
//! venues' book checksums ([`checksum`]), and the rules that keep a book
//! true as changes arrive ([`sync`]): sequence continuity and checksums,
//! with a book marked invalid, and an incident recorded, the moment one
//! fails, and what a book says at a glance ([`stats`]). Pure: no IO, no
//! clock, no async.

#![forbid(unsafe_code)]

mod book;
pub mod checksum;
mod fixed;
mod ladder;
pub mod stats;
pub mod sync;

pub use book::{Book, BookError, BookSide, Level};
pub use fixed::{Fixed, FixedError, MAX_SCALE};
