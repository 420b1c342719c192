//! candlekeep sources: everything that brings market data in.
//!
//! - [`parse::Parser`]: one per exchange (`binance`, `coinbase` (Advanced
//!   Trade), `coinbase_exchange`, `okx`, `bitstamp`, `bitfinex`, `kraken`
//!   (WS v1 and v2), `bybit` (spot)),
//!   turning raw messages into normalized events. [`normalize::Normalizer`]
//!   runs them for live capture and replay alike.
//! - [`tape`]: writes every raw message to a compressed per-day tape.
//! - [`recordings::Recording`]: reads tapes and the fixture formats back.
//! - [`replay`]: feeds recordings through the normalizer onto the bus.
//! - [`import`]: loads trades from CSV or JSON lines files.
//! - [`live`]: reconnect backoff and connector status shared by the live
//!   connectors (`binance::run_binance`).

#![warn(missing_docs)]

pub mod binance;
pub mod binance_us;
pub mod bitfinex;
pub mod bitstamp;
pub mod bybit;
pub mod capture;
pub mod coinbase;
pub mod coinbase_exchange;
mod flat_json;
pub mod history;
pub mod import;
pub mod kraken;
mod line_bound;
pub mod listing;
pub mod live;
pub mod normalize;
pub mod okx;
pub mod parse;
pub mod poll;
pub mod recordings;
pub mod repair;
pub mod replay;
pub mod rest;
pub mod tape;
pub mod venues;
pub mod zstd_frames;
