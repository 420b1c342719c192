//! Coinbase Advanced Trade WebSocket: one subscribe per channel
//! (`market_trades`, `ticker`, and `heartbeats`, without which idle
//! connections are closed).

use ck_model::{Exchange, Instrument};
use serde_json::json;

use crate::live::connector::{WsProtocol, string_field};

/// The public market-data feed.
pub const DEFAULT_WS_URL: &str = "wss://advanced-trade-ws.coinbase.com";

const CHANNELS: [&str; 3] = ["market_trades", "ticker", "heartbeats"];

/// Coinbase Advanced Trade `market_trades` + `ticker`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoinbaseProtocol;

fn messages(kind: &str, ids: &[&str]) -> Vec<String> {
    CHANNELS
        .iter()
        .map(|c| json!({"type": kind, "product_ids": ids, "channel": c}).to_string())
        .collect()
}

/// A `level2` request for `instruments`; `None` for none.
fn level2(kind: &str, instruments: &[Instrument]) -> Option<String> {
    let ids: Vec<&str> = instruments.iter().map(Instrument::as_str).collect();
    (!ids.is_empty())
        .then(|| json!({"type": kind, "product_ids": ids, "channel": "level2"}).to_string())
}

impl WsProtocol for CoinbaseProtocol {
    fn exchange(&self) -> Exchange {
        Exchange::Coinbase
    }

    fn subscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        let ids: Vec<&str> = instruments.iter().map(Instrument::as_str).collect();
        messages("subscribe", &ids)
    }

    fn resubscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        let ids: Vec<&str> = instruments.iter().map(Instrument::as_str).collect();
        let mut out = messages("unsubscribe", &ids);
        out.extend(messages("subscribe", &ids));
        out
    }

    fn subscribe_books(&self, instruments: &[Instrument], _depth: usize) -> Vec<String> {
        // The whole book: `level2` takes no depth.
        level2("subscribe", instruments).into_iter().collect()
    }

    fn resubscribe_book(&self, instrument: &Instrument, _depth: usize) -> Vec<String> {
        let one = std::slice::from_ref(instrument);
        ["unsubscribe", "subscribe"]
            .into_iter()
            .filter_map(|kind| level2(kind, one))
            .collect()
    }

    fn native(&self, instrument: &Instrument) -> String {
        instrument.as_str().to_owned()
    }

    fn symbol_of<'a>(&self, text: &'a str) -> Option<&'a str> {
        string_field(text, "\"product_id\"")
    }
}
