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
pub mod books;
pub mod laps;
pub mod route;
pub mod shift;
pub mod venue;
pub mod venues;

/// Declares each venue's mock module and lists its `SPEC` in [`MOCKS`].
macro_rules! mocks {
    ($($venue:ident),* $(,)?) => {
        $(pub mod $venue;)*
        /// Every venue's mock ([`venues::spec`] finds one).
        pub static MOCKS: &[&venues::MockSpec] = &[$(&$venue::SPEC),*];
    };
}

mocks!(
    binance,
    coinbase_exchange,
    coinbase_advanced,
    bitfinex,
    kraken,
    bitstamp,
    okx,
    bybit,
    binance_us,
);

/// A listening socket that may hold one connection accepted already: the
/// first client, accepted by [`first_client`] before the mock that serves it
/// started (so that the mock moves its times to that moment).
pub struct Listening {
    listener: tokio::net::TcpListener,
    first: Option<(tokio::net::TcpStream, std::net::SocketAddr)>,
}

impl Listening {
    /// Listens on `addr`.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<Listening> {
        Ok(Listening {
            listener: tokio::net::TcpListener::bind(addr).await?,
            first: None,
        })
    }

    /// The address it listens on.
    ///
    /// # Errors
    /// When the socket has none.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The connection kept by [`first_client`], then the next ones.
    ///
    /// # Errors
    /// When accepting fails.
    pub async fn accept(
        &mut self,
    ) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
        match self.first.take() {
            Some(first) => Ok(first),
            None => self.listener.accept().await,
        }
    }
}

impl axum::serve::Listener for Listening {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match Listening::accept(self).await {
                Ok(conn) => return conn,
                Err(e) => {
                    tracing::debug!(error = %e, "mock accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Listening::local_addr(self)
    }
}

tokio::task_local! {
    /// The listener [`RestMock::on`] hands to the mock it starts.
    static BIND: std::cell::RefCell<Option<Listening>>;
}

/// Waits until a client connects to any of `listeners`, and keeps the
/// connection in its listener for the mock started next.
///
/// # Errors
/// When accepting fails.
pub async fn first_client(listeners: &mut [Listening]) -> std::io::Result<()> {
    if listeners.is_empty() {
        return Ok(());
    }
    let waits = listeners.iter_mut().map(|l| {
        Box::pin(async move {
            let conn = l.listener.accept().await?;
            l.first = Some(conn);
            Ok::<(), std::io::Error>(())
        })
    });
    let (ready, _, _) = futures_util::future::select_all(waits).await;
    ready
}

/// Counts a connection as open while it lives.
pub(crate) struct Open<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Open<'a> {
    /// Counts one more open connection; returns how many others were open.
    pub(crate) fn count(open: &'a std::sync::atomic::AtomicUsize) -> (Open<'a>, usize) {
        let others = open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (Open(open), others)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

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
    /// Serves `app` behind the fault layer, on the listener given to
    /// [`RestMock::on`] or else on a free loopback port.
    pub(crate) async fn serve(app: axum::Router, trades: usize) -> std::io::Result<RestMock> {
        let chosen = BIND.try_with(|b| b.borrow_mut().take()).ok().flatten();
        let listener = match chosen {
            Some(l) => l,
            None => Listening::bind(([127, 0, 0, 1], 0).into()).await?,
        };
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

    /// Runs `start` (one of the venue mocks' constructors) so that the mock
    /// it starts serves on `listener` instead of a free port.
    pub async fn on<F>(listener: Listening, start: F) -> F::Output
    where
        F: std::future::Future,
    {
        BIND.scope(std::cell::RefCell::new(Some(listener)), start)
            .await
    }

    /// The REST mock of `exchange` serving `recording`, its times moved as
    /// a [`venue::MockVenue`] started with the same `shift_to` moves them;
    /// `None` for a venue without one here (Binance's is part of
    /// [`binance::MockBinance`]).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn for_venue(
        exchange: ck_model::Exchange,
        recording: &[ck_bus::RawMessage],
        shift_to: Option<ck_model::Ts>,
    ) -> std::io::Result<Option<RestMock>> {
        match venues::spec(exchange).and_then(|m| m.rest) {
            Some(start) => Ok(Some(start(recording, shift_to).await?)),
            None => Ok(None),
        }
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
