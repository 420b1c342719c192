//! Bybit v5 REST trades: `GET /v5/market/recent-trade?category=spot&symbol=BTCUSDT&limit=<1..60>`.
//! Bybit serves only its most recent trades (60 at most on spot) and no
//! older history, so this history [`History::keeps_only`] those: gap repair
//! takes what the one page holds of the window, and reports the gap
//! unfillable when the page does not reach back to the window's start.
//! The answer is `{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"execId":"...","symbol":"BTCUSDT","price":"...","size":"...","side":"Buy","time":"<ms>","isBlockTrade":false}]}}`,
//! newest first; `execId` is the id WebSocket trades carry in `i`, and the
//! side is the taker's. `retCode` 10006 is "too many visits".
//!
//! Candles: `GET /v5/market/kline?category=spot&symbol=&interval=&start=&end=&limit=`
//! (ms, both ends inclusive, up to 1,000), rows `[start, open, high, low,
//! close, volume, turnover]`, newest first; no trade count or taker volume.

use ck_model::{Candle, Exchange, Instrument, Interval, Side, Trade, TradeId, Ts};
use serde::Deserialize;

use crate::history::{
    CandlePage, History, HistoryError, VenueCandle, no_such_interval, window_end,
};
use crate::parse::{ParseError, decimal, json};
use crate::rest::RestClient;

const EX: Exchange = Exchange::Bybit;

/// The public REST root.
pub const DEFAULT_REST_URL: &str = "https://api.bybit.com";

/// The most recent spot trades Bybit serves.
const MAX_PAGE: u32 = 60;

/// Bybit history over one [`RestClient`].
#[derive(Debug)]
pub struct BybitRest {
    client: std::sync::Arc<RestClient>,
}

impl BybitRest {
    /// History over `client` (whose base URL is the REST root).
    #[must_use]
    pub fn new(client: std::sync::Arc<RestClient>) -> BybitRest {
        BybitRest { client }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, T> {
    ret_code: i64,
    #[serde(borrow, default)]
    ret_msg: &'a str,
    #[serde(default = "Option::default")]
    result: Option<List<T>>,
}

#[derive(Deserialize)]
struct List<T> {
    #[serde(default = "Vec::default")]
    list: Vec<T>,
}

/// The `result.list` of an answer, as Bybit orders it (newest first);
/// Bybit's refusals as [`ParseError::Venue`].
fn list<'a, T: Deserialize<'a>>(body: &'a str) -> Result<Vec<T>, ParseError> {
    let envelope: Envelope<'a, T> = serde_json::from_str(body).map_err(json(EX))?;
    if envelope.ret_code != 0 {
        return Err(ParseError::Venue {
            exchange: EX,
            message: format!("retCode {}: {}", envelope.ret_code, envelope.ret_msg),
        });
    }
    Ok(envelope.result.map(|r| r.list).unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestTrade<'a> {
    exec_id: &'a str,
    price: &'a str,
    size: &'a str,
    side: &'a str,
    time: &'a str,
}

/// Reads a `recent-trade` answer, oldest first; Bybit's refusals as
/// [`ParseError::Venue`].
fn trades_from(
    body: &str,
    instrument: &Instrument,
    received: Ts,
) -> Result<Vec<Trade>, ParseError> {
    let trades: Vec<RestTrade<'_>> = list(body)?;
    let bad = |field: &'static str, value: &str| ParseError::BadField {
        exchange: EX,
        field,
        value: value.to_owned(),
    };
    let mut out = Vec::new();
    for t in trades.into_iter().rev() {
        let side = match t.side {
            "Buy" => Side::Buy,
            "Sell" => Side::Sell,
            other => return Err(bad("side", other)),
        };
        let ms: i64 = t.time.parse().map_err(|_| bad("time", t.time))?;
        out.push(Trade {
            exchange: EX,
            instrument: instrument.clone(),
            // As the WebSocket parser reads `i`.
            trade_id: match t.exec_id.parse::<u64>() {
                Ok(n) => TradeId::Num(n),
                Err(_) => TradeId::Str(t.exec_id.into()),
            },
            price: decimal(EX, "price", t.price)?,
            size: decimal(EX, "size", t.size)?,
            side,
            ts_exchange: Ts::from_millis(ms),
            ts_received: received,
            fills: 1,
        });
    }
    Ok(out)
}

#[async_trait::async_trait]
impl History for BybitRest {
    fn client(&self) -> &RestClient {
        &self.client
    }

    fn page_size(&self) -> u32 {
        MAX_PAGE
    }

    fn by_time(&self) -> bool {
        true
    }

    fn keeps_only(&self) -> Option<&'static str> {
        Some("its 60 most recent spot trades")
    }

    /// The most recent `limit` trades (older than `from` too).
    async fn trades_from_time(
        &self,
        instrument: &Instrument,
        _from: Ts,
        limit: u32,
    ) -> Result<Vec<Trade>, HistoryError> {
        let path = format!(
            "/v5/market/recent-trade?category=spot&symbol={}{}&limit={}",
            instrument.base(),
            instrument.quote(),
            limit.clamp(1, MAX_PAGE)
        );
        crate::history::get_read(
            &self.client,
            &path,
            |m| m.starts_with("retCode 10006"),
            |body| trades_from(body, instrument, Ts::now()),
        )
        .await
    }

    async fn candles(
        &self,
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<CandlePage, HistoryError> {
        let code = kline_interval(interval)
            .ok_or_else(|| no_such_interval(EX, interval, "1m 3m 5m 15m 30m 1h 2h 4h 6h 12h 1d"))?;
        let limit = limit.clamp(1, MAX_KLINES);
        let end = window_end(interval, start, limit);
        let path = format!(
            "/v5/market/kline?category=spot&symbol={}&interval={code}&start={}&end={}&limit={limit}",
            EX.native_symbol(instrument),
            start.as_millis(),
            end.as_millis() - 1
        );
        crate::history::candle_window(
            &self.client,
            &path,
            (start, end),
            |m| m.starts_with("retCode 10006"),
            |body, now| candles_from(body, instrument, interval, now),
        )
        .await
    }
}

/// Klines per request, at most.
const MAX_KLINES: u32 = 1_000;

/// Bybit's code of `interval` (minutes, or `D`), where it has one.
fn kline_interval(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "1",
        Interval::M3 => "3",
        Interval::M5 => "5",
        Interval::M15 => "15",
        Interval::M30 => "30",
        Interval::H1 => "60",
        Interval::H2 => "120",
        Interval::H4 => "240",
        Interval::H6 => "360",
        Interval::H12 => "720",
        Interval::D1 => "D",
        _ => return None,
    })
}

/// Reads a `kline` answer: rows `[start(ms), open, high, low, close,
/// volume, turnover]` (strings, newest first), oldest first; `turnover` is
/// the quote volume.
fn candles_from(
    body: &str,
    instrument: &Instrument,
    interval: Interval,
    now: Ts,
) -> Result<Vec<Candle>, ParseError> {
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
    );
    let rows: Vec<Row<'_>> = list(body)?;
    let mut out = rows
        .into_iter()
        .map(|(start, open, high, low, close, volume, turnover)| {
            let ms: i64 = start.parse().map_err(|_| ParseError::BadField {
                exchange: EX,
                field: "kline start",
                value: start.to_owned(),
            })?;
            VenueCandle {
                open_time: Ts::from_millis(ms),
                open,
                high,
                low,
                close,
                volume,
                quote_volume: Some(turnover),
                trades: None,
            }
            .candle(EX, instrument, interval, now)
        })
        .collect::<Result<Vec<Candle>, ParseError>>()?;
    out.sort_by_key(|c| c.open_time);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_trades_come_oldest_first_and_refusals_are_reported() {
        let body = r#"{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"execId":"2100000000007764263","symbol":"BTCUSDT","price":"16618.49","size":"0.00012","side":"Buy","time":"1672052955758","isBlockTrade":false},{"execId":"2100000000007764262","symbol":"BTCUSDT","price":"16618.50","size":"0.1","side":"Sell","time":"1672052955700","isBlockTrade":false}]},"time":1672053054358}"#;
        let i = Instrument::new("BTC", "USDT");
        let trades = trades_from(body, &i, Ts(0)).expect("parse");
        assert_eq!(
            trades
                .iter()
                .map(|t| t.trade_id.clone())
                .collect::<Vec<_>>(),
            [
                TradeId::Num(2_100_000_000_007_764_262),
                TradeId::Num(2_100_000_000_007_764_263)
            ]
        );
        assert_eq!(trades[0].side, Side::Sell);
        assert_eq!(trades[1].price.to_string(), "16618.49");
        assert_eq!(trades[1].ts_exchange, Ts::from_millis(1_672_052_955_758));
        let refused = trades_from(
            r#"{"retCode":10006,"retMsg":"Too many visits!"}"#,
            &i,
            Ts(0),
        );
        assert!(
            matches!(&refused, Err(ParseError::Venue { message, .. }) if message == "retCode 10006: Too many visits!"),
            "{refused:?}"
        );
    }

    #[test]
    fn kline_rows_come_oldest_first_with_turnover_as_quote_volume() {
        // The documented answer shape (bybit-exchange/docs, market/kline).
        let body = r#"{"retCode":0,"retMsg":"OK","result":{"symbol":"BTCUSDT","category":"spot","list":[["1670608860000","17071","17073","17027","17055.5","268611","15.74462667"],["1670608800000","17000","17080","16990","17071","2.5","42600.1"]]},"retExtInfo":{},"time":1672025956592}"#;
        let i = Instrument::new("BTC", "USDT");
        let c = candles_from(body, &i, Interval::M1, Ts::from_secs(1_670_608_900)).expect("rows");
        assert_eq!(c[0].open_time, Ts::from_millis(1_670_608_800_000));
        assert_eq!(
            [
                &c[1].open,
                &c[1].high,
                &c[1].low,
                &c[1].close,
                &c[1].volume,
                &c[1].quote_volume
            ]
            .map(ToString::to_string),
            [
                "17071",
                "17073",
                "17027",
                "17055.5",
                "268611",
                "15.74462667"
            ]
        );
        assert_eq!(c[1].state, ck_model::CandleState::Provisional);
        assert!(
            candles_from(
                r#"{"retCode":10001,"retMsg":"params error"}"#,
                &i,
                Interval::M1,
                Ts(0)
            )
            .is_err()
        );
    }
}
