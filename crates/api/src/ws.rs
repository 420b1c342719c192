//! WebSocket push at `/api/v1/ws`.
//!
//! Client messages (JSON):
//! - `{"op":"subscribe","channel":"candles","exchange":"binance","instruments":["BTC-USDT"],"interval":"1m"}`
//!   (`channel`: `trades`, `candles` or `tickers`; `instrument` for one),
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

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use ck_bus::Event;
use ck_model::{CandleRecord, Exchange, Instrument, Interval, Ts};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::ApiState;

/// What a client listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    Trades(Exchange, Instrument),
    Candles(Exchange, Instrument, Interval),
    Tickers(Exchange, Instrument),
    /// Statistics over a window, for some instruments (`exchange:BASE-QUOTE`,
    /// comma-separated) or all; pushed every [`STATS_EVERY`].
    Stats {
        window: String,
        instruments: Option<String>,
    },
}

/// How often statistics subscriptions get a fresh table.
const STATS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

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
    let mut topics = Vec::new();
    for n in names {
        let instrument = Instrument::parse(&n).map_err(|e| e.to_string())?;
        topics.push(match channel.as_str() {
            "trades" => Topic::Trades(exchange, instrument),
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
                    "unknown channel `{other}`; valid: trades, candles, tickers"
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
    let (topic, value) = match event {
        Event::Trade(t) => (
            Topic::Trades(t.exchange, t.instrument.clone()),
            json!({"type": "trade", "exchange": t.exchange, "instrument": t.instrument,
               "trade_id": t.trade_id, "price": t.price, "qty": t.size, "side": t.side,
               "ts": t.ts_exchange, "received": t.ts_received}),
        ),
        Event::Quote(q) => (
            Topic::Tickers(q.exchange, q.instrument.clone()),
            json!({"type": "ticker", "exchange": q.exchange, "instrument": q.instrument,
               "bid": q.bid, "ask": q.ask, "bid_size": q.bid_size, "ask_size": q.ask_size,
               "last": q.last, "ts": q.ts_exchange}),
        ),
        Event::Candle(c) => (
            Topic::Candles(c.exchange, c.instrument.clone(), c.interval),
            json!({"type": "candle", "exchange": c.exchange, "instrument": c.instrument,
               "interval": c.interval, "state": c.state, "candle": CandleRecord::from(c.as_ref())}),
        ),
        _ => return None,
    };
    Some(Encoded {
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
    }
}

/// What every WebSocket client of one server shares: the topics listened
/// to, and the channel of encoded updates (started with the first client).
#[derive(Debug, Default)]
pub(crate) struct Hub {
    listened: Listened,
    updates: std::sync::OnceLock<broadcast::Sender<Arc<Encoded>>>,
}

/// The channel of encoded updates every WebSocket client reads, started
/// with the first client: one task reads the live feed and encodes each
/// update once, however many clients there are.
pub(crate) fn fanout(state: &ApiState) -> broadcast::Receiver<Arc<Encoded>> {
    state
        .hub
        .updates
        .get_or_init(|| {
            let (tx, _) = broadcast::channel(state.ws_queue);
            let feed = state.feed.subscribe();
            tokio::spawn(encode_feed(feed, tx.clone(), state.hub.listened.clone()));
            tx
        })
        .subscribe()
}

async fn encode_feed(
    mut feed: broadcast::Receiver<Arc<Event>>,
    out: broadcast::Sender<Arc<Encoded>>,
    listened: Listened,
) {
    loop {
        let encoded = match feed.recv().await {
            Ok(event) => {
                let Some(topic) = topic_of(&event) else {
                    continue;
                };
                if !listened.read().is_ok_and(|l| l.contains_key(&topic)) {
                    continue;
                }
                match encode(&event) {
                    Some(e) => e,
                    None => continue,
                }
            }
            // The encoder itself fell behind: every client missed these.
            Err(RecvError::Lagged(n)) => Encoded {
                topic: None,
                text: json!({"type": "lagged", "dropped": n}).to_string().into(),
            },
            Err(RecvError::Closed) => return,
        };
        // No receivers is fine: nobody is subscribed right now.
        let _ = out.send(Arc::new(encoded));
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

/// Upgrades to a WebSocket.
pub(crate) async fn upgrade(State(state): State<ApiState>, ws: WebSocketUpgrade) -> Response {
    // Clients send only small requests; tungstenite zeroes its whole read
    // buffer on every read attempt, which at the default 128 KiB made memset
    // the top of the fan-out profile.
    ws.read_buffer_size(4 * 1024)
        .on_upgrade(move |socket| client(socket, state))
}

/// Updates taken from the feed per wake-up, sent with one flush.
const BATCH: usize = 256;

async fn client(mut socket: WebSocket, state: ApiState) {
    use futures_util::SinkExt as _;
    let mut feed = fanout(&state);
    let mut topics = ClientTopics {
        mine: HashSet::new(),
        all: state.hub.listened.clone(),
    };
    let mut heartbeat = tokio::time::interval(state.heartbeat);
    heartbeat.tick().await;
    let mut stats_tick = tokio::time::interval(STATS_EVERY);
    stats_tick.tick().await;
    let mut batch: Vec<Utf8Bytes> = Vec::with_capacity(BATCH);
    loop {
        let outgoing: Option<String> = tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    match read_request(text.as_str()) {
                        Ok((subscribe, named)) => {
                            let mut replies = Vec::new();
                            for t in named {
                                let mut ack = topic_json(&t);
                                if let Some(o) = ack.as_object_mut() {
                                    o.insert("type".into(), json!(if subscribe { "subscribed" } else { "unsubscribed" }));
                                }
                                replies.push(ack.to_string());
                                if subscribe {
                                    // Listening first: an update racing the snapshot
                                    // still arrives (after it), never falls between.
                                    topics.add(t.clone());
                                    replies.push(snapshot(&state, &t).await.to_string());
                                } else {
                                    topics.remove(&t);
                                }
                            }
                            for r in replies {
                                if socket.send(Message::Text(r.into())).await.is_err() {
                                    return;
                                }
                            }
                            None
                        }
                        Err(message) => Some(json!({"type": "error", "message": message}).to_string()),
                    }
                }
                Some(Ok(Message::Binary(_))) => Some(json!({"type": "error", "message": "send JSON text frames"}).to_string()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => None,
            },
            event = feed.recv() => {
                // Take what else is ready too, and send it with one flush.
                let mut next = Some(event);
                while let Some(event) = next.take() {
                    match event {
                        Ok(e) => {
                            if e.topic.as_ref().is_none_or(|t| topics.mine.contains(t)) {
                                batch.push(e.text.clone());
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            batch.push(json!({"type": "lagged", "dropped": n}).to_string().into());
                        }
                        Err(RecvError::Closed) => return,
                    }
                    if batch.len() < BATCH {
                        next = match feed.try_recv() {
                            Ok(e) => Some(Ok(e)),
                            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                            Err(_) => None,
                        };
                    }
                }
                for text in batch.drain(..) {
                    if socket.feed(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                if socket.flush().await.is_err() {
                    return;
                }
                None
            },
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
