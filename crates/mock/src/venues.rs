//! The mock registry: one [`MockSpec`] per venue, defined beside the venue's
//! mock (`SPEC` in its file) and listed once in [`MOCKS`] (the `mocks!` line
//! of `lib.rs`, which declares its module too). What a mock must
//! know of a venue's wire format (where its frames keep their times, trade
//! ids and products, what a subscription names, how it answers a ping), its
//! REST mock, how to start the whole mock and its demo recording are fields
//! here, so the generic venue mock ([`crate::venue`]), time shifting
//! ([`crate::shift`]), laps ([`crate::laps`]), routing ([`crate::route`]),
//! `candlekeep demo` and `candlekeep mock-exchange` match on no exchange.

use std::collections::HashSet;

use ck_bus::RawMessage;
use ck_model::{Exchange, Ts};
use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::route::Product;

/// How a frame's field holds its time.
#[derive(Debug, Clone, Copy)]
pub enum TimeUnit {
    /// An ISO 8601 string.
    Iso,
    /// Seconds, as a number or a string.
    Secs,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
}

/// Where a venue's frames keep their trade ids (moved on each lap).
#[derive(Debug, Clone, Copy)]
pub enum Ids {
    /// Numbers (or digits in strings) in this field, running per the value
    /// of the key field when there is one.
    Field(&'static str, Option<&'static str>),
    /// Strings in this field that are not numbers: the lap is appended.
    Suffix(&'static str),
    /// The first element of each trade row (Bitfinex's `[ID, MTS, AMOUNT, PRICE]`).
    FirstOfRows,
    /// None the mock moves (Kraken v1, Binance's generic replay).
    None,
}

/// How the product of a frame is found.
#[derive(Debug, Clone, Copy)]
pub enum Products {
    /// Each frame names it: the function reads it.
    InFrame(fn(&Value) -> Option<Product>),
    /// Frames carry a channel id, named by the `subscribed` event that opens
    /// the channel (Bitfinex): frames are read in order.
    ByChannel,
}

/// What a mock knows of one venue's wire format.
#[derive(Debug, Clone, Copy)]
pub struct Wire {
    /// Fields holding times, and how (moved by name, in place).
    pub time_fields: &'static [(&'static str, TimeUnit)],
    /// Frames of rows whose times are by position: the frame moved by
    /// `offset` ns, or `None` when it is not one.
    pub shift_rows: Option<fn(frame: &str, offset: i64) -> Option<String>>,
    /// Where trade ids are.
    pub ids: Ids,
    /// Which product a frame is about.
    pub products: Products,
    /// The products a client's subscribe message (or connect URL) names.
    pub subscribed: fn(text: &str) -> HashSet<Product>,
    /// The venue's answer to an application ping, if `text` is one.
    pub pong: fn(text: &str) -> Option<String>,
    /// Which frames are book snapshots and deltas, where the mock can
    /// send a fresh book ([`crate::books`]).
    pub book: Option<crate::books::BookFrames>,
    /// A number the venue gives every message of a connection, renumbered
    /// per connection (Coinbase Advanced's `sequence_num`).
    pub sequence: Option<&'static str>,
}

/// The REST mock of a venue, serving a recording with its times moved as
/// the WebSocket mock moves them.
pub type RestStart =
    for<'a> fn(&'a [RawMessage], Option<Ts>) -> BoxFuture<'a, std::io::Result<crate::RestMock>>;

/// Faults a started mock injects.
#[derive(Debug, Clone, Default)]
pub struct StartFaults {
    /// Close every connection after this many frames.
    pub drop_every: Option<usize>,
    /// Withhold every Nth trade (a gap); Binance's mock only.
    pub skip_every: Option<usize>,
    /// A malformed frame after every Nth.
    pub malformed_every: Option<usize>,
    /// Answer every Nth REST request with 429 and `Retry-After`.
    pub rest_429_every: Option<usize>,
}

/// How to start a venue's whole mock (WebSocket and REST).
pub struct MockStart<'a> {
    /// The recording to serve.
    pub recording: &'a [RawMessage],
    /// Where to listen: the WebSocket and the REST listener, or free ports.
    /// Given listeners, the mock starts when the first client connects to
    /// either, so its times follow that client.
    pub listen: Option<(crate::Listening, crate::Listening)>,
    /// Move the recorded times so the first frame is at this time (now,
    /// when `None` and no listeners are given).
    pub shift_to: Option<Ts>,
    /// Pace the frames as recorded, this many times faster; as fast as
    /// the client reads when `None`.
    pub speed: Option<f64>,
    /// Play the recording again and again, ids and times moved on.
    pub looped: bool,
    /// Faults to inject.
    pub faults: StartFaults,
}

/// A started mock: where it serves, and the mock itself, which stops when
/// this is dropped.
pub struct RunningMock {
    /// `ws://127.0.0.1:PORT`, the venue's WebSocket root.
    pub ws_url: String,
    /// `http://127.0.0.1:PORT`, where the venue has a REST mock.
    pub rest_url: Option<String>,
    /// The frames or messages it serves.
    pub messages: usize,
    /// What keeps it running.
    pub keep: Box<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for RunningMock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningMock")
            .field("ws_url", &self.ws_url)
            .field("rest_url", &self.rest_url)
            .finish_non_exhaustive()
    }
}

/// Starts a venue's whole mock.
pub type Start = for<'a> fn(MockStart<'a>) -> BoxFuture<'a, std::io::Result<RunningMock>>;

/// A venue's built-in demo recording (compiled into the binary).
#[derive(Debug, Clone, Copy)]
pub struct DemoRecording {
    /// Its file name among the demo's recordings.
    pub file: &'static str,
    /// The API version it was recorded on, where the venue has several
    /// (Kraken's `v1`).
    pub api: Option<&'static str>,
    /// Where it comes from, when it is not the venue's own recording.
    pub note: Option<&'static str>,
}

/// What candlekeep's mocks know of one venue.
#[derive(Debug, Clone, Copy)]
pub struct MockSpec {
    /// Which venue.
    pub exchange: Exchange,
    /// Its wire format.
    pub wire: Wire,
    /// Its REST mock served from a recording, where it has one.
    pub rest: Option<RestStart>,
    /// How to start its whole mock, where it is not the generic venue mock
    /// with its REST mock ([`generic`]): the Binance family's.
    pub custom_start: Option<Start>,
    /// Its demo recording.
    pub demo: Option<DemoRecording>,
}

pub use crate::MOCKS;

impl MockSpec {
    /// Starts the venue's whole mock (WebSocket and REST).
    ///
    /// # Errors
    /// When a port cannot be bound, or a fault asked for is not its mock's.
    pub fn start<'a>(&self, start: MockStart<'a>) -> BoxFuture<'a, std::io::Result<RunningMock>> {
        match self.custom_start {
            Some(custom) => custom(start),
            None => Box::pin(generic(self.exchange, start)),
        }
    }
}

/// The mock of `exchange`.
#[must_use]
pub fn spec(exchange: Exchange) -> Option<&'static MockSpec> {
    MOCKS.iter().copied().find(|m| m.exchange == exchange)
}

/// The wire format of `exchange`; a venue without a mock has none of the
/// fields the mocks edit or route by.
#[must_use]
pub fn wire(exchange: Exchange) -> Wire {
    spec(exchange).map_or(NO_WIRE, |m| m.wire)
}

const NO_WIRE: Wire = Wire {
    time_fields: &[],
    shift_rows: None,
    ids: Ids::None,
    products: Products::InFrame(|_| None),
    subscribed: |_| HashSet::new(),
    pong: |_| None,
    book: None,
    sequence: None,
};

/// The answer most venues give an application ping: OKX's `ping` text,
/// Bybit's `{"op":"ping"}`, Coinbase's and Kraken v2's `{"method":"ping"}`,
/// Kraken v1's `{"event":"ping"}` and Bitstamp's heartbeat.
#[must_use]
pub fn common_pong(text: &str) -> Option<String> {
    let trimmed = text.trim();
    if trimmed == "ping" {
        return Some("pong".to_owned());
    }
    let v: Value = serde_json::from_str(trimmed).ok()?;
    let reply = if v["op"] == "ping" {
        serde_json::json!({"success": true, "ret_msg": "pong", "conn_id": "mock", "op": "ping"})
    } else if v["method"] == "ping" {
        serde_json::json!({"method": "pong", "req_id": v["req_id"]})
    } else if v["event"] == "ping" {
        serde_json::json!({"event": "pong", "reqid": v["reqid"]})
    } else if v["event"] == "bts:heartbeat" {
        serde_json::json!({"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}})
    } else {
        return None;
    };
    Some(reply.to_string())
}

/// Starts the generic venue mock ([`crate::venue::MockVenue`]) of
/// `exchange` with its REST mock: what [`MockSpec::start`] does for every
/// venue without a start of its own.
///
/// # Errors
/// When a port cannot be bound, or a fault asked for is not the generic
/// mock's.
pub async fn generic(exchange: Exchange, start: MockStart<'_>) -> std::io::Result<RunningMock> {
    if start.faults.skip_every.is_some() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "withholding trades (--skip-every) is for the Binance family's mocks only",
        ));
    }
    let rest_start = spec(exchange).and_then(|m| m.rest);
    let (ws, rest, shift_to) = match start.listen {
        Some((ws, rest)) => {
            let mut listeners = [ws, rest];
            crate::first_client(&mut listeners).await?;
            let [ws, rest] = listeners;
            (Some(ws), Some(rest), start.shift_to.unwrap_or_else(Ts::now))
        }
        None => (None, None, start.shift_to.unwrap_or_else(Ts::now)),
    };
    let rest = match (rest_start, rest) {
        (Some(f), Some(listener)) => {
            Some(crate::RestMock::on(listener, f(start.recording, Some(shift_to))).await?)
        }
        (Some(f), None) => Some(f(start.recording, Some(shift_to)).await?),
        (None, _) => None,
    };
    if let (Some(rest), Some(every)) = (&rest, start.faults.rest_429_every) {
        rest.set_faults(crate::RestFaults {
            every_429: Some(every),
            delay: None,
        });
    }
    let options = crate::venue::VenueOptions {
        shift_to: Some(shift_to),
        speed: start.speed,
        laps: if start.looped { u64::MAX } else { 1 },
        drop_every: start.faults.drop_every,
        malformed_every: start.faults.malformed_every,
        ..Default::default()
    };
    let venue = match ws {
        Some(listener) => {
            crate::venue::MockVenue::start_on(listener, exchange, start.recording, options).await?
        }
        None => crate::venue::MockVenue::start(exchange, start.recording, options).await?,
    };
    Ok(RunningMock {
        ws_url: venue.ws_url(),
        rest_url: rest.as_ref().map(crate::RestMock::rest_url),
        messages: start.recording.len(),
        keep: Box::new((venue, rest)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exchange_has_one_mock() {
        for exchange in Exchange::ALL {
            let found = MOCKS.iter().filter(|m| m.exchange == exchange).count();
            assert_eq!(found, 1, "{exchange}");
        }
    }

    #[test]
    fn pings_get_each_venues_answer() {
        assert_eq!(common_pong("ping").as_deref(), Some("pong"));
        assert!(
            common_pong(r#"{"event":"ping","reqid":7}"#).is_some_and(|p| p.contains("\"reqid\":7"))
        );
        let bitfinex = (crate::bitfinex::SPEC.wire.pong)(r#"{"event":"ping","cid":9}"#);
        assert!(bitfinex.is_some_and(|p| p.contains("\"cid\":9")));
        assert!(common_pong(r#"{"type":"subscribe"}"#).is_none());
    }
}
