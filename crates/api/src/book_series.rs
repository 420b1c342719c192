//! `GET /api/v1/book/series`: an instrument's book statistics at every
//! second (mid, spread, microprice, imbalance, the best levels and the
//! depth within 10, 50 and 100 bps each side), served like candles: from
//! the archive's `book_stats` files of the finished parts, and from
//! memory for the part being written.
//!
//! A row at `time` is the book after every message received at or before
//! it, at every multiple of `books.stats_every_ms` (default 1000). An
//! `interval` keeps the rows at its starts (a sample, not an aggregate:
//! the book at that instant). Instants at which the book was unknown (an
//! incident, a lost connection) or one side empty have no row.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ck_book::Fixed;
use ck_book::stats::{BookStats, DEPTH_BANDS_BPS};
use ck_model::{Exchange, Instrument, Interval, Ts};

use crate::ApiState;
use crate::book::{BookMissing, BookSource, blocking};
use crate::error::ApiError;
use crate::market::Params;
use crate::params;

/// Rows answered when no `limit` is given: an hour at 1 s.
pub const DEFAULT_ROWS: usize = 3_600;

/// The span read when no `from` is given.
const DEFAULT_SPAN_NS: i64 = 3_600 * 1_000_000_000;

/// Every row of the book's series with `from <= time < to`, in time order
/// (the archive's, then the part being written). Blocking: it reads files.
///
/// # Errors
/// When the files cannot be read.
pub fn series(
    source: &BookSource,
    exchange: Exchange,
    instrument: &Instrument,
    from: Ts,
    to: Ts,
) -> Result<Vec<(Ts, BookStats)>, BookMissing> {
    let mut rows: Vec<(Ts, BookStats)> = match source.root.as_deref() {
        Some(root) => ck_archive::book_stats::book_stats_between(
            root,
            exchange,
            instrument,
            from,
            Ts(to.0.saturating_sub(1)),
        )?
        .into_iter()
        .map(|r| (r.time, r.stats))
        .collect(),
        None => Vec::new(),
    };
    let after = rows.last().map(|r| r.0);
    if let Some(live) = &source.live {
        live.read(exchange, instrument, |b| {
            rows.extend(
                b.series
                    .iter()
                    .filter(|(t, _)| from <= *t && *t < to && after.is_none_or(|a| *t > a))
                    .cloned(),
            );
        });
    }
    Ok(rows)
}

/// The query parameters of `/api/v1/book/series`, as the OpenAPI
/// document shows them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "it documents the parameters; they are read from the query"
)]
pub(crate) struct SeriesQuery {
    /// Start, inclusive (RFC 3339 or a date); default: an hour before `to`.
    from: Option<String>,
    /// End, exclusive; default: now.
    to: Option<String>,
    /// A candle interval (`1s`, `1m`, …): only the rows at its starts.
    /// Absent: every row, at the recorded cadence (default 1 s).
    interval: Option<String>,
    /// At most this many rows (default 3600, at most 1,000,000); when more
    /// remain, `X-Next-From` says where the next page starts.
    limit: Option<usize>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The book's statistics at every second, like candles.
#[utoipa::path(
    get, path = "/api/v1/book/series", tag = "market",
    params(params::SeriesParams, SeriesQuery),
    responses(
        (status = 200, description = "`{\"exchange\",\"instrument\",\"interval\",\"depth_bps\":[10,50,100],\"series\":[{\"time\",\"best_bid\",\"best_ask\",\"bid_size\",\"ask_size\",\"mid\",\"spread\",\"spread_bps\",\"microprice\",\"imbalance\",\"bid_depth\":[…],\"ask_depth\":[…]}]}`: prices, sizes, spread and depths exact strings, the ratios numbers. CSV: one column each, depths as `bid_depth_10bps`… ."),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn book_series(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let (exchange, instrument) = (params::exchange(&q)?, params::instrument(&q)?);
    let interval = match q.get("interval").filter(|v| !v.is_empty()) {
        Some(_) => Some(params::interval(&q, None)?),
        None => None,
    };
    let to = params::time(&q, "to")?.unwrap_or_else(Ts::now);
    let from = params::time(&q, "from")?.unwrap_or(Ts(to.0.saturating_sub(DEFAULT_SPAN_NS)));
    if from >= to {
        return Err(ApiError::BadRequest(format!(
            "`from` ({from}) must be before `to` ({to})"
        )));
    }
    let limit = params::limit(&q, DEFAULT_ROWS)?;
    let as_csv = params::csv(&q)?;
    let source = state.books.clone();
    let name = instrument.clone();
    let mut rows = blocking(move || series(&source, exchange, &name, from, to)).await?;
    if let Some(interval) = interval {
        rows.retain(|(t, _)| interval.bucket_start(*t) == *t);
    }
    let next = rows.get(limit).map(|(t, _)| *t);
    rows.truncate(limit);
    let mut response = if as_csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv(&rows),
        )
            .into_response()
    } else {
        let body = serde_json::json!({
            "exchange": exchange,
            "instrument": instrument,
            "interval": interval.map(Interval::as_str),
            "depth_bps": DEPTH_BANDS_BPS,
            "series": rows.iter().map(|(t, s)| row_json(*t, s)).collect::<Vec<_>>(),
        });
        (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    if let Some(next) = next
        && let Ok(v) = HeaderValue::from_str(&next.to_string())
    {
        response.headers_mut().insert("x-next-from", v);
    }
    Ok(response)
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// One row as JSON.
fn row_json(time: Ts, s: &BookStats) -> serde_json::Value {
    let s = &s.normalized();
    let text = Fixed::text;
    serde_json::json!({
        "time": time,
        "best_bid": text(s.best_bid), "best_ask": text(s.best_ask),
        "bid_size": text(s.bid_size), "ask_size": text(s.ask_size),
        "mid": text(s.mid), "spread": text(s.spread),
        "spread_bps": finite(s.spread_bps), "microprice": finite(s.microprice),
        "imbalance": finite(s.imbalance),
        "bid_depth": s.bid_depth.map(text), "ask_depth": s.ask_depth.map(text),
    })
}

/// The rows as CSV, one column a value.
fn csv(rows: &[(Ts, BookStats)]) -> String {
    let mut out = String::from(
        "time,best_bid,best_ask,bid_size,ask_size,mid,spread,spread_bps,microprice,imbalance",
    );
    for side in ["bid", "ask"] {
        for bps in DEPTH_BANDS_BPS {
            out.push_str(&format!(",{side}_depth_{bps}bps"));
        }
    }
    out.push('\n');
    for (t, s) in rows {
        let s = &s.normalized();
        out.push_str(&t.to_string());
        for f in [
            s.best_bid, s.best_ask, s.bid_size, s.ask_size, s.mid, s.spread,
        ] {
            out.push(',');
            f.write(&mut out);
        }
        for x in [s.spread_bps, s.microprice, s.imbalance] {
            out.push(',');
            if let Some(x) = finite(x) {
                out.push_str(&x.to_string());
            }
        }
        for f in s.bid_depth.iter().chain(&s.ask_depth) {
            out.push(',');
            f.write(&mut out);
        }
        out.push('\n');
    }
    out
}
