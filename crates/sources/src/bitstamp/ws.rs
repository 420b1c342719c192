//! Bitstamp WebSocket v2: `live_trades_<pair>`. The server may ask for a
//! reconnect (`bts:request_reconnect`); a `bts:heartbeat` checks the link.

use std::time::Duration;

use ck_model::{Exchange, Instrument};
use serde_json::json;

use crate::live::connector::{WsProtocol, string_field};

/// The public endpoint.
pub const DEFAULT_WS_URL: &str = "wss://ws.bitstamp.net";

/// Bitstamp `live_trades`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BitstampProtocol;

pub(crate) fn pair(instrument: &Instrument) -> String {
    format!("{}{}", instrument.base(), instrument.quote()).to_ascii_lowercase()
}

fn message(event: &str, instrument: &Instrument) -> String {
    json!({"event": event, "data": {"channel": format!("live_trades_{}", pair(instrument))}})
        .to_string()
}

fn book_message(event: &str, instrument: &Instrument) -> String {
    json!({"event": event, "data": {"channel": format!("diff_order_book_{}", pair(instrument))}})
        .to_string()
}

impl WsProtocol for BitstampProtocol {
    fn exchange(&self) -> Exchange {
        Exchange::Bitstamp
    }

    fn subscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        instruments
            .iter()
            .map(|i| message("bts:subscribe", i))
            .collect()
    }

    fn resubscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        // One channel per message.
        instruments
            .iter()
            .flat_map(|i| [message("bts:unsubscribe", i), message("bts:subscribe", i)])
            .collect()
    }

    fn ping(&self) -> Option<(Duration, String)> {
        Some((
            Duration::from_secs(30),
            json!({"event": "bts:heartbeat"}).to_string(),
        ))
    }

    fn is_pong(&self, text: &str) -> bool {
        text.contains("\"event\":\"bts:heartbeat\"")
    }

    fn subscribe_books(&self, instruments: &[Instrument], _depth: usize) -> Vec<String> {
        instruments
            .iter()
            .map(|i| book_message("bts:subscribe", i))
            .collect()
    }

    fn book_snapshot_path(&self, instrument: &Instrument, _depth: usize) -> Option<(String, u32)> {
        // The whole book (`group=1`), joined to the diffs by `microtimestamp`.
        Some((format!("/api/v2/order_book/{}/", pair(instrument)), 1))
    }

    fn native(&self, instrument: &Instrument) -> String {
        pair(instrument)
    }

    fn symbol_of<'a>(&self, text: &'a str) -> Option<&'a str> {
        string_field(text, "\"channel\"")?.strip_prefix("live_trades_")
    }

    fn asks_reconnect(&self, text: &str) -> bool {
        text.contains("bts:request_reconnect")
    }
}
