//! Mock exchanges for tests, demos and benchmarks: each speaks a venue's real
//! WebSocket protocol on a local address and replays recorded real traffic,
//! time-shifted so that it looks live.
//!
//! - [`binance::MockBinance`]: combined streams (`/stream?streams=...`),
//!   `SUBSCRIBE` requests, ping frames, and fault injection (dropping the
//!   connection after a number of messages), REST history, faults.
//! - [`venue::MockVenue`]: any venue's WebSocket, replaying its recording
//!   frame by frame after the client subscribes, answering the venue's pings,
//!   with dropped connections, withheld frames (gaps), malformed frames and
//!   stalls on demand.
//! - [`coinbase_exchange::MockCoinbaseRest`]: Coinbase Exchange's REST
//!   trades, from the same recording.
//! - [`bitfinex::MockBitfinexRest`]: Bitfinex's REST trades by time, from
//!   the same recording, moved in time as the venue mock moves them.
//! - [`kraken::MockKrakenRest`], [`bybit::MockBybitRest`] and
//!   [`bitstamp::MockBitstampRest`]: Kraken's trades by `since`, Bybit's
//!   recent trades and Bitstamp's last day of transactions, likewise.
//! - [`okx::MockOkxRest`] and [`coinbase_advanced::MockCoinbaseAdvancedRest`]:
//!   OKX's candles, and Coinbase Advanced Trade's trades by time window and
//!   candles.
//!
//! Every REST mock serves candles too, computed from the trades it serves
//! (`bars.rs`), in the venue's shape.
//!
//! Every REST mock ([`RestMock`]) takes faults on demand while it runs
//! ([`RestMock::set_faults`]): 429 answers with `Retry-After`, and slow
//! answers.

#![warn(missing_docs)]

mod bars;
pub mod binance;
pub mod bitfinex;
pub mod bitstamp;
pub mod bybit;
pub mod coinbase_advanced;
pub mod coinbase_exchange;
pub mod kraken;
pub mod laps;
pub mod okx;
pub mod shift;
pub mod venue;

/// Faults a [`RestMock`] injects, changeable while it runs.
#[derive(Debug, Clone, Default)]
pub struct RestFaults {
    /// Answer every Nth request with 429 and `Retry-After: 1`.
    pub every_429: Option<usize>,
    /// Delay every answer by this much.
    pub delay: Option<std::time::Duration>,
}

/// What the fault layer counts and reads.
#[derive(Debug, Default)]
struct FaultState {
    faults: std::sync::Mutex<RestFaults>,
    requests: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicUsize,
}

/// A running REST mock on `127.0.0.1` (the venue modules build its routes).
pub struct RestMock {
    addr: std::net::SocketAddr,
    trades: usize,
    state: std::sync::Arc<FaultState>,
}

impl RestMock {
    /// Serves `app` on a free loopback port, behind the fault layer.
    pub(crate) async fn serve(app: axum::Router, trades: usize) -> std::io::Result<RestMock> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = std::sync::Arc::new(FaultState::default());
        let app = app.layer(axum::middleware::from_fn_with_state(state.clone(), inject));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(RestMock {
            addr,
            trades,
            state,
        })
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

    /// Injects `faults` from the next request on.
    pub fn set_faults(&self, faults: RestFaults) {
        *self
            .state
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = faults;
    }

    /// Requests received, and how many of them got a 429.
    #[must_use]
    pub fn requests(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        (
            self.state.requests.load(Ordering::SeqCst),
            self.state.refused.load(Ordering::SeqCst),
        )
    }
}

/// The fault layer: counts the request, waits the delay, and refuses every
/// Nth with 429 and `Retry-After: 1`.
async fn inject(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<FaultState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use std::sync::atomic::Ordering;
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let faults = state
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(delay) = faults.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(every) = faults.every_429
        && every > 0
        && n.is_multiple_of(every)
    {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1"), ("content-type", "application/json")],
            "{\"error\":\"too many requests\"}",
        )
            .into_response();
    }
    next.run(request).await
}
