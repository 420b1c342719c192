//! Query parameters, read by hand so that every mistake gets a message that
//! names the parameter and, where there is a list, the valid values.

use std::collections::HashMap;

use ck_model::{Exchange, Instrument, Interval, Ts};

use crate::error::ApiError;

/// The query parameters naming one series, as the OpenAPI document shows
/// them (they are read by the functions below).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "it documents the parameters; they are read from the query"
)]
pub(crate) struct SeriesParams {
    /// The exchange, such as `binance`.
    exchange: Exchange,
    /// BASE-QUOTE, such as `BTC-USDT`.
    instrument: Instrument,
}

/// The query parameters of a page of rows, as the OpenAPI document shows
/// them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "it documents the parameters; they are read from the query"
)]
pub(crate) struct PageParams {
    /// Start, inclusive, RFC 3339 or a date: a candle's open time, a
    /// trade's exchange time.
    from: Option<String>,
    /// End, exclusive.
    to: Option<String>,
    /// At most this many rows (default 1000, at most 1,000,000).
    limit: Option<usize>,
    /// From the previous page's `X-Next-Cursor`.
    cursor: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The raw query string, as pairs.
pub(crate) type Query = HashMap<String, String>;

/// The most rows one request may ask for.
pub(crate) const MAX_LIMIT: usize = 1_000_000;

fn required<'a>(q: &'a Query, name: &str) -> Result<&'a str, ApiError> {
    q.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("missing query parameter `{name}`")))
}

pub(crate) fn exchange(q: &Query) -> Result<Exchange, ApiError> {
    let v = required(q, "exchange")?;
    v.parse().map_err(|_| {
        let valid: Vec<&str> = Exchange::ALL.iter().map(|e| e.as_str()).collect();
        ApiError::BadRequest(format!(
            "unknown exchange `{v}`; valid: {}",
            valid.join(", ")
        ))
    })
}

/// `exchange`, if given.
pub(crate) fn optional_exchange(q: &Query) -> Result<Option<Exchange>, ApiError> {
    if q.contains_key("exchange") {
        exchange(q).map(Some)
    } else {
        Ok(None)
    }
}

pub(crate) fn instrument(q: &Query) -> Result<Instrument, ApiError> {
    let v = required(q, "instrument")?;
    Instrument::parse(v).map_err(|e| ApiError::BadRequest(format!("instrument: {e}")))
}

pub(crate) fn interval(q: &Query, default: Option<Interval>) -> Result<Interval, ApiError> {
    let Some(v) = q.get("interval").filter(|v| !v.is_empty()) else {
        return default
            .ok_or_else(|| ApiError::BadRequest("missing query parameter `interval`".into()));
    };
    // The model's own wording, as the CLI and the WebSocket say it.
    v.parse()
        .map_err(|e: ck_model::IntervalError| ApiError::BadRequest(e.to_string()))
}

pub(crate) fn time(q: &Query, name: &str) -> Result<Option<Ts>, ApiError> {
    match q.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Ts::parse(v).map(Some).map_err(|_| {
            ApiError::BadRequest(format!(
                "`{name}` = `{v}` is not a time: use RFC 3339 (2024-01-01T00:00:00Z) or a date (2024-01-01)"
            ))
        }),
    }
}

/// `[from, to)`, defaulting to everything; `from` must be before `to`.
pub(crate) fn range(q: &Query) -> Result<(Ts, Ts), ApiError> {
    let from = time(q, "from")?.unwrap_or(Ts(i64::MIN));
    let to = time(q, "to")?.unwrap_or(Ts(i64::MAX));
    if from >= to {
        return Err(ApiError::BadRequest(format!(
            "`from` ({from}) must be before `to` ({to})"
        )));
    }
    Ok((from, to))
}

pub(crate) fn limit(q: &Query, default: usize) -> Result<usize, ApiError> {
    match q.get("limit").filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "`limit` = `{v}` must be a whole number from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

/// `format=json` (default) or `format=csv`.
pub(crate) fn csv(q: &Query) -> Result<bool, ApiError> {
    match q.get("format").map(String::as_str) {
        None | Some("" | "json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "`format` = `{other}`; valid: json, csv"
        ))),
    }
}

/// `order=asc` (default) or `order=desc`: whether newest comes first.
pub(crate) fn descending(q: &Query) -> Result<bool, ApiError> {
    match q.get("order").map(String::as_str) {
        None | Some("" | "asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "`order` = `{other}`; valid: asc, desc"
        ))),
    }
}

/// A true/false flag, false when absent.
pub(crate) fn flag(q: &Query, name: &str) -> Result<bool, ApiError> {
    match q.get(name).map(String::as_str) {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "`{name}` = `{other}`; valid: true, false"
        ))),
    }
}
