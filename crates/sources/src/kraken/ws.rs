//! Kraken WebSocket, v2 (`trade` and `ticker`, `BTC/USD`) and v1 (the
//! recording's format: `XBT/USD`, arrays). v2 sends `heartbeat` once a second
//! when idle; both answer an application ping.

use std::time::Duration;

use ck_model::{Exchange, Instrument};
use serde_json::json;

use crate::live::connector::{WsProtocol, string_field};

/// WebSocket v2.
pub const DEFAULT_WS_URL: &str = "wss://ws.kraken.com/v2";
/// WebSocket v1 (frozen).
pub const V1_WS_URL: &str = "wss://ws.kraken.com";

/// Which Kraken WebSocket API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KrakenProtocol {
    /// v2: JSON objects, exact numbers, trade ids.
    #[default]
    V2,
    /// v1: arrays, `XBT`, no trade ids.
    V1,
}

fn v1_pair(instrument: &Instrument) -> String {
    let map = |a: &str| match a {
        "BTC" => "XBT".to_owned(),
        "DOGE" => "XDG".to_owned(),
        other => other.to_owned(),
    };
    format!("{}/{}", map(instrument.base()), map(instrument.quote()))
}

impl KrakenProtocol {
    fn messages(self, method: &str, instruments: &[Instrument]) -> Vec<String> {
        match self {
            KrakenProtocol::V2 => {
                let symbols: Vec<String> = instruments
                    .iter()
                    .map(|i| format!("{}/{}", i.base(), i.quote()))
                    .collect();
                ["trade", "ticker"]
                    .iter()
                    .map(|c| {
                        json!({"method": method, "params": {"channel": c, "symbol": symbols}})
                            .to_string()
                    })
                    .collect()
            }
            KrakenProtocol::V1 => {
                let pairs: Vec<String> = instruments.iter().map(v1_pair).collect();
                ["trade", "ticker"]
                    .iter()
                    .map(|c| {
                        json!({"event": method, "pair": pairs, "subscription": {"name": c}})
                            .to_string()
                    })
                    .collect()
            }
        }
    }
}

impl KrakenProtocol {
    /// A `book` request of the nearest depth Kraken offers (10, 25, 100,
    /// 500, 1,000) at or above `depth`; `None` for no instruments.
    fn book_messages(self, method: &str, instruments: &[Instrument], depth: usize) -> Option<String> {
        if instruments.is_empty() {
            return None;
        }
        let depth = [10, 25, 100, 500, 1_000]
            .into_iter()
            .find(|&d| d >= depth)
            .unwrap_or(1_000);
        Some(match self {
            KrakenProtocol::V2 => {
                let symbols: Vec<String> = instruments.iter().map(|i| self.native(i)).collect();
                json!({"method": method, "params": {"channel": "book", "symbol": symbols, "depth": depth}})
            }
            KrakenProtocol::V1 => {
                let pairs: Vec<String> = instruments.iter().map(v1_pair).collect();
                json!({"event": method, "pair": pairs, "subscription": {"name": "book", "depth": depth}})
            }
        }
        .to_string())
    }
}

impl WsProtocol for KrakenProtocol {
    fn exchange(&self) -> Exchange {
        Exchange::Kraken
    }

    fn subscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        self.messages("subscribe", instruments)
    }

    fn resubscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        let mut out = self.messages("unsubscribe", instruments);
        out.extend(self.messages("subscribe", instruments));
        out
    }

    fn ping(&self) -> Option<(Duration, String)> {
        let text = match self {
            KrakenProtocol::V2 => json!({"method": "ping"}),
            KrakenProtocol::V1 => json!({"event": "ping"}),
        };
        Some((Duration::from_secs(30), text.to_string()))
    }

    fn is_pong(&self, text: &str) -> bool {
        text.contains("\"method\":\"pong\"") || text.contains("\"event\":\"pong\"")
    }

    fn subscribe_books(&self, instruments: &[Instrument], depth: usize) -> Vec<String> {
        self.book_messages("subscribe", instruments, depth)
            .into_iter()
            .collect()
    }

    fn resubscribe_book(&self, instrument: &Instrument, depth: usize) -> Vec<String> {
        let one = std::slice::from_ref(instrument);
        ["unsubscribe", "subscribe"]
            .into_iter()
            .filter_map(|method| self.book_messages(method, one, depth))
            .collect()
    }

    fn native(&self, instrument: &Instrument) -> String {
        match self {
            KrakenProtocol::V2 => format!("{}/{}", instrument.base(), instrument.quote()),
            KrakenProtocol::V1 => v1_pair(instrument),
        }
    }

    fn symbol_of<'a>(&self, text: &'a str) -> Option<&'a str> {
        match self {
            KrakenProtocol::V2 => string_field(text, "\"symbol\""),
            // `[chan, payload, "trade", "XBT/USD"]`: the last string.
            KrakenProtocol::V1 => {
                let body = text.trim_end().strip_suffix("\"]")?;
                Some(&body[body.rfind('"')? + 1..])
            }
        }
    }
}
