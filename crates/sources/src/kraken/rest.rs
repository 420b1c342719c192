//! Kraken REST trade history: `GET /0/public/Trades?pair=XBTUSD&since=<ns>&count=<1..1000>`,
//! oldest first after a time. The answer is
//! `{"error":[],"result":{"<PAIR>":[[price, volume, time, side, type, misc, trade_id],...],"last":"<ns>"}}`:
//! prices and volumes are strings, the time is seconds as a JSON number
//! (read from its text, never through a float), the side is the taker's
//! (`b`/`s`), and `trade_id` is the sequential id v2 WebSocket trades carry.
//! `since` is exclusive, so a page from `t` asks for `since = t - 1 ns`;
//! the history is paged by time ([`History::by_time`]). Kraken reports
//! failures in `error` (with HTTP 200), such as `EGeneral:Too many requests`.
//!
//! Kraken's OHLC keeps only the 720 most recent candles and has no quote
//! or taker volume, so its candles are not fetched for verification.

use ck_model::{Candle, Exchange, Instrument, Interval, Trade, TradeId, Ts};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::history::{History, HistoryError};
use crate::parse::{ParseError, decimal, json};
use crate::rest::RestClient;

const EX: Exchange = Exchange::Kraken;

/// The public REST root.
pub const DEFAULT_REST_URL: &str = "https://api.kraken.com";

/// Trades per request, at most (Kraken's `count` tops out at 1,000).
const MAX_PAGE: u32 = 1_000;

/// Kraken history over one [`RestClient`].
#[derive(Debug)]
pub struct KrakenRest {
    client: std::sync::Arc<RestClient>,
}

impl KrakenRest {
    /// History over `client` (whose base URL is the REST root).
    #[must_use]
    pub fn new(client: std::sync::Arc<RestClient>) -> KrakenRest {
        KrakenRest { client }
    }
}

/// Kraken's REST name of `instrument`: `XBTUSD` for BTC-USD (REST keeps
/// the old `XBT` and `XDG` codes; it accepts these alternative names).
#[must_use]
pub fn rest_pair(instrument: &Instrument) -> String {
    let code = |asset: &str| match asset {
        "BTC" => "XBT".to_owned(),
        "DOGE" => "XDG".to_owned(),
        other => other.to_owned(),
    };
    format!("{}{}", code(instrument.base()), code(instrument.quote()))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    error: Vec<String>,
    #[serde(borrow, default)]
    result: Option<std::collections::BTreeMap<&'a str, &'a RawValue>>,
}

/// Reads a `Trades` answer: the trades, or Kraken's error as
/// [`ParseError::Venue`].
fn trades_from(
    body: &str,
    instrument: &Instrument,
    received: Ts,
) -> Result<Vec<Trade>, ParseError> {
    let envelope: Envelope<'_> = serde_json::from_str(body).map_err(json(EX))?;
    if !envelope.error.is_empty() {
        return Err(ParseError::Venue {
            exchange: EX,
            message: envelope.error.join("; "),
        });
    }
    // The rows sit under Kraken's own pair name (`XXBTZUSD`), beside `last`.
    let Some(rows) = envelope
        .result
        .as_ref()
        .and_then(|r| r.iter().find(|(k, _)| **k != "last").map(|(_, v)| *v))
    else {
        return Ok(Vec::new());
    };
    let rows: Vec<Vec<&RawValue>> = serde_json::from_str(rows.get()).map_err(json(EX))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let field = |i: usize, name: &'static str| {
            row.get(i)
                .map(|r| r.get().trim_matches('"'))
                .ok_or(ParseError::BadField {
                    exchange: EX,
                    field: name,
                    value: "(missing)".into(),
                })
        };
        let time = field(2, "time")?;
        let side = match field(3, "side")? {
            "b" => ck_model::Side::Buy,
            "s" => ck_model::Side::Sell,
            other => {
                return Err(ParseError::BadField {
                    exchange: EX,
                    field: "side",
                    value: other.to_owned(),
                });
            }
        };
        let id = field(6, "trade_id")?;
        out.push(Trade {
            exchange: EX,
            instrument: instrument.clone(),
            trade_id: TradeId::Num(id.parse().map_err(|_| ParseError::BadField {
                exchange: EX,
                field: "trade_id",
                value: id.to_owned(),
            })?),
            price: decimal(EX, "price", field(0, "price")?)?,
            size: decimal(EX, "volume", field(1, "volume")?)?,
            side,
            ts_exchange: Ts::parse_unix_secs(time).map_err(|_| ParseError::BadField {
                exchange: EX,
                field: "time",
                value: time.to_owned(),
            })?,
            ts_received: received,
            fills: 1,
        });
    }
    Ok(out)
}

#[async_trait::async_trait]
impl History for KrakenRest {
    fn exchange(&self) -> Exchange {
        EX
    }

    fn client(&self) -> &RestClient {
        &self.client
    }

    fn page_size(&self) -> u32 {
        MAX_PAGE
    }

    fn by_time(&self) -> bool {
        true
    }

    async fn trades_from_time(
        &self,
        instrument: &Instrument,
        from: Ts,
        limit: u32,
    ) -> Result<Vec<Trade>, HistoryError> {
        let path = format!(
            "/0/public/Trades?pair={}&since={}&count={}",
            rest_pair(instrument),
            from.0.saturating_sub(1).max(0),
            limit.clamp(1, MAX_PAGE)
        );
        crate::history::get_read(
            &self.client,
            &path,
            |m| m.contains("Too many requests"),
            |body| trades_from(body, instrument, Ts::now()),
        )
        .await
    }

    async fn candles(
        &self,
        _instrument: &Instrument,
        _interval: Interval,
        _start: Ts,
        _limit: u32,
    ) -> Result<Vec<Candle>, HistoryError> {
        Err(HistoryError::Unsupported(
            "Kraken OHLC keeps only the 720 most recent candles and has no quote or taker volume, so they cannot be verified field by field; not fetched".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trades_are_read_exactly_with_ids_and_errors_are_reported() {
        let body = r#"{"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,"b","m","",61044952],["30243.30000","0.00100000",1688669598.1,"s","l","",61044953]],"last":"1688669598100000000"}}"#;
        let i = Instrument::new("BTC", "USD");
        let trades = trades_from(body, &i, Ts(0)).expect("parse");
        assert_eq!(trades.len(), 2);
        assert_eq!(trades[0].trade_id, TradeId::Num(61_044_952));
        assert_eq!(trades[0].price.to_string(), "30243.40000");
        assert_eq!(trades[0].size.to_string(), "0.34507674");
        assert_eq!(trades[0].side, ck_model::Side::Buy);
        assert_eq!(trades[0].ts_exchange, Ts(1_688_669_597_827_736_900));
        assert_eq!(trades[1].side, ck_model::Side::Sell);
        let refused = trades_from(r#"{"error":["EGeneral:Too many requests"]}"#, &i, Ts(0));
        assert!(
            matches!(&refused, Err(ParseError::Venue { message, .. }) if message == "EGeneral:Too many requests"),
            "{refused:?}"
        );
        assert!(
            trades_from(
                r#"{"error":[],"result":{"X":[["1","1",1,"x","m","",1]]}}"#,
                &i,
                Ts(0)
            )
            .is_err()
        );
        assert_eq!(rest_pair(&Instrument::new("DOGE", "BTC")), "XDGXBT");
        assert_eq!(rest_pair(&Instrument::new("ETH", "CHF")), "ETHCHF");
    }
}
