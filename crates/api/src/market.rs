//! Market data: candles (JSON or CSV, cursor pages, latest, by time),
//! trades, tickers and price history.

use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use ck_model::{Candle, CandleRecord, Decimal, Exchange, Instrument, Interval, Side, TradeId, Ts};
use ck_store::{CandleSource, RangeQuery, RecordForm};
use serde::Serialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::params::{self, Query};

/// The query string, with a JSON error if it cannot be read.
pub(crate) struct Params(pub(crate) Query);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<Query>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::BadRequest(format!("query string: {}", e.body_text())))
    }
}

/// A page of rows, with the cursor of the next page in `X-Next-Cursor` (and
/// a `Link: rel="next"` header) when there is more.
fn page<T: Serialize>(
    rows: &[T],
    columns: &[&str],
    as_csv: bool,
    next: Option<String>,
    path: &str,
    q: &Query,
) -> Result<Response, ApiError> {
    let response = if as_csv {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.write_record(columns)
            .map_err(|e| ApiError::BadRequest(format!("csv: {e}")))?;
        for r in rows {
            w.serialize(r)
                .map_err(|e| ApiError::BadRequest(format!("csv: {e}")))?;
        }
        let body = w
            .into_inner()
            .map_err(|e| ApiError::BadRequest(format!("csv: {e}")))?;
        ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
    } else {
        axum::Json(rows).into_response()
    };
    Ok(with_next(response, next, path, q))
}

/// `response` with the cursor of the next page in `X-Next-Cursor` (and a
/// `Link: rel="next"` header), when there is more.
fn with_next(mut response: Response, next: Option<String>, path: &str, q: &Query) -> Response {
    if let Some(cursor) = next {
        let mut query: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "cursor")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        query.sort();
        query.push(("cursor".into(), cursor.clone()));
        let link = format!(
            "<{path}?{}>; rel=\"next\"",
            query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        );
        let headers = response.headers_mut();
        if let Ok(v) = cursor.parse() {
            headers.insert("x-next-cursor", v);
        }
        if let Ok(v) = link.parse() {
            headers.insert(header::LINK, v);
        }
    }
    response
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn source(q: &Query) -> Result<CandleSource, ApiError> {
    match q.get("source").map(String::as_str) {
        None | Some("" | "ours") => Ok(CandleSource::Ours),
        Some("exchange") => Ok(CandleSource::Exchange),
        Some(other) => Err(ApiError::BadRequest(format!(
            "`source` = `{other}`; valid: ours, exchange"
        ))),
    }
}

/// An instrument the store knows, or a 404 naming it.
async fn known(
    state: &ApiState,
    exchange: Exchange,
    instrument: &Instrument,
) -> Result<(), ApiError> {
    let all = state.store.instruments().await?;
    if all
        .iter()
        .any(|i| i.info.exchange == exchange && &i.info.instrument == instrument)
    {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "no data for {exchange} {instrument}; GET /api/v1/instruments lists what is stored"
        )))
    }
}

/// Candles of one instrument and interval, oldest first.
#[utoipa::path(
    get, path = "/api/v1/candles", tag = "market",
    params(
        params::SeriesParams,
        ("interval" = ck_model::Interval, Query, description = "1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w 1M."),
        params::PageParams,
        ("source" = Option<String>, Query, description = "`ours` (default) or `exchange`."),
        ("order" = Option<String>, Query, description = "`asc` (default: the oldest `limit` candles of the range, oldest first) or `desc` (the newest `limit`, newest first; the next page goes further back)."),
    ),
    responses(
        (status = 200, description = "Candles; `X-Next-Cursor` when there are more.", body = [CandleRecord]),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown instrument.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn candles(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let (exchange, instrument) = (params::exchange(&q)?, params::instrument(&q)?);
    let interval = params::interval(&q, None)?;
    let (mut from, mut to) = params::range(&q)?;
    let limit = params::limit(&q, 1_000)?;
    let as_csv = params::csv(&q)?;
    let source = source(&q)?;
    let newest_first = params::descending(&q)?;
    match params::time(&q, "cursor")? {
        Some(c) if newest_first => to = to.min(c),
        Some(c) => from = from.max(c),
        None => {}
    }
    known(&state, exchange, &instrument).await?;
    let query = RangeQuery {
        exchange,
        instrument,
        from,
        to,
        limit: limit + 1,
    };
    // JSON and CSV alike: the store writes the records (SQLite straight
    // from its rows, and settled days kept written in both forms).
    let form = if as_csv {
        RecordForm::Csv
    } else {
        RecordForm::Json
    };
    let store = state.store.clone();
    let reads = split(&state, query, interval, source, newest_first, move |q| {
        let store = store.clone();
        async move {
            store
                .candle_records(&q, interval, source, newest_first, form)
                .await
        }
    })
    .await?;
    if source == CandleSource::Ours && reads.most.is_some_and(|most| most <= limit as u64) {
        // No next page is possible: each part goes out as soon as it is
        // read, while the later ones are still being read.
        return Ok(stream_records(reads.in_order(), limit, form));
    }
    // Otherwise the parts are cut to the limit first, and go out as they
    // are, with the length known up front.
    let mut parts = reads.all().await?;
    let next = cut(&mut parts, limit, newest_first);
    let mut answer = Answer::new(form);
    let mut body: Vec<axum::body::Bytes> = Vec::with_capacity(parts.len() + 2);
    body.extend(answer.opening());
    body.extend(parts.into_iter().filter_map(|p| answer.part(p.bytes)));
    body.push(answer.end());
    let length = body.iter().map(|b| b.len()).sum::<usize>();
    let response = (
        [
            (header::CONTENT_TYPE, answer.content_type()),
            (header::CONTENT_LENGTH, header::HeaderValue::from(length)),
        ],
        axum::body::Body::from_stream(futures_util::stream::iter(
            body.into_iter().map(Ok::<_, std::convert::Infallible>),
        )),
    )
        .into_response();
    Ok(with_next(response, next, "/api/v1/candles", &q))
}

/// Candle records of one form framed as one answer: a JSON array (the
/// first record's comma opens it), or CSV rows under their header.
struct Answer {
    form: RecordForm,
    opened: bool,
}

impl Answer {
    fn new(form: RecordForm) -> Answer {
        Answer {
            form,
            opened: false,
        }
    }

    fn content_type(&self) -> header::HeaderValue {
        header::HeaderValue::from_static(match self.form {
            RecordForm::Json => "application/json",
            RecordForm::Csv => "text/csv; charset=utf-8",
        })
    }

    /// What goes before any record: CSV's header.
    fn opening(&mut self) -> Option<axum::body::Bytes> {
        match self.form {
            RecordForm::Json => None,
            RecordForm::Csv => {
                self.opened = true;
                Some(axum::body::Bytes::from_static(CandleRecord::CSV_HEADER))
            }
        }
    }

    /// The records of one part as they go out; `None` for no records.
    fn part(&mut self, mut records: Vec<u8>) -> Option<axum::body::Bytes> {
        let first = records.first_mut()?;
        if self.form == RecordForm::Json && !self.opened {
            // Every record comes after a comma; the first opens the array.
            *first = b'[';
            self.opened = true;
        }
        Some(axum::body::Bytes::from(records))
    }

    /// What ends the answer.
    fn end(&self) -> axum::body::Bytes {
        axum::body::Bytes::from_static(match (self.form, self.opened) {
            (RecordForm::Json, true) => b"]",
            (RecordForm::Json, false) => b"[]",
            (RecordForm::Csv, _) => b"",
        })
    }
}

/// Candles read at or above this many are read in parallel parts.
const PARALLEL_FROM: usize = 20_000;

/// Parts a large read is split into: enough that the first is ready early
/// when the parts are streamed, two at a time.
const PARTS: i64 = 8;

/// Consecutive candles of a read, in the order asked for.
trait CandlePart {
    fn count(&self) -> usize;
    fn keep(&mut self, n: usize);
    fn last_open(&self) -> Option<Ts>;
}

impl CandlePart for Vec<Candle> {
    fn count(&self) -> usize {
        self.len()
    }
    fn keep(&mut self, n: usize) {
        self.truncate(n);
    }
    fn last_open(&self) -> Option<Ts> {
        self.last().map(|c| c.open_time)
    }
}

impl CandlePart for ck_store::CandleRecords {
    fn count(&self) -> usize {
        self.len()
    }
    fn keep(&mut self, n: usize) {
        self.truncate(n);
    }
    fn last_open(&self) -> Option<Ts> {
        self.open_times.last().copied()
    }
}

/// Cuts `parts` (read with one more than `limit`) to `limit` candles, and
/// returns the cursor of the next page when there is one: after the last
/// candle kept, in the order asked for (`to` is exclusive, `from`
/// inclusive).
fn cut<P: CandlePart>(parts: &mut Vec<P>, limit: usize, newest_first: bool) -> Option<String> {
    let mut left = limit;
    let mut more = false;
    for part in parts.iter_mut() {
        if part.count() > left {
            part.keep(left);
            more = true;
        }
        left -= part.count();
    }
    parts.retain(|p| p.count() > 0);
    more.then(|| {
        parts
            .last()
            .and_then(CandlePart::last_open)
            .map(|t| {
                if newest_first {
                    t.to_string()
                } else {
                    Ts(t.0 + 1).to_string()
                }
            })
            .unwrap_or_default()
    })
}

/// A query split into consecutive parts, in the order asked for, and how
/// to read one.
struct PartReads<F> {
    parts: Vec<RangeQuery>,
    read: F,
    /// At most this many candles are in the parts together, when that is
    /// known: the interval's slots from the first candle stored in the
    /// range to the last (our candles open on the interval's boundaries,
    /// one per slot).
    most: Option<u64>,
}

impl<P, F, Fut> PartReads<F>
where
    P: Send + 'static,
    F: Fn(RangeQuery) -> Fut,
    Fut: std::future::Future<Output = Result<P, ck_store::Error>> + Send + 'static,
{
    /// Every part, read at once.
    async fn all(self) -> Result<Vec<P>, ApiError> {
        let reads: Vec<_> = self
            .parts
            .into_iter()
            .map(|q| tokio::spawn((self.read)(q)))
            .collect();
        let mut parts = Vec::with_capacity(reads.len());
        for r in reads {
            parts.push(
                r.await
                    .map_err(|e| ApiError::Internal(format!("candle read: {e}")))??,
            );
        }
        Ok(parts)
    }

    /// The parts in order as they are read, two at a time (one per core):
    /// the first is ready early, and the rest are read while it is sent.
    fn in_order(self) -> impl futures_util::Stream<Item = Result<P, String>> + Send + 'static
    where
        F: Send + 'static,
    {
        use futures_util::StreamExt;
        let read = self.read;
        futures_util::stream::iter(self.parts)
            .map(move |q| tokio::spawn(read(q)))
            .buffered(2)
            .map(|r| match r {
                Ok(Ok(part)) => Ok(part),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            })
    }
}

/// Splits `query` into parts to read with `read`, consecutive in the order
/// asked for. A large read is split by time into parts read at once (SQLite
/// reads in parallel on its reader connections, PostgreSQL on its); each
/// part reads up to the whole limit, and the caller keeps what the limit
/// allows in order ([`cut`]).
async fn split<F>(
    state: &ApiState,
    query: RangeQuery,
    interval: ck_model::Interval,
    source: CandleSource,
    newest_first: bool,
    read: F,
) -> Result<PartReads<F>, ApiError> {
    if query.limit < PARALLEL_FROM {
        return Ok(PartReads {
            parts: vec![query],
            read,
            most: None,
        });
    }
    // Split where the data is, not over the whole range asked for.
    let bounds = RangeQuery {
        limit: 1,
        ..query.clone()
    };
    let first = state.store.candles(&bounds, interval, source).await?;
    let last = state
        .store
        .candles_newest_first(&bounds, interval, source)
        .await?;
    let (Some(first), Some(last)) = (first.first(), last.first()) else {
        return Ok(PartReads {
            parts: Vec::new(),
            read,
            most: Some(0),
        });
    };
    let (lo, hi) = (first.open_time.0, last.open_time.0.saturating_add(1));
    let most = interval.fixed_nanos().map(|n| {
        u64::try_from((hi - 1 - lo) / n)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    });
    let step = ((hi - lo) / PARTS).max(1);
    // Over several days, cut at UTC midnight: stores keep settled history
    // by the day (SQLite's packed days), and a part that ends inside a day
    // reads that day from its rows.
    const DAY: i64 = 86_400_000_000_000;
    let align = |c: i64| {
        if step >= DAY {
            c - c.rem_euclid(DAY)
        } else {
            c
        }
    };
    let mut cuts: Vec<i64> = (1..PARTS)
        .map(|k| align(lo + k * step))
        .filter(|c| *c > lo && *c < hi)
        .collect();
    cuts.dedup();
    cuts.insert(0, lo);
    cuts.push(hi);
    let mut parts: Vec<RangeQuery> = cuts
        .windows(2)
        .map(|w| RangeQuery {
            from: Ts(w[0]),
            to: Ts(w[1]),
            ..query.clone()
        })
        .collect();
    if newest_first {
        parts.reverse();
    }
    Ok(PartReads { parts, read, most })
}

/// The records `parts` gives as one answer ([`Answer`]), each part sent as
/// soon as it is read (chunked: the length is not known up front). At most
/// `limit` records go out. A read that fails after the first bytes went
/// out ends the response early (the client sees a cut response, never a
/// short answer that looks whole); the error is logged.
fn stream_records(
    parts: impl futures_util::Stream<Item = Result<ck_store::CandleRecords, String>> + Send + 'static,
    limit: usize,
    form: RecordForm,
) -> Response {
    struct State<S> {
        parts: std::pin::Pin<Box<S>>,
        left: usize,
        answer: Answer,
        done: bool,
    }
    let mut answer = Answer::new(form);
    let opening = answer.opening();
    let start = State {
        parts: Box::pin(parts),
        left: limit,
        answer,
        done: false,
    };
    let content_type = start.answer.content_type();
    let body = futures_util::stream::unfold(start, move |mut st| async move {
        use futures_util::StreamExt;
        if st.done {
            return None;
        }
        while let Some(read) = st.parts.next().await {
            let mut part = match read {
                Ok(part) => part,
                Err(error) => {
                    tracing::error!(%error, "candle read failed while streaming; response cut short");
                    st.done = true;
                    return Some((Err(std::io::Error::other(error)), st));
                }
            };
            if part.len() > st.left {
                tracing::error!(
                    limit,
                    "more candles than interval slots in a streamed read; cut to the limit"
                );
                part.truncate(st.left);
            }
            st.left -= part.len();
            if let Some(bytes) = st.answer.part(part.bytes) {
                return Some((Ok(bytes), st));
            }
        }
        st.done = true;
        let end = st.answer.end();
        Some((Ok(end), st))
    });
    let body = futures_util::StreamExt::chain(
        futures_util::stream::iter(opening.map(Ok::<_, std::io::Error>)),
        body,
    );
    (
        [(header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// The latest candle, or the candle holding `time`.
#[utoipa::path(
    get, path = "/api/v1/candles/latest", tag = "market",
    params(
        params::SeriesParams,
        ("interval" = ck_model::Interval, Query, description = "The interval."),
        ("time" = Option<String>, Query, description = "The candle holding this time instead of the latest."),
    ),
    responses(
        (status = 200, description = "The candle.", body = CandleRecord),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
        (status = 404, description = "No such candle.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn latest_candle(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let (exchange, instrument) = (params::exchange(&q)?, params::instrument(&q)?);
    let interval = params::interval(&q, None)?;
    let json_body = |json: axum::body::Bytes| {
        ([(header::CONTENT_TYPE, "application/json")], json).into_response()
    };
    let candle: Option<Candle> = match params::time(&q, "time")? {
        None => {
            let key = (exchange, instrument.clone(), interval);
            if let Some(json) = state.latest.get(&key) {
                return Ok(json_body(json));
            }
            match state
                .store
                .latest_candle(exchange, &instrument, interval)
                .await?
            {
                Some(c) => return Ok(json_body(state.latest.put(&c))),
                None => None,
            }
        }
        Some(t) => {
            let open = interval.bucket_start(t);
            let query = RangeQuery {
                exchange,
                instrument: instrument.clone(),
                from: open,
                to: Ts(open.0 + 1),
                limit: 1,
            };
            state
                .store
                .candles(&query, interval, CandleSource::Ours)
                .await?
                .pop()
        }
    };
    let candle = candle.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no {interval} candle for {exchange} {instrument} there"
        ))
    })?;
    Ok(axum::Json(CandleRecord::from(&candle)).into_response())
}

/// One trade, as the CLI prints it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TradeRecord {
    /// Exchange time.
    ts: Ts,
    /// The venue's id.
    trade_id: TradeId,
    /// Price.
    price: Decimal,
    /// Size.
    qty: Decimal,
    /// The taker's side.
    side: Side,
    /// When candlekeep received it.
    received: Ts,
}

/// Trades of one instrument, in exchange order.
#[utoipa::path(
    get, path = "/api/v1/trades", tag = "market",
    params(params::SeriesParams, params::PageParams),
    responses(
        (status = 200, description = "Trades; `X-Next-Cursor` when there are more.", body = [TradeRecord]),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown instrument.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn trades(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let (exchange, instrument) = (params::exchange(&q)?, params::instrument(&q)?);
    let (mut from, to) = params::range(&q)?;
    let limit = params::limit(&q, 1_000)?;
    let as_csv = params::csv(&q)?;
    // The cursor is `<time>~<skip>`: the page starts at that time, after the
    // first `skip` trades there (trades can share a time).
    let mut skip = 0usize;
    if let Some(c) = q.get("cursor").filter(|c| !c.is_empty()) {
        let bad = || ApiError::BadRequest(format!("`cursor` = `{c}` is not one this API gave"));
        let (t, n) = c.split_once('~').ok_or_else(bad)?;
        from = from.max(Ts::parse(t).map_err(|_| bad())?);
        skip = n.parse().map_err(|_| bad())?;
    }
    known(&state, exchange, &instrument).await?;
    let query = RangeQuery {
        exchange,
        instrument,
        from,
        to,
        limit: limit.saturating_add(skip).saturating_add(1),
    };
    let trades = state.store.trades(&query).await?;
    let mut rows: Vec<TradeRecord> = trades
        .iter()
        .skip(skip)
        .map(|t| TradeRecord {
            ts: t.ts_exchange,
            trade_id: t.trade_id.clone(),
            price: t.price,
            qty: t.size,
            side: t.side,
            received: t.ts_received,
        })
        .collect();
    let next = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        let last = rows.last().map_or(from, |r| r.ts);
        // Trades at the last time already served (skipped next time).
        let served = trades
            .iter()
            .take(skip + limit)
            .filter(|t| t.ts_exchange == last)
            .count();
        format!("{last}~{served}")
    });
    page(
        &rows,
        &["ts", "trade_id", "price", "qty", "side", "received"],
        as_csv,
        next,
        "/api/v1/trades",
        &q,
    )
}

/// The latest price, bid and ask of an instrument.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Ticker {
    /// The exchange.
    exchange: Exchange,
    /// The instrument.
    instrument: Instrument,
    /// The last trade's price (the latest 1s candle's close).
    price: Option<Decimal>,
    /// Best bid.
    bid: Option<Decimal>,
    /// Best ask.
    ask: Option<Decimal>,
    /// When the price was set (the last trade's time).
    price_time: Option<Ts>,
    /// When the bid and ask were quoted.
    quote_time: Option<Ts>,
}

/// The latest price, bid and ask per instrument.
#[utoipa::path(
    get, path = "/api/v1/tickers", tag = "market",
    params(("exchange" = Option<ck_model::Exchange>, Query, description = "Only this exchange.")),
    responses(
        (status = 200, description = "One ticker per stored instrument.", body = [Ticker]),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn tickers(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let only = params::optional_exchange(&q)?;
    let mut out = Vec::new();
    for i in state.store.instruments().await? {
        let (exchange, instrument) = (i.info.exchange, i.info.instrument);
        if only.is_some_and(|e| e != exchange) {
            continue;
        }
        let candle = state
            .store
            .latest_candle(exchange, &instrument, Interval::S1)
            .await?;
        let quote = state.store.latest_quote(exchange, &instrument).await?;
        out.push(Ticker {
            exchange,
            price: candle.as_ref().map(|c| c.close),
            price_time: i.last_trade_time,
            bid: quote.as_ref().map(|q| q.bid),
            ask: quote.as_ref().map(|q| q.ask),
            quote_time: quote.as_ref().map(|q| q.ts_exchange),
            instrument,
        });
    }
    Ok(axum::Json(out).into_response())
}

/// One point of a price series.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PricePoint {
    /// The start of the interval.
    time: Ts,
    /// The close of the interval.
    price: Decimal,
}

/// A price series (interval closes) for charts: the interval is chosen so
/// that the range gives at most `points` points, unless one is given.
#[utoipa::path(
    get, path = "/api/v1/prices", tag = "market",
    params(
        params::SeriesParams,
        ("from" = String, Query, description = "Start, inclusive."),
        ("to" = Option<String>, Query, description = "End, exclusive (default: now)."),
        ("interval" = Option<ck_model::Interval>, Query, description = "Fix the interval instead."),
        ("points" = Option<usize>, Query, description = "At most this many points (default 500)."),
    ),
    responses(
        (status = 200, description = "The series, oldest first.", body = [PricePoint]),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown instrument.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn prices(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let (exchange, instrument) = (params::exchange(&q)?, params::instrument(&q)?);
    let from = params::time(&q, "from")?
        .ok_or_else(|| ApiError::BadRequest("missing query parameter `from`".into()))?;
    let to = params::time(&q, "to")?.unwrap_or_else(Ts::now);
    if from >= to {
        return Err(ApiError::BadRequest(format!(
            "`from` ({from}) must be before `to` ({to})"
        )));
    }
    let points = match q.get("points") {
        None => 500,
        Some(p) => match p.parse::<usize>() {
            Ok(n) if (1..=100_000).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`points` = `{p}` must be a whole number from 1 to 100000"
                )));
            }
        },
    };
    let interval = if q.contains_key("interval") {
        params::interval(&q, None)?
    } else {
        let span = to.0.saturating_sub(from.0);
        Interval::ALL
            .iter()
            .copied()
            .find(|i| {
                i.fixed_nanos()
                    .is_some_and(|n| span / n <= i64::try_from(points).unwrap_or(i64::MAX))
            })
            .unwrap_or(Interval::D1)
    };
    known(&state, exchange, &instrument).await?;
    let query = RangeQuery {
        exchange,
        instrument,
        from: interval.bucket_start(from),
        to,
        limit: points.max(1).saturating_mul(2),
    };
    let series: Vec<PricePoint> = state
        .store
        .candles(&query, interval, CandleSource::Ours)
        .await?
        .into_iter()
        .map(|c| PricePoint {
            time: c.open_time,
            price: c.close,
        })
        .collect();
    Ok(axum::Json(series).into_response())
}
