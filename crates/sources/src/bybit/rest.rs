//! Bybit v5 REST trades: `GET /v5/market/recent-trade?category=spot&symbol=BTCUSDT&limit=<1..60>`.
//! Bybit serves only its most recent trades (60 at most on spot) and no
//! older history, so this history [`History::keeps_only`] those: gap repair
//! takes what the one page holds of the window, and reports the gap
//! unfillable when the page does not reach back to the window's start.
//! The answer is `{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"execId":"...","symbol":"BTCUSDT","price":"...","size":"...","side":"Buy","time":"<ms>","isBlockTrade":false}]}}`,
//! newest first; `execId` is the id WebSocket trades carry in `i`, and the
//! side is the taker's. `retCode` 10006 is "too many visits".
//!
//! Bybit klines carry no trade count or taker volume, so they are not
//! fetched for verification.

use ck_model::{Candle, Exchange, Instrument, Interval, Side, Trade, TradeId, Ts};
use serde::Deserialize;

use crate::history::{History, HistoryError};
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
struct Envelope<'a> {
    ret_code: i64,
    #[serde(borrow, default)]
    ret_msg: &'a str,
    #[serde(borrow, default)]
    result: Option<TradeList<'a>>,
}

#[derive(Deserialize)]
struct TradeList<'a> {
    #[serde(borrow, default)]
    list: Vec<RestTrade<'a>>,
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
    let envelope: Envelope<'_> = serde_json::from_str(body).map_err(json(EX))?;
    if envelope.ret_code != 0 {
        return Err(ParseError::Venue {
            exchange: EX,
            message: format!("retCode {}: {}", envelope.ret_code, envelope.ret_msg),
        });
    }
    let bad = |field: &'static str, value: &str| ParseError::BadField {
        exchange: EX,
        field,
        value: value.to_owned(),
    };
    let mut out = Vec::new();
    for t in envelope
        .result
        .map(|r| r.list)
        .unwrap_or_default()
        .into_iter()
        .rev()
    {
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
        _instrument: &Instrument,
        _interval: Interval,
        _start: Ts,
        _limit: u32,
    ) -> Result<Vec<Candle>, HistoryError> {
        Err(HistoryError::Unsupported(
            "Bybit klines carry no trade count or taker volume, so they cannot be verified field by field; not fetched".into(),
        ))
    }
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
}
