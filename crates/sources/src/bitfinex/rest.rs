//! Bitfinex v2 REST history: `GET /v2/trades/t{SYM}/hist?start=<ms>&limit=&sort=1`,
//! oldest first from a time. Rows are `[ID, MTS, AMOUNT, PRICE]`: a positive
//! amount is a taker buy, a negative one a taker sell. Ids grow with time but
//! are shared by every pair (not contiguous per pair), so the history is
//! paged by time ([`History::by_time`]): the next page starts at the last
//! trade's millisecond, and trades already seen there are dropped.

use ck_model::{Candle, Exchange, Instrument, Interval, Side, Trade, TradeId, Ts};
use serde_json::value::RawValue;

use crate::history::{
    CandlePage, History, HistoryError, VenueCandle, no_such_interval, window_end,
};
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
        let symbol = Exchange::Bitfinex.native_symbol(instrument);
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
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<CandlePage, HistoryError> {
        let timeframe = timeframe(interval)
            .ok_or_else(|| no_such_interval(EX, interval, "1m 5m 15m 30m 1h 6h 12h 1d 1M"))?;
        let limit = limit.clamp(1, MAX_PAGE);
        let end = window_end(interval, start, limit);
        let path = format!(
            "/v2/candles/trade:{timeframe}:{}/hist?start={}&end={}&limit={limit}&sort=1",
            Exchange::Bitfinex.native_symbol(instrument),
            start.as_millis().max(0),
            end.as_millis() - 1
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

/// Bitfinex's name of `interval` (`1D`, not `1d`), where it has one.
fn timeframe(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "1m",
        Interval::M5 => "5m",
        Interval::M15 => "15m",
        Interval::M30 => "30m",
        Interval::H1 => "1h",
        Interval::H6 => "6h",
        Interval::H12 => "12h",
        Interval::D1 => "1D",
        Interval::Mo1 => "1M",
        _ => return None,
    })
}

/// Reads `[MTS, OPEN, CLOSE, HIGH, LOW, VOLUME]` rows (numbers, `MTS` the
/// open time in ms), oldest first.
fn candles_from(
    body: &str,
    instrument: &Instrument,
    interval: Interval,
    now: Ts,
) -> Result<Vec<Candle>, ParseError> {
    crate::history::number_row_candles(
        EX,
        body,
        (instrument, interval, now),
        |mts, [open, close, high, low, volume]| VenueCandle {
            open_time: Ts::from_millis(mts),
            open,
            high,
            low,
            close,
            volume,
            quote_volume: None,
            trades: None,
        },
    )
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

    #[test]
    fn candle_rows_are_read_in_bitfinex_order() {
        // The documented row: [MTS, OPEN, CLOSE, HIGH, LOW, VOLUME].
        let body = "[[1574698320000,7379.8,7383.8,7388.3,7379.785503,1.68829482],[1574698260000,7379.785503,7379.8,7380,7379.7,0.5]]";
        let i = Instrument::parse("BTC-USD").expect("instrument");
        let c = candles_from(body, &i, Interval::M1, Ts::from_secs(2_000_000_000)).expect("rows");
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0].open_time,
            Ts::from_millis(1_574_698_260_000),
            "oldest first"
        );
        let last = &c[1];
        assert_eq!(
            [&last.open, &last.close, &last.high, &last.low, &last.volume].map(ToString::to_string),
            ["7379.8", "7383.8", "7388.3", "7379.785503", "1.68829482"]
        );
        assert_eq!(last.state, ck_model::CandleState::Closed);
        assert!(
            candles_from(
                "[\"error\",10020,\"limit: invalid\"]",
                &i,
                Interval::M1,
                Ts(0)
            )
            .is_err()
        );
    }
}
