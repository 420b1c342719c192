//! Bitfinex API v2 public WebSocket: `trades` and `ticker` channels.
//!
//! Data arrives on numeric channel ids announced by `subscribed` events, so
//! the parser keeps the id-to-channel table (ids are per connection: a
//! reconnect re-announces them). Numbers are bare JSON numbers and are read
//! from their exact text. A trade is announced twice, as `te` (executed) and
//! then `tu` (updated, with the same id): only `te` and snapshots are used, and
//! the id makes any repeat harmless. The sign of AMOUNT is the taker side.
//!
//! Sample trade update: `[232959,"te",[669899160,1618665870435,0.5,0.077]]`;
//! snapshot: `[232959,[[669899159,1618665870435,166.391496,0.076989],...]]`.

pub mod book;
pub mod rest;
pub mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use ck_bus::{Event, Origin, RawMessage};
use ck_model::{Exchange, Instrument, Quote, Side, Trade, TradeId, Ts};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::parse::{ParseError, Parsed, Parser, decimal, json};

const EX: Exchange = Exchange::Bitfinex;

#[derive(Debug, Deserialize)]
struct EventMessage {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(rename = "chanId", default)]
    chan_id: Option<i64>,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    code: Option<i64>,
}

#[derive(Debug, Clone)]
enum Channel {
    Trades(Instrument),
    Ticker(Instrument),
    Other,
}

/// Parses Bitfinex v2 public WebSocket messages.
#[derive(Debug, Default)]
pub struct BitfinexParser {
    channels: HashMap<i64, Channel>,
}

fn bad(field: &'static str, value: &str) -> ParseError {
    ParseError::BadField {
        exchange: EX,
        field,
        value: value.chars().take(80).collect(),
    }
}

/// `tBTCUSD` is BTC-USD; `tTESTBTC:TESTUSD` splits at the colon.
fn instrument(symbol: &str) -> Result<Instrument, ParseError> {
    let unknown = || ParseError::UnknownSymbol {
        exchange: EX,
        symbol: symbol.to_owned(),
    };
    let pair = symbol.strip_prefix('t').ok_or_else(unknown)?;
    let (base, quote) = match pair.split_once(':') {
        Some(parts) => parts,
        None if pair.len() == 6 => pair.split_at(3),
        None => return Err(unknown()),
    };
    Instrument::parse(&format!("{base}-{quote}")).map_err(|_| unknown())
}

impl BitfinexParser {
    /// A parser with no channels yet.
    #[must_use]
    pub fn new() -> BitfinexParser {
        BitfinexParser::default()
    }

    fn trade(instrument: &Instrument, row: &RawValue, received: Ts) -> Result<Trade, ParseError> {
        let fields: Vec<&RawValue> = serde_json::from_str(row.get()).map_err(json(EX))?;
        let [id, mts, amount, price] = fields[..] else {
            return Err(bad("trade", row.get()));
        };
        let amount = decimal(EX, "amount", amount.get())?;
        Ok(Trade {
            exchange: EX,
            instrument: instrument.clone(),
            trade_id: TradeId::Num(id.get().parse().map_err(|_| bad("id", id.get()))?),
            price: decimal(EX, "price", price.get())?,
            size: amount.abs(),
            side: if amount.is_negative() {
                Side::Sell
            } else {
                Side::Buy
            },
            ts_exchange: Ts::from_millis(mts.get().parse().map_err(|_| bad("mts", mts.get()))?),
            ts_received: received,
            fills: 1,
        })
    }
}

impl Parser for BitfinexParser {
    fn exchange(&self) -> Exchange {
        EX
    }

    fn parse(&mut self, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError> {
        if let Origin::Rest { url } = &msg.origin {
            let Some(symbol) = crate::parse::segment_after(url, "/v2/ticker/") else {
                return Ok(Parsed::Ignored);
            };
            // Polled ticker (the REST polling source): `[BID, BID_SIZE,
            // ASK, ASK_SIZE, DAILY_CHANGE, DAILY_CHANGE_RELATIVE,
            // LAST_PRICE, VOLUME, HIGH, LOW]`, numbers; the symbol is in
            // the URL only; errors come as `["error", code, "message"]`.
            let row: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(&msg.data).map_err(json(EX))?;
            if row.first().is_some_and(|c| c.get() == "\"error\"") {
                return Err(ParseError::Venue {
                    exchange: EX,
                    message: msg.data.chars().take(200).collect(),
                });
            }
            if row.len() < 7 {
                return Err(bad("ticker", &msg.data));
            }
            let field = |i: usize| Some(row[i].get());
            let quote = crate::parse::PolledTicker {
                bid: ("BID", field(0)),
                bid_size: field(1),
                ask: ("ASK", field(2)),
                ask_size: field(3),
                last: field(6),
            }
            .quote(EX, instrument(symbol)?, msg.ts_received, msg.ts_received)?;
            out.push(Event::Quote(quote));
            return Ok(Parsed::Events(1));
        }
        if msg.data.trim_start().starts_with('{') {
            let e: EventMessage = serde_json::from_str(&msg.data).map_err(json(EX))?;
            match e.event.as_str() {
                "subscribed" => {
                    let id = e.chan_id.ok_or_else(|| bad("chanId", &msg.data))?;
                    let symbol = e.symbol.unwrap_or_default();
                    let channel = match e.channel.as_deref() {
                        Some("trades") => Channel::Trades(instrument(&symbol)?),
                        Some("ticker") => Channel::Ticker(instrument(&symbol)?),
                        _ => Channel::Other,
                    };
                    self.channels.insert(id, channel);
                }
                "error" => {
                    return Err(ParseError::Venue {
                        exchange: EX,
                        message: format!(
                            "code {}: {}",
                            e.code.unwrap_or_default(),
                            e.msg.unwrap_or_default()
                        ),
                    });
                }
                // A reconnect or maintenance notice invalidates channel ids.
                "info" if e.code.is_some() => self.channels.clear(),
                _ => {}
            }
            return Ok(Parsed::Ignored);
        }
        let parts: Vec<&RawValue> = serde_json::from_str(&msg.data).map_err(json(EX))?;
        let (Some(id), Some(body)) = (parts.first(), parts.get(1)) else {
            return Err(bad("message", &msg.data));
        };
        let id: i64 = id.get().parse().map_err(|_| bad("chanId", id.get()))?;
        if body.get() == "\"hb\"" {
            // Heartbeats carry no data, whichever channel they keep alive.
            return Ok(Parsed::Ignored);
        }
        let channel = self
            .channels
            .get(&id)
            .cloned()
            .ok_or_else(|| bad("unknown channel id", &id.to_string()))?;
        let before = out.len();
        match (channel, body.get()) {
            (_, "\"tu\"" | "\"fu\"") | (Channel::Other, _) => return Ok(Parsed::Ignored),
            (Channel::Trades(instrument), "\"te\"") => {
                let row = parts.get(2).ok_or_else(|| bad("te", &msg.data))?;
                out.push(Event::Trade(Self::trade(
                    &instrument,
                    row,
                    msg.ts_received,
                )?));
            }
            (Channel::Trades(instrument), snapshot) if snapshot.starts_with('[') => {
                let rows: Vec<&RawValue> = serde_json::from_str(snapshot).map_err(json(EX))?;
                let mut trades = rows
                    .into_iter()
                    .map(|row| Self::trade(&instrument, row, msg.ts_received))
                    .collect::<Result<Vec<Trade>, ParseError>>()?;
                // The snapshot lists the newest first. Oldest first, the
                // candle stage sees time move forward; newest first, every
                // older trade would look late (hours late on a quiet pair)
                // and miss its candle.
                trades.sort_by(|a, b| {
                    (a.ts_exchange, &a.trade_id).cmp(&(b.ts_exchange, &b.trade_id))
                });
                out.extend(trades.into_iter().map(Event::Trade));
            }
            (Channel::Ticker(instrument), ticker) if ticker.starts_with('[') => {
                let f: Vec<&RawValue> = serde_json::from_str(ticker).map_err(json(EX))?;
                let [bid, bid_size, ask, ask_size, _, _, last, ..] = f[..] else {
                    return Err(bad("ticker", ticker));
                };
                out.push(Event::Quote(Quote {
                    exchange: EX,
                    instrument,
                    bid: decimal(EX, "bid", bid.get())?,
                    bid_size: Some(decimal(EX, "bid size", bid_size.get())?),
                    ask: decimal(EX, "ask", ask.get())?,
                    ask_size: Some(decimal(EX, "ask size", ask_size.get())?),
                    last: Some(decimal(EX, "last", last.get())?),
                    ts_exchange: msg.ts_received,
                    ts_received: msg.ts_received,
                }));
            }
            (_, other) => return Err(bad("message", other)),
        }
        Ok(if out.len() > before {
            Parsed::Events(out.len() - before)
        } else {
            Parsed::Ignored
        })
    }
}

/// Bitfinex in the venue registry ([`crate::venues`]).
pub const VENUE: crate::venues::Venue = crate::venues::Venue {
    exchange: Exchange::Bitfinex,
    parser: || Box::new(BitfinexParser::new()),
    live: |_| (Arc::new(ws::BitfinexProtocol), ws::DEFAULT_WS_URL),
    rest_url: rest::DEFAULT_REST_URL,
    rest_limit: (5, std::time::Duration::from_secs(1)),
    history: |c| Arc::new(rest::BitfinexRest::new(c)),
    ticker: |i| {
        (
            format!("/v2/ticker/{}", Exchange::Bitfinex.native_symbol(i)),
            1,
        )
    },
    ticker_refusal: |_| None,
    listing: None,
    book: Some(|| Box::new(book::BitfinexBooks::default())),
    cryptofeed_names: &["BITFINEX"],
    hosts: &["bitfinex.com"],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut BitfinexParser, data: &str) -> Result<Vec<Event>, ParseError> {
        crate::parse::parse_ws(p, data)
    }

    #[test]
    fn polled_tickers_are_quotes() {
        // The documented answer of GET /v2/ticker/tBTCUSD.
        let url = "http://x/v2/ticker/tBTCUSD";
        let events = crate::parse::parse_rest(
            &mut BitfinexParser::default(),
            url,
            "[10645,73.93854271,10647,75.22266119,731.60645766,0.0738,10644.00645766,14480.89849667,10766,9889.1449809]",
        )
        .expect("ticker");
        assert_eq!(
            crate::parse::only_quote(&events),
            (
                "BTC-USD".into(),
                "10645".into(),
                "10647".into(),
                Some("10644.00645766".into())
            )
        );
        let e = crate::parse::parse_rest(
            &mut BitfinexParser::default(),
            url,
            r#"["error",10020,"symbol: invalid"]"#,
        )
        .expect_err("refused");
        assert!(e.to_string().contains("symbol: invalid"), "{e}");
    }

    #[test]
    fn channels_snapshots_te_and_tu() {
        let mut p = BitfinexParser::new();
        feed(&mut p, r#"{"event":"subscribed","channel":"trades","chanId":232959,"symbol":"tBFTUSD","pair":"BFTUSD"}"#).expect("sub");
        // From fixtures/cryptofeed/BITFINEX.jsonl.zst (snapshot, first rows).
        let snap = feed(&mut p, "[232959,[[669899159,1618665870435,166.391496,0.076989],[669898213,1618661110078,-2272.50116833,0.068961]]]").expect("snapshot");
        assert_eq!(snap.len(), 2);
        // Oldest first, although the snapshot lists the newest first.
        let Event::Trade(t) = &snap[0] else {
            panic!("trade")
        };
        assert_eq!(
            (t.side, t.size.to_string(), t.price.to_string()),
            (Side::Sell, "2272.50116833".into(), "0.068961".into())
        );
        assert_eq!(t.instrument.as_str(), "BFT-USD");
        // Hand-written te/tu pair (the recording has none): one trade, not two.
        assert_eq!(
            feed(
                &mut p,
                "[232959,\"te\",[669899160,1618665870435,1e-8,0.077]]"
            )
            .expect("te")
            .len(),
            1
        );
        assert!(
            feed(
                &mut p,
                "[232959,\"tu\",[669899160,1618665870435,1e-8,0.077]]"
            )
            .expect("tu")
            .is_empty()
        );
        assert!(feed(&mut p, "[232959,\"hb\"]").expect("hb").is_empty());
        assert!(
            feed(&mut p, "[424242,\"hb\",7]")
                .expect("hb of a channel we never saw")
                .is_empty()
        );
        let err = feed(&mut p, "[999,[[1,2,3,4]]]")
            .expect_err("unknown channel")
            .to_string();
        assert!(err.contains("unknown channel id"), "{err}");
        assert_eq!(
            instrument("tTESTBTC:TESTUSD").expect("pair").as_str(),
            "TESTBTC-TESTUSD"
        );
    }
}
