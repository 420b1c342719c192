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
pub mod bitstamp;
pub mod bybit;
pub mod coinbase_exchange;
pub mod kraken;
pub mod shift;
pub mod venue;

/// A running REST mock on `127.0.0.1` (the venue modules build its routes).
pub struct RestMock {
    addr: std::net::SocketAddr,
    trades: usize,
}

impl RestMock {
    /// Serves `app` on a free loopback port.
    pub(crate) async fn serve(app: axum::Router, trades: usize) -> std::io::Result<RestMock> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(RestMock { addr, trades })
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Distinct trades it serves.
    #[must_use]
    pub fn trades(&self) -> usize {
        self.trades
    }
}
