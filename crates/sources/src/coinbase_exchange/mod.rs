//! Coinbase Exchange (formerly GDAX and Coinbase Pro): `matches` and `ticker`
//! channels, and the `/products` list. `match` reports the **maker** side, so
//! the taker side is its opposite.

mod wire;

pub mod book;
pub mod rest;
pub mod ws;

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Exchange, Instrument, Quote, Side, Trade, TradeId, Ts};
use std::sync::Arc;

use crate::parse::{ParseError, Parsed, Parser, SymbolMap, decimal, json, listing, required};
use wire::{CoinbaseMessage, CoinbaseProduct};

const EX: Exchange = Exchange::CoinbaseExchange;

/// `GET /products/{id}/ticker`: `{"ask":"…","bid":"…","volume":"…","trade_id":1,"price":"…","size":"…","time":"…"}`.
#[derive(Debug, serde::Deserialize)]
struct RestTicker<'a> {
    #[serde(borrow, default)]
    bid: Option<&'a str>,
    #[serde(borrow, default)]
    ask: Option<&'a str>,
    #[serde(borrow, default)]
    price: Option<&'a str>,
    #[serde(borrow, default)]
    time: Option<&'a str>,
}

/// Parses Coinbase Exchange feed messages and `/products` responses.
#[derive(Debug, Default)]
pub struct CoinbaseExchangeParser {
    symbols: SymbolMap,
}

impl CoinbaseExchangeParser {
    /// A parser with an empty product table.
    #[must_use]
    pub fn new() -> CoinbaseExchangeParser {
        CoinbaseExchangeParser::default()
    }

    fn instrument(&mut self, product: &str) -> Result<Instrument, ParseError> {
        self.symbols.resolve_dashed(EX, product)
    }

    fn time(text: &str) -> Result<Ts, ParseError> {
        Ts::parse(text).map_err(|_| ParseError::BadField {
            exchange: EX,
            field: "time",
            value: text.to_owned(),
        })
    }
}

impl Parser for CoinbaseExchangeParser {
    fn exchange(&self) -> Exchange {
        EX
    }

    fn parse(&mut self, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        if let Origin::Rest { url } = &msg.origin {
            if url.ends_with("/ticker") {
                // Polled best bid/ask (`/products/{id}/ticker`, the REST
                // polling source): the product is in the URL only.
                let product = crate::parse::segment_after(url, "/products/").ok_or_else(|| {
                    ParseError::BadField {
                        exchange: EX,
                        field: "url",
                        value: url.clone(),
                    }
                })?;
                let t: RestTicker<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
                let at = t
                    .time
                    .map(Self::time)
                    .transpose()?
                    .unwrap_or(msg.ts_received);
                let quote = crate::parse::PolledTicker {
                    bid: ("bid", t.bid),
                    bid_size: None,
                    ask: ("ask", t.ask),
                    ask_size: None,
                    last: t.price,
                }
                .quote(EX, self.instrument(product)?, at, msg.ts_received)?;
                out.push(Event::Quote(quote));
                return Ok(Parsed::Events(1));
            }
            if !url.ends_with("/products") {
                return Ok(Parsed::Ignored);
            }
            let products: Vec<CoinbaseProduct> =
                serde_json::from_str(&msg.data).map_err(json(EX))?;
            for p in &products {
                let instrument = Instrument::new(&p.base_currency, &p.quote_currency);
                self.symbols.insert(&p.id, instrument.clone());
                out.push(listing(EX, instrument, &p.id, p.status.as_deref()));
            }
            return Ok(Parsed::Events(products.len()));
        }
        let m: CoinbaseMessage<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
        match m.kind {
            "match" | "last_match" => {
                let maker = required(EX, "side", m.side)?;
                let maker = Side::parse(maker).ok_or_else(|| ParseError::BadField {
                    exchange: EX,
                    field: "side",
                    value: maker.to_owned(),
                })?;
                let trade_id = required(EX, "trade_id", m.trade_id)?;
                out.push(Event::Trade(Trade {
                    exchange: EX,
                    instrument: self.instrument(required(EX, "product_id", m.product_id)?)?,
                    trade_id: TradeId::Num(trade_id),
                    price: decimal(EX, "price", required(EX, "price", m.price)?)?,
                    size: decimal(EX, "size", required(EX, "size", m.size)?)?,
                    side: maker.opposite(),
                    ts_exchange: Self::time(required(EX, "time", m.time)?)?,
                    ts_received: msg.ts_received,
                    fills: 1,
                }));
                Ok(Parsed::Events(1))
            }
            "ticker" => {
                let (Some(bid), Some(ask)) = (m.best_bid, m.best_ask) else {
                    return Ok(Parsed::Ignored);
                };
                let opt = |field, v: Option<&str>| v.map(|t| decimal(EX, field, t)).transpose();
                out.push(Event::Quote(Quote {
                    exchange: EX,
                    instrument: self.instrument(required(EX, "product_id", m.product_id)?)?,
                    bid: decimal(EX, "best_bid", bid)?,
                    bid_size: opt("best_bid_size", m.best_bid_size)?,
                    ask: decimal(EX, "best_ask", ask)?,
                    ask_size: opt("best_ask_size", m.best_ask_size)?,
                    last: opt("price", m.price)?,
                    ts_exchange: m
                        .time
                        .map(Self::time)
                        .transpose()?
                        .unwrap_or(msg.ts_received),
                    ts_received: msg.ts_received,
                }));
                Ok(Parsed::Events(1))
            }
            "error" => Err(ParseError::Venue {
                exchange: EX,
                message: format!(
                    "{} {}",
                    m.message.unwrap_or_default(),
                    m.reason.unwrap_or_default()
                ),
            }),
            _ => Ok(Parsed::Ignored),
        }
    }
}

/// CoinbaseExchange in the venue registry ([`crate::venues`]).
pub const VENUE: crate::venues::Venue = crate::venues::Venue {
    exchange: Exchange::CoinbaseExchange,
    parser: || Box::new(CoinbaseExchangeParser::new()),
    live: |_| (Arc::new(ws::CoinbaseExchangeProtocol), ws::DEFAULT_WS_URL),
    rest_url: rest::DEFAULT_REST_URL,
    rest_limit: (10, std::time::Duration::from_secs(1)),
    history: |c| Arc::new(rest::CoinbaseExchangeRest::new(c)),
    ticker: |i| {
        (
            format!(
                "/products/{}/ticker",
                Exchange::CoinbaseExchange.native_symbol(i)
            ),
            1,
        )
    },
    ticker_refusal: |_| None,
    listing: None,
    book: Some(|| Box::new(book::CoinbaseExchangeBooks)),
    cryptofeed_names: &["COINBASE_EXCHANGE", "COINBASEPRO", "COINBASE_PRO", "GDAX"],
    hosts: &["exchange.coinbase.com", "pro.coinbase.com", "gdax.com"],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polled_tickers_are_quotes() {
        // The documented answer of GET /products/BTC-USD/ticker.
        let events = crate::parse::parse_rest(
            &mut CoinbaseExchangeParser::new(),
            "http://x/products/BTC-USD/ticker",
            r#"{"ask":"6267.71","bid":"6265.15","volume":"53602.03940154","trade_id":86326522,"price":"6268.48","size":"0.00698254","time":"2020-03-20T00:22:57.833897Z"}"#,
        )
        .expect("ticker");
        assert_eq!(
            crate::parse::only_quote(&events),
            (
                "BTC-USD".into(),
                "6265.15".into(),
                "6267.71".into(),
                Some("6268.48".into())
            )
        );
        assert!(
            crate::parse::parse_rest(
                &mut CoinbaseExchangeParser::new(),
                "http://x/products/BTC-USD/ticker",
                r#"{"price":"1"}"#
            )
            .is_err(),
            "no bid"
        );
    }

    #[test]
    fn match_reports_the_maker_side() {
        // From fixtures/cryptofeed/COINBASE_EXCHANGE.ws.28.0.
        let data = r#"{"type":"match","trade_id":280232,"maker_order_id":"2a0da34e-61f7-4c36-88e5-c9dd15927b16","taker_order_id":"3c82abaa-c01e-4608-be59-6a1e69742891","side":"sell","size":"985","price":"0.00001305","product_id":"SKL-BTC","sequence":177100030,"time":"2021-04-17T16:43:37.089723Z"}"#;
        let msg = RawMessage {
            exchange: EX,
            ts_received: Ts(1),
            origin: Origin::Ws,
            data: data.into(),
        };
        let mut out = Vec::new();
        CoinbaseExchangeParser::new()
            .parse(&msg, &mut out)
            .expect("parses");
        let Some(Event::Trade(t)) = out.pop() else {
            panic!("no trade")
        };
        assert_eq!(t.side, Side::Buy, "maker sold, so the taker bought");
        assert_eq!(t.price.to_string(), "0.00001305");
        assert_eq!(t.ts_exchange.to_string(), "2021-04-17T16:43:37.089723Z");
        assert_eq!(t.instrument.as_str(), "SKL-BTC");
    }
}
