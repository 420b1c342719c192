//! Binance spot REST history: trades by id (`historicalTrades`), the first
//! trade at a time (`aggTrades`), the exchange's own candles (`klines`) and the
//! instrument list (`exchangeInfo`). Weights are the documented ones.

use std::sync::Arc;

use ck_model::{Candle, CandleState, Decimal, Exchange, Instrument, Interval, Trade, TradeId, Ts};
use serde::Deserialize;

use crate::history::{CandlePage, History, HistoryError};
use crate::parse::{ParseError, decimal, json};
use crate::rest::RestClient;

use super::side;

/// The public REST API.
pub const DEFAULT_REST_URL: &str = "https://api.binance.com";

/// The most rows one history request returns.
pub const MAX_PAGE: u32 = 1_000;

/// `historicalTrades` row:
/// `{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012","time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestTrade<'a> {
    id: u64,
    price: &'a str,
    qty: &'a str,
    time: i64,
    is_buyer_maker: bool,
}

/// `aggTrades` row, the fields we read: `{"a":26129,"f":27781,"l":27781,"T":1498793709153,...}`.
#[derive(Debug, Deserialize)]
struct RestAggTrade {
    #[serde(rename = "f")]
    first_trade: u64,
}

/// Binance spot REST history, spending the shared budget of `client`, on
/// Binance or a venue of its protocol family (the client's venue).
#[derive(Debug, Clone)]
pub struct BinanceRest {
    client: Arc<RestClient>,
    /// The API key sent with `historicalTrades` where the venue wants one
    /// (Binance.US: security type `MARKET_DATA`).
    api_key: Option<ApiKey>,
}

/// An API key for the public endpoints that want one, and where it comes
/// from. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ApiKey {
    /// The environment variable it was read from, for error messages.
    pub env: &'static str,
    /// The key; `None` when the variable is unset or empty.
    pub value: Option<String>,
}

impl ApiKey {
    /// The key in environment variable `env`.
    #[must_use]
    pub fn from_env(env: &'static str) -> ApiKey {
        ApiKey {
            env,
            value: std::env::var(env).ok().filter(|v| !v.trim().is_empty()),
        }
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("env", &self.env)
            .field("set", &self.value.is_some())
            .finish()
    }
}

/// `BTC-USDT` as Binance names it on REST: `BTCUSDT`.
#[must_use]
pub fn native_symbol(instrument: &Instrument) -> String {
    format!("{}{}", instrument.base(), instrument.quote())
}

impl BinanceRest {
    /// History over `client` (whose base URL is Binance's REST root).
    #[must_use]
    pub fn new(client: Arc<RestClient>) -> BinanceRest {
        BinanceRest {
            client,
            api_key: None,
        }
    }

    /// History whose `historicalTrades` requests carry `key`
    /// (`X-MBX-APIKEY`), and fail with a message naming where to set it
    /// when it is absent.
    #[must_use]
    pub fn with_api_key(mut self, key: ApiKey) -> BinanceRest {
        self.api_key = Some(key);
        self
    }
}

#[async_trait::async_trait]
impl History for BinanceRest {
    fn client(&self) -> &RestClient {
        &self.client
    }

    fn page_size(&self) -> u32 {
        MAX_PAGE
    }

    async fn trades_from_id(
        &self,
        instrument: &Instrument,
        from_id: u64,
        limit: u32,
    ) -> Result<Vec<Trade>, HistoryError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let path = format!(
            "/api/v3/historicalTrades?symbol={}&fromId={from_id}&limit={limit}",
            native_symbol(instrument)
        );
        let response = match &self.api_key {
            None => self.client.get(&path, 25).await?,
            Some(ApiKey {
                value: Some(key), ..
            }) => {
                self.client
                    .get_with(&path, 25, &[("X-MBX-APIKEY", key)])
                    .await?
            }
            Some(ApiKey { env, value: None }) => {
                return Err(HistoryError::Unsupported(format!(
                    "{}: trades by id (historicalTrades) need an API key; set {env}",
                    self.exchange()
                )));
            }
        };
        let received = Ts::now();
        let ex = self.exchange();
        let parse = |source| HistoryError::Parse {
            url: response.url.clone(),
            source,
        };
        let rows: Vec<RestTrade<'_>> = serde_json::from_str(&response.body)
            .map_err(json(ex))
            .map_err(parse)?;
        rows.iter()
            .map(|r| {
                Ok(Trade {
                    exchange: ex,
                    instrument: instrument.clone(),
                    trade_id: TradeId::Num(r.id),
                    price: decimal(ex, "price", r.price)?,
                    size: decimal(ex, "qty", r.qty)?,
                    side: side(r.is_buyer_maker),
                    ts_exchange: Ts::from_millis(r.time),
                    ts_received: received,
                    fills: 1,
                })
            })
            .collect::<Result<Vec<Trade>, ParseError>>()
            .map_err(parse)
    }

    async fn first_trade_id_at(
        &self,
        instrument: &Instrument,
        at: Ts,
    ) -> Result<Option<u64>, HistoryError> {
        let path = format!(
            "/api/v3/aggTrades?symbol={}&startTime={}&limit=1",
            native_symbol(instrument),
            at.as_millis()
        );
        let response = self.client.get(&path, 4).await?;
        let rows: Vec<RestAggTrade> = serde_json::from_str(&response.body)
            .map_err(json(self.exchange()))
            .map_err(|source| HistoryError::Parse {
                url: response.url.clone(),
                source,
            })?;
        Ok(rows.first().map(|r| r.first_trade))
    }

    async fn candles(
        &self,
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<CandlePage, HistoryError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let path = format!(
            "/api/v3/klines?symbol={}&interval={}&startTime={}&limit={limit}",
            native_symbol(instrument),
            interval.as_str(),
            start.as_millis()
        );
        let response = self.client.get(&path, 2).await?;
        let parse = |source| HistoryError::Parse {
            url: response.url.clone(),
            source,
        };
        let ex = self.exchange();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&response.body)
            .map_err(json(ex))
            .map_err(parse)?;
        let now = Ts::now();
        let candles = rows
            .iter()
            .map(|row| kline_row(ex, instrument, interval, row, now))
            .collect::<Result<Vec<Candle>, ParseError>>()
            .map_err(parse)?;
        // Klines come `limit` at a time from `startTime`, whatever lies
        // between: a short page reached the present.
        Ok(CandlePage {
            next: candles
                .last()
                .map_or(start, |c| interval.next_start(c.open_time)),
            at_end: candles.len() < limit as usize,
            candles,
        })
    }
}

/// `[openTime, "open", "high", "low", "close", "volume", closeTime,
/// "quoteVolume", numTrades, "takerBuyBase", "takerBuyQuote", "0"]`.
pub(crate) fn kline_row(
    ex: Exchange,
    instrument: &Instrument,
    interval: Interval,
    row: &serde_json::Value,
    now: Ts,
) -> Result<Candle, ParseError> {
    let bad = |field: &'static str| ParseError::BadField {
        exchange: ex,
        field,
        value: row.to_string().chars().take(120).collect(),
    };
    let text = |i: usize, field: &'static str| -> Result<Decimal, ParseError> {
        let s = row
            .get(i)
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(field))?;
        decimal(ex, field, s)
    };
    let open_ms = row
        .get(0)
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| bad("kline open time"))?;
    let trades = row
        .get(8)
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("kline trade count"))?;
    let open_time = Ts::from_millis(open_ms);
    let (open, high, low, close) = (
        text(1, "kline open")?,
        text(2, "kline high")?,
        text(3, "kline low")?,
        text(4, "kline close")?,
    );
    let volume = text(5, "kline volume")?;
    let quote_volume = text(7, "kline quote volume")?;
    let vwap = quote_volume
        .checked_div(volume, close.scale().saturating_add(4))
        .unwrap_or(close);
    let state = if interval.next_start(open_time) > now {
        CandleState::Provisional
    } else {
        CandleState::Closed
    };
    Ok(Candle {
        exchange: ex,
        instrument: instrument.clone(),
        interval,
        open_time,
        open,
        high,
        low,
        close,
        volume,
        quote_volume,
        vwap,
        taker_buy_volume: text(9, "kline taker buy volume")?,
        trades,
        first_trade_id: None,
        last_trade_id: None,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kline_rows_become_exchange_candles() {
        // The documented example row (binance-spot-api-docs, rest-api.md).
        let row: serde_json::Value = serde_json::from_str(
            r#"[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]"#,
        )
        .expect("json");
        let i = Instrument::parse("LTC-BTC").expect("i");
        let c = kline_row(
            Exchange::Binance,
            &i,
            Interval::M1,
            &row,
            Ts::from_secs(2_000_000_000),
        )
        .expect("row");
        assert_eq!(c.open_time, Ts::from_millis(1_499_040_000_000));
        assert_eq!(c.high.to_string(), "0.80000000");
        assert_eq!(c.trades, 308);
        assert_eq!(c.state, CandleState::Closed);
        let bad: serde_json::Value = serde_json::from_str(r#"[1,"x"]"#).expect("json");
        let err = kline_row(Exchange::Binance, &i, Interval::M1, &bad, Ts(0)).expect_err("bad row");
        assert!(err.to_string().contains("kline"), "{err}");
    }
}
