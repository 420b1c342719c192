//! The live Binance spot protocol: one combined-stream WebSocket for all
//! configured instruments (`trade` and `bookTicker`), streams named in the URL.
//!
//! Binance sends a ping frame every 20 s and expects a pong within a minute;
//! tungstenite answers pings as it reads. A connection lives at most 24 h, and
//! Binance may announce `serverShutdown`: both end in a reconnect.

use std::time::Duration;

use ck_model::{Exchange, Instrument};

use crate::live::connector::{LiveConfig, WsProtocol, string_field};

/// The public market-data endpoint.
pub const DEFAULT_WS_URL: &str = "wss://stream.binance.com:9443";

/// Settings of the live Binance connector.
pub type BinanceLiveConfig = LiveConfig;

/// Binance spot combined streams, on Binance or a venue of its protocol
/// family (Binance.US).
#[derive(Debug, Clone, Copy)]
pub struct BinanceProtocol {
    exchange: Exchange,
}

impl BinanceProtocol {
    /// The protocol as `exchange` speaks it.
    #[must_use]
    pub const fn of(exchange: Exchange) -> BinanceProtocol {
        BinanceProtocol { exchange }
    }
}

impl Default for BinanceProtocol {
    fn default() -> BinanceProtocol {
        BinanceProtocol::of(Exchange::Binance)
    }
}

fn streams(instrument: &Instrument) -> [String; 2] {
    let native = format!("{}{}", instrument.base(), instrument.quote()).to_ascii_lowercase();
    [format!("{native}@trade"), format!("{native}@bookTicker")]
}

/// The stream of an instrument's depth diffs, every 100 ms.
fn depth_stream(instrument: &Instrument) -> String {
    format!("{}{}@depth@100ms", instrument.base(), instrument.quote()).to_ascii_lowercase()
}

impl WsProtocol for BinanceProtocol {
    fn exchange(&self) -> Exchange {
        self.exchange
    }

    fn instruments_per_connection(&self, books: bool) -> Option<usize> {
        // 1,024 streams per connection, two per instrument (three with
        // its depth diffs).
        Some(if books { 341 } else { 512 })
    }

    fn subscribe_books(&self, instruments: &[Instrument], _depth: usize) -> Vec<String> {
        // Diffs of the whole book; the depth is the REST snapshot's. At
        // most 5 messages a second reach Binance: one request for all.
        let params: Vec<String> = instruments.iter().map(depth_stream).collect();
        if params.is_empty() {
            return Vec::new();
        }
        vec![serde_json::json!({"method": "SUBSCRIBE", "params": params, "id": 3}).to_string()]
    }

    fn book_snapshot_path(&self, instrument: &Instrument, depth: usize) -> Option<(String, u32)> {
        // Weight by limit: 5 up to 100, 25 to 500, 50 to 1,000, 250 to 5,000.
        let limit = depth.clamp(5, 5_000);
        let weight = match limit {
            0..=100 => 5,
            101..=500 => 25,
            501..=1_000 => 50,
            _ => 250,
        };
        Some((
            format!("/api/v3/depth?symbol={}&limit={limit}", self.book_symbol(instrument)),
            weight,
        ))
    }

    fn book_symbol(&self, instrument: &Instrument) -> String {
        format!("{}{}", instrument.base(), instrument.quote()).to_ascii_uppercase()
    }

    fn connects_per_span(&self) -> Option<(usize, Duration)> {
        Some((300, Duration::from_secs(300)))
    }

    fn connect_url(&self, base: &str, instruments: &[Instrument]) -> String {
        let names: Vec<String> = instruments.iter().flat_map(streams).collect();
        format!(
            "{}/stream?streams={}",
            base.trim_end_matches('/'),
            names.join("/")
        )
    }

    fn subscribe(&self, _instruments: &[Instrument]) -> Vec<String> {
        // Named in the URL.
        Vec::new()
    }

    fn resubscribe(&self, instruments: &[Instrument]) -> Vec<String> {
        let params: Vec<String> = instruments.iter().flat_map(streams).collect();
        ["UNSUBSCRIBE", "SUBSCRIBE"]
            .iter()
            .enumerate()
            .map(|(i, method)| {
                serde_json::json!({"method": method, "params": params, "id": i + 1}).to_string()
            })
            .collect()
    }

    fn native(&self, instrument: &Instrument) -> String {
        format!("{}{}", instrument.base(), instrument.quote()).to_ascii_lowercase()
    }

    fn symbol_of<'a>(&self, text: &'a str) -> Option<&'a str> {
        // `{"stream":"btcusdt@trade","data":{…}}`, in either key order (no
        // Binance payload has a `stream` key of its own).
        let stream = string_field(text, "\"stream\"")?;
        Some(&stream[..stream.find('@')?])
    }

    fn asks_reconnect(&self, text: &str) -> bool {
        text.contains("\"serverShutdown\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_named_in_the_url_and_symbols_found_in_frames() {
        let i = Instrument::parse("BTC-USDT").expect("i");
        let url = BinanceProtocol::default().connect_url("ws://x/", std::slice::from_ref(&i));
        assert_eq!(
            url,
            "ws://x/stream?streams=btcusdt@trade/btcusdt@bookTicker"
        );
        assert_eq!(
            BinanceProtocol::default().symbol_of(r#"{"stream":"btcusdt@trade","data":{}}"#),
            Some("btcusdt")
        );
        // Key order is not the connector's business.
        assert_eq!(
            BinanceProtocol::default().symbol_of(
                r#"{"data":{"e":"trade","s":"ETHUSDT","t":1},"stream":"ethusdt@trade"}"#
            ),
            Some("ethusdt")
        );
        let eth = Instrument::parse("ETH-USDT").expect("i");
        let re = BinanceProtocol::default().resubscribe(&[i.clone(), eth]);
        assert_eq!(
            re.len(),
            2,
            "every stale stream in one request each way: {re:?}"
        );
        assert!(
            re[0].contains("UNSUBSCRIBE") && re[1].contains("\"SUBSCRIBE\""),
            "{re:?}"
        );
        assert!(
            re[1].contains("ethusdt@bookTicker") && re[1].contains("btcusdt@trade"),
            "{re:?}"
        );
    }
}
