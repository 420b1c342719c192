//! Bitfinex v2 WebSocket: `trades` and `ticker` per symbol (`tBTCUSD`).
//! Data frames carry only a channel id, so only the connection watchdog runs
//! (Bitfinex sends `hb` heartbeats every 15 s on each channel). A `ping`
//! event keeps the connection checked both ways.

use std::time::Duration;

use ck_model::{Exchange, Instrument};
use serde_json::json;

use crate::live::connector::WsProtocol;

/// The public endpoint.
pub const DEFAULT_WS_URL: &str = "wss://api-pub.bitfinex.com/ws/2";

/// Bitfinex v2 `trades` + `ticker`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BitfinexProtocol;
/// `OB_CHECKSUM` (131072) and `SEQ_ALL` (65536).
const BOOK_FLAGS: u32 = 196_608;

/// A `book` subscription at precision `P0`, in real time, of the nearest
/// length Bitfinex offers (1, 25, 100, 250) at or above `depth`.
fn book_subscribe(instrument: &Instrument, depth: usize) -> String {
    let len = [1, 25, 100, 250]
        .into_iter()
        .find(|&l| l >= depth)
        .unwrap_or(250);
    json!({
        "event": "subscribe",
        "channel": "book",
        "symbol": Exchange::Bitfinex.native_symbol(instrument),
        "prec": "P0",
        "freq": "F0",
        "len": len.to_string(),
    })
    .to_string()
}

impl WsProtocol for BitfinexProtocol {
    fn exchange(&self) -> Exchange {
        Exchange::Bitfinex
    }

    fn subscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        instruments
            .iter()
            .flat_map(|i| {
                let symbol = Exchange::Bitfinex.native_symbol(i);
                ["trades", "ticker"].map(|c| {
                    json!({"event": "subscribe", "channel": c, "symbol": symbol}).to_string()
                })
            })
            .collect()
    }

    fn resubscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        // Unsubscribing needs the channel id; a fresh subscribe renews it.
        self.subscribe(instruments)
    }

    fn instruments_per_connection(&self, books: bool) -> Option<usize> {
        // 25 channel subscriptions per connection, two per instrument
        // (three with its book).
        Some(if books { 8 } else { 12 })
    }

    fn subscribe_books(&self, instruments: &[Instrument], depth: usize) -> Vec<String> {
        if instruments.is_empty() {
            return Vec::new();
        }
        // The connection's flags first: checksums (OB_CHECKSUM) and a
        // number on every message (SEQ_ALL), which the book reader checks.
        let mut out = vec![json!({"event": "conf", "flags": BOOK_FLAGS}).to_string()];
        out.extend(instruments.iter().map(|i| book_subscribe(i, depth)));
        out
    }

    // No `resubscribe_book`: unsubscribing needs the channel id, and a
    // second subscribe is refused (`subscribe: dup`); a book is renewed by
    // a new connection.

    fn connects_per_span(&self) -> Option<(usize, Duration)> {
        Some((20, Duration::from_secs(60)))
    }

    fn ping(&self) -> Option<(Duration, String)> {
        Some((
            Duration::from_secs(30),
            json!({"event": "ping", "cid": 1}).to_string(),
        ))
    }

    fn is_pong(&self, text: &str) -> bool {
        text.contains("\"event\":\"pong\"")
    }

    fn native(&self, instrument: &Instrument) -> String {
        Exchange::Bitfinex.native_symbol(instrument)
    }

    fn symbol_of<'a>(&self, _text: &'a str) -> Option<&'a str> {
        None
    }

    fn names_symbols(&self) -> bool {
        false
    }

    fn asks_reconnect(&self, text: &str) -> bool {
        // `{"event":"info","code":20051}`: stop/restart websocket server.
        text.contains("\"code\":20051")
    }
}
