//! candlekeep sources: everything that brings market data in.
//!
//! - One module per venue (its folder), listed once in the `venues!` line
//!   below, which also makes the registry ([`VENUES`], looked up through
//!   [`venues`]): its [`parse::Parser`] turning raw messages into normalized
//!   events (run by [`normalize::Normalizer`] for live capture and replay
//!   alike), its live protocol, REST history and names.
//! - [`tape`]: writes every raw message to a compressed per-day tape.
//! - [`recordings::Recording`]: reads tapes and the fixture formats back.
//! - [`replay`]: feeds recordings through the normalizer onto the bus.
//! - [`import`]: loads trades from CSV or JSON lines files.
//! - [`live`]: the one live connector, its reconnect backoff and status.

#![warn(missing_docs)]

pub mod book;
pub mod book_keeper;
pub mod book_recorder;
pub mod capture;
mod flat_json;
pub mod history;
pub mod import;
mod line_bound;
pub mod listing;
pub mod live;
pub mod normalize;
pub mod parse;
pub mod poll;
pub mod recordings;
pub mod repair;
pub mod replay;
pub mod replay_books;
pub mod rest;
pub mod tape;
pub mod venues;
pub mod zstd_frames;

/// Declares each venue's module and lists its `VENUE` in [`VENUES`], in
/// [`ck_model::Exchange::ALL`]'s order.
macro_rules! venues {
    ($($venue:ident),* $(,)?) => {
        $(pub mod $venue;)*
        /// Every venue candlekeep captures ([`venues::venue`] finds one).
        pub static VENUES: &[&venues::Venue] = &[$(&$venue::VENUE),*];
    };
}

venues!(
    binance,
    coinbase_exchange,
    coinbase,
    bitfinex,
    kraken,
    bitstamp,
    okx,
    bybit,
    binance_us,
);
