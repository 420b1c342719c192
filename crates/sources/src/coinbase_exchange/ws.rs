//! Coinbase Exchange WebSocket: `matches`, `ticker` and `heartbeat` (which
//! keeps quiet products visibly alive; there is no ping protocol).

use ck_model::{Exchange, Instrument};
use serde_json::json;

use crate::live::connector::{WsProtocol, string_field};

/// The public feed.
pub const DEFAULT_WS_URL: &str = "wss://ws-feed.exchange.coinbase.com";

/// Coinbase Exchange `matches` + `ticker`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoinbaseExchangeProtocol;

fn ids(instruments: &[Instrument]) -> Vec<&str> {
    instruments.iter().map(Instrument::as_str).collect()
}

impl WsProtocol for CoinbaseExchangeProtocol {
    fn exchange(&self) -> Exchange {
        Exchange::CoinbaseExchange
    }

    fn subscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        vec![json!({"type": "subscribe", "product_ids": ids(instruments), "channels": ["matches", "ticker", "heartbeat"]}).to_string()]
    }

    fn resubscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        let ids: Vec<&str> = instruments.iter().map(Instrument::as_str).collect();
        ["unsubscribe", "subscribe"]
            .iter()
            .map(|t| json!({"type": t, "product_ids": ids, "channels": ["matches", "ticker", "heartbeat"]}).to_string())
            .collect()
    }

    fn subscribe_books(&self, instruments: &[Instrument], _depth: usize) -> Vec<String> {
        // The whole book, batched every 50 ms: `level2_batch` is public
        // where `level2` wants authentication.
        if instruments.is_empty() {
            return Vec::new();
        }
        vec![json!({"type": "subscribe", "product_ids": ids(instruments), "channels": ["level2_batch"]}).to_string()]
    }

    fn resubscribe_book(&self, instrument: &Instrument, _depth: usize) -> Vec<String> {
        ["unsubscribe", "subscribe"]
            .iter()
            .map(|t| json!({"type": t, "product_ids": [instrument.as_str()], "channels": ["level2_batch"]}).to_string())
            .collect()
    }

    fn native(&self, instrument: &Instrument) -> String {
        instrument.as_str().to_owned()
    }

    fn symbol_of<'a>(&self, text: &'a str) -> Option<&'a str> {
        string_field(text, "\"product_id\"")
    }
}
