//! Bybit v5 spot: `publicTrade.<SYMBOL>`, best bid/ask from
//! `orderbook.1.<SYMBOL>` (and the top level of deeper book snapshots), and
//! the `instruments-info` list. Spot `tickers` carry no bid or ask, so they
//! make no quote. Derivative connections (`/v5/public/linear` and others)
//! use the same symbols for different instruments: candlekeep captures spot
//! only, and recordings drop the derivative connections when read.
//!
//! Trade ids (`i`) are strings, numeric on spot; they are not contiguous
//! (gaps are found by reconnect windows), and `S` is the taker side.
//!
//! Sample: `{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}`

pub mod book;
pub mod rest;
pub mod ws;

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Exchange, Quote, Side, Trade, TradeId, Ts};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;

use crate::parse::{ParseError, Parsed, Parser, SymbolMap, decimal, json, listing};

const EX: Exchange = Exchange::Bybit;

#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    topic: Option<&'a str>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a str>,
    #[serde(default)]
    ts: Option<i64>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    /// Replies to `subscribe` and `ping`.
    #[serde(default)]
    success: Option<bool>,
    #[serde(borrow, default)]
    ret_msg: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct BybitTrade<'a> {
    #[serde(rename = "T")]
    time_ms: i64,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "S")]
    side: &'a str,
    #[serde(rename = "v")]
    size: &'a str,
    #[serde(rename = "p")]
    price: &'a str,
    #[serde(rename = "i")]
    id: &'a str,
}

#[derive(Debug, Deserialize)]
struct BybitBook<'a> {
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(borrow, rename = "b", default)]
    bids: Vec<[&'a str; 2]>,
    #[serde(borrow, rename = "a", default)]
    asks: Vec<[&'a str; 2]>,
}

#[derive(Debug, Deserialize)]
struct InstrumentsInfo {
    result: InstrumentsResult,
}

#[derive(Debug, Deserialize)]
struct InstrumentsResult {
    #[serde(default)]
    category: String,
    list: Vec<InstrumentRow>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstrumentRow {
    symbol: String,
    base_coin: String,
    quote_coin: String,
    #[serde(default)]
    status: Option<String>,
}

/// `GET /v5/market/tickers?category=spot&symbol=` (the polling source).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestTickers<'a> {
    ret_code: i64,
    #[serde(default)]
    ret_msg: String,
    #[serde(borrow, default)]
    result: Option<RestTickerList<'a>>,
    #[serde(default)]
    time: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct RestTickerList<'a> {
    #[serde(borrow, default)]
    list: Vec<RestTicker<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestTicker<'a> {
    symbol: &'a str,
    bid1_price: &'a str,
    #[serde(default)]
    bid1_size: Option<&'a str>,
    ask1_price: &'a str,
    #[serde(default)]
    ask1_size: Option<&'a str>,
    #[serde(default)]
    last_price: Option<&'a str>,
}

/// Parses Bybit v5 spot public messages, the spot instrument list and
/// polled tickers.
#[derive(Debug, Default)]
pub struct BybitParser {
    symbols: SymbolMap,
}

impl BybitParser {
    /// A parser with an empty symbol table.
    #[must_use]
    pub fn new() -> BybitParser {
        BybitParser::default()
    }
}

/// True for a recorded or configured connection to a derivatives endpoint.
#[must_use]
pub fn is_derivatives_url(url: &str) -> bool {
    ["/linear", "/inverse", "/option", "/spread"]
        .iter()
        .any(|p| url.trim_end_matches('/').ends_with(p))
}

impl Parser for BybitParser {
    fn exchange(&self) -> Exchange {
        EX
    }

    fn parse(&mut self, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        if let Origin::Rest { url } = &msg.origin {
            if url.contains("/v5/market/tickers?") {
                // Polled best bid/ask (the REST polling source).
                let t: RestTickers<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
                if t.ret_code != 0 {
                    return Err(ParseError::Venue {
                        exchange: EX,
                        message: format!("retCode {}: {}", t.ret_code, t.ret_msg),
                    });
                }
                let rows = t.result.map(|r| r.list).unwrap_or_default();
                let opt = |name, v: Option<&str>| {
                    v.filter(|s| !s.is_empty())
                        .map(|x| decimal(EX, name, x))
                        .transpose()
                };
                for row in &rows {
                    out.push(Event::Quote(Quote {
                        exchange: EX,
                        instrument: self.symbols.resolve(EX, row.symbol, true)?,
                        bid: decimal(EX, "bid1Price", row.bid1_price)?,
                        bid_size: opt("bid1Size", row.bid1_size)?,
                        ask: decimal(EX, "ask1Price", row.ask1_price)?,
                        ask_size: opt("ask1Size", row.ask1_size)?,
                        last: opt("lastPrice", row.last_price)?,
                        ts_exchange: t.time.map_or(msg.ts_received, Ts::from_millis),
                        ts_received: msg.ts_received,
                    }));
                }
                return Ok(if rows.is_empty() {
                    Parsed::Ignored
                } else {
                    Parsed::Events(rows.len())
                });
            }
            if !url.contains("/v5/market/instruments-info") {
                return Ok(Parsed::Ignored);
            }
            let info: InstrumentsInfo = serde_json::from_str(&msg.data).map_err(json(EX))?;
            if info.result.category != "spot" {
                return Ok(Parsed::Ignored);
            }
            for row in &info.result.list {
                let instrument = ck_model::Instrument::new(&row.base_coin, &row.quote_coin);
                self.symbols.insert(&row.symbol, instrument.clone());
                out.push(listing(EX, instrument, &row.symbol, row.status.as_deref()));
            }
            return Ok(Parsed::Events(info.result.list.len()));
        }
        let m: Envelope<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
        if m.success == Some(false) {
            return Err(ParseError::Venue {
                exchange: EX,
                message: m.ret_msg.unwrap_or("request refused").to_owned(),
            });
        }
        let (Some(topic), Some(data)) = (m.topic, m.data) else {
            return Ok(Parsed::Ignored);
        };
        if topic.starts_with("publicTrade.") {
            let trades: Vec<BybitTrade<'_>> = serde_json::from_str(data.get()).map_err(json(EX))?;
            for t in &trades {
                let side = match t.side {
                    "Buy" => Side::Buy,
                    "Sell" => Side::Sell,
                    other => {
                        return Err(ParseError::BadField {
                            exchange: EX,
                            field: "S",
                            value: other.to_owned(),
                        });
                    }
                };
                let trade_id = match t.id.parse::<u64>() {
                    Ok(n) => TradeId::Num(n),
                    Err(_) => TradeId::Str(t.id.into()),
                };
                out.push(Event::Trade(Trade {
                    exchange: EX,
                    instrument: self.symbols.resolve(EX, t.symbol, true)?,
                    trade_id,
                    price: decimal(EX, "p", t.price)?,
                    size: decimal(EX, "v", t.size)?,
                    side,
                    ts_exchange: Ts::from_millis(t.time_ms),
                    ts_received: msg.ts_received,
                    fills: 1,
                }));
            }
            return Ok(Parsed::Events(trades.len()));
        }
        // Level 1 is always a snapshot; deeper books give their top level
        // only in snapshots (a delta alone does not say what is best).
        let top_of_book = topic.starts_with("orderbook.1.")
            || (topic.starts_with("orderbook.") && m.kind == Some("snapshot"));
        if top_of_book {
            let book: BybitBook<'_> = serde_json::from_str(data.get()).map_err(json(EX))?;
            let (Some(bid), Some(ask)) = (book.bids.first(), book.asks.first()) else {
                return Ok(Parsed::Ignored);
            };
            out.push(Event::Quote(Quote {
                exchange: EX,
                instrument: self.symbols.resolve(EX, book.symbol, true)?,
                bid: decimal(EX, "b", bid[0])?,
                bid_size: Some(decimal(EX, "b size", bid[1])?),
                ask: decimal(EX, "a", ask[0])?,
                ask_size: Some(decimal(EX, "a size", ask[1])?),
                last: None,
                ts_exchange: m.ts.map_or(msg.ts_received, Ts::from_millis),
                ts_received: msg.ts_received,
            }));
            return Ok(Parsed::Events(1));
        }
        // Tickers (no bid/ask on spot), klines, book deltas.
        Ok(Parsed::Ignored)
    }
}

/// Bybit in the venue registry ([`crate::venues`]).
pub const VENUE: crate::venues::Venue = crate::venues::Venue {
    exchange: Exchange::Bybit,
    parser: || Box::new(BybitParser::new()),
    live: |_| (Arc::new(ws::BybitProtocol), ws::DEFAULT_WS_URL),
    rest_url: rest::DEFAULT_REST_URL,
    rest_limit: (5, std::time::Duration::from_secs(1)),
    history: |c| Arc::new(rest::BybitRest::new(c)),
    ticker: |i| {
        (
            format!(
                "/v5/market/tickers?category=spot&symbol={}",
                Exchange::Bybit.native_symbol(i)
            ),
            1,
        )
    },
    ticker_refusal: |v| {
        (v["retCode"] == 10001).then(|| {
            format!(
                "retCode 10001: {}",
                v["retMsg"].as_str().unwrap_or_default()
            )
        })
    },
    listing: None,
    book: Some(|| Box::new(book::BybitBooks)),
    cryptofeed_names: &["BYBIT"],
    hosts: &["bybit.com"],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &str) -> Result<Vec<Event>, ParseError> {
        crate::parse::parse_ws(&mut BybitParser::new(), data)
    }

    #[test]
    fn polled_tickers_are_quotes() {
        // The documented answer of GET /v5/market/tickers?category=spot&symbol=BTCUSDT.
        let url = "http://x/v5/market/tickers?category=spot&symbol=BTCUSDT";
        let events = crate::parse::parse_rest(&mut BybitParser::new(), url, r#"{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"symbol":"BTCUSDT","bid1Price":"20517.96","bid1Size":"2","ask1Price":"20527.77","ask1Size":"1.862172","lastPrice":"20533.13","prevPrice24h":"20393.48","price24hPcnt":"0.0068","highPrice24h":"21128.12","lowPrice24h":"20318.89","turnover24h":"243765620.65899866","volume24h":"11801.27771","usdIndexPrice":"20784.12009279"}]},"retExtInfo":{},"time":1673859087947}"#)
            .expect("ticker");
        assert_eq!(
            crate::parse::only_quote(&events),
            (
                "BTC-USDT".into(),
                "20517.96".into(),
                "20527.77".into(),
                Some("20533.13".into())
            )
        );
        let e = crate::parse::parse_rest(
            &mut BybitParser::new(),
            url,
            r#"{"retCode":10006,"retMsg":"Too many visits!","result":{},"time":1}"#,
        )
        .expect_err("refused");
        assert!(e.to_string().contains("retCode 10006"), "{e}");
    }

    #[test]
    fn trades_and_level_one_quotes() {
        let events = parse(r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,"s":"BTCUSDT","S":"Sell","v":"0.001","p":"16578.50","L":"PlusTick","i":"2290000000012345678","BT":false}]}"#)
            .expect("trade");
        let Event::Trade(t) = &events[0] else {
            panic!("trade")
        };
        assert_eq!((t.instrument.as_str(), t.side), ("BTC-USDT", Side::Sell));
        assert_eq!(t.trade_id, TradeId::Num(2_290_000_000_012_345_678));
        assert_eq!(t.price.to_string(), "16578.50");
        let q = parse(r#"{"topic":"orderbook.1.ETHUSDT","type":"snapshot","ts":1,"data":{"s":"ETHUSDT","b":[["1923.27","1.5"]],"a":[["1923.28","0.2"]],"u":5,"seq":9}}"#)
            .expect("book");
        let Event::Quote(q) = &q[0] else {
            panic!("quote")
        };
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string()),
            ("1923.27".into(), "1923.28".into())
        );
        assert!(parse(r#"{"topic":"orderbook.200.ETHUSDT","type":"delta","ts":1,"data":{"s":"ETHUSDT","b":[["1","1"]],"a":[]}}"#)
            .expect("delta")
            .is_empty());
    }

    #[test]
    fn refusals_and_bad_sides_are_errors() {
        let err = parse(r#"{"success":false,"ret_msg":"error:handler not found,topic:publicTrade.FOOUSDT","op":"subscribe"}"#)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("FOOUSDT"), "{err}");
        assert!(parse(r#"{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Up","v":"1","p":"1","i":"1"}]}"#).is_err());
        assert!(is_derivatives_url(
            "wss://stream.bybit.com/v5/public/linear"
        ));
        assert!(!is_derivatives_url("wss://stream.bybit.com/v5/public/spot"));
    }
}
