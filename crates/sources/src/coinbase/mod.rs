//! Coinbase Advanced Trade: `market_trades` and `ticker` channels, and the
//! public products list. `market_trades` reports the **maker** side (checked
//! against the recording: trades marked SELL print at the ask), so the taker
//! side is its opposite. Trade ids arrive as strings and stay strings.
//!
//! Sample `market_trades` message:
//! `{"channel":"market_trades","timestamp":"2026-08-09T21:05:48.228568804Z","sequence_num":0,"events":[{"type":"snapshot","trades":[{"product_id":"BTC-USD","trade_id":"1068572090","price":"65083.67","size":"0.002186","time":"2026-08-09T21:05:42.514318Z","side":"SELL"}]}]}`

pub mod book;
pub mod rest;
pub mod ws;

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Exchange, Instrument, Quote, Side, Trade, TradeId, Ts};
use serde::Deserialize;
use std::sync::Arc;

use crate::parse::{ParseError, Parsed, Parser, SymbolMap, decimal, json, listing};

const EX: Exchange = Exchange::Coinbase;

#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    channel: Option<&'a str>,
    #[serde(borrow, default)]
    timestamp: Option<&'a str>,
    #[serde(default)]
    events: Vec<CoinbaseEvent<'a>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a str>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CoinbaseEvent<'a> {
    #[serde(borrow, default)]
    trades: Vec<CoinbaseTrade<'a>>,
    #[serde(borrow, default)]
    tickers: Vec<CoinbaseTicker<'a>>,
}

#[derive(Debug, Deserialize)]
struct CoinbaseTrade<'a> {
    product_id: &'a str,
    trade_id: &'a str,
    price: &'a str,
    size: &'a str,
    time: &'a str,
    /// The maker's side.
    side: &'a str,
}

#[derive(Debug, Deserialize)]
struct CoinbaseTicker<'a> {
    product_id: &'a str,
    #[serde(default)]
    price: Option<&'a str>,
    best_bid: &'a str,
    best_ask: &'a str,
    #[serde(default)]
    best_bid_quantity: Option<&'a str>,
    #[serde(default)]
    best_ask_quantity: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct Products {
    products: Vec<Product>,
}

#[derive(Debug, Deserialize)]
struct Product {
    product_id: String,
    #[serde(default)]
    base_currency_id: String,
    #[serde(default)]
    quote_currency_id: String,
    #[serde(default)]
    status: Option<String>,
}

/// Parses Coinbase Advanced Trade WebSocket messages and the products list.
#[derive(Debug, Default)]
pub struct CoinbaseParser {
    symbols: SymbolMap,
}

fn time(field: &'static str, text: &str) -> Result<Ts, ParseError> {
    Ts::parse(text).map_err(|_| ParseError::BadField {
        exchange: EX,
        field,
        value: text.to_owned(),
    })
}

impl CoinbaseParser {
    /// A parser with an empty product table.
    #[must_use]
    pub fn new() -> CoinbaseParser {
        CoinbaseParser::default()
    }

    fn instrument(&mut self, product: &str) -> Result<Instrument, ParseError> {
        self.symbols.resolve_dashed(EX, product)
    }
}

impl CoinbaseParser {
    /// `GET /api/v3/brokerage/market/products/{id}/ticker?limit=1` (the
    /// REST polling source): `{"trades":[{…,"price":"…","time":"…"}],
    /// "best_bid":"…","best_ask":"…"}`; the product is in the URL only.
    fn polled_ticker(
        &mut self,
        url: &str,
        msg: &RawMessage,
        out: &mut Vec<Event>,
    ) -> Result<Parsed, ParseError> {
        #[derive(Deserialize)]
        struct Answer<'a> {
            #[serde(borrow, default)]
            best_bid: Option<&'a str>,
            #[serde(borrow, default)]
            best_ask: Option<&'a str>,
            #[serde(borrow, default)]
            trades: Vec<LastTrade<'a>>,
        }
        #[derive(Deserialize)]
        struct LastTrade<'a> {
            #[serde(borrow, default)]
            price: Option<&'a str>,
        }
        let product =
            crate::parse::segment_after(url, "/products/").ok_or_else(|| ParseError::BadField {
                exchange: EX,
                field: "url",
                value: url.to_owned(),
            })?;
        let answer: Answer<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
        let quote = crate::parse::PolledTicker {
            bid: ("best_bid", answer.best_bid),
            bid_size: None,
            ask: ("best_ask", answer.best_ask),
            ask_size: None,
            last: answer.trades.first().and_then(|t| t.price),
        }
        .quote(
            EX,
            self.instrument(product)?,
            msg.ts_received,
            msg.ts_received,
        )?;
        out.push(Event::Quote(quote));
        Ok(Parsed::Events(1))
    }
}

impl Parser for CoinbaseParser {
    fn exchange(&self) -> Exchange {
        EX
    }

    fn parse(&mut self, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        if let Origin::Rest { url } = &msg.origin {
            if url.contains("/ticker") {
                return self.polled_ticker(url, msg, out);
            }
            if !url.contains("/products") {
                return Ok(Parsed::Ignored);
            }
            let list: Products = serde_json::from_str(&msg.data).map_err(json(EX))?;
            for p in &list.products {
                let instrument = if p.base_currency_id.is_empty() {
                    Instrument::parse(&p.product_id).map_err(|_| ParseError::UnknownSymbol {
                        exchange: EX,
                        symbol: p.product_id.clone(),
                    })?
                } else {
                    Instrument::new(&p.base_currency_id, &p.quote_currency_id)
                };
                self.symbols.insert(&p.product_id, instrument.clone());
                out.push(listing(EX, instrument, &p.product_id, p.status.as_deref()));
            }
            return Ok(Parsed::Events(list.products.len()));
        }
        let m: Envelope<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
        if m.kind == Some("error") {
            return Err(ParseError::Venue {
                exchange: EX,
                message: m.message.unwrap_or_default(),
            });
        }
        let before = out.len();
        match m.channel {
            Some("market_trades") => {
                let first = out.len();
                for t in m.events.iter().flat_map(|e| e.trades.iter()) {
                    let maker = Side::parse(t.side).ok_or_else(|| ParseError::BadField {
                        exchange: EX,
                        field: "side",
                        value: t.side.to_owned(),
                    })?;
                    out.push(Event::Trade(Trade {
                        exchange: EX,
                        instrument: self.instrument(t.product_id)?,
                        trade_id: TradeId::Str(t.trade_id.into()),
                        price: decimal(EX, "price", t.price)?,
                        size: decimal(EX, "size", t.size)?,
                        side: maker.opposite(),
                        ts_exchange: time("time", t.time)?,
                        ts_received: msg.ts_received,
                        fills: 1,
                    }));
                }
                // A message lists its trades newest first (a snapshot spans
                // minutes on a quiet product): oldest first, the candle
                // stage sees time move forward and none of them looks late.
                out[first..].sort_by_key(|e| match e {
                    Event::Trade(t) => t.ts_exchange,
                    _ => Ts(0),
                });
            }
            Some("ticker" | "ticker_batch") => {
                let ts = m
                    .timestamp
                    .map(|t| time("timestamp", t))
                    .transpose()?
                    .unwrap_or(msg.ts_received);
                for t in m.events.iter().flat_map(|e| e.tickers.iter()) {
                    let opt = |field, v: Option<&str>| v.map(|x| decimal(EX, field, x)).transpose();
                    out.push(Event::Quote(Quote {
                        exchange: EX,
                        instrument: self.instrument(t.product_id)?,
                        bid: decimal(EX, "best_bid", t.best_bid)?,
                        bid_size: opt("best_bid_quantity", t.best_bid_quantity)?,
                        ask: decimal(EX, "best_ask", t.best_ask)?,
                        ask_size: opt("best_ask_quantity", t.best_ask_quantity)?,
                        last: opt("price", t.price)?,
                        ts_exchange: ts,
                        ts_received: msg.ts_received,
                    }));
                }
            }
            // heartbeats, l2_data, candles, subscriptions: understood, not used here.
            _ => return Ok(Parsed::Ignored),
        }
        Ok(Parsed::Events(out.len() - before))
    }
}

/// Coinbase in the venue registry ([`crate::venues`]).
pub const VENUE: crate::venues::Venue = crate::venues::Venue {
    exchange: Exchange::Coinbase,
    parser: || Box::new(CoinbaseParser::new()),
    live: |_| (Arc::new(ws::CoinbaseProtocol), ws::DEFAULT_WS_URL),
    rest_url: rest::DEFAULT_REST_URL,
    rest_limit: (10, std::time::Duration::from_secs(1)),
    history: |c| Arc::new(rest::CoinbaseRest::new(c)),
    ticker: |i| {
        (
            format!(
                "/api/v3/brokerage/market/products/{}/ticker?limit=1",
                Exchange::Coinbase.native_symbol(i)
            ),
            1,
        )
    },
    ticker_refusal: |_| None,
    listing: None,
    book: Some(|| Box::new(book::CoinbaseBooks::default())),
    cryptofeed_names: &["COINBASE"],
    hosts: &["coinbase.com"],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polled_tickers_are_quotes() {
        let url = "http://x/api/v3/brokerage/market/products/BTC-USD/ticker?limit=1";
        let events = crate::parse::parse_rest(
            &mut CoinbaseParser::new(),
            url,
            r#"{"trades":[{"trade_id":"34b080bf-fcfd-445a-832b-46b5ddc65601","product_id":"BTC-USD","price":"140.91","size":"4","time":"2021-05-31T09:59:59Z","side":"BUY","bid":"","ask":"","exchange":""}],"best_bid":"291.13","best_ask":"292.40"}"#,
        )
        .expect("ticker");
        assert_eq!(
            crate::parse::only_quote(&events),
            (
                "BTC-USD".into(),
                "291.13".into(),
                "292.40".into(),
                Some("140.91".into())
            )
        );
        assert!(
            crate::parse::parse_rest(&mut CoinbaseParser::new(), url, r#"{"trades":[]}"#).is_err(),
            "no bid"
        );
    }

    #[test]
    fn market_trades_report_the_maker_side_and_keep_string_ids() {
        // From fixtures/cryptofeed/COINBASE.jsonl.zst.
        let data = r#"{"channel":"market_trades","timestamp":"2026-08-09T21:05:48.228568804Z","sequence_num":0,"events":[{"type":"snapshot","trades":[{"product_id":"BTC-USD","trade_id":"1068572090","price":"65083.67","size":"0.002186","time":"2026-08-09T21:05:42.514318Z","side":"SELL"}]}]}"#;
        let msg = RawMessage {
            exchange: EX,
            ts_received: Ts(1),
            origin: Origin::Ws,
            data: data.into(),
        };
        let mut out = Vec::new();
        assert_eq!(
            CoinbaseParser::new().parse(&msg, &mut out).expect("parses"),
            Parsed::Events(1)
        );
        let Some(Event::Trade(t)) = out.pop() else {
            panic!("no trade")
        };
        assert_eq!(t.side, Side::Buy, "the maker sold: the taker bought");
        assert_eq!(t.trade_id, TradeId::Str("1068572090".into()));
        assert_eq!(t.ts_exchange.to_string(), "2026-08-09T21:05:42.514318Z");
    }

    #[test]
    fn a_snapshot_listed_newest_first_comes_out_oldest_first() {
        let data = r#"{"channel":"market_trades","sequence_num":0,"events":[{"type":"snapshot","trades":[{"product_id":"BTC-USD","trade_id":"3","price":"3","size":"1","time":"2026-08-09T21:05:42Z","side":"SELL"},{"product_id":"BTC-USD","trade_id":"2","price":"2","size":"1","time":"2026-08-09T20:35:00Z","side":"SELL"},{"product_id":"BTC-USD","trade_id":"1","price":"1","size":"1","time":"2026-08-09T20:01:00Z","side":"BUY"}]}]}"#;
        let msg = RawMessage {
            exchange: EX,
            ts_received: Ts(1),
            origin: Origin::Ws,
            data: data.into(),
        };
        let mut out = Vec::new();
        CoinbaseParser::new().parse(&msg, &mut out).expect("parses");
        let ids: Vec<String> = out
            .iter()
            .filter_map(|e| match e {
                Event::Trade(t) => Some(t.trade_id.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }
}
