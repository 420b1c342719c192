//! The stream-processor design's HTTP view, for the users of that design:
//! `GET /stats1min/{product}`, `/stats1hour/{product}` and
//! `/stats1day/{product}`, each the latest closed candle of its interval
//! for a product such as `BTC-USD`. `?exchange=` picks the venue; without
//! it, the product must have trades stored on one venue only.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use ck_model::{Candle, CandleState, Decimal, Exchange, Instrument, Interval, Ts};
use ck_store::{CandleSource, RangeQuery};
use serde::Serialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::market::Params;
use crate::params;

/// The latest closed candle of one interval, in the design's shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProductStats {
    /// The venue.
    exchange: Exchange,
    /// The product, BASE-QUOTE.
    #[schema(value_type = String)]
    product: Instrument,
    /// The interval (`1m`, `1h`, `1d`).
    #[schema(value_type = String)]
    interval: Interval,
    /// The candle's start (inclusive).
    start: Ts,
    /// The candle's end (exclusive).
    end: Ts,
    /// First trade's price.
    open: Decimal,
    /// Highest price.
    high: Decimal,
    /// Lowest price.
    low: Decimal,
    /// Last trade's price.
    close: Decimal,
    /// Base volume.
    volume: Decimal,
    /// Volume-weighted average price.
    vwap: Decimal,
    /// Trades (fills).
    trades: u64,
}

impl ProductStats {
    fn of(candle: &Candle) -> ProductStats {
        ProductStats {
            exchange: candle.exchange,
            product: candle.instrument.clone(),
            interval: candle.interval,
            start: candle.open_time,
            end: candle.interval.next_start(candle.open_time),
            open: candle.open,
            high: candle.high,
            low: candle.low,
            close: candle.close,
            volume: candle.volume,
            vwap: candle.vwap,
            trades: candle.trades,
        }
    }
}

/// A handler of the design's view for one interval, documented for
/// OpenAPI: the three differ only in their path and interval.
macro_rules! stats_view {
    ($name:ident, $path:literal, $interval:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            get, path = $path, tag = "market",
            params(
                ("product" = String, Path, description = "BASE-QUOTE, such as `BTC-USD`."),
                ("exchange" = Option<Exchange>, Query, description = "The venue; needed when the product is stored on several."),
            ),
            responses(
                (status = 200, description = "The candle.", body = ProductStats),
                (status = 400, description = "A bad product, or a product on several venues and no `exchange` (the error lists them).", body = crate::error::ErrorBody),
                (status = 404, description = "No closed candle of the product.", body = crate::error::ErrorBody),
            )
        )]
        pub(crate) async fn $name(
            state: State<ApiState>,
            product: Path<String>,
            q: Params,
        ) -> Result<Response, ApiError> {
            latest_closed(state, product, q, $interval).await
        }
    };
}

stats_view!(
    stats_1min,
    "/stats1min/{product}",
    Interval::M1,
    "The latest closed 1-minute candle of a product."
);
stats_view!(
    stats_1hour,
    "/stats1hour/{product}",
    Interval::H1,
    "The latest closed 1-hour candle of a product."
);
stats_view!(
    stats_1day,
    "/stats1day/{product}",
    Interval::D1,
    "The latest closed 1-day candle of a product."
);

async fn latest_closed(
    State(state): State<ApiState>,
    Path(product): Path<String>,
    Params(q): Params,
    interval: Interval,
) -> Result<Response, ApiError> {
    let instrument =
        Instrument::parse(&product).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let exchange = match params::optional_exchange(&q)? {
        Some(exchange) => exchange,
        None => {
            let venues: Vec<Exchange> = state
                .store
                .instruments()
                .await?
                .into_iter()
                // Venues with trades of it, not those that only list it.
                .filter(|i| i.info.instrument == instrument && i.last_trade_time.is_some())
                .map(|i| i.info.exchange)
                .collect();
            match venues.as_slice() {
                [one] => *one,
                [] => {
                    return Err(ApiError::NotFound(format!(
                        "{instrument} is not stored on any venue; GET /api/v1/instruments lists what is"
                    )));
                }
                several => {
                    let names: Vec<&str> = several.iter().map(|e| e.as_str()).collect();
                    return Err(ApiError::BadRequest(format!(
                        "{instrument} is stored on several venues ({}): name one with ?exchange=",
                        names.join(", ")
                    )));
                }
            }
        }
    };
    // The newest two: the newest may still be open, the one before it
    // is closed then.
    let query = RangeQuery {
        exchange,
        instrument: instrument.clone(),
        from: Ts(0),
        to: Ts(i64::MAX),
        limit: 2,
    };
    let candle = state
        .store
        .candles_newest_first(&query, interval, CandleSource::Ours)
        .await?
        .into_iter()
        .find(|c| c.state != CandleState::Provisional)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no closed {interval} candle for {exchange} {instrument}"
            ))
        })?;
    Ok(axum::Json(ProductStats::of(&candle)).into_response())
}
