//! Binance spot: combined streams (`trade`, `aggTrade`, `bookTicker`) and the
//! `exchangeInfo` instrument list.

pub mod book;
mod rest;
mod wire;
mod ws;

pub use rest::{ApiKey, BinanceRest, DEFAULT_REST_URL, MAX_PAGE, native_symbol};
pub(crate) use rest::kline_row;
pub use wire::{BinanceKline, BinanceKlineEvent};
pub use ws::{BinanceLiveConfig, BinanceProtocol, DEFAULT_WS_URL};

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Exchange, Instrument, Quote, Side, Trade, TradeId, Ts};
use std::sync::Arc;

use crate::parse::{ParseError, Parsed, Parser, SymbolMap, decimal, json, listing};
use wire::{
    BinanceAggTrade, BinanceBookTicker, BinanceCombined, BinanceExchangeInfo,
    BinanceRestBookTicker, BinanceTrade,
};

/// Parses Binance spot stream messages and `exchangeInfo` responses, for
/// Binance or a venue of its protocol family (Binance.US).
#[derive(Debug)]
pub struct BinanceParser {
    /// The venue whose messages these are.
    exchange: Exchange,
    symbols: SymbolMap,
    /// The last symbol resolved, and its instrument.
    last: Option<(String, Instrument)>,
}

fn side(buyer_is_maker: bool) -> Side {
    if buyer_is_maker {
        Side::Sell
    } else {
        Side::Buy
    }
}

impl Default for BinanceParser {
    fn default() -> BinanceParser {
        BinanceParser::new()
    }
}

impl BinanceParser {
    /// A Binance parser with an empty symbol table.
    #[must_use]
    pub fn new() -> BinanceParser {
        BinanceParser::of(Exchange::Binance)
    }

    /// A parser of `exchange`'s messages (Binance's protocol family).
    #[must_use]
    pub fn of(exchange: Exchange) -> BinanceParser {
        BinanceParser {
            exchange,
            symbols: SymbolMap::default(),
            last: None,
        }
    }

    fn instrument(&mut self, symbol: &str) -> Result<Instrument, ParseError> {
        // Streams repeat one symbol many times in a row: skip the map for it.
        if let Some((native, instrument)) = &self.last
            && native == symbol
        {
            return Ok(instrument.clone());
        }
        let instrument = self.symbols.resolve(self.exchange, symbol, true)?;
        self.last = Some((symbol.to_owned(), instrument.clone()));
        Ok(instrument)
    }

    /// A normalized trade; an aggTrade passes its agg id and its fill count.
    fn trade(
        &mut self,
        t: &BinanceTrade<'_>,
        fills: u32,
        received: Ts,
    ) -> Result<Trade, ParseError> {
        Ok(Trade {
            exchange: self.exchange,
            instrument: self.instrument(t.symbol)?,
            trade_id: TradeId::Num(t.id),
            price: decimal(self.exchange, "price", t.price)?,
            size: decimal(self.exchange, "quantity", t.qty)?,
            side: side(t.buyer_is_maker),
            ts_exchange: Ts::from_millis(t.time_ms),
            ts_received: received,
            fills,
        })
    }

    fn exchange_info(&mut self, body: &str, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        let info: BinanceExchangeInfo = serde_json::from_str(body).map_err(json(self.exchange))?;
        self.last = None;
        for s in &info.symbols {
            let instrument = Instrument::new(&s.base_asset, &s.quote_asset);
            self.symbols.insert(&s.symbol, instrument.clone());
            out.push(listing(
                self.exchange,
                instrument,
                &s.symbol,
                Some(&s.status),
            ));
        }
        Ok(Parsed::Events(info.symbols.len()))
    }

    fn payload(
        &mut self,
        kind: &str,
        data: &str,
        received: Ts,
        out: &mut Vec<Event>,
    ) -> Result<Parsed, ParseError> {
        match kind {
            "trade" => {
                let t = match BinanceTrade::from_flat(data) {
                    Some(t) => t,
                    None => serde_json::from_str(data).map_err(json(self.exchange))?,
                };
                let trade = self.trade(&t, 1, received)?;
                out.push(Event::Trade(trade));
                Ok(Parsed::Events(1))
            }
            "aggTrade" => {
                let t = match BinanceAggTrade::from_flat(data) {
                    Some(t) => t,
                    None => serde_json::from_str(data).map_err(json(self.exchange))?,
                };
                let fills = t
                    .last_trade
                    .checked_sub(t.first_trade)
                    .and_then(|n| u32::try_from(n + 1).ok())
                    .ok_or_else(|| ParseError::BadField {
                        exchange: self.exchange,
                        field: "f..l",
                        value: format!("{}..{}", t.first_trade, t.last_trade),
                    })?;
                let one = BinanceTrade {
                    symbol: t.symbol,
                    id: t.id,
                    price: t.price,
                    qty: t.qty,
                    time_ms: t.time_ms,
                    buyer_is_maker: t.buyer_is_maker,
                };
                let trade = self.trade(&one, fills, received)?;
                out.push(Event::Trade(trade));
                Ok(Parsed::Events(1))
            }
            "bookTicker" => {
                let q: BinanceBookTicker<'_> =
                    serde_json::from_str(data).map_err(json(self.exchange))?;
                out.push(Event::Quote(Quote {
                    exchange: self.exchange,
                    instrument: self.instrument(q.symbol)?,
                    bid: decimal(self.exchange, "bid", q.bid)?,
                    bid_size: Some(decimal(self.exchange, "bid quantity", q.bid_qty)?),
                    ask: decimal(self.exchange, "ask", q.ask)?,
                    ask_size: Some(decimal(self.exchange, "ask quantity", q.ask_qty)?),
                    last: None,
                    ts_exchange: q.time_ms.map_or(received, Ts::from_millis),
                    ts_received: received,
                }));
                Ok(Parsed::Events(1))
            }
            // Klines are the exchange's own candles (used to verify ours), depth
            // is the order book: both are understood and not turned into events.
            _ => Ok(Parsed::Ignored),
        }
    }
}

/// Splits `{"stream":"<name>","data":<payload>}` into name and payload text.
fn split_combined(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("{\"stream\":\"")?;
    let end = rest.find('"')?;
    let payload = rest[end + 1..].strip_prefix(",\"data\":")?;
    Some((&rest[..end], payload.trim_end().strip_suffix('}')?))
}

/// The event kind of a stream name: `btcusdt@aggTrade` is `aggTrade`,
/// `btcusdt@kline_1m` is `kline`, `btcusdt@depth@100ms` is `depth`.
fn stream_kind(stream: &str) -> &str {
    let after = stream.split_once('@').map_or(stream, |(_, k)| k);
    after.split(['@', '_']).next().unwrap_or(after)
}

impl Parser for BinanceParser {
    fn exchange(&self) -> Exchange {
        self.exchange
    }

    fn parse(&mut self, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        if let Origin::Rest { url } = &msg.origin {
            if url.contains("/exchangeInfo") {
                return self.exchange_info(&msg.data, out);
            }
            if url.contains("/ticker/bookTicker") {
                // Polled best bid/ask (the REST polling source).
                let q: BinanceRestBookTicker<'_> =
                    serde_json::from_str(&msg.data).map_err(json(self.exchange))?;
                out.push(Event::Quote(Quote {
                    exchange: self.exchange,
                    instrument: self.instrument(q.symbol)?,
                    bid: decimal(self.exchange, "bidPrice", q.bid_price)?,
                    bid_size: Some(decimal(self.exchange, "bidQty", q.bid_qty)?),
                    ask: decimal(self.exchange, "askPrice", q.ask_price)?,
                    ask_size: Some(decimal(self.exchange, "askQty", q.ask_qty)?),
                    last: None,
                    ts_exchange: msg.ts_received,
                    ts_received: msg.ts_received,
                }));
                return Ok(Parsed::Events(1));
            }
            return Ok(Parsed::Ignored);
        }
        // Fast path: `{"stream":"<name>","data":<payload>}` exactly as Binance
        // writes it is split without a first JSON pass. Anything else, or a
        // payload that does not decode, takes the general path below.
        if let Some((stream, data)) = split_combined(&msg.data) {
            let mark = out.len();
            match self.payload(stream_kind(stream), data, msg.ts_received, out) {
                Err(ParseError::Json { .. }) => out.truncate(mark),
                other => return other,
            }
        }
        let envelope: BinanceCombined<'_> =
            serde_json::from_str(&msg.data).map_err(json(self.exchange))?;
        if let Some(code) = envelope.code {
            return Err(ParseError::Venue {
                exchange: self.exchange,
                message: format!("code {code}: {}", envelope.msg.unwrap_or_default()),
            });
        }
        match (envelope.stream, envelope.data, envelope.e) {
            (Some(stream), Some(data), _) => {
                self.payload(stream_kind(stream), data.get(), msg.ts_received, out)
            }
            (None, None, Some(kind)) => self.payload(kind, &msg.data, msg.ts_received, out),
            // Subscription replies (`{"result":null,"id":1}`) and the like.
            _ => Ok(Parsed::Ignored),
        }
    }
}

/// The public best bid/ask of one instrument (`ticker/bookTicker`), weight 2.
#[must_use]
pub fn ticker(instrument: &Instrument) -> (String, u32) {
    (
        format!(
            "/api/v3/ticker/bookTicker?symbol={}",
            rest::native_symbol(instrument)
        ),
        2,
    )
}

/// The instrument list (`exchangeInfo`, weight 20) and its trading status.
pub const LISTING: crate::listing::ListingRequest = crate::listing::ListingRequest {
    path: "/api/v3/exchangeInfo",
    weight: 20,
    trading: &["TRADING"],
};

/// Binance in the venue registry ([`crate::venues`]).
pub const VENUE: crate::venues::Venue = crate::venues::Venue {
    exchange: Exchange::Binance,
    parser: || Box::new(BinanceParser::new()),
    live: |_| (Arc::new(BinanceProtocol::default()), ws::DEFAULT_WS_URL),
    rest_url: rest::DEFAULT_REST_URL,
    rest_limit: (6_000, std::time::Duration::from_secs(60)),
    history: |c| Arc::new(rest::BinanceRest::new(c)),
    ticker,
    ticker_refusal: |_| None,
    listing: Some(LISTING),
    book: Some(|| Box::new(book::BinanceBooks::default())),
    cryptofeed_names: &["BINANCE"],
    hosts: &["binance.com"],
};

#[cfg(test)]
mod tests {
    use super::*;
    use ck_model::Decimal;

    const EX: Exchange = Exchange::Binance;

    fn ws(data: &str) -> RawMessage {
        RawMessage {
            exchange: EX,
            ts_received: Ts(7),
            origin: Origin::Ws,
            data: data.to_owned(),
        }
    }

    fn one(data: &str) -> Event {
        let mut out = Vec::new();
        let parsed = BinanceParser::new()
            .parse(&ws(data), &mut out)
            .expect("parses");
        assert_eq!(parsed, Parsed::Events(1));
        out.pop().expect("one event")
    }

    #[test]
    fn trade_from_recording() {
        // From fixtures/hftbacktest/binance_spot_btcusdt_20240808.gz.
        let e = one(
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#,
        );
        let Event::Trade(t) = e else {
            panic!("not a trade: {e:?}")
        };
        assert_eq!(t.instrument.as_str(), "BTC-USDT");
        assert_eq!(t.trade_id, TradeId::Num(3_735_683_259));
        assert_eq!(t.price.to_string(), "61837.63000000");
        assert_eq!(t.size, Decimal::parse("0.02").expect("d"));
        assert_eq!(t.side, Side::Sell, "buyer is maker: the taker sold");
        assert_eq!(t.ts_exchange, Ts::from_millis(1_723_161_255_342));
        assert_eq!(t.ts_received, Ts(7));
    }

    #[test]
    fn agg_trade_counts_fills() {
        let e = one(
            r#"{"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","E":1633998523963,"s":"NKNUSDT","a":15683430,"p":"0.35280000","q":"58.00000000","f":19862788,"l":19862790,"T":1633998523963,"m":false,"M":true}}"#,
        );
        let Event::Trade(t) = e else {
            panic!("not a trade: {e:?}")
        };
        assert_eq!(
            (t.fills, t.side, t.trade_id),
            (3, Side::Buy, TradeId::Num(15_683_430))
        );
    }

    #[test]
    fn book_ticker_is_a_quote() {
        let e = one(
            r#"{"stream":"nknusdt@bookTicker","data":{"u":499869768,"s":"NKNUSDT","b":"0.35210000","B":"672.00000000","a":"0.35260000","A":"3199.00000000"}}"#,
        );
        let Event::Quote(q) = e else {
            panic!("not a quote: {e:?}")
        };
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string()),
            ("0.35210000".into(), "0.35260000".into())
        );
        assert_eq!(
            q.ts_exchange,
            Ts(7),
            "spot bookTicker has no time: receive time stands in"
        );
    }

    #[test]
    fn raw_stream_payloads_and_ignored_kinds() {
        let e = one(
            r#"{"e":"trade","E":1,"s":"ETHBTC","t":5,"p":"0.05","q":"1","T":1,"m":false,"M":true}"#,
        );
        assert!(matches!(e, Event::Trade(_)));
        let mut p = BinanceParser::new();
        let mut out = Vec::new();
        for ignored in [
            r#"{"result":null,"id":1}"#,
            r#"{"stream":"x@depth@100ms","data":{"e":"depthUpdate"}}"#,
        ] {
            assert_eq!(
                p.parse(&ws(ignored), &mut out).expect("ok"),
                Parsed::Ignored
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn bad_input_is_an_error_naming_the_problem() {
        let mut p = BinanceParser::new();
        let mut out = Vec::new();
        let cases = [
            ("{not json", "malformed"),
            (
                r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":1,"p":"1.2.3","q":"1","T":1,"m":true}}"#,
                "bad price `1.2.3`",
            ),
            (
                r#"{"stream":"xx@trade","data":{"s":"QQQ","t":1,"p":"1","q":"1","T":1,"m":true}}"#,
                "unknown binance symbol `QQQ`",
            ),
            (
                r#"{"code":2,"msg":"Invalid request","id":1}"#,
                "Invalid request",
            ),
            (
                r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":-1,"p":"1","q":"1","T":1,"m":true}}"#,
                "malformed",
            ),
        ];
        for (input, expected) in cases {
            let err = p.parse(&ws(input), &mut out).expect_err(input).to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
        assert!(out.is_empty());
    }

    #[test]
    fn exchange_info_fills_the_symbol_table() {
        let mut p = BinanceParser::new();
        let mut out = Vec::new();
        let body = r#"{"timezone":"UTC","symbols":[{"symbol":"XBTEUR","status":"TRADING","baseAsset":"XBT","quoteAsset":"EUR"}]}"#;
        let msg = RawMessage {
            origin: Origin::Rest {
                url: "https://api.binance.com/api/v3/exchangeInfo".into(),
            },
            ..ws(body)
        };
        assert_eq!(p.parse(&msg, &mut out).expect("ok"), Parsed::Events(1));
        assert_eq!(p.instrument("XBTEUR").expect("known").as_str(), "BTC-EUR");
    }
}
