//! Kraken spot, WebSocket v2 (`trade`, `ticker`) and v1 (the format of the
//! recording: arrays `[channelID, payload, channelName, pair]`), and the REST
//! `AssetPairs` list.
//!
//! - v2 prices and quantities are JSON numbers carrying full precision: they
//!   are read from the raw number text, never through a float.
//! - v2 trades carry a sequential `trade_id`. v1 trades carry none; their id
//!   is built from what identifies a fill, `v1:<time>:<price>:<volume>:<side>`,
//!   the same on every replay, so duplicates still collapse. (Two fills alike
//!   in all four would merge; Kraken's microsecond times make that rare.)
//! - `XBT` is `BTC` and `XDG` is `DOGE` (instrument normalization).
//!
//! v1 trade: `[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""]],"trade","XMR/USD"]`
//! v2 trade: `{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":105944.20,"qty":0.00027625,"ord_type":"limit","trade_id":10218208,"timestamp":"2023-10-06T17:35:55.440295Z"}]}`

pub mod book;
pub mod rest;
pub mod ws;

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Exchange, Instrument, Quote, Side, Trade, TradeId, Ts};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;

use crate::parse::{ParseError, Parsed, Parser, SymbolMap, decimal, json, listing, required};

const EX: Exchange = Exchange::Kraken;

/// Parses Kraken WebSocket v1 and v2 messages and `AssetPairs`.
#[derive(Debug, Default)]
pub struct KrakenParser {
    symbols: SymbolMap,
}

#[derive(Debug, Deserialize)]
struct V2Envelope<'a> {
    #[serde(borrow, default)]
    channel: Option<&'a str>,
    #[serde(borrow, default)]
    method: Option<&'a str>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(borrow, default)]
    error: Option<&'a str>,
    #[serde(borrow, default)]
    data: Option<Vec<&'a RawValue>>,
    /// v1 events: `systemStatus`, `subscriptionStatus`, `heartbeat`, `pong`.
    #[serde(borrow, default)]
    event: Option<&'a str>,
    #[serde(borrow, default)]
    status: Option<&'a str>,
    #[serde(borrow, default, rename = "errorMessage")]
    error_message: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct V2Trade<'a> {
    symbol: &'a str,
    side: &'a str,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
    trade_id: u64,
    timestamp: &'a str,
}

#[derive(Debug, Deserialize)]
struct V2Ticker<'a> {
    symbol: &'a str,
    #[serde(borrow)]
    bid: &'a RawValue,
    #[serde(borrow, default)]
    bid_qty: Option<&'a RawValue>,
    #[serde(borrow)]
    ask: &'a RawValue,
    #[serde(borrow, default)]
    ask_qty: Option<&'a RawValue>,
    #[serde(borrow, default)]
    last: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a str>,
}

/// v1 ticker payload: `{"a":["price",wholeLotVolume,"lot volume"],"b":[…],"c":["price","lot volume"],…}`
/// (the whole-lot volume is a bare integer, the rest strings).
#[derive(Debug, Deserialize)]
struct V1Ticker<'a> {
    #[serde(borrow)]
    a: Vec<&'a RawValue>,
    #[serde(borrow)]
    b: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    c: Vec<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct AssetPairs {
    result: std::collections::BTreeMap<String, AssetPair>,
}

#[derive(Debug, Deserialize)]
struct AssetPair {
    #[serde(default)]
    wsname: Option<String>,
    #[serde(default)]
    altname: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

fn side(text: &str) -> Result<Side, ParseError> {
    match text {
        "b" | "buy" => Ok(Side::Buy),
        "s" | "sell" => Ok(Side::Sell),
        other => Err(ParseError::BadField {
            exchange: EX,
            field: "side",
            value: other.to_owned(),
        }),
    }
}

/// `"1618678142.557535"` (seconds with a fraction) to a time.
fn unix_secs(field: &'static str, text: &str) -> Result<Ts, ParseError> {
    Ts::parse_unix_secs(text).map_err(|_| ParseError::BadField {
        exchange: EX,
        field,
        value: text.to_owned(),
    })
}

fn number(field: &'static str, raw: &RawValue) -> Result<ck_model::Decimal, ParseError> {
    decimal(EX, field, raw.get().trim_matches('"'))
}

impl KrakenParser {
    /// A parser with an empty pair table.
    #[must_use]
    pub fn new() -> KrakenParser {
        KrakenParser::default()
    }

    fn instrument(&mut self, native: &str) -> Result<Instrument, ParseError> {
        match self.symbols.resolve(EX, native, false) {
            Ok(i) => Ok(i),
            Err(e) if self.symbols.is_empty() => Instrument::parse(native).map_err(|_| e),
            Err(e) => Err(e),
        }
    }

    fn asset_pairs(&mut self, body: &str, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        let pairs: AssetPairs = serde_json::from_str(body).map_err(json(EX))?;
        let mut n = 0;
        for pair in pairs.result.values() {
            let Some(ws) = &pair.wsname else { continue };
            let Ok(instrument) = Instrument::parse(ws) else {
                continue;
            };
            self.symbols.insert(ws, instrument.clone());
            // WS v2 names the pair by its normalized assets (`BTC/USD`).
            let v2 = format!("{}/{}", instrument.base(), instrument.quote());
            self.symbols.insert(&v2, instrument.clone());
            if let Some(alt) = &pair.altname {
                self.symbols.insert(alt, instrument.clone());
            }
            let status = pair.status.as_deref().or(Some("online"));
            out.push(listing(EX, instrument, ws, status));
            n += 1;
        }
        Ok(Parsed::Events(n))
    }

    fn v1(&mut self, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        let parts: Vec<&RawValue> = serde_json::from_str(&msg.data).map_err(json(EX))?;
        let n = parts.len();
        if n < 4 {
            return Err(ParseError::BadField {
                exchange: EX,
                field: "v1 message",
                value: msg.data.chars().take(80).collect(),
            });
        }
        let name: &str = serde_json::from_str(parts[n - 2].get()).map_err(json(EX))?;
        let pair: &str = serde_json::from_str(parts[n - 1].get()).map_err(json(EX))?;
        match name {
            "trade" => {
                let rows: Vec<Vec<&str>> =
                    serde_json::from_str(parts[1].get()).map_err(json(EX))?;
                let instrument = self.instrument(pair)?;
                for row in &rows {
                    let field =
                        |i: usize, name: &'static str| required(EX, name, row.get(i).copied());
                    let (price, volume, time, s) = (
                        field(0, "price")?,
                        field(1, "volume")?,
                        field(2, "time")?,
                        field(3, "side")?,
                    );
                    out.push(Event::Trade(Trade {
                        exchange: EX,
                        instrument: instrument.clone(),
                        trade_id: TradeId::Str(format!("v1:{time}:{price}:{volume}:{s}").into()),
                        price: decimal(EX, "price", price)?,
                        size: decimal(EX, "volume", volume)?,
                        side: side(s)?,
                        ts_exchange: unix_secs("time", time)?,
                        ts_received: msg.ts_received,
                        fills: 1,
                    }));
                }
                Ok(Parsed::Events(rows.len()))
            }
            "ticker" => {
                let t: V1Ticker<'_> = serde_json::from_str(parts[1].get()).map_err(json(EX))?;
                let at = |v: &[&RawValue], i: usize, field: &'static str| {
                    v.get(i).map(|raw| number(field, raw)).transpose()
                };
                out.push(Event::Quote(Quote {
                    exchange: EX,
                    instrument: self.instrument(pair)?,
                    bid: required(EX, "b", at(&t.b, 0, "b")?)?,
                    bid_size: at(&t.b, 2, "b lot volume")?,
                    ask: required(EX, "a", at(&t.a, 0, "a")?)?,
                    ask_size: at(&t.a, 2, "a lot volume")?,
                    last: at(&t.c, 0, "c")?,
                    ts_exchange: msg.ts_received,
                    ts_received: msg.ts_received,
                }));
                Ok(Parsed::Events(1))
            }
            // Books, spreads, OHLC.
            _ => Ok(Parsed::Ignored),
        }
    }

    fn v2(
        &mut self,
        m: &V2Envelope<'_>,
        msg: &RawMessage,
        out: &mut Vec<Event>,
    ) -> Result<Parsed, ParseError> {
        let data = m.data.as_deref().unwrap_or_default();
        match m.channel {
            Some("trade") => {
                for raw in data {
                    let t: V2Trade<'_> = serde_json::from_str(raw.get()).map_err(json(EX))?;
                    out.push(Event::Trade(Trade {
                        exchange: EX,
                        instrument: self.instrument(t.symbol)?,
                        trade_id: TradeId::Num(t.trade_id),
                        price: number("price", t.price)?,
                        size: number("qty", t.qty)?,
                        side: side(t.side)?,
                        ts_exchange: Ts::parse(t.timestamp).map_err(|_| ParseError::BadField {
                            exchange: EX,
                            field: "timestamp",
                            value: t.timestamp.to_owned(),
                        })?,
                        ts_received: msg.ts_received,
                        fills: 1,
                    }));
                }
                Ok(Parsed::Events(data.len()))
            }
            Some("ticker") => {
                for raw in data {
                    let t: V2Ticker<'_> = serde_json::from_str(raw.get()).map_err(json(EX))?;
                    let ts = match t.timestamp {
                        Some(s) => Ts::parse(s).map_err(|_| ParseError::BadField {
                            exchange: EX,
                            field: "timestamp",
                            value: s.to_owned(),
                        })?,
                        None => msg.ts_received,
                    };
                    out.push(Event::Quote(Quote {
                        exchange: EX,
                        instrument: self.instrument(t.symbol)?,
                        bid: number("bid", t.bid)?,
                        bid_size: t.bid_qty.map(|q| number("bid_qty", q)).transpose()?,
                        ask: number("ask", t.ask)?,
                        ask_size: t.ask_qty.map(|q| number("ask_qty", q)).transpose()?,
                        last: t.last.map(|l| number("last", l)).transpose()?,
                        ts_exchange: ts,
                        ts_received: msg.ts_received,
                    }));
                }
                Ok(Parsed::Events(data.len()))
            }
            _ => Ok(Parsed::Ignored),
        }
    }
}

/// `GET /0/public/Ticker?pair=XBTUSD` (the REST polling source):
/// `{"error":[],"result":{"XXBTZUSD":{"a":[price, whole lot volume, lot
/// volume],"b":[…],"c":[price, lot volume],…}}}`, under Kraken's own
/// name of the pair: the one pair asked for, read from the URL.
fn polled_ticker(pair: &str, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(default)]
        error: Vec<String>,
        #[serde(borrow, default)]
        result: std::collections::HashMap<&'a str, Ticker<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Ticker<'a> {
        #[serde(borrow)]
        a: Vec<&'a str>,
        #[serde(borrow)]
        b: Vec<&'a str>,
        #[serde(borrow, default)]
        c: Vec<&'a str>,
    }
    let answer: Answer<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
    if !answer.error.is_empty() {
        return Err(ParseError::Venue {
            exchange: EX,
            message: answer.error.join(", "),
        });
    }
    let instrument =
        rest::instrument_of_rest_pair(pair).ok_or_else(|| ParseError::UnknownSymbol {
            exchange: EX,
            symbol: pair.to_owned(),
        })?;
    let [(_, t)] =
        <[_; 1]>::try_from(answer.result.into_iter().collect::<Vec<_>>()).map_err(|_| {
            ParseError::BadField {
                exchange: EX,
                field: "result",
                value: msg.data.chars().take(120).collect(),
            }
        })?;
    let quote = crate::parse::PolledTicker {
        bid: ("b", t.b.first().copied()),
        bid_size: t.b.get(2).copied(),
        ask: ("a", t.a.first().copied()),
        ask_size: t.a.get(2).copied(),
        last: t.c.first().copied(),
    }
    .quote(EX, instrument, msg.ts_received, msg.ts_received)?;
    out.push(Event::Quote(quote));
    Ok(Parsed::Events(1))
}

impl Parser for KrakenParser {
    fn exchange(&self) -> Exchange {
        EX
    }

    fn parse(&mut self, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        if let Origin::Rest { url } = &msg.origin {
            if url.contains("/AssetPairs") {
                return self.asset_pairs(&msg.data, out);
            }
            if let Some(pair) = url.split_once("/0/public/Ticker?pair=").map(|(_, p)| p) {
                return polled_ticker(pair, msg, out);
            }
            return Ok(Parsed::Ignored);
        }
        if msg.data.trim_start().starts_with('[') {
            return self.v1(msg, out);
        }
        let m: V2Envelope<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
        // Refused subscriptions, in either version, name the problem.
        if m.success == Some(false) || m.status == Some("error") {
            let why = m.error.or(m.error_message).unwrap_or("request refused");
            return Err(ParseError::Venue {
                exchange: EX,
                message: format!("{} {why}", m.method.or(m.event).unwrap_or("")),
            });
        }
        self.v2(&m, msg, out)
    }
}

/// Kraken in the venue registry ([`crate::venues`]).
pub const VENUE: crate::venues::Venue = crate::venues::Venue {
    exchange: Exchange::Kraken,
    parser: || Box::new(KrakenParser::new()),
    live: |api| match api {
        Some("v1") => (Arc::new(ws::KrakenProtocol::V1), ws::V1_WS_URL),
        _ => (Arc::new(ws::KrakenProtocol::V2), ws::DEFAULT_WS_URL),
    },
    rest_url: rest::DEFAULT_REST_URL,
    // About one call a second keeps within Kraken's public limits.
    rest_limit: (1, std::time::Duration::from_secs(1)),
    history: |c| Arc::new(rest::KrakenRest::new(c)),
    ticker: |i| (format!("/0/public/Ticker?pair={}", rest::rest_pair(i)), 1),
    ticker_refusal: |v| {
        v["error"]
            .as_array()?
            .iter()
            .filter_map(|e| e.as_str())
            .find(|e| e.starts_with("EQuery:Unknown asset pair"))
            .map(str::to_owned)
    },
    listing: None,
    book: Some(|| Box::new(book::KrakenBooks::default())),
    cryptofeed_names: &["KRAKEN"],
    hosts: &["kraken.com"],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &str) -> Result<Vec<Event>, ParseError> {
        crate::parse::parse_ws(&mut KrakenParser::new(), data)
    }

    #[test]
    fn polled_tickers_are_quotes() {
        // The documented answer of GET /0/public/Ticker?pair=XBTUSD.
        let url = "http://x/0/public/Ticker?pair=XBTUSD";
        let events = crate::parse::parse_rest(
            &mut KrakenParser::new(),
            url,
            r#"{"error":[],"result":{"XXBTZUSD":{"a":["30300.10000","1","1.000"],"b":["30300.00000","1","1.000"],"c":["30303.20000","0.00067643"],"v":["4083.67001100","4412.73601799"],"p":["30706.77771","30689.13205"],"t":[34619,38907],"l":["29868.30000","29868.30000"],"h":["31631.00000","31631.00000"],"o":"30502.80000"}}}"#,
        )
        .expect("ticker");
        assert_eq!(
            crate::parse::only_quote(&events),
            (
                "BTC-USD".into(),
                "30300.00000".into(),
                "30300.10000".into(),
                Some("30303.20000".into())
            )
        );
        let e = crate::parse::parse_rest(
            &mut KrakenParser::new(),
            url,
            r#"{"error":["EQuery:Unknown asset pair"]}"#,
        )
        .expect_err("refused");
        assert!(e.to_string().contains("Unknown asset pair"), "{e}");
        assert_eq!(
            rest::instrument_of_rest_pair(&rest::rest_pair(&Instrument::new("DOGE", "USDT"))),
            Some(Instrument::new("DOGE", "USDT"))
        );
    }

    #[test]
    fn v1_trades_get_a_stable_id_and_normalized_pairs() {
        // From fixtures/cryptofeed/KRAKEN.jsonl.zst.
        let data = r#"[1921,[["0.042980","8500.00000000","1618678155.718950","b","m",""],["0.043000","2383.16665529","1618678155.720582","b","m",""]],"trade","SC/EUR"]"#;
        let events = parse(data).expect("parses");
        assert_eq!(events.len(), 2);
        let Event::Trade(t) = &events[1] else {
            panic!("trade")
        };
        assert_eq!(t.instrument.as_str(), "SC-EUR");
        assert_eq!(t.side, Side::Buy);
        assert_eq!(t.price.to_string(), "0.043000");
        assert_eq!(t.ts_exchange, Ts::from_micros(1_618_678_155_720_582));
        assert_eq!(
            t.trade_id.to_string(),
            "v1:1618678155.720582:0.043000:2383.16665529:b"
        );
        assert_eq!(parse(data).expect("again").len(), 2, "same ids on replay");
        let xbt = parse(r#"[465,[["50000.1","0.1","1618678155.1","s","l",""]],"trade","XBT/CHF"]"#)
            .expect("xbt");
        let Event::Trade(t) = &xbt[0] else {
            panic!("trade")
        };
        assert_eq!(t.instrument.as_str(), "BTC-CHF");
    }

    #[test]
    fn v2_numbers_are_read_exactly() {
        let data = r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell","price":105944.20,"qty":0.00027625,"ord_type":"limit","trade_id":10218208,"timestamp":"2023-10-06T17:35:55.440295Z"}]}"#;
        let events = parse(data).expect("parses");
        let Event::Trade(t) = &events[0] else {
            panic!("trade")
        };
        assert_eq!(
            t.price.to_string(),
            "105944.20",
            "the wire text, not a float"
        );
        assert_eq!(t.size.to_string(), "0.00027625");
        assert_eq!(t.trade_id, TradeId::Num(10_218_208));
        assert_eq!(t.side, Side::Sell);
        let q = parse(r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":100.5,"bid_qty":2,"ask":100.6,"ask_qty":1.5,"last":100.55}]}"#)
            .expect("ticker");
        let Event::Quote(q) = &q[0] else {
            panic!("quote")
        };
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string()),
            ("100.5".into(), "100.6".into())
        );
    }

    #[test]
    fn refusals_and_bad_fields_are_errors() {
        let err = parse(r#"{"method":"subscribe","success":false,"error":"Currency pair not supported FOO/BAR","req_id":1}"#)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("FOO/BAR"), "{err}");
        let err = parse(r#"{"channelName":"trade","event":"subscriptionStatus","errorMessage":"Currency pair not supported","pair":"FOO/BAR","status":"error"}"#)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("not supported"), "{err}");
        assert!(parse(r#"[1,[["x","1","1.0","b","m",""]],"trade","XMR/USD"]"#).is_err());
        assert!(parse(r#"[1,[["1","1","1.0","q","m",""]],"trade","XMR/USD"]"#).is_err());
        assert!(parse(r#"{"event":"heartbeat"}"#).expect("ok").is_empty());
    }
}
