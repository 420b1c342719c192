//! OKX v5 public WebSocket: `trades` and `tickers`. OKX closes a connection
//! silent for 30 s; the client sends the text `ping` and gets `pong`.

use std::time::Duration;

use ck_model::{Exchange, Instrument};
use serde_json::json;

use crate::live::connector::{WsProtocol, string_field};

/// The public endpoint.
pub const DEFAULT_WS_URL: &str = "wss://ws.okx.com:8443/ws/v5/public";

/// OKX `trades` + `tickers` (spot instrument ids are `BTC-USDT`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OkxProtocol;

fn message(op: &str, instruments: &[Instrument]) -> String {
    let args: Vec<serde_json::Value> = instruments
        .iter()
        .flat_map(|i| ["trades", "tickers"].map(|c| json!({"channel": c, "instId": i.as_str()})))
        .collect();
    json!({"op": op, "args": args}).to_string()
}

/// A `books` request for `instruments`; `None` for none.
fn books(op: &str, instruments: &[Instrument]) -> Option<String> {
    let args: Vec<serde_json::Value> = instruments
        .iter()
        .map(|i| json!({"channel": "books", "instId": i.as_str()}))
        .collect();
    (!args.is_empty()).then(|| json!({"op": op, "args": args}).to_string())
}

impl WsProtocol for OkxProtocol {
    fn exchange(&self) -> Exchange {
        Exchange::Okx
    }

    fn subscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        vec![message("subscribe", instruments)]
    }

    fn resubscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        vec![
            message("unsubscribe", instruments),
            message("subscribe", instruments),
        ]
    }

    fn control_messages_per_hour(&self) -> Option<usize> {
        // 480 subscribe, unsubscribe and login requests per hour per connection.
        Some(480)
    }

    fn connects_per_span(&self) -> Option<(usize, Duration)> {
        // 3 connection requests a second per IP.
        Some((3, Duration::from_secs(1)))
    }

    fn ping(&self) -> Option<(Duration, String)> {
        Some((Duration::from_secs(25), "ping".to_owned()))
    }

    fn is_pong(&self, text: &str) -> bool {
        text == "pong"
    }

    fn subscribe_books(&self, instruments: &[Instrument], _depth: usize) -> Vec<String> {
        // `books`: 400 levels a side, checksummed, whatever the depth.
        books("subscribe", instruments).into_iter().collect()
    }

    fn resubscribe_book(&self, instrument: &Instrument, _depth: usize) -> Vec<String> {
        let one = std::slice::from_ref(instrument);
        ["unsubscribe", "subscribe"]
            .into_iter()
            .filter_map(|op| books(op, one))
            .collect()
    }

    fn native(&self, instrument: &Instrument) -> String {
        instrument.as_str().to_owned()
    }

    fn symbol_of<'a>(&self, text: &'a str) -> Option<&'a str> {
        string_field(text, "\"instId\"")
    }
}
