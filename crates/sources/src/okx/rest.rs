//! OKX v5 REST candles: `GET /api/v5/market/history-candles?instId=&bar=&after=<ms>&before=<ms>&limit=<1..100>`,
//! rows `[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]` (strings,
//! newest first; `ts` the open time in ms, `volCcyQuote` the quote volume
//! on spot, `confirm` `"0"` while the candle is open) in
//! `{"code":"0","msg":"","data":[...]}`. `after` asks for rows older than a
//! time and `before` for newer ones (both exclusive), so a window of
//! `limit` candles from `start` is `before = start - 1`, `after = end`:
//! whichever way OKX picks rows within a larger range, the window holds at
//! most `limit`. Codes `50011` and `50113` mean too many requests.
//!
//! Trade history is not read: the `trades` channel aggregates fills
//! (`count`), and how `history-trades` pages by time is unverified.

use ck_model::{Candle, Exchange, Instrument, Interval, Ts};
use serde::Deserialize;

use crate::history::{
    CandlePage, History, HistoryError, VenueCandle, no_such_interval, window_end,
};
use crate::parse::{ParseError, json};
use crate::rest::RestClient;

const EX: Exchange = Exchange::Okx;

/// The public REST root.
pub const DEFAULT_REST_URL: &str = "https://www.okx.com";

/// Candles per `history-candles` request, at most.
const MAX_CANDLES: u32 = 100;

/// OKX history (candles) over one [`RestClient`].
#[derive(Debug)]
pub struct OkxRest {
    client: std::sync::Arc<RestClient>,
}

impl OkxRest {
    /// History over `client` (whose base URL is the REST root).
    #[must_use]
    pub fn new(client: std::sync::Arc<RestClient>) -> OkxRest {
        OkxRest { client }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    code: &'a str,
    #[serde(borrow, default)]
    msg: &'a str,
    #[serde(borrow, default)]
    data: Vec<Vec<&'a str>>,
}

/// OKX's `bar` for `interval`; from 6 hours up, the UTC-aligned variant
/// (the plain ones align to Hong Kong time).
fn bar(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "1m",
        Interval::M3 => "3m",
        Interval::M5 => "5m",
        Interval::M15 => "15m",
        Interval::M30 => "30m",
        Interval::H1 => "1H",
        Interval::H2 => "2H",
        Interval::H4 => "4H",
        Interval::H6 => "6Hutc",
        Interval::H12 => "12Hutc",
        Interval::D1 => "1Dutc",
        _ => return None,
    })
}

/// Reads a candles answer, oldest first; OKX's refusals as
/// [`ParseError::Venue`] (`code 50011: ...`).
fn candles_from(
    body: &str,
    instrument: &Instrument,
    interval: Interval,
    now: Ts,
) -> Result<Vec<Candle>, ParseError> {
    let envelope: Envelope<'_> = serde_json::from_str(body).map_err(json(EX))?;
    if envelope.code != "0" {
        return Err(ParseError::Venue {
            exchange: EX,
            message: format!("code {}: {}", envelope.code, envelope.msg),
        });
    }
    let mut out = Vec::with_capacity(envelope.data.len());
    for row in &envelope.data {
        let bad = || ParseError::BadField {
            exchange: EX,
            field: "candle row",
            value: row.join(",").chars().take(120).collect(),
        };
        let [
            ts,
            open,
            high,
            low,
            close,
            volume,
            _vol_ccy,
            quote_volume,
            confirm,
        ] = row[..]
        else {
            return Err(bad());
        };
        let ms: i64 = ts.parse().map_err(|_| bad())?;
        let mut candle = VenueCandle {
            open_time: Ts::from_millis(ms),
            open,
            high,
            low,
            close,
            volume,
            quote_volume: Some(quote_volume),
            trades: None,
        }
        .candle(EX, instrument, interval, now)?;
        if confirm == "0" {
            candle.state = ck_model::CandleState::Provisional;
        }
        out.push(candle);
    }
    out.sort_by_key(|c| c.open_time);
    Ok(out)
}

#[async_trait::async_trait]
impl History for OkxRest {
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
            "OKX trade history is not read yet (the trades channel aggregates fills, and history-trades paging is unverified)",
        )
    }

    async fn candles(
        &self,
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<CandlePage, HistoryError> {
        let bar = bar(interval)
            .ok_or_else(|| no_such_interval(EX, interval, "1m 3m 5m 15m 30m 1h 2h 4h 6h 12h 1d"))?;
        let limit = limit.clamp(1, MAX_CANDLES);
        let end = window_end(interval, start, limit);
        let path = format!(
            "/api/v5/market/history-candles?instId={}&bar={bar}&after={}&before={}&limit={limit}",
            crate::parse::native_symbol(EX, instrument),
            end.as_millis(),
            start.as_millis() - 1
        );
        crate::history::candle_window(
            &self.client,
            &path,
            (start, end),
            |m| m.starts_with("code 50011") || m.starts_with("code 50113"),
            |body, now| candles_from(body, instrument, interval, now),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candle_rows_come_oldest_first_with_the_quote_volume() {
        // The documented row: [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm].
        let body = r#"{"code":"0","msg":"","data":[["1597026443085","8533.02","8553.74","8527.17","8548.26","45247","529.5858061","5529.5858061","0"],["1597026383085","8533.02","8553.74","8527.17","8548.26","45247","529.5858061","5529.5858061","1"]]}"#;
        let i = Instrument::new("BTC", "USDT");
        let c = candles_from(body, &i, Interval::M1, Ts::from_secs(2_000_000_000)).expect("rows");
        assert_eq!(c[0].open_time, Ts::from_millis(1_597_026_383_085));
        assert_eq!(
            [
                &c[0].open,
                &c[0].high,
                &c[0].low,
                &c[0].close,
                &c[0].volume,
                &c[0].quote_volume
            ]
            .map(ToString::to_string),
            [
                "8533.02",
                "8553.74",
                "8527.17",
                "8548.26",
                "45247",
                "5529.5858061"
            ]
        );
        assert_eq!(c[0].state, ck_model::CandleState::Closed);
        assert_eq!(c[1].state, ck_model::CandleState::Provisional, "confirm 0");
        let refused = candles_from(
            r#"{"code":"50011","msg":"Too Many Requests","data":[]}"#,
            &i,
            Interval::M1,
            Ts(0),
        )
        .expect_err("refused");
        assert!(refused.to_string().contains("code 50011"), "{refused}");
        assert!(
            candles_from(
                r#"{"code":"0","msg":"","data":[["1","2"]]}"#,
                &i,
                Interval::M1,
                Ts(0)
            )
            .is_err()
        );
        assert_eq!(bar(Interval::D1), Some("1Dutc"));
    }
}
