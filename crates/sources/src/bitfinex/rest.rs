//! Bitfinex v2 REST history: `GET /v2/trades/t{SYM}/hist?start=<ms>&limit=&sort=1`,
//! oldest first from a time. Rows are `[ID, MTS, AMOUNT, PRICE]`: a positive
//! amount is a taker buy, a negative one a taker sell. Ids grow with time but
//! are shared by every pair (not contiguous per pair), so the history is
//! paged by time ([`History::by_time`]): the next page starts at the last
//! trade's millisecond, and trades already seen there are dropped.

use ck_model::{Candle, Exchange, Instrument, Interval, Side, Trade, TradeId, Ts};
use serde_json::value::RawValue;

use crate::history::{History, HistoryError};
use crate::parse::{ParseError, decimal, json};
use crate::rest::RestClient;

const EX: Exchange = Exchange::Bitfinex;

/// The public REST root.
pub const DEFAULT_REST_URL: &str = "https://api-pub.bitfinex.com";

/// Rows per request: Bitfinex allows up to 10,000 (unverified; 1,000 is
/// documented everywhere).
const MAX_PAGE: u32 = 1_000;

/// Bitfinex history over one [`RestClient`].
#[derive(Debug)]
pub struct BitfinexRest {
    client: std::sync::Arc<RestClient>,
}

impl BitfinexRest {
    /// History over `client` (whose base URL is the REST root).
    #[must_use]
    pub fn new(client: std::sync::Arc<RestClient>) -> BitfinexRest {
        BitfinexRest { client }
    }
}

fn bad(field: &'static str, value: &str) -> ParseError {
    ParseError::BadField {
        exchange: EX,
        field,
        value: value.chars().take(80).collect(),
    }
}

/// Reads `[ID, MTS, AMOUNT, PRICE]` rows.
fn trades_from(
    body: &str,
    instrument: &Instrument,
    received: Ts,
) -> Result<Vec<Trade>, ParseError> {
    let rows: Vec<(u64, i64, &RawValue, &RawValue)> =
        serde_json::from_str(body).map_err(json(EX))?;
    rows.into_iter()
        .map(|(id, mts, amount, price)| {
            let amount = decimal(EX, "amount", amount.get())?;
            if amount.is_zero() {
                return Err(bad("amount", "0"));
            }
            Ok(Trade {
                exchange: EX,
                instrument: instrument.clone(),
                trade_id: TradeId::Num(id),
                price: decimal(EX, "price", price.get())?,
                size: amount.abs(),
                side: if amount.is_negative() {
                    Side::Sell
                } else {
                    Side::Buy
                },
                ts_exchange: Ts::from_millis(mts),
                ts_received: received,
                fills: 1,
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl History for BitfinexRest {
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
        let symbol = crate::bitfinex::ws::native_symbol(instrument);
        let path = format!(
            "/v2/trades/{symbol}/hist?start={}&limit={}&sort=1",
            from.as_millis().max(0),
            limit.clamp(1, MAX_PAGE)
        );
        let response = self.client.get(&path, 1).await?;
        trades_from(&response.body, instrument, Ts::now()).map_err(|source| HistoryError::Parse {
            url: response.url.clone(),
            source,
        })
    }

    async fn candles(
        &self,
        _instrument: &Instrument,
        _interval: Interval,
        _start: Ts,
        _limit: u32,
    ) -> Result<Vec<Candle>, HistoryError> {
        Err(HistoryError::Unsupported(
            "Bitfinex candles carry no quote volume, taker volume or trade count, so they cannot be verified field by field; not fetched".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_exact_decimals_and_the_taker_side() {
        // Hand-written in Bitfinex's documented row shape.
        let body = "[[1,1618677561234,-0.0102,61060.5],[2,1618677561300,2.5e-3,61061]]";
        let i = Instrument::parse("BTC-USD").expect("instrument");
        let t = trades_from(body, &i, Ts(0)).expect("rows");
        assert_eq!(t[0].side, Side::Sell);
        assert_eq!(t[0].size.to_string(), "0.0102");
        assert_eq!(t[0].price.to_string(), "61060.5");
        assert_eq!(t[0].ts_exchange, Ts::from_millis(1_618_677_561_234));
        assert_eq!(
            (t[1].side, t[1].size.to_string()),
            (Side::Buy, "0.0025".into())
        );
        let err = trades_from("[[1,2,0,5]]", &i, Ts(0)).expect_err("zero amount");
        assert!(err.to_string().contains("amount"), "{err}");
    }
}
