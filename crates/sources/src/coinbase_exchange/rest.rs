//! Coinbase Exchange REST history: `GET /products/{id}/trades`, newest
//! first, paged by trade id (`after=<id>` returns trades with smaller ids).
//! Trade ids are sequential per product, so a page of ids `[from, from+n)`
//! is asked for as `after=from+n&limit=n`. There is no query by time: the
//! first trade at a time is found by binary search over ids (as cryptofeed
//! does). The side in a REST trade is the maker's, like the feed's `match`.

use ck_model::{Candle, Exchange, Instrument, Interval, Side, Trade, TradeId, Ts};
use serde::Deserialize;

use crate::history::{History, HistoryError};
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
        let product = crate::parse::native_symbol(EX, instrument);
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
    fn exchange(&self) -> Exchange {
        EX
    }

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
        _instrument: &Instrument,
        _interval: Interval,
        _start: Ts,
        _limit: u32,
    ) -> Result<Vec<Candle>, HistoryError> {
        Err(HistoryError::Unsupported(
            "Coinbase Exchange candles carry no quote volume, taker volume or trade count, so they cannot be verified field by field; not fetched".into(),
        ))
    }
}
