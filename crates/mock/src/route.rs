//! Which product a venue's frame is about, and which products a client's
//! subscription asks for: so that a venue mock sends each client what it
//! subscribed to, as the venue does.
//!
//! Products are compared as the venue spells them, without case (Binance
//! names streams in lower case and symbols in upper case). A frame about no
//! product (acknowledgements, heartbeats, status) goes to every client.

use std::collections::{HashMap, HashSet};

use ck_model::Exchange;
use serde_json::Value;

use crate::venues::Products;

/// A venue's product name, upper case.
pub type Product = String;

/// Tags each frame of a recording with the product it is about.
///
/// Bitfinex names a channel's product only in the `subscribed` event that
/// opens the channel; its data frames carry the channel id, so the frames are
/// read in order.
#[must_use]
pub fn products(exchange: Exchange, frames: &[String]) -> Vec<Option<Product>> {
    let products = crate::venues::wire(exchange).products;
    let mut channels: HashMap<i64, Product> = HashMap::new();
    frames
        .iter()
        .map(|frame| {
            let v: Value = serde_json::from_str(frame).ok()?;
            match products {
                Products::ByChannel => by_channel(&v, &mut channels),
                Products::InFrame(product) => product(&v),
            }
        })
        .collect()
}

/// `s` as products are compared: upper case.
pub(crate) fn upper(s: &str) -> Product {
    s.to_ascii_uppercase()
}

/// The last part of `s` after `sep` (`publicTrade.BTCUSDT` → `BTCUSDT`).
pub(crate) fn last_part(s: &str, sep: char) -> &str {
    s.rsplit(sep).next().unwrap_or(s)
}

/// The string, or strings, of `v` mapped by `f` into `out`.
pub(crate) fn names_in(v: &Value, f: &dyn Fn(&str) -> Product, out: &mut HashSet<Product>) {
    match v {
        Value::String(one) => {
            out.insert(f(one));
        }
        Value::Array(many) => {
            out.extend(many.iter().filter_map(Value::as_str).map(f));
        }
        _ => {}
    }
}

/// A string field of `v`, upper case.
pub(crate) fn upper_of(v: &Value) -> Option<Product> {
    v.as_str().map(upper)
}

fn by_channel(v: &Value, channels: &mut HashMap<i64, Product>) -> Option<Product> {
    if v["event"] == "subscribed" {
        let symbol = upper(v["symbol"].as_str()?);
        if let Some(id) = v["chanId"].as_i64() {
            channels.insert(id, symbol.clone());
        }
        return Some(symbol);
    }
    channels.get(&v.get(0)?.as_i64()?).cloned()
}

/// The products a client's subscribe message (or Binance's `streams=`
/// query) asks for; empty when it names none the mock can read.
#[must_use]
pub fn subscribed(exchange: Exchange, text: &str) -> HashSet<Product> {
    (crate::venues::wire(exchange).subscribed)(text)
}

/// The message of a subscription, when it is JSON.
pub(crate) fn json_of(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> HashSet<Product> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn subscriptions_name_their_products_on_every_venue() {
        let cases: &[(Exchange, &str, &[&str])] = &[
            (
                Exchange::Binance,
                "/stream?streams=btcusdt@trade/ethusdt@bookTicker",
                &["BTCUSDT", "ETHUSDT"],
            ),
            (
                Exchange::Binance,
                r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}"#,
                &["BTCUSDT"],
            ),
            (
                Exchange::CoinbaseExchange,
                r#"{"type":"subscribe","product_ids":["SKL-USD","BTC-USD"],"channels":["matches"]}"#,
                &["SKL-USD", "BTC-USD"],
            ),
            (
                Exchange::Coinbase,
                r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"market_trades"}"#,
                &["BTC-USD"],
            ),
            (
                Exchange::Kraken,
                r#"{"event":"subscribe","pair":["XBT/CHF"],"subscription":{"name":"trade"}}"#,
                &["XBT/CHF"],
            ),
            (
                Exchange::Kraken,
                r#"{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"]}}"#,
                &["BTC/USD"],
            ),
            (
                Exchange::Bitstamp,
                r#"{"event":"bts:subscribe","data":{"channel":"live_trades_ethusd"}}"#,
                &["ETHUSD"],
            ),
            (
                Exchange::Okx,
                r#"{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}"#,
                &["BTC-USDT"],
            ),
            (
                Exchange::Bybit,
                r#"{"op":"subscribe","args":["publicTrade.BTCUSDT","orderbook.1.ETHUSDT"]}"#,
                &["BTCUSDT", "ETHUSDT"],
            ),
            (
                Exchange::Bitfinex,
                r#"{"event":"subscribe","channel":"trades","symbol":"tBTCUSD"}"#,
                &["TBTCUSD"],
            ),
        ];
        for (exchange, text, want) in cases {
            assert_eq!(subscribed(*exchange, text), set(want), "{exchange}: {text}");
        }
    }

    #[test]
    fn frames_name_their_products_on_every_venue() {
        let cases: &[(Exchange, &str, Option<&str>)] = &[
            (
                Exchange::Binance,
                r#"{"data":{"e":"trade","s":"BTCUSDT"},"stream":"btcusdt@trade"}"#,
                Some("BTCUSDT"),
            ),
            (
                Exchange::CoinbaseExchange,
                r#"{"type":"match","product_id":"SKL-USD"}"#,
                Some("SKL-USD"),
            ),
            (
                Exchange::CoinbaseExchange,
                r#"{"type":"subscriptions","channels":[]}"#,
                None,
            ),
            (
                Exchange::Coinbase,
                r#"{"channel":"market_trades","events":[{"trades":[{"product_id":"ETH-USD"}]}]}"#,
                Some("ETH-USD"),
            ),
            (
                Exchange::Kraken,
                r#"[1665,[["1.0","2.0","1618678133.1","b","l",""]],"trade","WAVES/EUR"]"#,
                Some("WAVES/EUR"),
            ),
            (
                Exchange::Kraken,
                r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD"}]}"#,
                Some("BTC/USD"),
            ),
            (
                Exchange::Bitstamp,
                r#"{"data":{},"channel":"live_trades_ethusd","event":"trade"}"#,
                Some("ETHUSD"),
            ),
            (
                Exchange::Okx,
                r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[]}"#,
                Some("BTC-USDT"),
            ),
            (
                Exchange::Bybit,
                r#"{"topic":"orderbook.200.BTCUSDT","data":{}}"#,
                Some("BTCUSDT"),
            ),
            (
                Exchange::Bybit,
                r#"{"success":true,"op":"subscribe"}"#,
                None,
            ),
        ];
        for (exchange, frame, want) in cases {
            assert_eq!(
                products(*exchange, &[(*frame).to_owned()]),
                vec![want.map(str::to_owned)],
                "{exchange}: {frame}"
            );
        }
    }

    #[test]
    fn bitfinex_data_frames_take_the_product_of_their_channel() {
        let frames: Vec<String> = [
            r#"{"event":"info","version":2}"#,
            r#"{"event":"subscribed","channel":"trades","chanId":17,"symbol":"tBTCUSD"}"#,
            r#"[17,"te",[1,1618677600000,0.1,58000]]"#,
            r#"[18,"hb"]"#,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            products(Exchange::Bitfinex, &frames),
            vec![None, Some("TBTCUSD".into()), Some("TBTCUSD".into()), None]
        );
    }
}
