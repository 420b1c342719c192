//! Bitstamp WebSocket v2: `live_trades_<pair>` and the trading-pairs list.
//! Prices and amounts are read from the exact `price_str`/`amount_str` (the
//! bare numbers are floats). `type` 0 is a buy and 1 a sell, by the taker.
//!
//! Sample trade:
//! `{"data":{"id":216000477,"timestamp":"1641343699","amount":0.0792,"amount_str":"0.07920000","price":3805.44,"price_str":"3805.44","type":0,"microtimestamp":"1641343699596000","buy_order_id":1443875737346049,"sell_order_id":1443875731320832},"channel":"live_trades_ethusd","event":"trade"}`

pub mod book;
pub mod rest;
pub mod ws;

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Exchange, Instrument, Side, Trade, TradeId, Ts};
use serde::Deserialize;
use std::sync::Arc;

use crate::parse::{ParseError, Parsed, Parser, SymbolMap, decimal, json, listing, required};

const EX: Exchange = Exchange::Bitstamp;

#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event: &'a str,
    #[serde(borrow, default)]
    channel: &'a str,
    #[serde(borrow, default)]
    data: Option<BitstampTrade<'a>>,
}

#[derive(Debug, Deserialize)]
struct BitstampTrade<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    amount_str: Option<&'a str>,
    #[serde(borrow, default)]
    price_str: Option<&'a str>,
    #[serde(rename = "type", default)]
    kind: Option<u8>,
    #[serde(borrow, default)]
    microtimestamp: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct BitstampPair {
    url_symbol: String,
    name: String,
    #[serde(default)]
    trading: Option<String>,
}

/// Parses Bitstamp WebSocket v2 messages and the trading-pairs list.
#[derive(Debug, Default)]
pub struct BitstampParser {
    symbols: SymbolMap,
}

impl BitstampParser {
    /// A parser with an empty pair table.
    #[must_use]
    pub fn new() -> BitstampParser {
        BitstampParser::default()
    }
}

/// `GET /api/v2/ticker/{pair}/`: `{"timestamp":"…","last":"…","bid":"…","ask":"…",…}`
/// (numbers as strings).
#[derive(Debug, Deserialize)]
struct RestTicker<'a> {
    #[serde(borrow, default)]
    timestamp: Option<&'a str>,
    #[serde(borrow, default)]
    last: Option<&'a str>,
    #[serde(borrow, default)]
    bid: Option<&'a str>,
    #[serde(borrow, default)]
    ask: Option<&'a str>,
}

impl Parser for BitstampParser {
    fn exchange(&self) -> Exchange {
        EX
    }

    fn parse(&mut self, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        if let Origin::Rest { url } = &msg.origin {
            if let Some(pair) = crate::parse::segment_after(url, "/api/v2/ticker/") {
                // Polled ticker (the REST polling source): the pair is in
                // the URL only; `timestamp` is in seconds.
                let t: RestTicker<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
                let at = t
                    .timestamp
                    .and_then(|s| s.parse::<i64>().ok())
                    .map_or(msg.ts_received, Ts::from_secs);
                let quote = crate::parse::PolledTicker {
                    bid: ("bid", t.bid),
                    bid_size: None,
                    ask: ("ask", t.ask),
                    ask_size: None,
                    last: t.last,
                }
                .quote(
                    EX,
                    self.symbols.resolve(EX, pair, true)?,
                    at,
                    msg.ts_received,
                )?;
                out.push(Event::Quote(quote));
                return Ok(Parsed::Events(1));
            }
            if !url.contains("trading-pairs-info") {
                return Ok(Parsed::Ignored);
            }
            let pairs: Vec<BitstampPair> = serde_json::from_str(&msg.data).map_err(json(EX))?;
            for p in &pairs {
                let instrument =
                    Instrument::parse(&p.name).map_err(|_| ParseError::UnknownSymbol {
                        exchange: EX,
                        symbol: p.name.clone(),
                    })?;
                self.symbols.insert(&p.url_symbol, instrument.clone());
                out.push(listing(EX, instrument, &p.url_symbol, p.trading.as_deref()));
            }
            return Ok(Parsed::Events(pairs.len()));
        }
        let m: Envelope<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
        let Some(pair) = m
            .channel
            .strip_prefix("live_trades_")
            .filter(|_| m.event == "trade")
        else {
            // Subscription acks, order books, heartbeats, reconnect requests.
            return Ok(Parsed::Ignored);
        };
        let t = required(EX, "data", m.data)?;
        let side = match required(EX, "type", t.kind)? {
            0 => Side::Buy,
            1 => Side::Sell,
            other => {
                return Err(ParseError::BadField {
                    exchange: EX,
                    field: "type",
                    value: other.to_string(),
                });
            }
        };
        let micros = required(EX, "microtimestamp", t.microtimestamp)?;
        let ts = micros
            .parse::<i64>()
            .map(Ts::from_micros)
            .map_err(|_| ParseError::BadField {
                exchange: EX,
                field: "microtimestamp",
                value: micros.to_owned(),
            })?;
        out.push(Event::Trade(Trade {
            exchange: EX,
            instrument: self.symbols.resolve(EX, pair, true)?,
            trade_id: TradeId::Num(required(EX, "id", t.id)?),
            price: decimal(EX, "price_str", required(EX, "price_str", t.price_str)?)?,
            size: decimal(EX, "amount_str", required(EX, "amount_str", t.amount_str)?)?,
            side,
            ts_exchange: ts,
            ts_received: msg.ts_received,
            fills: 1,
        }));
        Ok(Parsed::Events(1))
    }
}

/// Bitstamp in the venue registry ([`crate::venues`]).
pub const VENUE: crate::venues::Venue = crate::venues::Venue {
    exchange: Exchange::Bitstamp,
    parser: || Box::new(BitstampParser::new()),
    live: |_| (Arc::new(ws::BitstampProtocol), ws::DEFAULT_WS_URL),
    rest_url: rest::DEFAULT_REST_URL,
    rest_limit: (5, std::time::Duration::from_secs(1)),
    history: |c| Arc::new(rest::BitstampRest::new(c)),
    ticker: |i| {
        (
            format!("/api/v2/ticker/{}/", Exchange::Bitstamp.native_symbol(i)),
            1,
        )
    },
    ticker_refusal: |_| None,
    listing: None,
    book: Some(|| Box::new(book::BitstampBooks)),
    cryptofeed_names: &["BITSTAMP"],
    hosts: &["bitstamp.net"],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polled_tickers_are_quotes() {
        // The documented answer of GET /api/v2/ticker/btcusd/.
        let events = crate::parse::parse_rest(
            &mut BitstampParser::new(),
            "http://x/api/v2/ticker/btcusd/",
            r#"{"timestamp":"1643640186","open":"37983.24","high":"38700.00","low":"36651.24","last":"38446.00","volume":"1563.76094637","vwap":"37700.00","bid":"38440.34","ask":"38446.00","side":"0","open_24":"37893.10","percent_change_24":"1.46"}"#,
        )
        .expect("ticker");
        assert_eq!(
            crate::parse::only_quote(&events),
            (
                "BTC-USD".into(),
                "38440.34".into(),
                "38446.00".into(),
                Some("38446.00".into())
            )
        );
        let Event::Quote(q) = &events[0] else {
            panic!("quote")
        };
        assert_eq!(
            (q.instrument.as_str(), q.ts_exchange),
            ("BTC-USD", Ts::from_secs(1_643_640_186))
        );
    }

    #[test]
    fn trades_use_the_exact_strings() {
        // From fixtures/cryptofeed/BITSTAMP.jsonl.zst.
        let data = r#"{"data":{"id":216000484,"timestamp":"1641343709","amount":0.931,"amount_str":"0.93100000","price":3802.93,"price_str":"3802.93","type":1,"microtimestamp":"1641343709599000","buy_order_id":1443875774971904,"sell_order_id":1443875778322433},"channel":"live_trades_ethusd","event":"trade"}"#;
        let msg = RawMessage {
            exchange: EX,
            ts_received: Ts(1),
            origin: Origin::Ws,
            data: data.into(),
        };
        let mut out = Vec::new();
        assert_eq!(
            BitstampParser::new().parse(&msg, &mut out).expect("ok"),
            Parsed::Events(1)
        );
        let Some(Event::Trade(t)) = out.pop() else {
            panic!("trade")
        };
        assert_eq!((t.instrument.as_str(), t.side), ("ETH-USD", Side::Sell));
        assert_eq!(
            (t.price.to_string(), t.size.to_string()),
            ("3802.93".to_owned(), "0.93100000".to_owned())
        );
        assert_eq!(t.ts_exchange, Ts::from_micros(1_641_343_709_599_000));
    }
}
