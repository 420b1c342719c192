//! Coinbase Advanced Trade public REST candles:
//! `GET /api/v3/brokerage/market/products/{id}/candles?start=<s>&end=<s>&granularity=ONE_MINUTE`
//! (UNIX seconds; both ends bucket starts), answered as
//! `{"candles":[{"start":"<s>","low":..,"high":..,"open":..,"close":..,"volume":..}]}`,
//! newest first, about 350 at most per request (unverified; this asks for
//! 300), none for intervals without trades. Open, high, low, close and
//! volume only.
//!
//! Trade history is not read: the public `ticker` endpoint's `start`/`end`
//! paging is unverified, and the venue is documented as recent-only.

use ck_model::{Candle, Exchange, Instrument, Interval, Ts};
use serde::Deserialize;

use crate::history::{
    CandlePage, History, HistoryError, VenueCandle, no_such_interval, window_end,
};
use crate::parse::{ParseError, json};
use crate::rest::RestClient;

const EX: Exchange = Exchange::Coinbase;

/// The public REST root.
pub const DEFAULT_REST_URL: &str = "https://api.coinbase.com";

/// Candles per request, at most.
const MAX_CANDLES: u32 = 300;

/// Coinbase Advanced Trade history (candles) over one [`RestClient`].
#[derive(Debug)]
pub struct CoinbaseRest {
    client: std::sync::Arc<RestClient>,
}

impl CoinbaseRest {
    /// History over `client` (whose base URL is the REST root).
    #[must_use]
    pub fn new(client: std::sync::Arc<RestClient>) -> CoinbaseRest {
        CoinbaseRest { client }
    }
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    candles: Vec<Row<'a>>,
}

#[derive(Deserialize)]
struct Row<'a> {
    start: &'a str,
    low: &'a str,
    high: &'a str,
    open: &'a str,
    close: &'a str,
    volume: &'a str,
}

/// The `granularity` name of `interval`, where Coinbase has it.
fn granularity(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "ONE_MINUTE",
        Interval::M5 => "FIVE_MINUTE",
        Interval::M15 => "FIFTEEN_MINUTE",
        Interval::M30 => "THIRTY_MINUTE",
        Interval::H1 => "ONE_HOUR",
        Interval::H2 => "TWO_HOUR",
        Interval::H6 => "SIX_HOUR",
        Interval::D1 => "ONE_DAY",
        _ => return None,
    })
}

/// Reads a candles answer, oldest first; an error body (no `candles`) as
/// [`ParseError::Venue`].
fn candles_from(
    body: &str,
    instrument: &Instrument,
    interval: Interval,
    now: Ts,
) -> Result<Vec<Candle>, ParseError> {
    let answer: Answer<'_> = match serde_json::from_str(body) {
        Ok(a) => a,
        Err(e) => {
            return match serde_json::from_str::<serde_json::Value>(body) {
                Ok(v) if v.get("candles").is_none() => Err(ParseError::Venue {
                    exchange: EX,
                    message: body.chars().take(200).collect(),
                }),
                _ => Err(json(EX)(e)),
            };
        }
    };
    let mut out = answer
        .candles
        .iter()
        .map(|r| {
            let secs: i64 = r.start.parse().map_err(|_| ParseError::BadField {
                exchange: EX,
                field: "candle start",
                value: r.start.to_owned(),
            })?;
            VenueCandle {
                open_time: Ts::from_secs(secs),
                open: r.open,
                high: r.high,
                low: r.low,
                close: r.close,
                volume: r.volume,
                quote_volume: None,
                trades: None,
            }
            .candle(EX, instrument, interval, now)
        })
        .collect::<Result<Vec<Candle>, ParseError>>()?;
    out.sort_by_key(|c| c.open_time);
    Ok(out)
}

#[async_trait::async_trait]
impl History for CoinbaseRest {
    fn exchange(&self) -> Exchange {
        EX
    }

    fn client(&self) -> &RestClient {
        &self.client
    }

    fn page_size(&self) -> u32 {
        MAX_CANDLES
    }

    fn trades_unavailable(&self) -> Option<&'static str> {
        Some(
            "Coinbase Advanced Trade trade history is not read (its public ticker endpoint serves recent trades; paging by start and end is unverified)",
        )
    }

    async fn candles(
        &self,
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<CandlePage, HistoryError> {
        let granularity = granularity(interval)
            .ok_or_else(|| no_such_interval(EX, interval, "1m 5m 15m 30m 1h 2h 6h 1d"))?;
        let limit = limit.clamp(1, MAX_CANDLES);
        let end = window_end(interval, start, limit);
        let last_open = Ts(end.0 - (end.0 - start.0) / i64::from(limit));
        let path = format!(
            "/api/v3/brokerage/market/products/{}/candles?start={}&end={}&granularity={granularity}",
            crate::parse::native_symbol(EX, instrument),
            start.0.div_euclid(ck_model::NANOS_PER_SEC),
            last_open.0.div_euclid(ck_model::NANOS_PER_SEC)
        );
        crate::history::candle_window(
            &self.client,
            &path,
            (start, end),
            |_| false,
            |body, now| candles_from(body, instrument, interval, now),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candles_come_oldest_first_and_errors_are_reported() {
        // The documented answer shape (docs.cdp.coinbase.com, Get Public Product Candles).
        let body = r#"{"candles":[{"start":"1712192460","low":"65000.1","high":"65100","open":"65010","close":"65090.5","volume":"1.5"},{"start":"1712192400","low":"64900","high":"65020","open":"64950","close":"65010","volume":"0.25"}]}"#;
        let i = Instrument::new("BTC", "USD");
        let c = candles_from(body, &i, Interval::M1, Ts::from_secs(1_712_192_500)).expect("rows");
        assert_eq!(c[0].open_time, Ts::from_secs(1_712_192_400));
        assert_eq!(
            [&c[1].open, &c[1].high, &c[1].low, &c[1].close, &c[1].volume].map(ToString::to_string),
            ["65010", "65100", "65000.1", "65090.5", "1.5"]
        );
        assert_eq!(c[1].state, ck_model::CandleState::Provisional);
        let err = candles_from(
            r#"{"error":"INVALID_ARGUMENT","message":"bad granularity"}"#,
            &i,
            Interval::M1,
            Ts(0),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("bad granularity"), "{err}");
        assert_eq!(granularity(Interval::H4), None);
    }
}
