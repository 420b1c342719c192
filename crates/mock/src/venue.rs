//! A mock of any venue's WebSocket that replays its recording frame by frame.
//!
//! The recordings hold the venue's own side of the conversation, including
//! its replies to the recorder's subscribe requests, so after the client's
//! first message (its subscription) the mock plays the recorded frames in
//! order: the client sees exactly what the venue sent, for the products it
//! subscribed to ([`crate::route`]). Around that it speaks the venue's
//! control protocol: it answers application pings the way the venue does,
//! sends WebSocket pings, and can drop the connection.
//!
//! Every connection has its own place in the recording, so every client gets
//! every frame of what it subscribed to. Paced, a connection starts at what
//! falls due now, as on a live venue (what fell due while no one was
//! connected is missed). As fast as the client reads, a connection made
//! while others are open starts at the beginning; one made while none is
//! resumes where the furthest connection got, as a reconnecting client
//! expects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ck_bus::{Origin, RawMessage};
use ck_model::Exchange;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// How the venue mock behaves.
#[derive(Debug, Clone)]
pub struct VenueOptions {
    /// Close the first connection after this many frames.
    pub drop_after: Option<usize>,
    /// Close every connection after this many frames.
    pub drop_every: Option<usize>,
    /// Send a WebSocket ping this often.
    pub ping_every: Duration,
    /// Fault: withhold every Nth frame containing this text (for example
    /// `"type":"match"`), which makes a gap for the client.
    pub withhold: Option<(String, usize)>,
    /// Move the recorded times so that the first frame is now (where the
    /// venue's frames name their times in fields: [`crate::shift`]).
    pub shift_to_now: bool,
    /// Move the recorded times so that the first frame is at this time
    /// (overrides `shift_to_now`): two mocks of one recording started with
    /// the same time serve the same data.
    pub shift_to: Option<ck_model::Ts>,
    /// Pace the frames as recorded, this many times faster (1 = real
    /// time); as fast as the client reads when `None`.
    pub speed: Option<f64>,
    /// Fault: after every Nth frame sent, a malformed one (the next frame
    /// cut in half), which the client must count and get past.
    pub malformed_every: Option<usize>,
    /// Fault: after every N frames sent, send no data for this long (pings
    /// go on).
    pub stall: Option<(usize, Duration)>,
    /// How many times the recording plays, each lap with its times and
    /// trade ids moved on ([`crate::laps`]); `u64::MAX` loops for ever.
    pub laps: u64,
    /// Fault: the book checksum of every Nth frame that carries one is
    /// off by one ([`crate::books::corrupt_checksum`]).
    pub corrupt_checksum_every: Option<usize>,
}

impl Default for VenueOptions {
    fn default() -> Self {
        VenueOptions {
            drop_after: None,
            drop_every: None,
            ping_every: Duration::from_secs(20),
            withhold: None,
            shift_to_now: false,
            shift_to: None,
            speed: None,
            malformed_every: None,
            stall: None,
            laps: 1,
            corrupt_checksum_every: None,
        }
    }
}

struct Shared {
    exchange: Exchange,
    /// The frames, lap after lap.
    laps: crate::laps::Laps,
    /// When the first frame was recorded.
    first: ck_model::Ts,
    /// When the mock started (the paced clock's zero).
    started: tokio::time::Instant,
    /// Added to every recorded time (ns), when shifting.
    offset: i64,
    /// Per frame of a lap: the product it is about.
    products: Vec<Option<crate::route::Product>>,
    /// Per frame of a lap: a book snapshot or delta, or neither.
    book: Vec<Option<crate::books::BookFrame>>,
    /// Frames sent with a corrupted checksum, and frames with one seen.
    corrupted: AtomicUsize,
    checksummed: AtomicUsize,
    /// Frames sent again to catch a client's book up.
    caught_up: AtomicUsize,
    /// Per frame of a lap that holds the withheld marker: how many such
    /// frames come before it in the lap; and how many a lap holds.
    marked: Vec<Option<usize>>,
    marked_per_lap: usize,
    /// Frames withheld so far.
    withheld: AtomicUsize,
    /// Malformed frames sent, and stalls made.
    malformed: AtomicUsize,
    stalls: AtomicUsize,
    /// Frames that fell due while no client was connected (paced only).
    missed: AtomicUsize,
    missed_frames: std::sync::Mutex<Vec<String>>,
    /// How far the furthest connection got, in frames counted from the start
    /// of the first lap.
    cursor: AtomicUsize,
    connections: AtomicUsize,
    /// Connections open now.
    open: AtomicUsize,
    subscribes: std::sync::Mutex<Vec<String>>,
    options: VenueOptions,
}

/// A running venue mock.
pub struct MockVenue {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MockVenue {
    /// Serves the WebSocket frames of `recording` on `127.0.0.1` (any port).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(
        exchange: Exchange,
        recording: &[RawMessage],
        options: VenueOptions,
    ) -> std::io::Result<MockVenue> {
        let listener = crate::Listening::bind(([127, 0, 0, 1], 0).into()).await?;
        MockVenue::start_on(listener, exchange, recording, options).await
    }

    /// As [`MockVenue::start`], on `listener`.
    ///
    /// # Errors
    /// When the listener has no address.
    pub async fn start_on(
        mut listener: crate::Listening,
        exchange: Exchange,
        recording: &[RawMessage],
        options: VenueOptions,
    ) -> std::io::Result<MockVenue> {
        let ws: Vec<&RawMessage> = recording
            .iter()
            .filter(|m| m.origin == Origin::Ws)
            .collect();
        let frames: Vec<String> = ws.iter().map(|m| m.data.clone()).collect();
        let products = crate::route::products(exchange, &frames);
        let book = match crate::venues::wire(exchange).book {
            Some(kind) => frames
                .iter()
                .map(|f| serde_json::from_str(f).ok().and_then(|v| kind(&v)))
                .collect(),
            None => vec![None; frames.len()],
        };
        let mut marked_per_lap = 0;
        let marked = frames
            .iter()
            .map(|f| match &options.withhold {
                Some((marker, _)) if f.contains(marker.as_str()) => {
                    marked_per_lap += 1;
                    Some(marked_per_lap - 1)
                }
                _ => None,
            })
            .collect();
        let recorded_at: Vec<ck_model::Ts> = ws.iter().map(|m| m.ts_received).collect();
        let offset = match (options.shift_to, options.shift_to_now, recorded_at.first()) {
            (Some(at), _, Some(first)) => at.0 - first.0,
            (None, true, Some(first)) => ck_model::Ts::now().0 - first.0,
            _ => 0,
        };
        let first = recorded_at.first().copied().unwrap_or(ck_model::Ts(0));
        let shared = Arc::new(Shared {
            exchange,
            laps: crate::laps::Laps::new(exchange, frames, recorded_at),
            first,
            started: tokio::time::Instant::now(),
            offset,
            products,
            book,
            corrupted: AtomicUsize::new(0),
            checksummed: AtomicUsize::new(0),
            caught_up: AtomicUsize::new(0),
            marked,
            marked_per_lap,
            withheld: AtomicUsize::new(0),
            malformed: AtomicUsize::new(0),
            stalls: AtomicUsize::new(0),
            missed: AtomicUsize::new(0),
            missed_frames: std::sync::Mutex::new(Vec::new()),
            cursor: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            subscribes: std::sync::Mutex::new(Vec::new()),
            options,
        });
        let addr = listener.local_addr()?;
        let accept = shared.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let shared = accept.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(socket, shared).await {
                        tracing::debug!(error = %e, "mock venue connection ended");
                    }
                });
            }
        });
        Ok(MockVenue { addr, shared })
    }

    /// Malformed frames sent by the `malformed_every` fault.
    #[must_use]
    pub fn malformed(&self) -> usize {
        self.shared.malformed.load(Ordering::SeqCst)
    }

    /// Stalls made by the `stall` fault.
    #[must_use]
    pub fn stalls(&self) -> usize {
        self.shared.stalls.load(Ordering::SeqCst)
    }

    /// Frames sent with a corrupted book checksum.
    #[must_use]
    pub fn corrupted(&self) -> usize {
        self.shared.corrupted.load(Ordering::SeqCst)
    }

    /// Book frames sent again to catch a client's book up (after it
    /// subscribed again, or resumed on a new connection).
    #[must_use]
    pub fn caught_up(&self) -> usize {
        self.shared.caught_up.load(Ordering::SeqCst)
    }

    /// Frames withheld by the `withhold` fault.
    #[must_use]
    pub fn withheld(&self) -> usize {
        self.shared.withheld.load(Ordering::SeqCst)
    }

    /// Frames that fell due while no client was connected, never sent
    /// (paced mocks run like a live venue).
    #[must_use]
    pub fn missed(&self) -> usize {
        self.shared.missed.load(Ordering::SeqCst)
    }

    /// The frames it missed (see [`MockVenue::missed`]), as recorded.
    #[must_use]
    pub fn missed_frames(&self) -> Vec<String> {
        self.shared
            .missed_frames
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `ws://127.0.0.1:PORT`.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// True once every frame of every lap was sent.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.shared.cursor.load(Ordering::SeqCst) >= self.shared.total()
    }

    /// Frames in one lap.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.laps.len()
    }

    /// True when the recording had no WebSocket frames.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shared.laps.is_empty()
    }

    /// Every subscribe-like message clients sent, in order.
    #[must_use]
    pub fn subscribes(&self) -> Vec<String> {
        self.shared
            .subscribes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Shared {
    /// Frames in all laps.
    fn total(&self) -> usize {
        let laps = usize::try_from(self.options.laps).unwrap_or(usize::MAX);
        self.laps.len().saturating_mul(laps)
    }

    /// True when the withhold fault keeps frame `n` back: every Nth frame
    /// holding the marker, counted across laps.
    fn withholds(&self, n: usize) -> bool {
        let Some((_, every)) = &self.options.withhold else {
            return false;
        };
        let len = self.laps.len().max(1);
        let Some(Some(rank)) = self.marked.get(n % len) else {
            return false;
        };
        let count = (n / len) * self.marked_per_lap + rank + 1;
        count.is_multiple_of((*every).max(1))
    }

    /// Frame `n`'s text as sent: its times moved by the mock's shift.
    fn outgoing(&self, frame: String, n: usize) -> String {
        let offset = self.offset + self.laps.offset(n);
        if offset == 0 {
            frame
        } else {
            crate::shift::shift_frame(self.exchange, &frame, offset)
        }
    }

    /// Marks frame `n` as passed by a connection; true for the first.
    fn pass(&self, n: usize) -> bool {
        self.cursor.fetch_max(n + 1, Ordering::SeqCst) <= n
    }

    /// When frame `n` falls due, paced at `speed`.
    fn due(&self, n: usize, speed: f64) -> tokio::time::Instant {
        let at = self.laps.recorded_at(n).unwrap_or(self.first);
        self.started + Duration::from_nanos(((at.0 - self.first.0).max(0) as f64 / speed) as u64)
    }
}

/// The venue's answer to an application-level ping, if `text` is one.
fn pong(exchange: Exchange, text: &str) -> Option<String> {
    (crate::venues::wire(exchange).pong)(text)
}

async fn serve(
    socket: TcpStream,
    shared: Arc<Shared>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    // Streams named in the URL (Binance's `/stream?streams=`) are a subscription.
    let mut wanted = std::collections::HashSet::new();
    let mut subscribed = false;
    #[expect(
        clippy::result_large_err,
        reason = "tungstenite's handshake callback returns its own error type"
    )]
    let mut ws = tokio_tungstenite::accept_hdr_async(
        socket,
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
         resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            if let Some(query) = req.uri().query().filter(|q| q.contains("streams=")) {
                subscribed = true;
                wanted = crate::route::subscribed(shared.exchange, query);
            }
            Ok(resp)
        },
    )
    .await?;
    let index = shared.connections.fetch_add(1, Ordering::SeqCst);
    let drop_after = match (index, shared.options.drop_after) {
        (0, Some(n)) => Some(n),
        _ => shared.options.drop_every,
    };
    // This connection's place: as fast as the client reads, the start while
    // others are connected (each client gets the whole recording), else
    // where the furthest connection got (a reconnecting client resumes);
    // paced, now (below).
    let (_open, others) = crate::Open::count(&shared.open);
    let paced = shared.options.speed.is_some_and(|s| s > 0.0);
    let mut at = if others > 0 && !paced {
        0
    } else {
        shared.cursor.load(Ordering::SeqCst)
    };
    // Paced, a reconnecting client has missed what fell due meanwhile, as on
    // a live venue (its gap detection and REST repair must cover it).
    if index > 0
        && let Some(speed) = shared.options.speed.filter(|s| *s > 0.0)
    {
        let now = tokio::time::Instant::now();
        while at < shared.total() && shared.due(at, speed) < now {
            if shared.pass(at)
                && let Some((frame, _)) = shared.laps.frame(at)
            {
                shared.missed.fetch_add(1, Ordering::SeqCst);
                shared
                    .missed_frames
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(frame);
            }
            at += 1;
        }
    }
    let mut ping = tokio::time::interval(shared.options.ping_every);
    ping.tick().await;
    let mut sent = 0usize;
    let mut stalled_until: Option<tokio::time::Instant> = None;
    let wire = crate::venues::wire(shared.exchange);
    // This connection's message numbers (where the venue numbers them).
    let mut number = 0u64;
    // Book frames to send again before the recording goes on.
    let mut pending: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    loop {
        if drop_after.is_some_and(|n| sent >= n) {
            return Ok(());
        }
        let i = at;
        let next = (i < shared.total() && subscribed).then_some(i);
        // Paced: frame i is due at its recorded offset from the first, scaled.
        let due = match shared.options.speed {
            Some(speed) if speed > 0.0 && next.is_some() => shared.due(i, speed),
            _ => tokio::time::Instant::now(),
        };
        let due = stalled_until.map_or(due, |u| due.max(u));
        tokio::select! {
            biased;
            incoming = ws.next() => {
                match incoming {
                    Some(Ok(Message::Text(t))) => {
                        if let Some(reply) = pong(shared.exchange, t.as_str()) {
                            ws.send(Message::Text(reply.into())).await?;
                        } else {
                            let names = crate::route::subscribed(shared.exchange, t.as_str());
                            // Subscribed again, or resuming mid-recording: a
                            // fresh book of what it names, as a venue sends.
                            if (subscribed || at > 0) && !t.as_str().contains("unsubscribe") {
                                let again = crate::books::catch_up(&shared.book, &shared.products, &names, at);
                                shared.caught_up.fetch_add(again.len(), Ordering::SeqCst);
                                pending.extend(again);
                            }
                            wanted.extend(names);
                            shared
                                .subscribes
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(t.as_str().to_owned());
                            subscribed = true;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                }
            }
            _ = ping.tick() => ws.send(Message::Ping(b"mock".to_vec().into())).await?,
            () = std::future::ready(()), if !pending.is_empty() => {
                let Some(j) = pending.pop_front() else {
                    continue;
                };
                let Some((frame, _)) = shared.laps.frame(j) else {
                    continue;
                };
                let text = shared.outgoing(frame, j);
                let text = match wire.sequence {
                    Some(field) => {
                        number += 1;
                        crate::books::renumber(&text, field, number)
                    }
                    None => text,
                };
                ws.send(Message::Text(text.into())).await?;
            }
            () = tokio::time::sleep_until(due), if next.is_some() => {
                at += 1;
                let first = shared.pass(i);
                if shared.withholds(i) {
                    if first {
                        shared.withheld.fetch_add(1, Ordering::SeqCst);
                    }
                    // A message the venue numbered, lost on the way.
                    number += 1;
                    continue;
                }
                // A frame about a product this client did not subscribe to
                // is not its to see (when its subscription could be read).
                let product = shared.products.get(i % shared.laps.len().max(1)).and_then(Option::as_ref);
                if product.is_some_and(|p| !wanted.is_empty() && !wanted.contains(p)) {
                    continue;
                }
                // None: a frame this lap does not play.
                let Some((frame, _)) = shared.laps.frame(i) else {
                    continue;
                };
                let mut text = shared.outgoing(frame, i);
                if let Some(field) = wire.sequence {
                    number += 1;
                    text = crate::books::renumber(&text, field, number);
                }
                if let Some(every) = shared.options.corrupt_checksum_every.filter(|e| *e > 0)
                    && let Some(corrupt) = crate::books::corrupt_checksum(&text)
                {
                    let seen = shared.checksummed.fetch_add(1, Ordering::SeqCst) + 1;
                    if seen.is_multiple_of(every) {
                        text = corrupt;
                        shared.corrupted.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if let Some(every) = shared.options.malformed_every
                    && every > 0
                    && (sent + 1).is_multiple_of(every)
                {
                    let mut cut = text.len() / 2;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    ws.send(Message::Text(text[..cut].to_owned().into())).await?;
                    shared.malformed.fetch_add(1, Ordering::SeqCst);
                }
                ws.send(Message::Text(text.into())).await?;
                sent += 1;
                if let Some((every, pause)) = shared.options.stall
                    && every > 0
                    && sent.is_multiple_of(every)
                {
                    stalled_until = Some(tokio::time::Instant::now() + pause);
                    shared.stalls.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
}
