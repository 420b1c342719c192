//! Statistics per instrument over a window of stored candles, ranked
//! across instruments by volatility: the price tracker's "standard
//! deviation and rank" table.
//!
//! Rolling windows (ending at `to` or at each instrument's newest candle)
//! come from an in-memory cache of candles ([`crate::windows`]) that reads
//! the store only where the window changed; a fixed `from`–`to` range is
//! read once. At most [`MAX_CANDLES`] per instrument: the interval grows
//! with the window.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ck_model::{Candle, Decimal, Exchange, Instrument, Interval, Ts};
use ck_store::{CandleSource, RangeQuery};
use serde::Serialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::market::Params;
use crate::params::{self, Query};

/// The most candles read per instrument (seven days of minutes).
const MAX_CANDLES: i64 = 7 * 24 * 60;

/// The longest window.
const MAX_WINDOW_NANOS: i64 = 3_660 * 86_400 * 1_000_000_000;

/// One instrument's statistics over the window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct InstrumentStats {
    /// The exchange.
    exchange: Exchange,
    /// BASE-QUOTE.
    instrument: Instrument,
    /// The candles the statistics are computed from.
    interval: Interval,
    /// The window's start (inclusive).
    from: Ts,
    /// The window's end (exclusive): `to`, or else the end of the
    /// instrument's newest candle.
    to: Ts,
    /// Candles in the window.
    candles: usize,
    /// The first candle's open.
    open: Decimal,
    /// The last candle's close.
    close: Decimal,
    /// The highest price.
    high: Decimal,
    /// The lowest price.
    low: Decimal,
    /// `close / open - 1`.
    #[serde(rename = "return")]
    #[schema(rename = "return")]
    change: f64,
    /// The sample standard deviation of the log returns between
    /// consecutive closes (per `interval`; `null` with fewer than two
    /// returns). The rank is by this.
    stddev: Option<f64>,
    /// The sample standard deviation of the closes, in the quote currency.
    price_stddev: Option<f64>,
    /// Realized volatility, annualised: `sqrt(Σ r²)` over the log returns
    /// `r` between consecutive closes, times `sqrt(365 days / (to - from))`
    /// (crypto trades every day of the year); `null` without returns.
    realized_vol: Option<f64>,
    /// Base volume.
    volume: Decimal,
    /// Quote volume (the ranking by volume uses it).
    quote_volume: Decimal,
    /// Quote volume over base volume (`null` without trades).
    vwap: Option<Decimal>,
    /// 1 for the most volatile (highest `stddev`) of the instruments
    /// ranked; `null` for an instrument with too little data to be ranked
    /// (see `ranked`), listed after the ranked ones.
    rank: Option<usize>,
    /// Whether it has enough data to be ranked by volatility: some volume,
    /// and at least [`MIN_RANKED_CANDLES`] candles and a tenth of the
    /// window's intervals (a handful of candles makes no volatility).
    ranked: bool,
    /// 1 for the highest `return`.
    return_rank: usize,
    /// 1 for the highest `quote_volume` (meaningful across instruments that
    /// share a quote currency).
    volume_rank: usize,
}

/// Statistics per instrument over a window, ranked by volatility.
#[utoipa::path(
    get, path = "/api/v1/stats", tag = "stats",
    params(
        ("window" = Option<String>, Query, description = "How far back from the window's end: `90m`, `24h` (default), `7d`, `2w`."),
        ("instruments" = Option<String>, Query, description = "`exchange:BASE-QUOTE`, comma-separated (default: every instrument with data)."),
        ("from" = Option<String>, Query, description = "The window's start instead of `to - window`."),
        ("to" = Option<String>, Query, description = "The window's end (default: each instrument's newest candle)."),
        ("interval" = Option<ck_model::Interval>, Query, description = "The candles to use (default: the finest that keeps a window within 10,080 candles)."),
    ),
    responses(
        (status = 200, description = "One item per instrument with candles in the window, by rank.", body = [InstrumentStats]),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
        (status = 404, description = "An unknown instrument.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn stats(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    Ok(axum::Json(compute(&state, &q).await?).into_response())
}

/// The statistics `q` asks for (`window`, `instruments`, `from`, `to`,
/// `interval`), ranked: the REST answer, and what the WebSocket pushes.
pub(crate) async fn compute(state: &ApiState, q: &Query) -> Result<Vec<InstrumentStats>, ApiError> {
    let q = q.clone();
    let window = window(&q)?;
    let (from, to) = (params::time(&q, "from")?, params::time(&q, "to")?);
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(ApiError::BadRequest(format!(
            "`from` ({f}) must be before `to` ({t})"
        )));
    }
    let span = match (from, to) {
        (Some(f), Some(t)) => t.0.saturating_sub(f.0),
        _ => window,
    };
    let interval = if q.contains_key("interval") {
        params::interval(&q, None)?
    } else {
        finest_interval(span)
    };
    let stored = state.store.instruments().await?;
    let wanted: Vec<(Exchange, Instrument, Option<Ts>)> = match q.get("instruments") {
        Some(list) if !list.is_empty() => {
            let mut out = Vec::new();
            for item in list.split(',') {
                let (e, i) = instrument_key(item)?;
                let found = stored
                    .iter()
                    .find(|s| s.info.exchange == e && s.info.instrument == i)
                    .ok_or_else(|| {
                        ApiError::NotFound(format!(
                            "no data for {e} {i}; GET /api/v1/instruments?with_data=true lists what is stored"
                        ))
                    })?;
                out.push((e, i, found.last_trade_time));
            }
            out
        }
        _ => stored
            .into_iter()
            .filter(|s| s.last_trade_time.is_some())
            .map(|s| (s.info.exchange, s.info.instrument, s.last_trade_time))
            .collect(),
    };
    let mut out = Vec::with_capacity(wanted.len());
    for (exchange, instrument, last) in wanted {
        let end = match (to, last) {
            (Some(t), _) => t,
            (None, Some(last)) => Ts(interval
                .bucket_start(last)
                .0
                .saturating_add(interval.fixed_nanos().unwrap_or(0))),
            (None, None) => continue,
        };
        let start = from.unwrap_or(Ts(end.0.saturating_sub(window)));
        if start >= end {
            continue;
        }
        let stats = if from.is_none() {
            // The rolling window ending at `end`: kept in memory, read
            // from the store only where it changed.
            state
                .windows
                .with(
                    state.store.as_ref(),
                    (exchange, &instrument),
                    interval,
                    window,
                    end,
                    |candles| window_stats(candles, start, end),
                )
                .await?
        } else {
            // A fixed range, asked for once.
            let query = RangeQuery {
                exchange,
                instrument,
                from: start,
                to: end,
                limit: usize::try_from(MAX_CANDLES).unwrap_or(usize::MAX) * 2,
            };
            let candles = state
                .store
                .candles(&query, interval, CandleSource::Ours)
                .await?;
            window_stats(&candles, start, end)
        };
        out.extend(stats);
    }
    rank(&mut out);
    Ok(out)
}

/// One venue in a cross-exchange comparison.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct VenuePrice {
    /// The exchange.
    exchange: Exchange,
    /// The instrument there.
    instrument: Instrument,
    /// The close of its newest candle in the window (candles of the
    /// finest interval that covers the window in at most 10,080).
    price: Decimal,
    /// That candle's open time.
    price_time: Ts,
    /// Base volume over the window (the composite's weight).
    volume: Decimal,
    /// `price / composite - 1`.
    deviation: f64,
}

/// Prices of one instrument across venues, against their composite.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct CrossExchange {
    /// The window's start.
    from: Ts,
    /// The window's end.
    to: Ts,
    /// The volume-weighted mean of the venues' prices (the plain mean when
    /// no venue traded), exact, with four digits more than the finest price.
    composite: Decimal,
    /// `(highest - lowest) / lowest` of the venues' prices.
    spread: f64,
    /// The venue with the highest price.
    highest: Exchange,
    /// The venue with the lowest price.
    lowest: Exchange,
    /// Each venue with candles in the window.
    venues: Vec<VenuePrice>,
}

/// The volume-weighted mean of the venues' prices, exact (the plain mean
/// when no venue traded), rounded half-even to four digits more than the
/// finest price; `None` if it overflows.
fn composite_price(venues: &[VenuePrice]) -> Option<Decimal> {
    let scale = venues
        .iter()
        .map(|v| v.price.scale())
        .max()?
        .saturating_add(4)
        .min(18);
    fn sum(mut values: impl Iterator<Item = Option<Decimal>>) -> Option<Decimal> {
        values.try_fold(Decimal::ZERO, |acc, v| acc.checked_add(v?))
    }
    let weight = sum(venues.iter().map(|v| Some(v.volume)))?;
    let mean = if weight.is_zero() {
        let total = sum(venues.iter().map(|v| Some(v.price)))?;
        total.checked_div(Decimal::from(i64::try_from(venues.len()).ok()?), scale)?
    } else {
        let weighted = sum(venues.iter().map(|v| v.price.checked_mul(v.volume)))?;
        weighted.checked_div(weight, scale)?
    };
    Some(mean.normalize())
}

/// One instrument across exchanges: each venue's latest price and volume
/// over the window, the volume-weighted composite price, how far each venue
/// deviates from it, and the spread between the highest and the lowest.
#[utoipa::path(
    get, path = "/api/v1/stats/cross", tag = "stats",
    params(
        ("instrument" = Option<ck_model::Instrument>, Query, description = "Every venue with data for this BASE-QUOTE."),
        ("instruments" = Option<String>, Query, description = "Or these `exchange:BASE-QUOTE` (to compare across quote currencies)."),
        ("window" = Option<String>, Query, description = "The volume window: `24h` (default), `7d`, ..."),
        ("to" = Option<String>, Query, description = "The window's end (default: the newest data among the venues)."),
    ),
    responses(
        (status = 200, description = "The comparison.", body = CrossExchange),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
        (status = 404, description = "Fewer than two venues with data in the window.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn cross(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let window = window(&q)?;
    let stored = state.store.instruments().await?;
    let venues: Vec<(Exchange, Instrument, Ts)> = match (q.get("instruments"), q.get("instrument"))
    {
        (Some(list), _) if !list.is_empty() => {
            let mut out = Vec::new();
            for item in list.split(',') {
                let (e, i) = instrument_key(item)?;
                if let Some(last) = stored
                    .iter()
                    .find(|s| s.info.exchange == e && s.info.instrument == i)
                    .and_then(|s| s.last_trade_time)
                {
                    out.push((e, i, last));
                }
            }
            out
        }
        (_, Some(_)) => {
            let i = params::instrument(&q)?;
            stored
                .iter()
                .filter(|s| s.info.instrument == i)
                .filter_map(|s| s.last_trade_time.map(|t| (s.info.exchange, i.clone(), t)))
                .collect()
        }
        _ => {
            return Err(ApiError::BadRequest(
                "name `instrument` (every venue with it) or `instruments` (exchange:BASE-QUOTE, comma-separated)".into(),
            ));
        }
    };
    let to = match params::time(&q, "to")? {
        Some(t) => t,
        None => venues
            .iter()
            .map(|v| Ts(Interval::M1.bucket_start(v.2).0 + 60_000_000_000))
            .max()
            .unwrap_or_else(Ts::now),
    };
    let from = Ts(to.0.saturating_sub(window));
    let mut out = Vec::new();
    for (exchange, instrument, _) in venues {
        let query = RangeQuery {
            exchange,
            instrument: instrument.clone(),
            from,
            to,
            limit: usize::try_from(MAX_CANDLES).unwrap_or(usize::MAX) * 2,
        };
        let interval = finest_interval(window);
        let candles = state
            .store
            .candles(&query, interval, CandleSource::Ours)
            .await?;
        let Some(last) = candles.last() else { continue };
        let volume = candles.iter().fold(Decimal::from(0), |acc, c| {
            acc.checked_add(c.volume).unwrap_or(acc)
        });
        out.push(VenuePrice {
            exchange,
            instrument,
            price: last.close,
            price_time: last.open_time,
            volume,
            deviation: 0.0,
        });
    }
    if out.len() < 2 {
        return Err(ApiError::NotFound(format!(
            "{} venue(s) have candles between {from} and {to}; a comparison needs two",
            out.len()
        )));
    }
    let composite = composite_price(&out)
        .ok_or_else(|| ApiError::Internal("the composite price overflows exact decimals".into()))?;
    for v in &mut out {
        v.deviation = v.price.to_f64() / composite.to_f64() - 1.0;
    }
    let by_price = |a: &&VenuePrice, b: &&VenuePrice| a.price.cmp(&b.price);
    let (Some(high), Some(low)) = (out.iter().max_by(by_price), out.iter().min_by(by_price)) else {
        return Err(ApiError::Internal("no venues".into()));
    };
    let (spread, highest, lowest) = (
        high.price.to_f64() / low.price.to_f64() - 1.0,
        high.exchange,
        low.exchange,
    );
    let body = CrossExchange {
        from,
        to,
        composite,
        spread,
        highest,
        lowest,
        venues: out,
    };
    Ok(axum::Json(body).into_response())
}

/// `window`, in nanoseconds: a whole number and a unit (s, m, h, d, w).
pub(crate) fn window(q: &Query) -> Result<i64, ApiError> {
    let Some(text) = q.get("window").filter(|w| !w.is_empty()) else {
        return Ok(24 * 3_600 * 1_000_000_000);
    };
    let bad = || {
        ApiError::BadRequest(format!(
            "`window` = `{text}`: use a whole number and a unit s, m, h, d or w (such as 24h or 7d), up to 10 years"
        ))
    };
    ck_model::parse_span(text)
        .filter(|w| *w <= MAX_WINDOW_NANOS)
        .ok_or_else(bad)
}

/// The finest fixed interval that covers `span` in at most [`MAX_CANDLES`].
fn finest_interval(span: i64) -> Interval {
    Interval::ALL
        .iter()
        .copied()
        .filter(|i| *i != Interval::S1)
        .find(|i| i.fixed_nanos().is_some_and(|n| span / n <= MAX_CANDLES))
        .unwrap_or(Interval::W1)
}

/// `exchange:BASE-QUOTE`.
fn instrument_key(item: &str) -> Result<(Exchange, Instrument), ApiError> {
    let (e, i) = item.trim().split_once(':').ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`instruments` item `{item}`: write exchange:BASE-QUOTE, such as binance:BTC-USDT"
        ))
    })?;
    let exchange: Exchange = e.parse().map_err(|_| {
        let valid: Vec<&str> = Exchange::ALL.iter().map(|e| e.as_str()).collect();
        ApiError::BadRequest(format!(
            "`instruments` item `{item}`: unknown exchange `{e}`; valid: {}",
            valid.join(", ")
        ))
    })?;
    let instrument = Instrument::parse(i)
        .map_err(|e| ApiError::BadRequest(format!("`instruments` item `{item}`: {e}")))?;
    Ok((exchange, instrument))
}

/// The statistics of `candles` (one instrument, oldest first), if any.
fn window_stats(candles: &[Candle], from: Ts, to: Ts) -> Option<InstrumentStats> {
    let (first, last) = (candles.first()?, candles.last()?);
    let closes: Vec<f64> = candles.iter().map(|c| c.close.to_f64()).collect();
    let log_returns: Vec<f64> = closes
        .windows(2)
        .filter(|w| w[0] > 0.0 && w[1] > 0.0)
        .map(|w| (w[1] / w[0]).ln())
        .collect();
    let mut volume = Decimal::from(0);
    let mut quote_volume = Decimal::from(0);
    for c in candles {
        volume = volume.checked_add(c.volume).unwrap_or(volume);
        quote_volume = quote_volume
            .checked_add(c.quote_volume)
            .unwrap_or(quote_volume);
    }
    let open = first.open.to_f64();
    Some(InstrumentStats {
        exchange: first.exchange,
        instrument: first.instrument.clone(),
        interval: first.interval,
        from,
        to,
        candles: candles.len(),
        open: first.open,
        close: last.close,
        high: candles.iter().map(|c| c.high).max().unwrap_or(first.high),
        low: candles.iter().map(|c| c.low).min().unwrap_or(first.low),
        change: if open > 0.0 {
            last.close.to_f64() / open - 1.0
        } else {
            0.0
        },
        stddev: sample_stddev(&log_returns),
        price_stddev: sample_stddev(&closes),
        realized_vol: realized_vol(&log_returns, to.0.saturating_sub(from.0)),
        volume,
        quote_volume,
        vwap: if volume > Decimal::from(0) {
            quote_volume.checked_div(volume, 8).map(Decimal::normalize)
        } else {
            None
        },
        ranked: rankable(candles.len(), interval_slots(from, to, candles), volume),
        rank: None,
        return_rank: 0,
        volume_rank: 0,
    })
}

/// How many intervals of the candles' length fit in `[from, to)`.
fn interval_slots(from: Ts, to: Ts, candles: &[Candle]) -> u64 {
    let length = candles
        .first()
        .and_then(|c| c.interval.fixed_nanos())
        .filter(|n| *n > 0)
        .unwrap_or(60_000_000_000);
    u64::try_from(to.0.saturating_sub(from.0) / length).unwrap_or(0)
}

/// `sqrt(Σ r²)` scaled from a window of `span` nanoseconds to a year.
fn realized_vol(log_returns: &[f64], span: i64) -> Option<f64> {
    const YEAR: f64 = 365.0 * 86_400.0 * 1e9;
    if log_returns.is_empty() || span <= 0 {
        return None;
    }
    let sum_sq: f64 = log_returns.iter().map(|r| r * r).sum();
    let v = (sum_sq * YEAR / span as f64).sqrt();
    v.is_finite().then_some(v)
}

/// The sample (n - 1) standard deviation, by Welford's method.
fn sample_stddev(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let (mut mean, mut m2) = (0.0, 0.0);
    for (n, &x) in xs.iter().enumerate() {
        let delta = x - mean;
        mean += delta / (n + 1) as f64;
        m2 += delta * (x - mean);
    }
    let sd = (m2 / (xs.len() - 1) as f64).sqrt();
    sd.is_finite().then_some(sd)
}

/// The fewest candles a series needs in its window to be ranked by
/// volatility (and a tenth of the window's intervals).
pub(crate) const MIN_RANKED_CANDLES: usize = 5;

/// Whether a series of `candles` with `volume` over `slots` intervals has
/// the data to be ranked by volatility.
fn rankable(candles: usize, slots: u64, volume: Decimal) -> bool {
    let tenth = usize::try_from(slots.div_ceil(10)).unwrap_or(usize::MAX);
    volume > Decimal::ZERO && candles >= MIN_RANKED_CANDLES.max(tenth)
}

/// Numbers the return and volume ranks, then sorts by volatility, highest
/// first (unknown last), the ranked before the rest, and numbers the
/// volatility rank of the ranked.
fn rank(stats: &mut [InstrumentStats]) {
    let mut order: Vec<usize> = (0..stats.len()).collect();
    order.sort_by(|&a, &b| stats[b].change.total_cmp(&stats[a].change));
    for (r, &i) in order.iter().enumerate() {
        stats[i].return_rank = r + 1;
    }
    order.sort_by(|&a, &b| stats[b].quote_volume.cmp(&stats[a].quote_volume));
    for (r, &i) in order.iter().enumerate() {
        stats[i].volume_rank = r + 1;
    }
    stats.sort_by(|a, b| {
        b.ranked.cmp(&a.ranked).then(match (a.stddev, b.stddev) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => (a.exchange.as_str(), a.instrument.as_str())
                .cmp(&(b.exchange.as_str(), b.instrument.as_str())),
        })
    });
    for (i, s) in stats.iter_mut().enumerate() {
        s.rank = s.ranked.then_some(i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_stddev_matches_the_textbook_formula() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let mean = xs.iter().sum::<f64>() / 8.0;
        let direct = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 7.0).sqrt();
        let got = sample_stddev(&xs).expect("defined");
        assert!((got - direct).abs() < 1e-12, "{got} vs {direct}");
        assert_eq!(sample_stddev(&[1.0]), None);
    }

    #[test]
    fn windows_parse_with_units_and_refuse_nonsense() {
        let q = |w: &str| Query::from([("window".to_owned(), w.to_owned())]);
        assert_eq!(window(&q("90m")).ok(), Some(90 * 60 * 1_000_000_000));
        assert_eq!(window(&q("7d")).ok(), Some(7 * 86_400 * 1_000_000_000));
        for bad in ["24", "h", "-1h", "0h", "1y", "99999999999w"] {
            assert!(window(&q(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_interval_grows_with_the_window() {
        let day = 86_400 * 1_000_000_000;
        assert_eq!(finest_interval(day), Interval::M1);
        assert_eq!(finest_interval(7 * day), Interval::M1);
        assert_eq!(finest_interval(30 * day), Interval::M5);
        assert_eq!(finest_interval(365 * day), Interval::H1);
    }

    #[test]
    fn a_handful_of_candles_is_not_ranked() {
        let one = Decimal::from(1);
        // Nine 1m candles in a 24-hour window: no volatility to rank.
        assert!(!rankable(9, 1_440, one));
        // Seven of the sixty minutes of an hour: ranked.
        assert!(rankable(7, 60, one));
        assert!(!rankable(4, 10, one), "at least five");
        assert!(!rankable(60, 60, Decimal::ZERO), "and some volume");
    }
}
