//! Coinbase Exchange REST history: `GET /products/{id}/trades`, newest
//! first, paged by trade id (`after=<id>` returns trades with smaller ids).
//! Trade ids are sequential per product, so a page of ids `[from, from+n)`
//! is asked for as `after=from+n&limit=n`. There is no query by time: the
//! first trade at a time is found by binary search over ids (as cryptofeed
//! does). The side in a REST trade is the maker's, like the feed's `match`.

use ck_model::{Candle, Exchange, Instrument, Interval, Side, Trade, TradeId, Ts};
use serde::Deserialize;

use crate::history::{
    CandlePage, History, HistoryError, VenueCandle, no_such_interval, window_end,
};
use crate::parse::{ParseError, decimal, json};
use crate::rest::RestClient;

const EX: Exchange = Exchange::CoinbaseExchange;

/// The public REST root.
pub const DEFAULT_REST_URL: &str = "https://api.exchange.coinbase.com";

/// The most trades one request returns.
const MAX_PAGE: u32 = 1_000;

/// `{"time":"…","trade_id":74,"price":"10.00000000","size":"0.01000000","side":"buy"}`
#[derive(Debug, Deserialize)]
struct RestTrade<'a> {
    #[serde(borrow)]
    time: &'a str,
    trade_id: u64,
    #[serde(borrow)]
    price: &'a str,
    #[serde(borrow)]
    size: &'a str,
    /// The maker's side.
    #[serde(borrow)]
    side: &'a str,
}

/// Coinbase Exchange history over one [`RestClient`].
#[derive(Debug)]
pub struct CoinbaseExchangeRest {
    client: std::sync::Arc<RestClient>,
}

impl CoinbaseExchangeRest {
    /// History over `client` (whose base URL is the REST root).
    #[must_use]
    pub fn new(client: std::sync::Arc<RestClient>) -> CoinbaseExchangeRest {
        CoinbaseExchangeRest { client }
    }

    /// Up to `limit` trades with ids below `before`, newest first.
    async fn page(
        &self,
        instrument: &Instrument,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Trade>, HistoryError> {
        let product = EX.native_symbol(instrument);
        let path = match before {
            Some(id) => format!("/products/{product}/trades?after={id}&limit={limit}"),
            None => format!("/products/{product}/trades?limit={limit}"),
        };
        let response = self.client.get(&path, 1).await?;
        let received = Ts::now();
        let parse = |source| HistoryError::Parse {
            url: response.url.clone(),
            source,
        };
        let rows: Vec<RestTrade<'_>> = serde_json::from_str(&response.body)
            .map_err(json(EX))
            .map_err(parse)?;
        rows.iter()
            .map(|r| {
                let maker = Side::parse(r.side).ok_or_else(|| ParseError::BadField {
                    exchange: EX,
                    field: "side",
                    value: r.side.to_owned(),
                })?;
                Ok(Trade {
                    exchange: EX,
                    instrument: instrument.clone(),
                    trade_id: TradeId::Num(r.trade_id),
                    price: decimal(EX, "price", r.price)?,
                    size: decimal(EX, "size", r.size)?,
                    side: maker.opposite(),
                    ts_exchange: Ts::parse(r.time).map_err(|_| ParseError::BadField {
                        exchange: EX,
                        field: "time",
                        value: r.time.to_owned(),
                    })?,
                    ts_received: received,
                    fills: 1,
                })
            })
            .collect::<Result<Vec<Trade>, ParseError>>()
            .map_err(parse)
    }

    /// The trade with the largest id at or below `id`, if any.
    async fn at_or_below(
        &self,
        instrument: &Instrument,
        id: u64,
    ) -> Result<Option<Trade>, HistoryError> {
        Ok(self
            .page(instrument, Some(id.saturating_add(1)), 1)
            .await?
            .into_iter()
            .next())
    }
}

fn numeric(t: &Trade) -> u64 {
    match t.trade_id {
        TradeId::Num(n) => n,
        TradeId::Str(_) => 0,
    }
}

#[async_trait::async_trait]
impl History for CoinbaseExchangeRest {
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
        let mut trades = self
            .page(
                instrument,
                Some(from_id.saturating_add(u64::from(limit))),
                limit,
            )
            .await?;
        trades.retain(|t| numeric(t) >= from_id);
        trades.sort_by_key(numeric);
        Ok(trades)
    }

    async fn first_trade_id_at(
        &self,
        instrument: &Instrument,
        at: Ts,
    ) -> Result<Option<u64>, HistoryError> {
        let Some(newest) = self.page(instrument, None, 1).await?.into_iter().next() else {
            return Ok(None);
        };
        if newest.ts_exchange < at {
            return Ok(None);
        }
        // The smallest id whose trade is at or after `at`, in (lo, hi].
        let (mut lo, mut hi) = (0u64, numeric(&newest));
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match self.at_or_below(instrument, mid).await? {
                Some(t) if t.ts_exchange >= at => hi = numeric(&t).min(mid),
                Some(t) => lo = numeric(&t).max(mid),
                None => lo = mid,
            }
        }
        Ok(Some(hi))
    }

    async fn candles(
        &self,
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<CandlePage, HistoryError> {
        let granularity = granularity(interval)
            .ok_or_else(|| no_such_interval(EX, interval, "1m 5m 15m 1h 6h 1d"))?;
        // A range implying more than 300 buckets is refused; both ends are
        // bucket starts, inclusive.
        let limit = limit.clamp(1, MAX_CANDLES);
        let end = window_end(interval, start, limit);
        let path = format!(
            "/products/{}/candles?granularity={granularity}&start={}&end={}",
            EX.native_symbol(instrument),
            start,
            Ts(end.0 - granularity * ck_model::NANOS_PER_SEC)
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

/// The most candles one request may span.
const MAX_CANDLES: u32 = 300;

/// The bucket length in seconds Coinbase accepts for `interval`.
fn granularity(interval: Interval) -> Option<i64> {
    match interval {
        Interval::M1
        | Interval::M5
        | Interval::M15
        | Interval::H1
        | Interval::H6
        | Interval::D1 => interval.fixed_nanos().map(|n| n / ck_model::NANOS_PER_SEC),
        _ => None,
    }
}

/// Reads `[time, low, high, open, close, volume]` rows (numbers, `time` the
/// bucket start in seconds; newest first) into candles, oldest first.
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
        |time, [low, high, open, close, volume]| VenueCandle {
            open_time: Ts::from_secs(time),
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
    fn candle_rows_are_low_high_open_close_newest_first() {
        // The documented row order: [time, low, high, open, close, volume].
        let body = "[[1415398800,0.32,4.2,0.35,4.2,12.3],[1415398740,0.3,0.4,0.31,0.35,1e-2]]";
        let i = Instrument::parse("BTC-USD").expect("instrument");
        let c = candles_from(body, &i, Interval::M1, Ts::from_secs(1_415_398_830)).expect("rows");
        assert_eq!(c[0].open_time, Ts::from_secs(1_415_398_740), "oldest first");
        assert_eq!(
            [&c[1].open, &c[1].high, &c[1].low, &c[1].close, &c[1].volume].map(ToString::to_string),
            ["0.35", "4.2", "0.32", "4.2", "12.3"]
        );
        assert_eq!(c[0].volume.to_string(), "0.01");
        assert_eq!(c[1].state, ck_model::CandleState::Provisional);
        assert_eq!(c[0].state, ck_model::CandleState::Closed);
        assert_eq!(granularity(Interval::M3), None);
        assert_eq!(granularity(Interval::H6), Some(21_600));
    }
}
