//! OKX v5 public channels: `trades` and `tickers`, and the instruments list.
//! Only spot instruments (`BASE-QUOTE`) become events; swaps, futures and
//! options in a shared stream are understood and ignored. `side` is the taker
//! side. Trade ids arrive as strings of digits and become numbers: they run
//! on per instrument, and a push aggregating `count` fills of one taker
//! order at one price carries the last fill's id (see
//! [`ck_model::Exchange::ids_end_aggregates`]), so it becomes one trade of
//! `count` fills.
//!
//! Sample `trades` message:
//! `{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"338476307","px":"30236","sz":"0.0002","side":"buy","ts":"1652459224818"}]}`

pub mod book;
pub mod rest;
pub mod ws;

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Exchange, Instrument, Quote, Side, Trade, TradeId, Ts};
use serde::Deserialize;
use std::sync::Arc;

use crate::parse::{ParseError, Parsed, Parser, SymbolMap, decimal, json, listing, required};

const EX: Exchange = Exchange::Okx;

#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    arg: Option<Arg<'a>>,
    #[serde(borrow, default)]
    data: Vec<OkxRow<'a>>,
    #[serde(borrow, default)]
    event: Option<&'a str>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Arg<'a> {
    channel: &'a str,
}

/// A row of `trades` or `tickers` data (or of REST `history-trades`);
/// fields present per channel.
#[derive(Debug, Deserialize)]
pub(crate) struct OkxRow<'a> {
    #[serde(rename = "instId", default)]
    inst_id: &'a str,
    #[serde(rename = "tradeId", default)]
    trade_id: Option<&'a str>,
    #[serde(default)]
    px: Option<&'a str>,
    #[serde(default)]
    sz: Option<&'a str>,
    #[serde(default)]
    side: Option<&'a str>,
    #[serde(default)]
    ts: Option<&'a str>,
    /// Fills aggregated in one `trades` push (absent: one).
    #[serde(default)]
    count: Option<&'a str>,
    #[serde(default)]
    last: Option<&'a str>,
    #[serde(rename = "bidPx", default)]
    bid_px: Option<&'a str>,
    #[serde(rename = "bidSz", default)]
    bid_sz: Option<&'a str>,
    #[serde(rename = "askPx", default)]
    ask_px: Option<&'a str>,
    #[serde(rename = "askSz", default)]
    ask_sz: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct Instruments {
    data: Vec<OkxInstrument>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OkxInstrument {
    inst_id: String,
    inst_type: String,
    #[serde(default)]
    base_ccy: String,
    #[serde(default)]
    quote_ccy: String,
    #[serde(default)]
    state: Option<String>,
}

/// Parses OKX v5 public WebSocket messages and instrument lists.
#[derive(Debug, Default)]
pub struct OkxParser {
    symbols: SymbolMap,
}

fn millis(text: &str) -> Result<Ts, ParseError> {
    text.parse::<i64>()
        .map(Ts::from_millis)
        .map_err(|_| ParseError::BadField {
            exchange: EX,
            field: "ts",
            value: text.to_owned(),
        })
}

/// Spot ids are `BASE-QUOTE`; anything with more parts is a derivative.
fn is_spot(inst_id: &str) -> bool {
    inst_id.matches('-').count() == 1
}

impl OkxParser {
    /// A parser with an empty instrument table.
    #[must_use]
    pub fn new() -> OkxParser {
        OkxParser::default()
    }

    fn instrument(&mut self, inst_id: &str) -> Result<Instrument, ParseError> {
        self.symbols.resolve_dashed(EX, inst_id)
    }

    /// One `tickers` row (the channel's, or REST `market/ticker`'s).
    fn quote(&mut self, row: &OkxRow<'_>, received: Ts) -> Result<Quote, ParseError> {
        let opt = |name, v: Option<&str>| {
            v.filter(|s| !s.is_empty())
                .map(|x| decimal(EX, name, x))
                .transpose()
        };
        Ok(Quote {
            exchange: EX,
            instrument: self.instrument(row.inst_id)?,
            bid: decimal(EX, "bidPx", required(EX, "bidPx", row.bid_px)?)?,
            bid_size: opt("bidSz", row.bid_sz)?,
            ask: decimal(EX, "askPx", required(EX, "askPx", row.ask_px)?)?,
            ask_size: opt("askSz", row.ask_sz)?,
            last: opt("last", row.last)?,
            ts_exchange: row.ts.map(millis).transpose()?.unwrap_or(received),
            ts_received: received,
        })
    }

    fn trade(&mut self, row: &OkxRow<'_>, received: Ts) -> Result<Trade, ParseError> {
        let instrument = self.instrument(row.inst_id)?;
        trade_of(row, instrument, received)
    }
}

/// One `trades` row of `instrument` (the WebSocket's and REST history's
/// rows are alike).
pub(crate) fn trade_of(
    row: &OkxRow<'_>,
    instrument: Instrument,
    received: Ts,
) -> Result<Trade, ParseError> {
    let side = required(EX, "side", row.side)?;
    Ok(Trade {
        exchange: EX,
        instrument,
        trade_id: TradeId::from_text(required(EX, "tradeId", row.trade_id)?),
        price: decimal(EX, "px", required(EX, "px", row.px)?)?,
        size: decimal(EX, "sz", required(EX, "sz", row.sz)?)?,
        side: Side::parse(side).ok_or_else(|| ParseError::BadField {
            exchange: EX,
            field: "side",
            value: side.to_owned(),
        })?,
        ts_exchange: millis(required(EX, "ts", row.ts)?)?,
        ts_received: received,
        fills: fills(row.count)?,
    })
}

/// The fills a `count` stands for: a positive number, 1 when absent.
fn fills(count: Option<&str>) -> Result<u32, ParseError> {
    match count {
        None | Some("") => Ok(1),
        Some(text) => {
            text.parse::<u32>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| ParseError::BadField {
                    exchange: EX,
                    field: "count",
                    value: text.to_owned(),
                })
        }
    }
}

impl Parser for OkxParser {
    fn exchange(&self) -> Exchange {
        EX
    }

    fn parse(&mut self, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        if let Origin::Rest { url } = &msg.origin {
            if url.contains("/market/ticker?") {
                // Polled best bid/ask (the REST polling source).
                let m: Envelope<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
                if let Some(code) = m.code.filter(|c| c != "0") {
                    return Err(ParseError::Venue {
                        exchange: EX,
                        message: format!("code {code}: {}", m.msg.unwrap_or_default()),
                    });
                }
                let before = out.len();
                for row in &m.data {
                    let quote = self.quote(row, msg.ts_received)?;
                    out.push(Event::Quote(quote));
                }
                return Ok(if out.len() > before {
                    Parsed::Events(out.len() - before)
                } else {
                    Parsed::Ignored
                });
            }
            if !url.contains("/public/instruments") {
                return Ok(Parsed::Ignored);
            }
            let list: Instruments = serde_json::from_str(&msg.data).map_err(json(EX))?;
            let before = out.len();
            for i in list
                .data
                .iter()
                .filter(|i| i.inst_type == "SPOT" && !i.base_ccy.is_empty())
            {
                let instrument = Instrument::new(&i.base_ccy, &i.quote_ccy);
                self.symbols.insert(&i.inst_id, instrument.clone());
                out.push(listing(EX, instrument, &i.inst_id, i.state.as_deref()));
            }
            return Ok(if out.len() > before {
                Parsed::Events(out.len() - before)
            } else {
                Parsed::Ignored
            });
        }
        if msg.data == "pong" {
            return Ok(Parsed::Ignored);
        }
        let m: Envelope<'_> = serde_json::from_str(&msg.data).map_err(json(EX))?;
        if m.event == Some("error") {
            return Err(ParseError::Venue {
                exchange: EX,
                message: format!(
                    "code {}: {}",
                    m.code.unwrap_or_default(),
                    m.msg.unwrap_or_default()
                ),
            });
        }
        // Book channels and subscription events are understood, not used here.
        let Some(arg) = m
            .arg
            .filter(|a| m.event.is_none() && matches!(a.channel, "trades" | "tickers"))
        else {
            return Ok(Parsed::Ignored);
        };
        let before = out.len();
        for row in m.data.iter().filter(|r| is_spot(r.inst_id)) {
            match arg.channel {
                "trades" => {
                    let trade = self.trade(row, msg.ts_received)?;
                    out.push(Event::Trade(trade));
                }
                "tickers" => {
                    let quote = self.quote(row, msg.ts_received)?;
                    out.push(Event::Quote(quote));
                }
                _ => return Ok(Parsed::Ignored),
            }
        }
        Ok(if out.len() > before {
            Parsed::Events(out.len() - before)
        } else {
            Parsed::Ignored
        })
    }
}

/// Okx in the venue registry ([`crate::venues`]).
pub const VENUE: crate::venues::Venue = crate::venues::Venue {
    exchange: Exchange::Okx,
    parser: || Box::new(OkxParser::new()),
    live: |_| (Arc::new(ws::OkxProtocol), ws::DEFAULT_WS_URL),
    rest_url: rest::DEFAULT_REST_URL,
    rest_limit: (5, std::time::Duration::from_secs(1)),
    history: |c| Arc::new(rest::OkxRest::new(c)),
    ticker: |i| {
        (
            format!(
                "/api/v5/market/ticker?instId={}",
                Exchange::Okx.native_symbol(i)
            ),
            1,
        )
    },
    ticker_refusal: |v| {
        (v["code"] == "51001")
            .then(|| format!("code 51001: {}", v["msg"].as_str().unwrap_or_default()))
    },
    listing: None,
    book: Some(|| Box::new(book::OkxBooks)),
    cryptofeed_names: &["OKX", "OKEX"],
    hosts: &["okx.com", "okex.com"],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &str) -> (Result<Parsed, ParseError>, Vec<Event>) {
        let msg = RawMessage {
            exchange: EX,
            ts_received: Ts(1),
            origin: Origin::Ws,
            data: data.into(),
        };
        let mut out = Vec::new();
        (OkxParser::new().parse(&msg, &mut out), out)
    }

    #[test]
    fn spot_trades_and_tickers() {
        // From fixtures/cryptofeed/OKX.jsonl.zst.
        let (r, out) = parse(
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"338476307","px":"30236","sz":"0.0002","side":"buy","ts":"1652459224818"}]}"#,
        );
        assert_eq!(r.expect("ok"), Parsed::Events(1));
        let Event::Trade(t) = &out[0] else {
            panic!("trade")
        };
        assert_eq!(
            (t.side, t.ts_exchange),
            (Side::Buy, Ts::from_millis(1_652_459_224_818))
        );
        assert_eq!(
            (t.trade_id.clone(), t.fills),
            (TradeId::Num(338_476_307), 1)
        );
        // A push aggregating three fills (the documented form): one trade
        // of three fills, with the last fill's id.
        let (r, out) = parse(
            r#"{"arg":{"channel":"trades","instId":"BTC-USD"},"data":[{"instId":"BTC-USD","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3"}]}"#,
        );
        assert_eq!(r.expect("ok"), Parsed::Events(1));
        let Event::Trade(t) = &out[0] else {
            panic!("trade")
        };
        assert_eq!(t.id_span(), Some((130_639_472, 130_639_474)));
        let (r, _) = parse(
            r#"{"arg":{"channel":"trades","instId":"BTC-USD"},"data":[{"instId":"BTC-USD","tradeId":"1","px":"1","sz":"1","side":"buy","ts":"1","count":"0"}]}"#,
        );
        assert!(r.expect_err("count 0").to_string().contains("count"));
        let (r, out) = parse(
            r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instType":"SPOT","instId":"BTC-USDT","last":"30236","lastSz":"0.0002","askPx":"30228.7","askSz":"1.55896972","bidPx":"30228.6","bidSz":"0.23393","ts":"1652459224956"}]}"#,
        );
        assert_eq!(r.expect("ok"), Parsed::Events(1));
        let Event::Quote(q) = &out[0] else {
            panic!("quote")
        };
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string()),
            ("30228.6".to_owned(), "30228.7".to_owned())
        );
    }

    #[test]
    fn polled_tickers_are_quotes() {
        // GET /api/v5/market/ticker?instId=BTC-USDT (the documented answer).
        let msg = RawMessage {
            exchange: EX,
            ts_received: Ts(1),
            origin: Origin::Rest {
                url: "http://x/api/v5/market/ticker?instId=BTC-USDT".into(),
            },
            data: r#"{"code":"0","msg":"","data":[{"instType":"SPOT","instId":"BTC-USDT","last":"9999.99","lastSz":"0.1","askPx":"9999.99","askSz":"11","bidPx":"8888.88","bidSz":"5","open24h":"9000","ts":"1597026383085"}]}"#.into(),
        };
        let mut out = Vec::new();
        assert_eq!(
            OkxParser::new().parse(&msg, &mut out).expect("ok"),
            Parsed::Events(1)
        );
        let Event::Quote(q) = &out[0] else {
            panic!("quote")
        };
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string(), q.ts_exchange),
            (
                "8888.88".to_owned(),
                "9999.99".to_owned(),
                Ts::from_millis(1_597_026_383_085)
            )
        );
        let refused = RawMessage {
            data: r#"{"code":"50011","msg":"Too Many Requests","data":[]}"#.into(),
            ..msg
        };
        let e = OkxParser::new()
            .parse(&refused, &mut out)
            .expect_err("refused");
        assert!(e.to_string().contains("code 50011"), "{e}");
    }

    #[test]
    fn derivatives_are_ignored_and_errors_reported() {
        let (r, out) = parse(
            r#"{"arg":{"channel":"trades","instId":"BTC-USD-220527"},"data":[{"instId":"BTC-USD-220527","tradeId":"7849","px":"30218.8","sz":"1","side":"buy","ts":"1652459199958"}]}"#,
        );
        assert_eq!((r.expect("ok"), out.len()), (Parsed::Ignored, 0));
        let (r, _) = parse(r#"{"event":"error","code":"60012","msg":"Invalid request"}"#);
        assert!(r.expect_err("error").to_string().contains("60012"));
    }
}
