//! Mock exchanges for tests, demos and benchmarks: each speaks a venue's real
//! WebSocket protocol on a local address and replays recorded real traffic,
//! time-shifted so that it looks live.
//!
//! - [`binance::MockBinance`]: combined streams (`/stream?streams=...`),
//!   `SUBSCRIBE` requests, ping frames, and fault injection (dropping the
//!   connection after a number of messages), REST history, faults.
//! - [`venue::MockVenue`]: any venue's WebSocket, replaying its recording
//!   frame by frame after the client subscribes, answering the venue's pings,
//!   with dropped connections and withheld frames on demand.
//! - [`coinbase_exchange::MockCoinbaseRest`]: Coinbase Exchange's REST
//!   trades, from the same recording.
//! - [`bitfinex::MockBitfinexRest`]: Bitfinex's REST trades by time, from
//!   the same recording, moved in time as the venue mock moves them.

#![warn(missing_docs)]

pub mod binance;
pub mod bitfinex;
pub mod coinbase_exchange;
pub mod shift;
pub mod venue;
