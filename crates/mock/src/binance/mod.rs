//! A mock of Binance spot: the combined-stream WebSocket and the REST history
//! endpoints (`exchangeInfo`, `historicalTrades`, `aggTrades`, `klines`),
//! both served from one recording, time-shifted to now, optionally looped,
//! with faults injected on demand.

mod book;
mod rest;
mod ws;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ck_bus::{Origin, RawMessage};
use ck_model::Ts;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use book::MockTrade;
use book::{SymbolBook, TradeBook};

use crate::route::{Product, json_of, names_in, upper, upper_of};
use crate::venues::{DemoRecording, Ids, MockSpec, MockStart, Products, RunningMock, Wire};

/// Faults to inject. Counts are messages sent on one connection unless said
/// otherwise; `None` disables a fault.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Close the first connection after this many messages.
    pub drop_after: Option<usize>,
    /// Close every connection after this many messages.
    pub drop_every: Option<usize>,
    /// Withhold every Nth data message (counted over the whole replay): the
    /// client never sees it, so trade ids jump and a gap appears.
    pub skip_every: Option<usize>,
    /// After every Nth message, send a malformed (truncated) frame.
    pub malformed_every: Option<usize>,
    /// After every N messages, stop sending data (pings go on) for a while.
    pub stall: Option<(usize, Duration)>,
    /// Withhold this stream's messages (`s001usdt@trade`) on every
    /// connection until the client subscribes to it again: a stale stream,
    /// for the connector's per-instrument watchdog.
    pub mute_until_resubscribed: Option<String>,
    /// Answer every Nth REST request with 429 and `Retry-After: 1`.
    pub rest_429_every: Option<usize>,
    /// Delay every REST response by this much.
    pub rest_delay: Option<Duration>,
    /// Answer the first depth snapshot of each symbol a million update
    /// ids older than the stream (a stale snapshot: the client must ask
    /// again).
    pub stale_depth_once: bool,
}

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// `None`: send as fast as the client reads. `Some(x)`: x times the
    /// recorded pace.
    pub speed: Option<f64>,
    /// Start again at the end, with ids and times moved on by one lap.
    pub looped: bool,
    /// Send a ping frame this often, as Binance does every 20 s.
    pub ping_every: Duration,
    /// Faults to inject.
    pub faults: Faults,
    /// Shift the times so the first message is at this time instead of
    /// now: two mocks started with the same time serve the same data.
    pub shift_to: Option<Ts>,
    /// Refuse `historicalTrades` without an `X-MBX-APIKEY` header (401,
    /// code -2014), as Binance.US does.
    pub require_api_key: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            speed: None,
            looped: false,
            ping_every: Duration::from_secs(20),
            faults: Faults::default(),
            shift_to: None,
            require_api_key: false,
        }
    }
}

/// One recorded stream message.
#[derive(Debug)]
struct StreamMessage {
    ts: Ts,
    stream: String,
    /// Upper-case symbol (`BTCUSDT`).
    symbol: String,
    /// The first lap's text, already time-shifted (cheap to clone).
    text: Utf8Bytes,
    /// The parsed message, for shifting later laps (kept only when looping).
    value: Option<serde_json::Value>,
    /// For trade messages: how many trade messages came before it.
    trade_ordinal: Option<u64>,
}

impl StreamMessage {
    /// The message as JSON.
    fn value_or_text(&self) -> serde_json::Value {
        match &self.value {
            Some(v) => v.clone(),
            None => serde_json::from_str(self.text.as_str()).unwrap_or_default(),
        }
    }
}

struct Shared {
    messages: Vec<StreamMessage>,
    /// The next message to send, over all laps: shared, so a reconnecting
    /// client resumes where the last connection stopped.
    cursor: AtomicU64,
    connections: AtomicUsize,
    /// Connections open now.
    open: AtomicUsize,
    rest_requests: AtomicUsize,
    skipped: AtomicUsize,
    options: MockOptions,
    /// Paced replay runs on one clock from the first connection, like a
    /// live venue: what fell due while no one was connected is missed.
    clock_start: std::sync::OnceLock<tokio::time::Instant>,
    shift_ms: i64,
    book: TradeBook,
    /// Per symbol: recorded `exchangeInfo` entries, or derived ones.
    listings: BTreeMap<String, (String, String)>,
    /// Per symbol: the first recorded depth snapshot (`/api/v3/depth`).
    depths: HashMap<String, String>,
    /// Symbols whose depth was answered stale (the `stale_depth_once` fault).
    stale_depths: std::sync::Mutex<HashSet<String>>,
    /// Per symbol and id field (`t`, `a`): the id span of one lap.
    id_spans: HashMap<(String, &'static str), u64>,
}

impl Shared {
    fn len(&self) -> u64 {
        self.messages.len() as u64
    }

    /// Laps started so far (at least one).
    fn laps(&self) -> u64 {
        if !self.options.looped || self.messages.is_empty() {
            return 1;
        }
        self.cursor.load(Ordering::SeqCst) / self.len() + 1
    }

    /// When message `n` (over all laps) is due, when paced.
    fn due(&self, n: u64) -> Option<tokio::time::Instant> {
        let speed = self.options.speed.filter(|s| *s > 0.0)?;
        let len = self.len();
        let first = self.messages.first()?.ts.0;
        let m = self.messages.get(usize::try_from(n % len).ok()?)?;
        let lap_ns = i64::try_from(n / len).ok()? * self.book.time_span_ms * 1_000_000;
        let secs = (m.ts.0 + lap_ns - first).max(0) as f64 / 1e9 / speed;
        let start = *self.clock_start.get_or_init(tokio::time::Instant::now);
        Some(start + Duration::from_secs_f64(secs))
    }

    /// The text of message `n` (over all laps).
    fn text(&self, n: u64) -> Option<Utf8Bytes> {
        let len = self.len();
        if len == 0 {
            return None;
        }
        let (lap, index) = (n / len, n % len);
        let m = self.messages.get(usize::try_from(index).ok()?)?;
        if lap == 0 {
            return Some(m.text.clone());
        }
        let lap_i = i64::try_from(lap).ok()?;
        let mut v = m.value.clone()?;
        let data = v.get_mut("data")?.as_object_mut()?;
        let shift = self.shift_ms + lap_i * self.book.time_span_ms;
        for key in ["E", "T"] {
            if let Some(t) = data.get(key).and_then(serde_json::Value::as_i64) {
                data.insert(key.to_owned(), (t + shift).into());
            }
        }
        for (key, span_key) in [
            ("t", "t"),
            ("a", "a"),
            ("f", "t"),
            ("l", "t"),
            ("U", "u"),
            ("u", "u"),
        ] {
            let span = self
                .id_spans
                .get(&(m.symbol.clone(), span_key))
                .copied()
                .unwrap_or(1);
            if let Some(id) = data.get(key).and_then(serde_json::Value::as_u64) {
                data.insert(key.to_owned(), (id + lap * span).into());
            }
        }
        combined_text(&v).map(Into::into)
    }
}

/// A combined-stream message as Binance writes it: `stream` first, then
/// `data` (`serde_json::Value` would sort the keys, putting `data` first).
fn combined_text(v: &serde_json::Value) -> Option<String> {
    let stream = v.get("stream")?;
    let data = v.get("data")?;
    Some(format!("{{\"stream\":{stream},\"data\":{data}}}"))
}

/// A running mock; dropping the handle does not stop it (it ends with the runtime).
pub struct MockBinance {
    ws_addr: SocketAddr,
    rest_addr: SocketAddr,
    lazy: Arc<Lazy>,
}

/// The mock's state, built when first needed: the first client (WebSocket
/// or REST) fixes the shift of recorded times to "now", unless
/// `shift_to` names the time, so data runs on the wall clock however late
/// the first client connects.
struct Lazy {
    recording: Vec<RawMessage>,
    options: MockOptions,
    built: std::sync::OnceLock<Arc<Shared>>,
}

impl Lazy {
    fn get(&self) -> &Arc<Shared> {
        self.built.get_or_init(|| {
            let first = self
                .recording
                .iter()
                .find(|m| m.origin == Origin::Ws)
                .map_or(Ts::now(), |m| m.ts_received);
            let shift_ms =
                self.options.shift_to.unwrap_or_else(Ts::now).as_millis() - first.as_millis();
            Arc::new(build(&self.recording, self.options.clone(), shift_ms))
        })
    }
}

/// Quote assets, longest first, to split a symbol without `exchangeInfo`.
const QUOTES: [&str; 12] = [
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "GBP", "DAI",
];

fn split_symbol(symbol: &str) -> Option<(String, String)> {
    QUOTES.iter().find_map(|q| {
        let base = symbol.strip_suffix(q)?;
        (!base.is_empty()).then(|| (base.to_owned(), (*q).to_owned()))
    })
}

impl MockBinance {
    /// Starts a mock on `127.0.0.1` (any free ports, one for the WebSocket
    /// and one for REST) that replays the combined-stream messages of
    /// `recording`, with every event time (`E`, `T`) shifted so the first
    /// message is "now".
    ///
    /// # Errors
    /// When a port cannot be bound.
    pub async fn start(
        recording: &[RawMessage],
        options: MockOptions,
    ) -> std::io::Result<MockBinance> {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        MockBinance::start_on(any, any, recording, options).await
    }

    /// Like [`MockBinance::start`], on chosen addresses.
    ///
    /// # Errors
    /// When an address cannot be bound.
    pub async fn start_on(
        ws_addr: SocketAddr,
        rest_addr: SocketAddr,
        recording: &[RawMessage],
        options: MockOptions,
    ) -> std::io::Result<MockBinance> {
        let ws = crate::Listening::bind(ws_addr).await?;
        let rest = crate::Listening::bind(rest_addr).await?;
        MockBinance::start_on_listeners(ws, rest, recording, options)
    }

    /// Like [`MockBinance::start`], on listeners bound already. Its times
    /// are fixed when the first client comes, so a client that connected
    /// before this was called is served from then.
    ///
    /// # Errors
    /// When a listener has no address.
    pub fn start_on_listeners(
        ws: crate::Listening,
        rest: crate::Listening,
        recording: &[RawMessage],
        options: MockOptions,
    ) -> std::io::Result<MockBinance> {
        let lazy = Arc::new(Lazy {
            recording: recording.to_vec(),
            options,
            built: std::sync::OnceLock::new(),
        });
        let ws_addr = ws.local_addr()?;
        tokio::spawn(ws::accept(ws, lazy.clone()));
        let rest_addr = rest.local_addr()?;
        tokio::spawn(rest::serve(rest, lazy.clone()));
        Ok(MockBinance {
            ws_addr,
            rest_addr,
            lazy,
        })
    }

    /// The base URL to give a connector: `ws://127.0.0.1:PORT`.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// The REST root: `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.rest_addr)
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.lazy.get().connections.load(Ordering::SeqCst)
    }

    /// REST requests answered so far (429s included).
    #[must_use]
    pub fn rest_requests(&self) -> usize {
        self.lazy.get().rest_requests.load(Ordering::SeqCst)
    }

    /// Data messages withheld by the `skip_every` fault.
    #[must_use]
    pub fn skipped(&self) -> usize {
        self.lazy.get().skipped.load(Ordering::SeqCst)
    }

    /// Recorded messages the mock holds (one lap).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lazy.get().messages.len()
    }

    /// True when the recording had no combined-stream messages.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lazy.get().messages.is_empty()
    }

    /// True once every message has been sent (never, when looping).
    #[must_use]
    pub fn finished(&self) -> bool {
        !self.lazy.get().options.looped
            && self.lazy.get().cursor.load(Ordering::SeqCst) >= self.lazy.get().len()
    }

    /// Every trade of `symbol` (`BTCUSDT`) in the first lap, as REST serves
    /// them: what a gap-free capture must end up with.
    #[must_use]
    pub fn trades(&self, symbol: &str) -> Vec<MockTrade> {
        self.lazy
            .get()
            .book
            .symbols
            .get(symbol)
            .map(|b| b.trades.clone())
            .unwrap_or_default()
    }
}

fn build(recording: &[RawMessage], options: MockOptions, shift_ms: i64) -> Shared {
    let mut messages = Vec::new();
    let mut book = TradeBook::default();
    let mut listings = BTreeMap::new();
    let mut depths = HashMap::new();
    let mut ranges: HashMap<(String, &'static str), (u64, u64)> = HashMap::new();
    let mut trade_messages = 0u64;
    for m in recording {
        if let Origin::Rest { url } = &m.origin {
            if url.contains("exchangeInfo") {
                read_listings(&m.data, &mut listings);
            }
            if url.contains("/api/v3/depth")
                && let Some(symbol) = url
                    .split(['?', '&'])
                    .find_map(|kv| kv.strip_prefix("symbol="))
            {
                depths
                    .entry(symbol.to_ascii_uppercase())
                    .or_insert_with(|| m.data.clone());
            }
            continue;
        }
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&m.data) else {
            continue;
        };
        let Some(stream) = value
            .get("stream")
            .and_then(|s| s.as_str())
            .map(str::to_owned)
        else {
            continue;
        };
        let Some(data) = value.get_mut("data").and_then(|d| d.as_object_mut()) else {
            continue;
        };
        let symbol = data.get("s").and_then(|s| s.as_str()).map_or_else(
            || stream.split('@').next().unwrap_or("").to_ascii_uppercase(),
            str::to_owned,
        );
        // Trade ids, and depth diffs' update ids (`U` to `u`; a
        // `bookTicker`'s `u` is not a diff's).
        let depth = stream.contains("@depth");
        for (key, span_key) in [("t", "t"), ("a", "a"), ("U", "u"), ("u", "u")] {
            if span_key == "u" && !depth {
                continue;
            }
            if let Some(id) = data.get(key).and_then(serde_json::Value::as_u64) {
                let r = ranges.entry((symbol.clone(), span_key)).or_insert((id, id));
                r.0 = r.0.min(id);
                r.1 = r.1.max(id);
            }
        }
        let original = options.looped.then(|| value.clone());
        if let Some(data) = value.get_mut("data").and_then(|d| d.as_object_mut()) {
            for key in ["E", "T"] {
                if let Some(t) = data.get(key).and_then(serde_json::Value::as_i64) {
                    data.insert(key.to_owned(), (t + shift_ms).into());
                }
            }
            if stream.ends_with("@trade") {
                let trade = (|| {
                    Some(MockTrade {
                        id: data.get("t")?.as_u64()?,
                        price: data.get("p")?.as_str()?.to_owned(),
                        qty: data.get("q")?.as_str()?.to_owned(),
                        time_ms: data.get("T")?.as_i64()?,
                        buyer_is_maker: data.get("m")?.as_bool()?,
                    })
                })();
                if let Some(t) = trade {
                    book.symbols
                        .entry(symbol.clone())
                        .or_insert_with(SymbolBook::default)
                        .trades
                        .push(t);
                }
            }
        }
        let is_trade = stream.ends_with("@trade") || stream.ends_with("@aggTrade");
        let trade_ordinal = is_trade.then(|| {
            trade_messages += 1;
            trade_messages - 1
        });
        messages.push(StreamMessage {
            trade_ordinal,
            ts: m.ts_received,
            text: combined_text(&value)
                .unwrap_or_else(|| value.to_string())
                .into(),
            stream,
            symbol,
            value: original,
        });
    }
    for b in book.symbols.values_mut() {
        b.trades.sort_by_key(|t| t.id);
        b.trades.dedup_by_key(|t| t.id);
    }
    for symbol in book.symbols.keys() {
        if !listings.contains_key(symbol)
            && let Some(split) = split_symbol(symbol)
        {
            listings.insert(symbol.clone(), split);
        }
    }
    let span_ns = match (messages.first(), messages.last()) {
        (Some(a), Some(b)) => b.ts.0 - a.ts.0,
        _ => 0,
    };
    // One lap later, times move on by the recording's length plus a second.
    book.time_span_ms = span_ns / 1_000_000 + 1_000;
    let id_spans = ranges
        .into_iter()
        .map(|(k, (lo, hi))| (k, hi - lo + 1))
        .collect();
    Shared {
        messages,
        cursor: AtomicU64::new(0),
        connections: AtomicUsize::new(0),
        open: AtomicUsize::new(0),
        rest_requests: AtomicUsize::new(0),
        skipped: AtomicUsize::new(0),
        clock_start: std::sync::OnceLock::new(),
        options,
        shift_ms,
        book,
        listings,
        depths,
        stale_depths: std::sync::Mutex::new(HashSet::new()),
        id_spans,
    }
}

/// Reads `symbols[].{symbol, baseAsset, quoteAsset}` from a recorded `exchangeInfo`.
fn read_listings(body: &str, out: &mut BTreeMap<String, (String, String)>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return;
    };
    for s in v
        .get("symbols")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        let field = |k: &str| s.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        if let (Some(symbol), Some(base), Some(quote)) =
            (field("symbol"), field("baseAsset"), field("quoteAsset"))
        {
            out.insert(symbol, (base, quote));
        }
    }
}

/// The product before Binance's `@` (`btcusdt@trade` → `BTCUSDT`).
fn stream_product(stream: &str) -> Product {
    upper(stream.split('@').next().unwrap_or(stream))
}

fn frame_product(v: &Value) -> Option<Product> {
    upper_of(&v["data"]["s"])
        .or_else(|| v["stream"].as_str().map(stream_product))
        .or_else(|| upper_of(&v["s"]))
}

/// Streams named in the connect URL (`/stream?streams=`), or in a
/// `SUBSCRIBE` request's `params`.
fn subscribed(text: &str) -> HashSet<Product> {
    let mut out = HashSet::new();
    if let Some(streams) = text.split("streams=").nth(1) {
        for stream in streams.split(['/', '&']).filter(|s| s.contains('@')) {
            out.insert(stream_product(stream));
        }
    } else if let Some(v) = json_of(text) {
        names_in(&v["params"], &stream_product, &mut out);
    }
    out
}

/// Binance's wire format, as the generic venue mock reads it (it neither
/// moves Binance's times nor ids: [`MockBinance`] does).
pub const WIRE: Wire = Wire {
    time_fields: &[],
    shift_rows: None,
    ids: Ids::None,
    products: Products::InFrame(frame_product),
    subscribed,
    pong: crate::venues::common_pong,
    book: None,
    sequence: None,
};

/// Starts a [`MockBinance`] for a venue of Binance's family.
///
/// # Errors
/// When a port cannot be bound.
pub async fn start_family(
    start: MockStart<'_>,
    require_api_key: bool,
) -> std::io::Result<RunningMock> {
    let options = MockOptions {
        speed: start.speed,
        looped: start.looped,
        faults: Faults {
            drop_every: start.faults.drop_every,
            skip_every: start.faults.skip_every,
            malformed_every: start.faults.malformed_every,
            rest_429_every: start.faults.rest_429_every,
            ..Faults::default()
        },
        shift_to: start.shift_to,
        require_api_key,
        ..MockOptions::default()
    };
    let mock = match start.listen {
        Some((ws, rest)) => MockBinance::start_on_listeners(ws, rest, start.recording, options)?,
        None => MockBinance::start(start.recording, options).await?,
    };
    Ok(RunningMock {
        ws_url: mock.ws_url(),
        rest_url: Some(mock.rest_url()),
        messages: mock.len(),
        keep: Box::new(mock),
    })
}

fn start(start: MockStart<'_>) -> BoxFuture<'_, std::io::Result<RunningMock>> {
    Box::pin(start_family(start, false))
}

/// Binance in the mock registry ([`crate::venues`]).
pub const SPEC: MockSpec = MockSpec {
    exchange: ck_model::Exchange::Binance,
    wire: WIRE,
    rest: None,
    custom_start: Some(start),
    demo: Some(DemoRecording {
        file: "binance_spot_btcusdt_20240808.gz",
        api: None,
        note: None,
    }),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_times_move_to_when_the_first_client_comes_not_to_the_start() {
        let recorded = Ts::parse("2024-08-08T23:54:14Z").expect("ts");
        let recording = vec![RawMessage {
            exchange: ck_model::Exchange::Binance,
            ts_received: recorded,
            origin: Origin::Ws,
            data: format!(
                r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":{0},"s":"BTCUSDT","t":1,"p":"1","q":"1","T":{0},"m":true}}}}"#,
                recorded.as_millis()
            ),
        }];
        let lazy = Lazy {
            recording,
            options: MockOptions::default(),
            built: std::sync::OnceLock::new(),
        };
        assert!(lazy.built.get().is_none(), "nothing is fixed at the start");
        let before = Ts::now().as_millis();
        let shared = lazy.get();
        let after = Ts::now().as_millis();
        let v: serde_json::Value =
            serde_json::from_str(shared.messages[0].text.as_str()).expect("json");
        let t = v["data"]["T"].as_i64().expect("T");
        assert!(
            (before..=after).contains(&t),
            "the first trade is at the first client's now: {t} in {before}..={after}"
        );
    }

    #[test]
    fn messages_are_written_stream_first_as_binance_writes_them() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"stream":"btcusdt@trade","data":{"e":"trade","t":1}}"#)
                .expect("json");
        assert_eq!(
            combined_text(&v).as_deref(),
            Some(r#"{"stream":"btcusdt@trade","data":{"e":"trade","t":1}}"#)
        );
    }

    #[test]
    fn symbols_split_on_known_quotes() {
        assert_eq!(split_symbol("BTCUSDT"), Some(("BTC".into(), "USDT".into())));
        assert_eq!(split_symbol("LRCBTC"), Some(("LRC".into(), "BTC".into())));
        assert_eq!(split_symbol("USDT"), None);
    }
}
