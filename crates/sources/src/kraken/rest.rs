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
//! Candles: `GET /0/public/OHLC?pair=&interval=<minutes>&since=<s>`, rows
//! `[time, open, high, low, close, vwap, volume, count]`. Kraken keeps only
//! the 720 most recent candles of an interval, whatever `since` asks, and
//! publishes no quote or taker volume.

use ck_model::{Candle, Exchange, Instrument, Interval, Trade, TradeId, Ts};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::history::{CandlePage, History, HistoryError, VenueCandle, no_such_interval};
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

/// The instrument of a [`rest_pair`] name (`XBTUSD` is BTC-USD), for
/// answers that name the pair only as asked for.
#[must_use]
pub fn instrument_of_rest_pair(pair: &str) -> Option<Instrument> {
    let asset = |code: &str| match code {
        "XBT" => "BTC".to_owned(),
        "XDG" => "DOGE".to_owned(),
        other => other.to_owned(),
    };
    [
        "USDT", "USDC", "EUR", "USD", "GBP", "JPY", "CAD", "CHF", "AUD", "XBT", "ETH", "DAI",
    ]
    .iter()
    .find_map(|quote| {
        let base = pair.strip_suffix(quote).filter(|b| !b.is_empty())?;
        Some(Instrument::new(&asset(base), &asset(quote)))
    })
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    error: Vec<String>,
    #[serde(borrow, default)]
    result: Option<std::collections::BTreeMap<&'a str, &'a RawValue>>,
}

/// The rows of an answer, which sit under Kraken's own pair name
/// (`XXBTZUSD`) beside `last`; Kraken's error as [`ParseError::Venue`].
fn result_rows(body: &str) -> Result<Option<&RawValue>, ParseError> {
    let envelope: Envelope<'_> = serde_json::from_str(body).map_err(json(EX))?;
    if !envelope.error.is_empty() {
        return Err(ParseError::Venue {
            exchange: EX,
            message: envelope.error.join("; "),
        });
    }
    Ok(envelope
        .result
        .as_ref()
        .and_then(|r| r.iter().find(|(k, _)| **k != "last").map(|(_, v)| *v)))
}

/// Reads a `Trades` answer: the trades, or Kraken's error as
/// [`ParseError::Venue`].
fn trades_from(
    body: &str,
    instrument: &Instrument,
    received: Ts,
) -> Result<Vec<Trade>, ParseError> {
    let Some(rows) = result_rows(body)? else {
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
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        _limit: u32,
    ) -> Result<CandlePage, HistoryError> {
        let minutes = ohlc_minutes(interval)
            .ok_or_else(|| no_such_interval(EX, interval, "1m 5m 15m 30m 1h 4h 1d"))?;
        let path = format!(
            "/0/public/OHLC?pair={}&interval={minutes}&since={}",
            rest_pair(instrument),
            (start.0.div_euclid(ck_model::NANOS_PER_SEC) - 1).max(0)
        );
        let now = Ts::now();
        let mut candles = crate::history::get_read(
            &self.client,
            &path,
            |m| m.contains("Too many requests"),
            |body| candles_from(body, instrument, interval, now),
        )
        .await?;
        if let Some(first) = candles.first()
            && first.open_time > start
        {
            tracing::warn!(
                %instrument, %interval, asked = %start, oldest = %first.open_time,
                "Kraken serves only its 720 most recent candles; older ones cannot be fetched"
            );
        }
        candles.retain(|c| c.open_time >= start);
        // Kraken answers up to the current candle, whatever `since` was.
        Ok(CandlePage {
            next: candles
                .last()
                .map_or(start, |c| interval.next_start(c.open_time)),
            at_end: true,
            candles,
        })
    }
}

/// Kraken's OHLC interval, in minutes, where it has `interval`.
fn ohlc_minutes(interval: Interval) -> Option<i64> {
    match interval {
        Interval::M1
        | Interval::M5
        | Interval::M15
        | Interval::M30
        | Interval::H1
        | Interval::H4
        | Interval::D1 => interval
            .fixed_nanos()
            .map(|n| n / (60 * ck_model::NANOS_PER_SEC)),
        _ => None,
    }
}

/// Reads an `OHLC` answer: rows `[time, "open", "high", "low", "close",
/// "vwap", "volume", count]` (time the open, in seconds), oldest first.
fn candles_from(
    body: &str,
    instrument: &Instrument,
    interval: Interval,
    now: Ts,
) -> Result<Vec<Candle>, ParseError> {
    type Row<'a> = (
        i64,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        u64,
    );
    let Some(rows) = result_rows(body)? else {
        return Ok(Vec::new());
    };
    let rows: Vec<Row<'_>> = serde_json::from_str(rows.get()).map_err(json(EX))?;
    rows.into_iter()
        .map(|(time, open, high, low, close, _vwap, volume, count)| {
            VenueCandle {
                open_time: Ts::from_secs(time),
                open,
                high,
                low,
                close,
                volume,
                quote_volume: None,
                trades: Some(count),
            }
            .candle(EX, instrument, interval, now)
        })
        .collect()
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

    #[test]
    fn ohlc_rows_keep_counts_and_flat_candles() {
        // The fixture row shape: a flat candle with count 0, then a traded one.
        let body = r#"{"error":[],"result":{"XXBTZUSD":[[1762777020,"106038.2","106038.2","106038.2","106038.2","0.0","0.00000000",0],[1762777080,"106038.2","106050.0","106000.1","106049.9","106020.3","0.51000000",7]],"last":1762777020}}"#;
        let i = Instrument::new("BTC", "USD");
        let c = candles_from(body, &i, Interval::M1, Ts::from_secs(1_762_777_100)).expect("rows");
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].trades, c[0].volume.is_zero()), (0, true));
        assert_eq!(c[1].open_time, Ts::from_secs(1_762_777_080));
        assert_eq!(
            [&c[1].open, &c[1].high, &c[1].low, &c[1].close, &c[1].volume].map(ToString::to_string),
            ["106038.2", "106050.0", "106000.1", "106049.9", "0.51000000"]
        );
        assert_eq!(c[1].trades, 7);
        assert_eq!(c[1].state, ck_model::CandleState::Provisional);
        let err = candles_from(
            r#"{"error":["EQuery:Unknown asset pair"]}"#,
            &i,
            Interval::M1,
            Ts(0),
        )
        .expect_err("venue error");
        assert!(err.to_string().contains("Unknown asset pair"), "{err}");
        assert_eq!(ohlc_minutes(Interval::H4), Some(240));
        assert_eq!(ohlc_minutes(Interval::W1), None);
    }
}
