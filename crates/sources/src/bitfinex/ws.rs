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

    fn instruments_per_connection(&self) -> Option<usize> {
        // 25 channel subscriptions per connection, two per instrument.
        Some(12)
    }

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
