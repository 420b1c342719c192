//! One WebSocket connector for every venue: what differs (URL, subscribe
//! messages, pings, where a message names its symbol) is a [`WsProtocol`].
//!
//! - Reconnects with exponential backoff and jitter, forever; resubscribes
//!   everything on each new connection.
//! - Connection watchdog: no data for `stale_after` ends the connection.
//! - Instrument watchdog: an instrument silent for `stale_after` while others
//!   flow is unsubscribed and subscribed again (venues whose data names the
//!   symbol; see [`WsProtocol::symbol_of`]), all found at one tick in one
//!   request where the venue allows, within the venue's hourly limit on
//!   subscribe requests ([`RateWindow`]).
//! - Connection attempts keep to the venue's limit per IP ([`ConnectPace`]).
//! - A venue's limit on streams per connection splits the instruments over
//!   several connections ([`connection_groups`]).
//! - After a reconnect, when data flows again, every instrument gets an open
//!   [`Gap`] spanning the window without data, for REST repair.
//! - Every text frame goes out as a [`RawMessage`] (tape, then parser);
//!   protocol pongs are not market data and are not forwarded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ck_bus::{Clock, Closed, Event, Origin, RawMessage, Sender};
use ck_model::{Exchange, Gap, GapState, Instrument, Ts};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::books::{BookCapture, ConnectionBooks};
use super::{Backoff, BackoffPolicy, ConnectionState, ConnectorStatus};

/// How one venue's public WebSocket is spoken.
pub trait WsProtocol: Send + Sync + std::fmt::Debug {
    /// The venue.
    fn exchange(&self) -> Exchange;

    /// The URL to connect to (some venues name the streams in it).
    fn connect_url(&self, base: &str, _instruments: &[Instrument]) -> String {
        base.to_owned()
    }

    /// The messages that subscribe `instruments`, sent on every new connection.
    fn subscribe(&self, instruments: &[Instrument]) -> Vec<String>;

    /// The messages that drop and renew these instruments' subscriptions
    /// (those the watchdog found stale at one tick, in as few messages as
    /// the venue allows).
    fn resubscribe(&self, instruments: &[Instrument]) -> Vec<String>;

    /// The messages that subscribe these instruments' book channels,
    /// `depth` levels a side where the venue takes a depth (the nearest it
    /// offers at or above, within its most), sent after
    /// [`WsProtocol::subscribe`] when books are captured.
    fn subscribe_books(&self, _instruments: &[Instrument], _depth: usize) -> Vec<String> {
        Vec::new()
    }

    /// The messages that renew one instrument's book channel so that the
    /// venue sends a fresh snapshot: a resync, for venues whose snapshot
    /// comes on the channel.
    fn resubscribe_book(&self, _instrument: &Instrument, _depth: usize) -> Vec<String> {
        Vec::new()
    }

    /// Where a venue's book starts from a REST snapshot (Binance,
    /// Bitstamp): its path and query under the REST root, and its weight
    /// in the venue's budget.
    fn book_snapshot_path(&self, _instrument: &Instrument, _depth: usize) -> Option<(String, u32)> {
        None
    }

    /// The symbol the venue's book messages name `instrument` by (as the
    /// venue's [`crate::book::BookReader`] reports it).
    fn book_symbol(&self, instrument: &Instrument) -> String {
        self.native(instrument)
    }

    /// The most instruments one connection may carry, where the venue
    /// limits streams or channels per connection (Binance 1,024 streams,
    /// Bitfinex 25 channels), with or without their book channels: more
    /// instruments get more connections.
    fn instruments_per_connection(&self, _books: bool) -> Option<usize> {
        None
    }

    /// The most subscribe and unsubscribe requests one connection may send
    /// in an hour, where the venue limits them (OKX 480): the watchdog's
    /// resubscribes stay within it, counting the first subscribe.
    fn control_messages_per_hour(&self) -> Option<usize> {
        None
    }

    /// The most connection attempts the venue allows from one IP within a
    /// span (Binance 300 in 5 minutes, Bitfinex 20 a minute, OKX 3 a
    /// second, Bybit 500 in 5 minutes): a source's connections, first
    /// connects and reconnects alike, wait their turn ([`ConnectPace`]).
    fn connects_per_span(&self) -> Option<(usize, Duration)> {
        None
    }

    /// An application-level ping and its period, where the venue wants one.
    fn ping(&self) -> Option<(Duration, String)> {
        None
    }

    /// The symbol as the venue writes it in data messages.
    fn native(&self, instrument: &Instrument) -> String;

    /// The symbol a data message is about; `None` for control messages.
    fn symbol_of<'a>(&self, text: &'a str) -> Option<&'a str>;

    /// False for venues whose data frames do not name the symbol (then only
    /// the connection watchdog runs).
    fn names_symbols(&self) -> bool {
        true
    }

    /// A reply to our ping, not to be forwarded.
    fn is_pong(&self, _text: &str) -> bool {
        false
    }

    /// The venue asks us to reconnect (maintenance, shutdown).
    fn asks_reconnect(&self, _text: &str) -> bool {
        false
    }
}

/// The text after `"key":"` up to the next quote: a cheap field read for
/// [`WsProtocol::symbol_of`], no JSON pass.
#[must_use]
pub fn string_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// Settings of one live connector.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// WebSocket URL (for Binance, the base without `/stream`).
    pub ws_url: String,
    /// The instruments to capture.
    pub instruments: Vec<Instrument>,
    /// Reconnect delays.
    pub backoff: BackoffPolicy,
    /// A connection or instrument without data for this long is renewed.
    pub stale_after: Duration,
    /// REST root for the instrument list and gap repair; `None` runs
    /// without REST (gaps are recorded and stay open).
    pub rest_url: Option<String>,
    /// Order books to capture beside trades and quotes.
    pub books: Option<BookCapture>,
}

/// Runs until `stop`, sending every text frame to `tx` and reconnect gaps
/// to `events`. Fails only when a channel closes.
#[allow(clippy::too_many_arguments)]
pub async fn run_ws(
    protocol: Arc<dyn WsProtocol>,
    config: LiveConfig,
    pace: Arc<ConnectPace>,
    tx: Sender<RawMessage>,
    events: Sender<Event>,
    status: Arc<ConnectorStatus>,
    clock: Arc<dyn Clock>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Closed> {
    let exchange = protocol.exchange();
    let url = protocol.connect_url(&config.ws_url, &config.instruments);
    let mut backoff = Backoff::new(config.backoff.clone(), clock.now().0.unsigned_abs());
    tokio::pin!(stop);
    // The start of the current window without data, once data had flowed.
    let mut window: Option<Ts> = None;
    let ctx = Session {
        protocol: protocol.as_ref(),
        config: &config,
        url: &url,
        pace: &pace,
        tx: &tx,
        events: &events,
        status: &status,
        clock: &clock,
    };
    loop {
        let mut books = ConnectionBooks::new(
            protocol.as_ref(),
            &config.instruments,
            config.books.as_ref(),
        );
        let (stopped, error) = tokio::select! {
            () = &mut stop => (true, None),
            result = ctx.run(&mut backoff, &mut window, &mut books) => (false, result?),
        };
        if let Some(books) = books {
            books.end(clock.now()).await?;
        }
        if stopped {
            break;
        }
        if window.is_none() {
            window = status.snapshot().last_message;
        }
        let delay = backoff.next_delay();
        // A connection that never delivered is not "lost".
        let ever_connected = status.snapshot().messages > 0;
        match (&error, ever_connected) {
            (Some(e), true) => {
                tracing::warn!(%exchange, error = %e, retry_in = ?delay, "connection lost; reconnecting");
            }
            (Some(e), false) => {
                tracing::warn!(%exchange, error = %e, retry_in = ?delay, "could not connect; retrying");
            }
            (None, _) => {
                tracing::info!(%exchange, retry_in = ?delay, "connection closed by the server; reconnecting");
            }
        }
        status.on_disconnect(error);
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    status.set_state(ConnectionState::Stopped);
    Ok(())
}

/// Requests over a sliding span against a limit: a connection's subscribe
/// and unsubscribe requests in an hour
/// ([`WsProtocol::control_messages_per_hour`]), or a source's connection
/// attempts ([`ConnectPace`]).
#[derive(Debug)]
pub struct RateWindow {
    limit: Option<usize>,
    span: Duration,
    sent: std::collections::VecDeque<Instant>,
}

impl RateWindow {
    /// At most `limit` requests in any `span` (`None`: no limit).
    #[must_use]
    pub fn new(limit: Option<usize>, span: Duration) -> RateWindow {
        RateWindow {
            limit,
            span,
            sent: std::collections::VecDeque::new(),
        }
    }

    /// An hourly budget of `limit` subscribe and unsubscribe requests.
    #[must_use]
    pub fn hourly(limit: Option<usize>) -> RateWindow {
        RateWindow::new(limit, Duration::from_secs(3_600))
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|&t| now.duration_since(t) >= self.span)
        {
            self.sent.pop_front();
        }
    }

    /// Spends `n` requests at `now` if the last span's, with them, stay
    /// within the limit; false (nothing spent) otherwise.
    pub fn spend(&mut self, now: Instant, n: usize) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        self.forget_before(now);
        if self.sent.len() + n > limit {
            return false;
        }
        self.sent.extend(std::iter::repeat_n(now, n));
        true
    }

    /// When one more request fits (`now` if it does already).
    #[must_use]
    pub fn next_free(&mut self, now: Instant) -> Instant {
        let Some(limit) = self.limit else {
            return now;
        };
        self.forget_before(now);
        if self.sent.len() < limit {
            return now;
        }
        // The oldest of the last `limit` leaves the span first.
        let oldest = self.sent[self.sent.len() - limit];
        oldest + self.span
    }
}

/// Paces one source's connection attempts to the venue's limit per IP
/// ([`WsProtocol::connects_per_span`]). Shared by its connections: a venue
/// with many instruments over many connections (Bitfinex, 12 a connection)
/// opens them no faster than it allows, and a burst of reconnects waits.
#[derive(Debug)]
pub struct ConnectPace {
    window: std::sync::Mutex<RateWindow>,
}

impl ConnectPace {
    /// The pace for `protocol`'s venue.
    #[must_use]
    pub fn of(protocol: &dyn WsProtocol) -> ConnectPace {
        let (limit, span) = match protocol.connects_per_span() {
            Some((n, span)) => (Some(n.max(1)), span),
            None => (None, Duration::ZERO),
        };
        ConnectPace {
            window: std::sync::Mutex::new(RateWindow::new(limit, span)),
        }
    }

    /// Waits until one more connection attempt is within the limit, and
    /// takes it.
    pub async fn wait(&self) {
        loop {
            let until = {
                let mut w = self
                    .window
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                if w.spend(now, 1) {
                    return;
                }
                w.next_free(now)
            };
            tracing::info!(
                wait_ms = until.saturating_duration_since(Instant::now()).as_millis(),
                "connection attempts at the venue's limit; waiting"
            );
            tokio::time::sleep_until(until).await;
        }
    }
}

/// `instruments` in groups of at most what one connection may carry
/// ([`WsProtocol::instruments_per_connection`]), one connection each.
#[must_use]
pub fn connection_groups(
    protocol: &dyn WsProtocol,
    instruments: &[Instrument],
    books: bool,
) -> Vec<Vec<Instrument>> {
    match protocol.instruments_per_connection(books) {
        Some(most) if most > 0 && instruments.len() > most => instruments
            .chunks(most)
            .map(<[Instrument]>::to_vec)
            .collect(),
        _ => vec![instruments.to_vec()],
    }
}

struct Session<'a> {
    protocol: &'a dyn WsProtocol,
    config: &'a LiveConfig,
    url: &'a str,
    pace: &'a ConnectPace,
    tx: &'a Sender<RawMessage>,
    events: &'a Sender<Event>,
    status: &'a ConnectorStatus,
    clock: &'a Arc<dyn Clock>,
}

impl Session<'_> {
    /// One connection: returns why it ended (`None` for a clean close).
    async fn run(
        &self,
        backoff: &mut Backoff,
        window: &mut Option<Ts>,
        books: &mut Option<ConnectionBooks<'_>>,
    ) -> Result<Option<String>, Closed> {
        let exchange = self.protocol.exchange();
        self.pace.wait().await;
        let (mut ws, _) = match tokio_tungstenite::connect_async(self.url).await {
            Ok(ok) => ok,
            Err(e) => return Ok(Some(format!("connecting to {}: {e}", self.url))),
        };
        let mut budget = RateWindow::hourly(self.protocol.control_messages_per_hour());
        let mut subscribe = self.protocol.subscribe(&self.config.instruments);
        if let Some(books) = books.as_ref() {
            subscribe.extend(books.subscribe(self.protocol));
        }
        budget.spend(Instant::now(), subscribe.len());
        for m in subscribe {
            if let Err(e) = ws.send(Message::Text(m.into())).await {
                return Ok(Some(format!("subscribing: {e}")));
            }
        }
        self.status.set_state(ConnectionState::Connected);
        tracing::info!(%exchange, url = %self.url, "connected and subscribed");

        let stale = self.config.stale_after;
        let index: HashMap<String, usize> = self
            .config
            .instruments
            .iter()
            .enumerate()
            .map(|(i, inst)| (self.protocol.native(inst), i))
            .collect();
        let started = Instant::now();
        let mut seen = vec![started; self.config.instruments.len()];
        let per_instrument = self.protocol.names_symbols();
        let mut last_data = started;
        let mut watchdog = tokio::time::interval((stale / 4).max(Duration::from_millis(10)));
        watchdog.tick().await;
        let (ping_every, ping_text) = self
            .protocol
            .ping()
            .unwrap_or((Duration::from_secs(3600), String::new()));
        let mut ping = tokio::time::interval(ping_every);
        ping.tick().await;
        let mut healthy = false;
        // Book resubscriptions waiting for the venue's hourly budget.
        let mut resync: Vec<String> = Vec::new();
        loop {
            let next = tokio::select! {
                next = ws.next() => next,
                answer = ConnectionBooks::next_answer(books) => {
                    let Some(b) = books.as_mut() else { continue };
                    let send = b
                        .on_answer(self.protocol, answer, self.clock.now(), self.tx, self.events)
                        .await?;
                    resync.extend(send);
                    if let Err(e) = self.send_resync(&mut ws, &mut budget, &mut resync).await {
                        return Ok(Some(e));
                    }
                    continue;
                }
                _ = ping.tick(), if !ping_text.is_empty() => {
                    if let Err(e) = ws.send(Message::Text(ping_text.clone().into())).await {
                        return Ok(Some(format!("sending ping: {e}")));
                    }
                    continue;
                }
                _ = watchdog.tick() => {
                    if let Err(e) = self.send_resync(&mut ws, &mut budget, &mut resync).await {
                        return Ok(Some(e));
                    }
                    let now = Instant::now();
                    if now - last_data >= stale {
                        return Ok(Some(format!("no data for {stale:?}")));
                    }
                    let mut renew = Vec::new();
                    for (i, instrument) in self.config.instruments.iter().enumerate() {
                        if per_instrument && now - seen[i] >= stale {
                            seen[i] = now;
                            renew.push(instrument.clone());
                        }
                    }
                    if renew.is_empty() {
                        continue;
                    }
                    let messages = self.protocol.resubscribe(&renew);
                    if !budget.spend(now, messages.len()) {
                        tracing::warn!(%exchange, stale = renew.len(), "streams stale, but the venue's subscribe requests for this hour are spent; resubscribing later");
                        continue;
                    }
                    for instrument in &renew {
                        tracing::warn!(%exchange, %instrument, "stream stale; resubscribing");
                        self.status.on_resubscribe();
                    }
                    for m in messages {
                        if let Err(e) = ws.send(Message::Text(m.into())).await {
                            return Ok(Some(format!("resubscribing: {e}")));
                        }
                    }
                    continue;
                }
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let data = text.as_str();
                    if self.protocol.is_pong(data) {
                        continue;
                    }
                    let now_i = Instant::now();
                    last_data = now_i;
                    if let Some(&i) = self.protocol.symbol_of(data).and_then(|s| index.get(s)) {
                        seen[i] = now_i;
                    }
                    if !healthy {
                        // Data flows: the next failure starts the backoff afresh.
                        backoff.reset();
                        healthy = true;
                    }
                    let now = self.clock.now();
                    self.status.on_message(now);
                    if let Some(from) = window.take() {
                        self.record_window(from, now).await?;
                    }
                    let reconnect = self.protocol.asks_reconnect(data);
                    let raw = RawMessage {
                        exchange,
                        ts_received: now,
                        origin: Origin::Ws,
                        data: data.to_owned(),
                    };
                    let mut renew = false;
                    if let Some(b) = books.as_mut() {
                        resync.extend(b.take(self.protocol, &raw, self.events).await?);
                        renew = b.wants_reconnect();
                    }
                    self.tx.send(raw).await?;
                    if renew {
                        return Ok(Some("a book needs a fresh snapshot, which the venue sends on a new connection".into()));
                    }
                    if let Err(e) = self.send_resync(&mut ws, &mut budget, &mut resync).await {
                        return Ok(Some(e));
                    }
                    if reconnect {
                        return Ok(Some("the venue asked to reconnect".into()));
                    }
                }
                // Pings are answered by tungstenite as it reads; pongs and
                // binary frames carry no market data.
                Some(Ok(
                    Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_),
                )) => {}
                Some(Ok(Message::Close(frame))) => {
                    return Ok(frame.map(|f| format!("closed by server: {} {}", f.code, f.reason)));
                }
                Some(Err(e)) => return Ok(Some(e.to_string())),
                None => return Ok(None),
            }
        }
    }

    /// Sends the book resubscriptions waiting, as far as the venue's
    /// hourly budget allows (the rest wait for a later tick). An error
    /// names why the connection failed.
    async fn send_resync<S>(
        &self,
        ws: &mut S,
        budget: &mut RateWindow,
        resync: &mut Vec<String>,
    ) -> Result<(), String>
    where
        S: futures_util::Sink<Message> + Unpin,
        S::Error: std::fmt::Display,
    {
        if resync.is_empty() {
            return Ok(());
        }
        if !budget.spend(Instant::now(), resync.len()) {
            tracing::warn!(exchange = %self.protocol.exchange(), waiting = resync.len(), "book resync waits: the venue's subscribe requests for this hour are spent");
            return Ok(());
        }
        for m in resync.drain(..) {
            ws.send(Message::Text(m.into()))
                .await
                .map_err(|e| format!("resubscribing a book: {e}"))?;
        }
        Ok(())
    }

    /// Records the window without data as an open gap per instrument.
    async fn record_window(&self, from: Ts, to: Ts) -> Result<(), Closed> {
        let exchange = self.protocol.exchange();
        for instrument in &self.config.instruments {
            tracing::warn!(%exchange, %instrument, %from, %to, "reconnect window recorded as a gap");
            self.events
                .send(Event::Gap(Gap {
                    exchange,
                    instrument: instrument.clone(),
                    from_ts: from,
                    to_ts: to,
                    first_missing_id: None,
                    last_missing_id: None,
                    state: GapState::Open,
                    reason: format!("reconnect: no data received between {from} and {to}"),
                    detected_at: to,
                    kind: ck_model::GapKind::Trades,
                }))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hourly_budget_counts_the_last_hour_only() {
        let start = Instant::now();
        let mut b = RateWindow::hourly(Some(480));
        assert!(b.spend(start, 1), "the first subscribe");
        for k in 0..239 {
            assert!(
                b.spend(start + Duration::from_secs(k), 2),
                "resubscribe {k}"
            );
        }
        assert!(
            !b.spend(start + Duration::from_secs(600), 2),
            "480 spent within the hour"
        );
        assert!(b.spend(start + Duration::from_secs(600), 1), "one left");
        assert!(!b.spend(start + Duration::from_secs(3_599), 1));
        assert!(
            b.spend(start + Duration::from_secs(3_600), 1),
            "the first has aged out"
        );
        let mut free = RateWindow::hourly(None);
        assert!(free.spend(start, 10_000));
    }

    #[tokio::test(start_paused = true)]
    async fn connection_attempts_wait_for_the_venue_limit() {
        // Bitfinex: 20 a minute per IP. 30 instruments make three
        // connections; a burst of reconnects must still keep to it.
        let pace = Arc::new(ConnectPace::of(&crate::bitfinex::ws::BitfinexProtocol));
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..45 {
            pace.wait().await;
            at.push((Instant::now() - start).as_secs());
        }
        assert_eq!(&at[..20], &[0; 20], "the first 20 at once");
        assert_eq!(&at[20..40], &[60; 20], "the next 20 a minute later");
        assert_eq!(&at[40..], &[120; 5]);
        // Shared by connections: two waiting at once take two places.
        let pace = Arc::new(ConnectPace::of(&crate::okx::ws::OkxProtocol));
        let start = Instant::now();
        let waits = (0..7).map(|_| {
            let pace = pace.clone();
            tokio::spawn(async move {
                pace.wait().await;
                (Instant::now() - start).as_millis()
            })
        });
        let mut times = Vec::new();
        for w in waits.collect::<Vec<_>>() {
            times.push(w.await.expect("join"));
        }
        times.sort_unstable();
        assert_eq!(
            times,
            [0, 0, 0, 1_000, 1_000, 1_000, 2_000],
            "OKX: 3 a second"
        );
        // No limit: never waits.
        let free = ConnectPace::of(&crate::coinbase_exchange::ws::CoinbaseExchangeProtocol);
        let start = Instant::now();
        for _ in 0..1_000 {
            free.wait().await;
        }
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn three_connections_reconnecting_share_one_pace() {
        // Three Bitfinex connections to an address that fails at once (no
        // I/O, so paused time runs exactly) retry with 1 ms backoff; over
        // 90 s the venue's 20 a minute allows 40 attempts in all.
        let protocol: Arc<dyn WsProtocol> = Arc::new(crate::bitfinex::ws::BitfinexProtocol);
        let pace = Arc::new(ConnectPace::of(protocol.as_ref()));
        let (tx, _rx) = ck_bus::channel("raw", 16);
        let (events, _erx) = ck_bus::channel("events", 16);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut statuses = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let status = Arc::new(ConnectorStatus::new(Exchange::Bitfinex));
            statuses.push(status.clone());
            tasks.push(tokio::spawn(run_ws(
                protocol.clone(),
                LiveConfig {
                    ws_url: "ws://[not-a-host".into(),
                    instruments: vec![Instrument::new("BTC", "USD")],
                    backoff: crate::live::BackoffPolicy {
                        initial: Duration::from_millis(1),
                        max: Duration::from_millis(1),
                        ..crate::live::BackoffPolicy::default()
                    },
                    stale_after: Duration::from_secs(30),
                    rest_url: None,
                    books: None,
                },
                pace.clone(),
                tx.clone(),
                events.clone(),
                status,
                Arc::new(ck_bus::SystemClock),
                {
                    let mut stopped = stopped.clone();
                    async move {
                        let _ = stopped.changed().await;
                    }
                },
            )));
        }
        tokio::time::sleep(Duration::from_secs(90)).await;
        stop.send_replace(true);
        for t in tasks {
            t.await.expect("join").expect("channels open");
        }
        let attempts: u64 = statuses.iter().map(|s| s.snapshot().reconnects).sum();
        assert_eq!(attempts, 40, "20 at once, 20 a minute later, none faster");
    }

    #[test]
    fn instruments_are_split_over_connections_at_the_venue_limit() {
        let instruments: Vec<Instrument> = (0..30)
            .map(|k| Instrument::new(&format!("C{k}"), "USD"))
            .collect();
        let groups = connection_groups(&crate::bitfinex::ws::BitfinexProtocol, &instruments, false);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [12, 12, 6]);
        assert_eq!(groups.concat(), instruments, "each once, in order");
        let with_books =
            connection_groups(&crate::bitfinex::ws::BitfinexProtocol, &instruments, true);
        assert_eq!(
            with_books.iter().map(Vec::len).collect::<Vec<_>>(),
            [8, 8, 8, 6],
            "three channels an instrument with its book"
        );
        let okx = connection_groups(&crate::okx::ws::OkxProtocol, &instruments, false);
        assert_eq!(okx.len(), 1, "no limit per connection");
        let okx_re = crate::okx::ws::OkxProtocol.resubscribe(&instruments[..3]);
        assert_eq!(
            okx_re.len(),
            2,
            "three stale instruments: one unsubscribe, one subscribe"
        );
    }

    #[test]
    fn string_fields_are_read_without_parsing() {
        let t = r#"{"type":"match","product_id":"BTC-USD","price":"1"}"#;
        assert_eq!(string_field(t, "\"product_id\""), Some("BTC-USD"));
        assert_eq!(string_field(t, "\"missing\""), None);
        assert_eq!(string_field(r#"{"a": "x"}"#, "\"a\""), Some("x"));
    }
}
