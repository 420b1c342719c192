//! Bybit v5 spot WebSocket: `publicTrade.<S>` and `orderbook.1.<S>` (best
//! bid/ask), at most 10 args per subscribe request. The client pings every
//! 20 s; without it, Bybit cuts the connection after 10 minutes.

use std::time::Duration;

use ck_model::{Exchange, Instrument};
use serde_json::json;

use crate::live::connector::{WsProtocol, string_field};

/// The public spot endpoint.
pub const DEFAULT_WS_URL: &str = "wss://stream.bybit.com/v5/public/spot";

/// Bybit spot `publicTrade` + `orderbook.1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BybitProtocol;

fn topics(instrument: &Instrument) -> [String; 2] {
    let s = format!("{}{}", instrument.base(), instrument.quote());
    [format!("publicTrade.{s}"), format!("orderbook.1.{s}")]
}

fn requests(op: &str, instruments: &[Instrument]) -> Vec<String> {
    let args: Vec<String> = instruments.iter().flat_map(topics).collect();
    args.chunks(10)
        .map(|chunk| json!({"op": op, "args": chunk}).to_string())
        .collect()
}

/// The book topic of the nearest spot depth Bybit offers (50, 200, 1,000)
/// at or above `depth`. Depth 1 is the quote channel, not a book.
fn book_topic(instrument: &Instrument, depth: usize) -> String {
    let depth = [50, 200, 1_000]
        .into_iter()
        .find(|&d| d >= depth)
        .unwrap_or(1_000);
    format!("orderbook.{depth}.{}{}", instrument.base(), instrument.quote())
}

impl WsProtocol for BybitProtocol {
    fn exchange(&self) -> Exchange {
        Exchange::Bybit
    }

    fn connects_per_span(&self) -> Option<(usize, Duration)> {
        // 500 connections in 5 minutes per IP.
        Some((500, Duration::from_secs(300)))
    }

    fn subscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        requests("subscribe", instruments)
    }

    fn resubscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        let mut out = requests("unsubscribe", instruments);
        out.extend(requests("subscribe", instruments));
        out
    }

    fn ping(&self) -> Option<(Duration, String)> {
        Some((Duration::from_secs(20), json!({"op": "ping"}).to_string()))
    }

    fn is_pong(&self, text: &str) -> bool {
        text.contains("\"op\":\"ping\"") || text.contains("\"op\":\"pong\"")
    }

    fn subscribe_books(&self, instruments: &[Instrument], depth: usize) -> Vec<String> {
        let args: Vec<String> = instruments.iter().map(|i| book_topic(i, depth)).collect();
        args.chunks(10)
            .map(|chunk| json!({"op": "subscribe", "args": chunk}).to_string())
            .collect()
    }

    fn resubscribe_book(&self, instrument: &Instrument, depth: usize) -> Vec<String> {
        let topic = book_topic(instrument, depth);
        ["unsubscribe", "subscribe"]
            .into_iter()
            .map(|op| json!({"op": op, "args": [topic]}).to_string())
            .collect()
    }

    fn native(&self, instrument: &Instrument) -> String {
        format!("{}{}", instrument.base(), instrument.quote())
    }

    fn symbol_of<'a>(&self, text: &'a str) -> Option<&'a str> {
        let topic = string_field(text, "\"topic\"")?;
        topic.rsplit('.').next()
    }
}
