//! `GET /api/v1/book`: an instrument's order book, exact, best first.
//!
//! - Without `at`: the live book this process captures; in a process that
//!   captures none (`serve`), the latest book the archive holds.
//! - With `at`: the book at that instant, rebuilt from the rows of the part
//!   being written (kept in memory) or from the archive's book files
//!   ([`ck_archive::books::archived_book_at`]). A time the book was not
//!   known (an incident, a lost connection, before capture) is a 404 that
//!   says so.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ck_book::{Book, BookSide, Level};
use ck_bus::books::LiveBooks;
use ck_model::{Exchange, Instrument, Ts};

use crate::ApiState;
use crate::error::ApiError;
use crate::market::Params;
use crate::params;

/// The depth answered when none is asked.
pub const DEFAULT_DEPTH: usize = 100;
/// The most levels a side one answer holds.
pub const MAX_DEPTH: usize = 10_000;

/// Where books are found: the live ones, and the archive's files.
#[derive(Debug, Clone, Default)]
pub struct BookSource {
    /// The books this process captures.
    pub live: Option<LiveBooks>,
    /// The archive's folder.
    pub root: Option<PathBuf>,
}

/// One book as answered.
#[derive(Debug, Clone, PartialEq)]
pub struct BookAnswer {
    /// The venue.
    pub exchange: Exchange,
    /// The instrument.
    pub instrument: Instrument,
    /// The instant the book is of: `at`, or the last message applied.
    pub time: Ts,
    /// `live` or `archive`.
    pub source: &'static str,
    /// Bids, best (highest) first.
    pub bids: Vec<Level>,
    /// Asks, best (lowest) first.
    pub asks: Vec<Level>,
}

impl BookAnswer {
    fn of(
        exchange: Exchange,
        instrument: &Instrument,
        time: Ts,
        source: &'static str,
        book: &Book,
        depth: usize,
    ) -> BookAnswer {
        BookAnswer {
            exchange,
            instrument: instrument.clone(),
            time,
            source,
            bids: book.levels(BookSide::Bid).take(depth).collect(),
            asks: book.levels(BookSide::Ask).take(depth).collect(),
        }
    }

    /// `{"exchange","instrument","time","source","bids":[[price,size],…],"asks":…}`,
    /// numbers as exact decimal strings, as the venue wrote them.
    #[must_use]
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(64 + 48 * (self.bids.len() + self.asks.len()));
        out.push_str("{\"exchange\":\"");
        out.push_str(self.exchange.as_str());
        out.push_str("\",\"instrument\":\"");
        out.push_str(self.instrument.as_str());
        out.push_str("\",\"time\":\"");
        out.push_str(&self.time.to_string());
        out.push_str("\",\"source\":\"");
        out.push_str(self.source);
        out.push('"');
        for (name, levels) in [("bids", &self.bids), ("asks", &self.asks)] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":[");
            for (k, l) in levels.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                out.push_str("[\"");
                l.price.write(&mut out);
                out.push_str("\",\"");
                l.size.write(&mut out);
                out.push_str("\"]");
            }
            out.push(']');
        }
        out.push('}');
        out
    }

    /// `side,price,size` rows: bids best first, then asks best first.
    #[must_use]
    pub fn csv(&self) -> String {
        let mut out = String::from("side,price,size\n");
        for (side, levels) in [("bid", &self.bids), ("ask", &self.asks)] {
            for l in levels {
                out.push_str(side);
                out.push(',');
                l.price.write(&mut out);
                out.push(',');
                l.size.write(&mut out);
                out.push('\n');
            }
        }
        out
    }
}

/// Why there is no book to answer.
#[derive(Debug, thiserror::Error)]
pub enum BookMissing {
    /// None held or recorded, or not known at that time.
    #[error("{0}")]
    Unknown(String),
    /// The archive could not be read.
    #[error("reading the book files: {0}")]
    Archive(#[from] ck_archive::Error),
    /// A recorded row the book cannot hold.
    #[error("rebuilding the book: {0}")]
    Book(#[from] ck_book::BookError),
}

/// The book of `instrument` on `exchange` at `at` (or as it stands), cut
/// to `depth` levels a side. Blocking: it may read files.
///
/// # Errors
/// When no book is known then, or the files cannot be read.
pub fn find_book(
    source: &BookSource,
    exchange: Exchange,
    instrument: &Instrument,
    at: Option<Ts>,
    depth: usize,
) -> Result<BookAnswer, BookMissing> {
    with_book(source, exchange, instrument, at, |book, time, from| {
        BookAnswer::of(exchange, instrument, time, from, book, depth)
    })
}

/// `f` of the book of `instrument` on `exchange` at `at` (or as it
/// stands), with the instant it is of and `live` or `archive`: the live
/// book under its lock, else the one rebuilt from the files. Blocking.
///
/// # Errors
/// When no book is known then, or the files cannot be read.
pub fn with_book<T>(
    source: &BookSource,
    exchange: Exchange,
    instrument: &Instrument,
    at: Option<Ts>,
    f: impl Fn(&Book, Ts, &'static str) -> T,
) -> Result<T, BookMissing> {
    let held = source.live.as_ref().and_then(|live| {
        live.read(exchange, instrument, |b| match at {
            None => Ok(b.valid.then(|| f(&b.book, b.time.unwrap_or(Ts(0)), "live"))),
            Some(at) => b
                .book_at(at)
                .map(|book| book.map(|book| f(&book, at, "live"))),
        })
    });
    if let Some(answer) = held.transpose()?.flatten() {
        return Ok(answer);
    }
    let Some(root) = source.root.as_deref() else {
        return Err(unknown(exchange, instrument, at));
    };
    let at_or_latest = match at {
        Some(at) => at,
        None => match ck_archive::books::latest_book_part(root, exchange, instrument)? {
            Some(part) => part.to,
            None => return Err(unknown(exchange, instrument, at)),
        },
    };
    ck_archive::books::archived_book_at(root, exchange, instrument, at_or_latest)?
        .map(|(book, _)| f(&book, at_or_latest, "archive"))
        .ok_or_else(|| unknown(exchange, instrument, at))
}

fn unknown(exchange: Exchange, instrument: &Instrument, at: Option<Ts>) -> BookMissing {
    BookMissing::Unknown(match at {
        None => format!("no book of {instrument} on {exchange} is held or recorded"),
        Some(at) => format!(
            "the book of {instrument} on {exchange} is not known at {at}: not captured then, or unknown between an incident or a lost connection and its next snapshot (`candlekeep gaps` lists those)"
        ),
    })
}

/// The query parameters of `/api/v1/book`, as the OpenAPI document shows
/// them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "it documents the parameters; they are read from the query"
)]
pub(crate) struct BookParams {
    /// Levels a side, best first (default 100, at most 10,000).
    depth: Option<usize>,
    /// The instant (RFC 3339): the exact book then, rebuilt from the
    /// recorded snapshots and deltas. Absent: the book as it stands.
    at: Option<String>,
    /// `json` (default) or `csv` (`side,price,size`).
    format: Option<String>,
}

/// An order book, exact, best first.
#[utoipa::path(
    get, path = "/api/v1/book", tag = "market",
    params(params::SeriesParams, BookParams),
    responses(
        (status = 200, description = "`{\"exchange\",\"instrument\",\"time\",\"source\",\"bids\":[[price,size],…],\"asks\":[[price,size],…]}`, numbers as exact decimal strings."),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
        (status = 404, description = "No book known then.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn book(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let (exchange, instrument) = (params::exchange(&q)?, params::instrument(&q)?);
    let at = params::time(&q, "at")?;
    let as_csv = params::csv(&q)?;
    let depth = match q.get("depth").filter(|v| !v.is_empty()) {
        None => DEFAULT_DEPTH,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_DEPTH).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`depth` = `{v}` must be a whole number from 1 to {MAX_DEPTH}"
                )));
            }
        },
    };
    let source = state.books.clone();
    let answer = blocking(move || find_book(&source, exchange, &instrument, at, depth)).await?;
    Ok(if as_csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            answer.csv(),
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], answer.json()).into_response()
    })
}

/// `find` on the blocking pool (it may read files): a book unknown then is
/// a 404 with the reason, anything else a failure of ours.
pub(crate) async fn blocking<T: Send + 'static>(
    find: impl FnOnce() -> Result<T, BookMissing> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(find).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(BookMissing::Unknown(why))) => Err(ApiError::NotFound(why)),
        Ok(Err(e)) => Err(ApiError::Internal(e.to_string())),
        Err(e) => Err(ApiError::Internal(format!("book task: {e}"))),
    }
}

/// The query parameters of `/api/v1/book/stats`, as the OpenAPI document
/// shows them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "it documents the parameters; they are read from the query"
)]
pub(crate) struct BookStatsParams {
    /// The instant (RFC 3339); absent: the book as it stands.
    at: Option<String>,
}

/// What a book says at a glance: mid, spread, microprice, the depth
/// within 10, 50 and 100 basis points of the mid each side, the imbalance
/// of the best level.
#[utoipa::path(
    get, path = "/api/v1/book/stats", tag = "market",
    params(params::SeriesParams, BookStatsParams),
    responses(
        (status = 200, description = "`{\"exchange\",\"instrument\",\"time\",\"source\",\"best_bid\",\"best_ask\",\"mid\",\"spread\",\"spread_bps\",\"microprice\",\"depth_bps\":[10,50,100],\"bid_depth\":[…],\"ask_depth\":[…],\"imbalance\"}`: prices, spread and depths exact strings, the ratios numbers; `null` values while a side is empty."),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
        (status = 404, description = "No book known then.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn stats(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let (exchange, instrument) = (params::exchange(&q)?, params::instrument(&q)?);
    let at = params::time(&q, "at")?;
    let source = state.books.clone();
    let body = blocking(move || {
        with_book(&source, exchange, &instrument, at, |book, time, from| {
            let stats = ck_book::stats::BookStats::of(book);
            stats_json(exchange, &instrument, time, from, stats.as_ref())
        })
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The JSON of `/api/v1/book/stats`.
fn stats_json(
    exchange: Exchange,
    instrument: &Instrument,
    time: Ts,
    source: &str,
    stats: Option<&ck_book::stats::BookStats>,
) -> String {
    let text = ck_book::Fixed::text;
    let finite = |x: f64| x.is_finite().then_some(x);
    let v = match stats {
        Some(s) => serde_json::json!({
            "exchange": exchange, "instrument": instrument, "time": time, "source": source,
            "best_bid": text(s.best_bid), "best_ask": text(s.best_ask),
            "mid": text(s.mid), "spread": text(s.spread),
            "spread_bps": finite(s.spread_bps), "microprice": finite(s.microprice),
            "depth_bps": ck_book::stats::DEPTH_BANDS_BPS,
            "bid_depth": s.bid_depth.map(text), "ask_depth": s.ask_depth.map(text),
            "imbalance": finite(s.imbalance),
        }),
        None => serde_json::json!({
            "exchange": exchange, "instrument": instrument, "time": time, "source": source,
            "best_bid": null, "best_ask": null, "mid": null, "spread": null,
            "spread_bps": null, "microprice": null,
            "depth_bps": ck_book::stats::DEPTH_BANDS_BPS,
            "bid_depth": null, "ask_depth": null, "imbalance": null,
        }),
    };
    v.to_string()
}
