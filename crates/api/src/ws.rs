//! WebSocket push at `/api/v1/ws`.
//!
//! Client messages (JSON):
//! - `{"op":"subscribe","channel":"candles","exchange":"binance","instruments":["BTC-USDT"],"interval":"1m"}`
//!   (`channel`: `trades`, `candles`, `tickers` or `book`, the live order
//!   book with `depth`, see [`crate::ws_book`]; `instrument` for one),
//!   and `"op":"unsubscribe"` with the same fields;
//! - the older OHLCV database's form:
//!   `{"event_type":"subscribe","data_type":"ohlcv","exchange":"bitfinex","base_id":"BTC","quote_id":"USD","interval":"1m"}`.
//!
//! - statistics: `{"op":"subscribe","channel":"stats","window":"24h"}`
//!   (optionally `exchange` and `instruments`, or `instruments` as
//!   `exchange:BASE-QUOTE`): the table of `/api/v1/stats`, pushed as
//!   `{"type":"stats",...,"data":[...]}` every five seconds.
//!
//! Server messages: `subscribed` / `unsubscribed`; a `snapshot` per
//! subscription (the latest candle, trade or quote in the store); then
//! `candle` (with its state: provisional, closed, revised), `trade` and
//! `ticker` updates; `heartbeat` every few seconds; `lagged` with the number
//! of updates dropped when the client fell behind by more than its queue;
//! `error` for a message it cannot use (the connection stays open).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use ck_bus::Event;
use ck_model::{CandleRecord, Exchange, Instrument, Interval, Ts};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::ApiState;

/// What a client listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    Trades(Exchange, Instrument),
    Candles(Exchange, Instrument, Interval),
    Tickers(Exchange, Instrument),
    /// The live order book to a depth ([`crate::ws_book`]).
    Book(Exchange, Instrument, usize),
    /// Statistics over a window, for some instruments (`exchange:BASE-QUOTE`,
    /// comma-separated) or all; pushed every [`STATS_EVERY`].
    Stats {
        window: String,
        instruments: Option<String>,
    },
}

/// How often statistics subscriptions get a fresh table.
const STATS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The largest message a client may send (requests are small).
pub(crate) const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Instruments one request may name.
pub(crate) const MAX_INSTRUMENTS_PER_REQUEST: usize = 256;
/// Subscriptions one client may hold.
pub(crate) const MAX_TOPICS_PER_CLIENT: usize = 1_024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    exchange: Option<String>,
    #[serde(default)]
    instrument: Option<String>,
    #[serde(default)]
    instruments: Option<Vec<String>>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    depth: Option<usize>,
    // The older OHLCV database's fields.
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    data_type: Option<String>,
    #[serde(default)]
    base_id: Option<String>,
    #[serde(default)]
    quote_id: Option<String>,
}

/// `subscribe` or `unsubscribe`, and the topics named.
fn read_request(text: &str) -> Result<(bool, Vec<Topic>), String> {
    let r: Request =
        serde_json::from_str(text).map_err(|e| format!("not a request this server knows: {e}"))?;
    let (op, channel) = match (&r.op, &r.event_type) {
        (Some(op), _) => (op.as_str(), r.channel.clone().unwrap_or_default()),
        (None, Some(ev)) => {
            let channel = match r.data_type.as_deref() {
                Some("ohlcv") => "candles".to_owned(),
                Some(other) => other.to_owned(),
                None => return Err("`data_type` is missing".into()),
            };
            (ev.as_str(), channel)
        }
        (None, None) => return Err("`op` is missing (subscribe or unsubscribe)".into()),
    };
    let subscribe = match op {
        "subscribe" => true,
        "unsubscribe" => false,
        other => {
            return Err(format!(
                "unknown op `{other}`; valid: subscribe, unsubscribe"
            ));
        }
    };
    if channel == "stats" {
        return Ok((subscribe, vec![stats_topic(&r)?]));
    }
    let exchange: Exchange = r
        .exchange
        .as_deref()
        .ok_or("`exchange` is missing")?
        .parse()
        .map_err(|e: ck_model::InstrumentError| e.to_string())?;
    let mut names: Vec<String> = r.instruments.clone().unwrap_or_default();
    names.extend(r.instrument.clone());
    if let (Some(b), Some(q)) = (&r.base_id, &r.quote_id) {
        names.push(format!("{b}-{q}"));
    }
    if names.is_empty() {
        return Err("name at least one `instrument` (or `instruments`)".into());
    }
    if names.len() > MAX_INSTRUMENTS_PER_REQUEST {
        return Err(format!(
            "{} instruments in one request; at most {MAX_INSTRUMENTS_PER_REQUEST}",
            names.len()
        ));
    }
    let mut topics = Vec::new();
    for n in names {
        let instrument = Instrument::parse(&n).map_err(|e| e.to_string())?;
        topics.push(match channel.as_str() {
            "trades" => Topic::Trades(exchange, instrument),
            "book" => {
                let depth = r.depth.unwrap_or(crate::ws_book::DEFAULT_DEPTH);
                if !(1..=crate::ws_book::MAX_DEPTH).contains(&depth) {
                    return Err(format!(
                        "`depth` = {depth}; a book is sent 1 to {} levels a side",
                        crate::ws_book::MAX_DEPTH
                    ));
                }
                Topic::Book(exchange, instrument, depth)
            }
            "tickers" => Topic::Tickers(exchange, instrument),
            "candles" => {
                let interval: Interval = r
                    .interval
                    .as_deref()
                    .ok_or("candles need an `interval`")?
                    .parse()
                    .map_err(|e: ck_model::IntervalError| e.to_string())?;
                Topic::Candles(exchange, instrument, interval)
            }
            other => {
                return Err(format!(
                    "unknown channel `{other}`; valid: trades, candles, tickers, book, stats"
                ));
            }
        });
    }
    Ok((subscribe, topics))
}

/// A statistics subscription: `window` (default 24h) and, optionally,
/// `exchange` with `instruments`, or `instruments` as `exchange:BASE-QUOTE`.
fn stats_topic(r: &Request) -> Result<Topic, String> {
    let window = r.window.clone().unwrap_or_else(|| "24h".to_owned());
    let q = crate::params::Query::from([("window".to_owned(), window.clone())]);
    crate::stats::window(&q).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = r.instruments.clone().unwrap_or_default();
    names.extend(r.instrument.clone());
    let instruments = if names.is_empty() {
        None
    } else {
        let mut keys = Vec::new();
        for n in names {
            let key = match &r.exchange {
                Some(e) => format!("{e}:{n}"),
                None => n,
            };
            let (e, i) = key.split_once(':').ok_or_else(|| {
                format!("`{key}`: name `exchange`, or write instruments as exchange:BASE-QUOTE")
            })?;
            e.parse::<Exchange>()
                .map_err(|e: ck_model::InstrumentError| e.to_string())?;
            Instrument::parse(i).map_err(|e| e.to_string())?;
            keys.push(key);
        }
        Some(keys.join(","))
    };
    Ok(Topic::Stats {
        window,
        instruments,
    })
}

fn topic_json(t: &Topic) -> serde_json::Value {
    match t {
        Topic::Stats {
            window,
            instruments,
        } => json!({"channel": "stats", "window": window, "instruments": instruments}),
        Topic::Trades(e, i) => json!({"channel": "trades", "exchange": e, "instrument": i}),
        Topic::Tickers(e, i) => json!({"channel": "tickers", "exchange": e, "instrument": i}),
        Topic::Book(e, i, d) => {
            json!({"channel": "book", "exchange": e, "instrument": i, "depth": d})
        }
        Topic::Candles(e, i, iv) => {
            json!({"channel": "candles", "exchange": e, "instrument": i, "interval": iv})
        }
    }
}

/// An update as every client subscribed to its topic receives it: encoded
/// once, shared by reference (a client's send copies nothing but a count).
#[derive(Debug)]
pub(crate) struct Encoded {
    /// Who gets it; `None` for everyone.
    topic: Option<Topic>,
    text: Utf8Bytes,
    /// The fields that are not the topic's, as a JSON array in the order of
    /// [`fields`]: a row of a `batch` frame.
    row: String,
    /// When candlekeep received it from the exchange (trades and quotes).
    received: Option<Ts>,
}

/// The fields of a row of a `batch` frame of `topic`.
fn fields(topic: &Topic) -> &'static [&'static str] {
    match topic {
        Topic::Trades(..) => &TRADE_FIELDS,
        Topic::Tickers(..) => &TICKER_FIELDS,
        Topic::Candles(..) => &CandleRecord::COLUMNS,
        Topic::Stats { .. } | Topic::Book(..) => &[],
    }
}

const TRADE_FIELDS: [&str; 6] = ["trade_id", "price", "qty", "side", "ts", "received"];
const TICKER_FIELDS: [&str; 6] = ["bid", "ask", "bid_size", "ask_size", "last", "ts"];

/// The updates of one topic within a [`Batch`], in feed order.
#[derive(Debug)]
pub(crate) struct Group {
    /// Who gets them; `None` for everyone (the encoder's own `lagged` notice).
    topic: Option<Topic>,
    updates: Vec<Utf8Bytes>,
    /// The same updates as one `batch` frame, for clients connected with
    /// `?batch=true` (built while any is connected).
    frame: Option<Utf8Bytes>,
}

/// What the encoder took from the live feed in one go (everything ready,
/// or what arrived within the linger), grouped by topic. Each client reads
/// a batch in one wake-up and sends its part with one flush: so the cost
/// per client follows the number of batches, not of updates.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Position of the first update in the stream of all updates, so a
    /// client that lagged can count what it missed.
    first: u64,
    /// Updates in the batch.
    len: u64,
    /// The earliest time one of them was received from the exchange.
    received: Option<Ts>,
    groups: Vec<Group>,
}

impl Batch {
    /// Groups `updates` by topic, keeping each topic's order.
    fn new(first: u64, updates: Vec<Encoded>, frames: bool) -> Batch {
        let len = updates.len() as u64;
        let received = updates.iter().filter_map(|u| u.received).min();
        let mut groups: Vec<(Group, Vec<String>)> = Vec::new();
        // Where each topic's group is: a batch may hold hundreds of topics.
        let mut index: std::collections::HashMap<Topic, usize> = std::collections::HashMap::new();
        for u in updates {
            let at = u.topic.as_ref().and_then(|t| index.get(t).copied());
            match at {
                Some(i) => {
                    let (g, rows) = &mut groups[i];
                    g.updates.push(u.text);
                    rows.push(u.row);
                }
                None => {
                    if let Some(t) = &u.topic {
                        index.insert(t.clone(), groups.len());
                    }
                    groups.push((
                        Group {
                            topic: u.topic,
                            updates: vec![u.text],
                            frame: None,
                        },
                        vec![u.row],
                    ));
                }
            }
        }
        let groups = groups
            .into_iter()
            .map(|(mut g, rows)| {
                if frames && let Some(t) = &g.topic {
                    g.frame = Some(batch_frame(t, &rows));
                }
                g
            })
            .collect();
        Batch {
            first,
            len,
            received,
            groups,
        }
    }
}

/// A `batch` frame: the topic's fields (`channel`, `exchange`,
/// `instrument`, `interval`), then `fields`, the names of the columns, and
/// `rows`, one array per update, oldest first.
fn batch_frame(topic: &Topic, rows: &[String]) -> Utf8Bytes {
    let mut head = topic_json(topic);
    if let Some(o) = head.as_object_mut() {
        o.insert("type".into(), json!("batch"));
        o.insert("fields".into(), json!(fields(topic)));
    }
    let head = head.to_string();
    let size: usize = rows.iter().map(|r| r.len() + 1).sum();
    let mut out = String::with_capacity(head.len() + size + 12);
    // `{...}` becomes `{...,"rows":[...]}`.
    out.push_str(head.strip_suffix('}').unwrap_or(&head));
    out.push_str(",\"rows\":[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r);
    }
    out.push_str("]}");
    out.into()
}

/// The topic of `event`, if clients can subscribe to it.
fn topic_of(event: &Event) -> Option<Topic> {
    match event {
        Event::Trade(t) => Some(Topic::Trades(t.exchange, t.instrument.clone())),
        Event::Quote(q) => Some(Topic::Tickers(q.exchange, q.instrument.clone())),
        Event::Candle(c) => Some(Topic::Candles(c.exchange, c.instrument.clone(), c.interval)),
        _ => None,
    }
}

/// The topic of `event` and its JSON, if clients can subscribe to it.
fn encode(event: &Event) -> Option<Encoded> {
    let topic = topic_of(event)?;
    let value = ck_bus::record_json::record_json(event)?;
    // A candle's row is its record; the others', their own fields.
    let values = value.get("candle").unwrap_or(&value);
    let row: Vec<&serde_json::Value> = fields(&topic)
        .iter()
        .map(|f| values.get(f).unwrap_or(&serde_json::Value::Null))
        .collect();
    let received = match event {
        Event::Trade(t) => Some(t.ts_received),
        Event::Quote(q) => Some(q.ts_received),
        _ => None,
    };
    Some(Encoded {
        received,
        row: serde_json::to_string(&row).unwrap_or_else(|_| "[]".into()),
        topic: Some(topic),
        text: value.to_string().into(),
    })
}

/// How many clients listen to each topic, so that the encoder skips what
/// nobody asked for (most candle updates, most instruments).
type Listened = Arc<std::sync::RwLock<std::collections::HashMap<Topic, usize>>>;

/// One client's topics, counted in [`Listened`] while it is connected.
struct ClientTopics {
    mine: HashSet<Topic>,
    all: Listened,
}

impl ClientTopics {
    fn add(&mut self, t: Topic) {
        if self.mine.insert(t.clone())
            && let Ok(mut all) = self.all.write()
        {
            *all.entry(t).or_default() += 1;
        }
    }

    fn remove(&mut self, t: &Topic) {
        if self.mine.remove(t)
            && let Ok(mut all) = self.all.write()
            && let Some(n) = all.get_mut(t)
        {
            *n -= 1;
            if *n == 0 {
                all.remove(t);
            }
        }
    }
}

impl Drop for ClientTopics {
    fn drop(&mut self) {
        let Ok(mut all) = self.all.write() else {
            return;
        };
        for t in self.mine.drain() {
            if let Some(n) = all.get_mut(&t) {
                *n -= 1;
                if *n == 0 {
                    all.remove(&t);
                }
            }
        }
        // A client that held many topics leaves no large table behind.
        if all.capacity() > 4 * all.len() + 64 {
            all.shrink_to_fit();
        }
    }
}

/// What every WebSocket client of one server shares: the topics listened
/// to, and the channel of encoded updates (started with the first client).
#[derive(Debug, Default)]
pub(crate) struct Hub {
    listened: Listened,
    /// Clients connected with `?batch=true`: while there are any, each batch
    /// carries ready `batch` frames.
    batch_clients: Arc<AtomicUsize>,
    /// Position of the next update the encoder will send.
    next: Arc<AtomicU64>,
    updates: std::sync::OnceLock<broadcast::Sender<Arc<Batch>>>,
}

/// The channel of encoded updates every WebSocket client reads, started
/// with the first client: one task reads the live feed and encodes each
/// update once, however many clients there are.
pub(crate) fn fanout(state: &ApiState) -> broadcast::Receiver<Arc<Batch>> {
    state
        .hub
        .updates
        .get_or_init(|| {
            // A batch holds one update or more: this many batches hold at
            // least a queue of updates, so the check by position comes first.
            let (tx, _) = broadcast::channel(state.ws_queue);
            let encoder = Encoder {
                feed: state.feed.subscribe(),
                out: tx.clone(),
                listened: state.hub.listened.clone(),
                batch_clients: state.hub.batch_clients.clone(),
                next: state.hub.next.clone(),
                linger: state.ws_linger,
            };
            encoder.start();
            tx
        })
        .subscribe()
}

/// The metric of the time from receiving a trade or quote from the
/// exchange to writing it to a WebSocket client (the oldest of each write).
pub const PUSH_LATENCY: &str = "candlekeep_ws_push_latency_seconds";

/// Most updates in one batch.
const MAX_BATCH: usize = 4_096;

/// Reads the live feed, encodes what clients listen to, and sends it on in
/// batches.
struct Encoder {
    feed: broadcast::Receiver<Arc<Event>>,
    out: broadcast::Sender<Arc<Batch>>,
    listened: Listened,
    batch_clients: Arc<AtomicUsize>,
    next: Arc<AtomicU64>,
    /// How long to keep collecting after the first update of a batch.
    linger: std::time::Duration,
}

impl Encoder {
    /// Runs on a thread of its own: as a task, it waited its turn behind
    /// every client task, and with a thousand clients it fell seconds
    /// behind the feed.
    fn start(self) {
        let spawned = std::thread::Builder::new()
            .name("ck-ws-encoder".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt.block_on(self.run()),
                    Err(e) => tracing::error!("WebSocket encoder: no runtime: {e}"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!("WebSocket encoder: no thread: {e}");
        }
    }

    async fn run(mut self) {
        let mut updates: Vec<Encoded> = Vec::new();
        loop {
            // Wait for the first update, then take what else is ready (and,
            // with a linger, what arrives within it).
            let first = self.feed.recv().await;
            if !self.take(first, &mut updates) {
                return;
            }
            let deadline = tokio::time::Instant::now() + self.linger;
            while updates.len() < MAX_BATCH {
                let next = match self.feed.try_recv() {
                    Ok(e) => Ok(e),
                    Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                    Err(TryRecvError::Closed) => Err(RecvError::Closed),
                    Err(TryRecvError::Empty) if self.linger.is_zero() => break,
                    Err(TryRecvError::Empty) => {
                        match tokio::time::timeout_at(deadline, self.feed.recv()).await {
                            Ok(r) => r,
                            Err(_) => break,
                        }
                    }
                };
                if !self.take(next, &mut updates) {
                    return;
                }
            }
            if updates.is_empty() {
                continue;
            }
            let first = self.next.fetch_add(updates.len() as u64, Ordering::Relaxed);
            let frames = self.batch_clients.load(Ordering::Relaxed) > 0;
            let batch = Batch::new(first, std::mem::take(&mut updates), frames);
            // No receivers is fine: nobody is subscribed right now.
            let _ = self.out.send(Arc::new(batch));
        }
    }

    /// Adds what the feed gave to `updates`; false once the feed is closed.
    fn take(&self, received: Result<Arc<Event>, RecvError>, updates: &mut Vec<Encoded>) -> bool {
        match received {
            Ok(event) => {
                if let Some(topic) = topic_of(&event)
                    && self.listened.read().is_ok_and(|l| l.contains_key(&topic))
                    && let Some(e) = encode(&event)
                {
                    updates.push(e);
                }
                true
            }
            // The encoder itself fell behind: every client missed these.
            Err(RecvError::Lagged(n)) => {
                updates.push(Encoded {
                    topic: None,
                    text: lagged_notice(n),
                    row: String::new(),
                    received: None,
                });
                true
            }
            Err(RecvError::Closed) => false,
        }
    }
}

/// The statistics a subscription asks for, as JSON (an error message if
/// they cannot be computed).
async fn stats_json(
    state: &ApiState,
    window: &str,
    instruments: Option<&String>,
) -> serde_json::Value {
    let mut q = crate::params::Query::from([("window".to_owned(), window.to_owned())]);
    if let Some(i) = instruments {
        q.insert("instruments".to_owned(), i.clone());
    }
    match crate::stats::compute(state, &q).await {
        Ok(rows) => json!(rows),
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// The first message of a subscription: the latest stored state.
async fn snapshot(state: &ApiState, topic: &Topic) -> serde_json::Value {
    let store = state.store.as_ref();
    let data = match topic {
        Topic::Stats {
            window,
            instruments,
        } => Some(stats_json(state, window, instruments.as_ref()).await),
        Topic::Candles(e, i, iv) => store
            .latest_candle(*e, i, *iv)
            .await
            .ok()
            .flatten()
            .map(|c| json!(CandleRecord::from(&c))),
        Topic::Tickers(e, i) => store
            .latest_quote(*e, i)
            .await
            .ok()
            .flatten()
            .map(|q| json!({"bid": q.bid, "ask": q.ask, "bid_size": q.bid_size, "ask_size": q.ask_size, "ts": q.ts_exchange})),
        // Answered by `ws_book::snapshot`, which keeps what it sent.
        Topic::Book(..) => None,
        Topic::Trades(e, i) => store.last_trade(*e, i).await.ok().flatten().map(|t| {
            json!({"trade_id": t.trade_id, "price": t.price, "qty": t.size, "side": t.side, "ts": t.ts_exchange})
        }),
    };
    let mut msg = topic_json(topic);
    if let Some(obj) = msg.as_object_mut() {
        obj.insert("type".into(), json!("snapshot"));
        obj.insert("data".into(), data.unwrap_or(serde_json::Value::Null));
    }
    msg
}

/// Upgrades to a WebSocket. `?batch=true` asks for updates in batches: a
/// `{"type":"batch","channel":...,"fields":[...],"rows":[[...],...]}` frame
/// per subscription holds its updates among what the server took from the
/// feed at once, one row per update.
pub(crate) async fn upgrade(
    State(state): State<ApiState>,
    crate::market::Params(q): crate::market::Params,
    ws: WebSocketUpgrade,
) -> Result<Response, crate::error::ApiError> {
    let batch = match q.get("batch").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(other) => {
            return Err(crate::error::ApiError::BadRequest(format!(
                "`batch` = `{other}`; valid: true, false"
            )));
        }
    };
    // Clients send only small requests; tungstenite zeroes its whole read
    // buffer on every read attempt, which at the default 128 KiB made memset
    // the top of the fan-out profile.
    Ok(ws
        .read_buffer_size(4 * 1024)
        .max_message_size(MAX_REQUEST_BYTES)
        .max_frame_size(MAX_REQUEST_BYTES)
        .on_upgrade(move |socket| client(socket, state, batch)))
}

/// A client connected with `?batch=true`, counted while it is connected.
struct BatchClient(Arc<AtomicUsize>);

impl BatchClient {
    fn new(count: &Arc<AtomicUsize>) -> BatchClient {
        count.fetch_add(1, Ordering::Relaxed);
        BatchClient(count.clone())
    }
}

impl Drop for BatchClient {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a client is in the stream of updates, to count what it missed
/// when it lags.
struct Position {
    /// The position of the next update it expects.
    next: u64,
    /// It lagged, and the count is due with the next batch it gets.
    lagged: bool,
}

impl Position {
    /// Updates missed before `batch` (if it lagged), and moves past it.
    fn advance(&mut self, batch: &Batch) -> Option<u64> {
        let missed = self
            .lagged
            .then(|| batch.first.saturating_sub(self.next))
            .filter(|n| *n > 0);
        self.lagged = false;
        self.next = batch.first + batch.len;
        missed
    }
}

/// The position of the next update the encoder will send.
fn head(state: &ApiState) -> u64 {
    state.hub.next.load(Ordering::Relaxed)
}

fn lagged_notice(dropped: u64) -> Utf8Bytes {
    json!({"type": "lagged", "dropped": dropped})
        .to_string()
        .into()
}

/// What of `batch` goes to a client with `topics`, as frames, added to `out`.
fn frames_for(batch: &Batch, topics: &HashSet<Topic>, batched: bool, out: &mut Vec<Utf8Bytes>) {
    let mine = |g: &&Group| g.topic.as_ref().is_none_or(|t| topics.contains(t));
    if !batched {
        for g in batch.groups.iter().filter(mine) {
            out.extend(g.updates.iter().cloned());
        }
        return;
    }
    // A frame per topic (shared by every client of it); notices alone.
    for g in batch.groups.iter().filter(mine) {
        match &g.frame {
            Some(frame) => out.push(frame.clone()),
            // A batch built before this client connected.
            None => out.extend(g.updates.iter().cloned()),
        }
    }
}

/// What a client sent, as its reader task passes it on.
enum Incoming {
    Text(Utf8Bytes),
    Binary,
}

/// Reads what a client sends, on a task of its own: a read attempt costs
/// (tungstenite zeroes its read buffer each time), and polling the socket
/// in the writer's loop made one for every update pushed.
fn spawn_reader(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
) -> (tokio::sync::mpsc::Receiver<Incoming>, AbortOnDrop) {
    use futures_util::StreamExt as _;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(async move {
        while let Some(received) = stream.next().await {
            let incoming = match received {
                Ok(Message::Text(text)) => Incoming::Text(text),
                Ok(Message::Binary(_)) => Incoming::Binary,
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(_) => continue,
            };
            if tx.send(incoming).await.is_err() {
                return;
            }
        }
    });
    (rx, AbortOnDrop(task))
}

/// Whether every instrument `topics` name is captured here or stored; an
/// error naming the first that is not, with what is stored.
async fn known(state: &ApiState, topics: &[Topic]) -> Result<(), String> {
    let named: Vec<(Exchange, &Instrument)> = topics
        .iter()
        .filter_map(|t| match t {
            Topic::Trades(e, i)
            | Topic::Tickers(e, i)
            | Topic::Candles(e, i, _)
            | Topic::Book(e, i, _) => Some((*e, i)),
            Topic::Stats { .. } => None,
        })
        .collect();
    // What this process captures, and what the collectors of a cluster
    // report they capture.
    let reported = state.connectors.snapshots();
    let captured = |e: Exchange, i: &Instrument| {
        state.captured.contains(&(e, i.clone()))
            || reported
                .iter()
                .any(|s| s.exchange == e && s.instruments.contains(i))
    };
    if named.iter().all(|(e, i)| captured(*e, i)) {
        return Ok(());
    }
    let stored = state.store.instruments().await.map_err(|e| {
        tracing::error!(error = %e, "instrument list for a subscription");
        "the instrument list cannot be read right now".to_owned()
    })?;
    for (e, i) in named {
        let here = captured(e, i)
            || stored
                .iter()
                .any(|s| s.info.exchange == e && &s.info.instrument == i);
        if !here {
            return Err(format!(
                "no {e} {i} here: nothing captures it and the store holds none; {} (GET /api/v1/instruments lists them)",
                ck_store::stored_hint(&stored, e, 10)
            ));
        }
    }
    Ok(())
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn client(socket: WebSocket, state: ApiState, batched: bool) {
    use futures_util::{SinkExt as _, StreamExt as _};
    let (mut socket, stream) = socket.split();
    let (mut incoming, _reader) = spawn_reader(stream);
    let _counted = batched.then(|| BatchClient::new(&state.hub.batch_clients));
    let mut position = Position {
        next: state.hub.next.load(Ordering::Relaxed),
        lagged: false,
    };
    let mut feed = fanout(&state);
    let mut topics = ClientTopics {
        mine: HashSet::new(),
        all: state.hub.listened.clone(),
    };
    let mut heartbeat = tokio::time::interval(state.heartbeat);
    heartbeat.tick().await;
    let mut stats_tick = tokio::time::interval(STATS_EVERY);
    stats_tick.tick().await;
    let mut frames: Vec<Utf8Bytes> = Vec::new();
    // The `book` subscriptions: what each was last sent.
    let live_books = state.books.live.clone();
    let mut book_changes = live_books.as_ref().map(ck_bus::books::LiveBooks::changes);
    let mut sent_books: std::collections::HashMap<Topic, crate::ws_book::SentBook> =
        std::collections::HashMap::new();
    let push_latency = ck_bus::metrics::histogram(PUSH_LATENCY);
    let queue = state.ws_queue as u64;
    loop {
        let outgoing: Option<String> = tokio::select! {
            incoming = incoming.recv() => match incoming {
                Some(Incoming::Text(text)) => {
                    match read_request(text.as_str()) {
                        Ok((true, named)) if topics.mine.len() + named.len() > MAX_TOPICS_PER_CLIENT => {
                            Some(json!({"type": "error", "message": format!(
                                "a client may hold {MAX_TOPICS_PER_CLIENT} subscriptions; this one holds {} and asked for {} more",
                                topics.mine.len(), named.len()
                            )}).to_string())
                        }
                        Ok((true, named)) => match known(&state, &named).await {
                            Err(message) => Some(json!({"type": "error", "message": message}).to_string()),
                            Ok(()) => {
                                let mut replies = Vec::new();
                                for t in named {
                                    let mut ack = topic_json(&t);
                                    if let Some(o) = ack.as_object_mut() {
                                        o.insert("type".into(), json!("subscribed"));
                                    }
                                    replies.push(ack.to_string());
                                    // Listening first: an update racing the snapshot
                                    // still arrives (after it), never falls between.
                                    topics.add(t.clone());
                                    if let Topic::Book(e, i, depth) = &t {
                                        let sent = sent_books.entry(t.clone()).or_default();
                                        replies.push(crate::ws_book::snapshot(live_books.as_ref(), *e, i, *depth, sent));
                                        continue;
                                    }
                                    replies.push(snapshot(&state, &t).await.to_string());
                                }
                                for r in replies {
                                    if socket.send(Message::Text(r.into())).await.is_err() {
                                        return;
                                    }
                                }
                                None
                            }
                        },
                        Ok((false, named)) => {
                            for t in named {
                                let mut ack = topic_json(&t);
                                if let Some(o) = ack.as_object_mut() {
                                    o.insert("type".into(), json!("unsubscribed"));
                                }
                                topics.remove(&t);
                                sent_books.remove(&t);
                                if socket.send(Message::Text(ack.to_string().into())).await.is_err() {
                                    return;
                                }
                            }
                            None
                        }
                        Err(message) => Some(json!({"type": "error", "message": message}).to_string()),
                    }
                }
                Some(Incoming::Binary) => Some(json!({"type": "error", "message": "send JSON text frames"}).to_string()),
                None => return,
            },
            received = feed.recv() => {
                // Take what else is ready too, and send it with one flush.
                let mut next = Some(received);
                let mut oldest: Option<Ts> = None;
                while let Some(received) = next.take() {
                    match received {
                        // Newer updates than its queue holds came after this
                        // batch: it is dropped, and counted with the next one.
                        Ok(batch)
                            if head(&state).saturating_sub(batch.first + batch.len) >= queue =>
                        {
                            position.lagged = true;
                        }
                        Ok(batch) => {
                            if let Some(missed) = position.advance(&batch) {
                                frames.push(lagged_notice(missed));
                            }
                            let before = frames.len();
                            frames_for(&batch, &topics.mine, batched, &mut frames);
                            if frames.len() > before {
                                oldest = oldest.into_iter().chain(batch.received).min();
                            }
                        }
                        Err(RecvError::Lagged(_)) => position.lagged = true,
                        Err(RecvError::Closed) => return,
                    }
                    if frames.len() < MAX_BATCH {
                        next = match feed.try_recv() {
                            Ok(b) => Some(Ok(b)),
                            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                            Err(_) => None,
                        };
                    }
                }
                for text in frames.drain(..) {
                    if socket.feed(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                if socket.flush().await.is_err() {
                    return;
                }
                if let Some(t) = oldest {
                    let nanos = u64::try_from(Ts::now().0.saturating_sub(t.0)).unwrap_or(0);
                    push_latency.observe(std::time::Duration::from_nanos(nanos));
                }
                None
            },
            changed = crate::ws_book::next_change(&mut book_changes, !sent_books.is_empty()) => {
                if matches!(changed, Err(RecvError::Closed)) {
                    book_changes = None;
                }
                for text in crate::ws_book::on_change(&changed, live_books.as_ref(), &mut sent_books) {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                None
            }
            _ = heartbeat.tick() => Some(json!({"type": "heartbeat", "time": Ts::now()}).to_string()),
            _ = stats_tick.tick() => {
                for t in &topics.mine {
                    if let Topic::Stats { window, instruments } = t {
                        let mut msg = topic_json(t);
                        if let Some(o) = msg.as_object_mut() {
                            o.insert("type".into(), json!("stats"));
                            o.insert("data".into(), stats_json(&state, window, instruments.as_ref()).await);
                        }
                        if socket.send(Message::Text(msg.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                }
                None
            }
        };
        if let Some(text) = outgoing
            && socket.send(Message::Text(text.into())).await.is_err()
        {
            return;
        }
    }
}
