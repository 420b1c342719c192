//! Reference lists and the state of the system: exchanges, instruments,
//! completeness, connectors, health and metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ck_bus::connectors::{ConnectionState, ConnectorSnapshot};
use ck_model::{Exchange, Gap, Instrument, Interval, Ts};
use ck_store::{CandleSource, RangeQuery};
use serde::Serialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::market::Params;
use crate::params;

/// An exchange with data or a connector.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ExchangeStatus {
    /// The exchange.
    exchange: Exchange,
    /// `connected`, `reconnecting`, `stopped`, `connecting`, or `idle` (no connector).
    status: String,
    /// Instruments with stored data.
    instruments: usize,
    /// The newest stored trade's time.
    last_data_time: Option<Ts>,
}

/// Exchanges, with their connector state and last data time.
#[utoipa::path(get, path = "/api/v1/exchanges", tag = "reference",
    responses((status = 200, description = "Every exchange candlekeep knows.", body = [ExchangeStatus])))]
pub(crate) async fn exchanges(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let stored = state.store.instruments().await?;
    let connectors = state.connectors.snapshots();
    let out: Vec<ExchangeStatus> = Exchange::ALL
        .iter()
        .map(|&exchange| {
            let mine = stored.iter().filter(|i| i.info.exchange == exchange);
            let status = connectors
                .iter()
                .find(|c| c.exchange == exchange)
                .map_or("idle".to_owned(), |c| state_name(c.state).to_owned());
            ExchangeStatus {
                exchange,
                status,
                instruments: mine.clone().count(),
                last_data_time: mine.filter_map(|i| i.last_trade_time).max(),
            }
        })
        .collect();
    Ok(axum::Json(out).into_response())
}

fn state_name(s: ConnectionState) -> &'static str {
    match s {
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::Reconnecting => "reconnecting",
        ConnectionState::Stopped => "stopped",
    }
}

/// A stored instrument.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct InstrumentStatus {
    /// The exchange.
    exchange: Exchange,
    /// BASE-QUOTE.
    instrument: Instrument,
    /// The exchange's own symbol.
    native_symbol: String,
    /// The venue's listing status, when known.
    status: Option<String>,
    /// The newest stored trade's time.
    last_trade_time: Option<Ts>,
}

/// Instruments the store knows (listed by a venue, or with stored data),
/// with their status and last trade time.
#[utoipa::path(get, path = "/api/v1/instruments", tag = "reference",
    params(
        ("exchange" = Option<ck_model::Exchange>, Query, description = "Only this exchange."),
        ("with_data" = Option<bool>, Query, description = "Only instruments with stored trades."),
    ),
    responses(
        (status = 200, description = "A JSON array.", body = [InstrumentStatus]),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn instruments(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let only = params::optional_exchange(&q)?;
    let with_data = params::flag(&q, "with_data")?;
    let out: Vec<InstrumentStatus> = state
        .store
        .instruments()
        .await?
        .into_iter()
        .filter(|i| only.is_none_or(|e| e == i.info.exchange))
        .filter(|i| !with_data || i.last_trade_time.is_some())
        .map(|i| InstrumentStatus {
            exchange: i.info.exchange,
            native_symbol: if i.info.native_symbol.is_empty() {
                i.info.exchange.native_symbol(&i.info.instrument)
            } else {
                i.info.native_symbol
            },
            instrument: i.info.instrument,
            status: i.info.status,
            last_trade_time: i.last_trade_time,
        })
        .collect();
    Ok(axum::Json(out).into_response())
}

/// How complete the data of one instrument and interval is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Completeness {
    /// The exchange.
    exchange: Exchange,
    /// The instrument.
    instrument: Instrument,
    /// The interval.
    interval: Interval,
    /// The range looked at: from the first candle stored in it (or `from`
    /// when none is)…
    from: Option<Ts>,
    /// …to the last (or `to`).
    to: Option<Ts>,
    /// Candles present.
    candles: usize,
    /// Candles the range should hold (fixed-length intervals).
    expected: Option<u64>,
    /// `candles / expected` in percent.
    coverage_pct: Option<f64>,
    /// Gaps recorded for the instrument in the range, with their states.
    gaps: Vec<Gap>,
    /// Gaps still open.
    open_gaps: usize,
    /// The newest stored trade's time.
    last_message_time: Option<Ts>,
}

/// Coverage, gaps and last data time of one instrument and interval.
#[utoipa::path(get, path = "/api/v1/completeness", tag = "status",
    params(
        crate::params::SeriesParams,
        ("interval" = Option<ck_model::Interval>, Query, description = "Default 1m."),
        ("from" = Option<String>, Query, description = "Start, inclusive (default: the first candle)."),
        ("to" = Option<String>, Query, description = "End, exclusive (default: after the last candle)."),
    ),
    responses(
        (status = 200, description = "The figures.", body = Completeness),
        (status = 400, description = "A bad parameter.", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn completeness(
    State(state): State<ApiState>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let (exchange, instrument) = (params::exchange(&q)?, params::instrument(&q)?);
    let interval = params::interval(&q, Some(Interval::M1))?;
    let (from, to) = params::range(&q)?;
    let query = RangeQuery {
        exchange,
        instrument: instrument.clone(),
        from,
        to,
        limit: params::MAX_LIMIT,
    };
    let candles = state
        .store
        .candles(&query, interval, CandleSource::Ours)
        .await?;
    // Coverage counts from the first candle stored in the range: time
    // before capture began is not data missing. (The page asks for 24
    // hours; a series six minutes old is then complete, as the API says
    // without `from`.)
    let first = match (candles.first(), from.0 != i64::MIN) {
        (Some(c), _) => Some(c.open_time.max(from)),
        (None, true) => Some(from),
        (None, false) => None,
    };
    let last = (to.0 != i64::MAX)
        .then_some(to)
        .or_else(|| candles.last().map(|c| interval.next_start(c.open_time)));
    let expected = match (first, last, interval.fixed_nanos()) {
        (Some(a), Some(b), Some(n)) if b > a => Some(((b.0 - a.0 + n - 1) / n) as u64),
        _ => None,
    };
    let gaps: Vec<Gap> = state
        .store
        .gaps(Some(exchange), Some(&instrument), 10_000)
        .await?
        .into_iter()
        .filter(|g| g.to_ts >= from && g.from_ts < to)
        .collect();
    let last_message_time = state
        .store
        .last_trade(exchange, &instrument)
        .await?
        .map(|t| t.ts_exchange);
    let body = Completeness {
        exchange,
        interval,
        from: first,
        to: last,
        candles: candles.len(),
        coverage_pct: expected
            .filter(|e| *e > 0)
            .map(|e| (candles.len() as f64 / e as f64 * 100.0).min(100.0)),
        expected,
        open_gaps: gaps
            .iter()
            .filter(|g| g.state == ck_model::GapState::Open)
            .count(),
        gaps,
        last_message_time,
        instrument,
    };
    Ok(axum::Json(body).into_response())
}

/// One connector's state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConnectorView {
    /// The exchange.
    exchange: Exchange,
    /// `connecting`, `connected`, `reconnecting` or `stopped`.
    state: String,
    /// Messages received.
    messages: u64,
    /// Reconnects so far.
    reconnects: u64,
    /// Stale instruments resubscribed so far.
    resubscribes: u64,
    /// When the last message arrived.
    last_message: Option<Ts>,
    /// The last connection error.
    last_error: Option<String>,
    /// Something to know about its data (the demo names the date of the
    /// recording it replays).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl From<ConnectorSnapshot> for ConnectorView {
    fn from(s: ConnectorSnapshot) -> Self {
        ConnectorView {
            exchange: s.exchange,
            state: state_name(s.state).to_owned(),
            messages: s.messages,
            reconnects: s.reconnects,
            resubscribes: s.resubscribes,
            last_message: s.last_message,
            last_error: s.last_error,
            note: s.note,
        }
    }
}

/// The live connectors of this process.
#[utoipa::path(get, path = "/api/v1/connectors", tag = "status",
    responses((status = 200, description = "One item per connector.", body = [ConnectorView])))]
pub(crate) async fn connectors(State(state): State<ApiState>) -> Response {
    let out: Vec<ConnectorView> = state
        .connectors
        .snapshots()
        .into_iter()
        .map(ConnectorView::from)
        .collect();
    axum::Json(out).into_response()
}

/// Readiness: whether this process does its work now, and if not, why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `degraded` (with `reasons`).
    status: String,
    /// Why the process is not ready; empty when `ok`.
    reasons: Vec<String>,
    /// `live` (this process captures), `cluster` (an API node over a
    /// cluster's processors and collectors) or `not capturing` (serving
    /// stored data).
    capturing: String,
    /// The store answered.
    store: bool,
    /// The store's backend: `sqlite`, `postgresql`, or
    /// `postgresql+timescaledb VERSION`.
    store_backend: String,
    /// Connectors (this process's, or the collectors' on an API node).
    connectors: usize,
    /// Connected connectors.
    connected: usize,
    /// Processors heard from lately (API nodes).
    processors: usize,
}

/// Liveness: the process serves.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Liveness {
    /// Always `live`.
    status: String,
}

/// Liveness: 200 while the process serves requests (for container health
/// checks and restarts); readiness is `/health`.
#[utoipa::path(get, path = "/health/live", tag = "status",
    responses((status = 200, description = "The process serves.", body = Liveness)))]
pub(crate) async fn liveness() -> Response {
    axum::Json(Liveness {
        status: "live".to_owned(),
    })
    .into_response()
}

/// Readiness (also `/health/ready`): 200 with `ok` only when the store
/// answers, every live connector is connected and has had data within its
/// `stale_after`, and no stage is stuck (the store writer's commits
/// failing, say); otherwise 503 with `degraded` and the reasons. An API
/// node is degraded while no processor reports.
#[utoipa::path(get, path = "/health", tag = "status",
    responses(
        (status = 200, description = "Ready.", body = Health),
        (status = 503, description = "Not ready: `reasons` says why.", body = Health),
    ))]
pub(crate) async fn health(State(state): State<ApiState>) -> Response {
    let mut reasons = Vec::new();
    let store = match state.store.ping().await {
        Ok(()) => true,
        Err(e) => {
            reasons.push(format!(
                "the store does not answer: {}",
                ck_bus::error_chain(&e)
            ));
            false
        }
    };
    let snapshots = state.connectors.snapshots();
    let now = Ts::now();
    let (capturing, processors) = match state.capture {
        crate::Capture::Nothing => ("not capturing", 0),
        crate::Capture::Live { stale_after } => {
            if snapshots.is_empty() {
                reasons.push("no live connector runs yet".to_owned());
            }
            for s in &snapshots {
                connector_reasons(s, stale_after, now, &mut reasons);
            }
            ("live", 0)
        }
        crate::Capture::Cluster => {
            let processors = state.connectors.processors();
            if processors.is_empty() {
                reasons.push(format!(
                    "no processor has reported in the last {} s: candles are not being built",
                    ck_bus::connectors::REMOTE_FORGOTTEN_AFTER.as_secs()
                ));
            }
            if snapshots.is_empty() {
                reasons.push("no collector has reported a connector".to_owned());
            }
            for s in &snapshots {
                connector_reasons(s, std::time::Duration::MAX, now, &mut reasons);
            }
            ("cluster", processors.len())
        }
    };
    reasons.extend(state.problems.problems());
    let body = Health {
        status: if reasons.is_empty() { "ok" } else { "degraded" }.to_owned(),
        capturing: capturing.to_owned(),
        store,
        store_backend: state.store.backend(),
        connectors: snapshots.len(),
        connected: snapshots
            .iter()
            .filter(|s| s.state == ConnectionState::Connected)
            .count(),
        processors,
        reasons,
    };
    let code = if body.reasons.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// Why one connector keeps its process from being ready, if it does.
fn connector_reasons(
    s: &ConnectorSnapshot,
    stale_after: std::time::Duration,
    now: Ts,
    reasons: &mut Vec<String>,
) {
    let exchange = s.exchange;
    if s.state != ConnectionState::Connected {
        let last = s
            .last_error
            .as_deref()
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        reasons.push(format!("{exchange} is {}{last}", state_name(s.state)));
        return;
    }
    let silent = match s.last_message {
        Some(t) => std::time::Duration::from_nanos(u64::try_from(now.0 - t.0).unwrap_or(0)),
        None => std::time::Duration::MAX,
    };
    if silent > stale_after {
        reasons.push(match s.last_message {
            Some(t) => format!("{exchange} is connected but silent since {t}"),
            None => format!("{exchange} is connected but has sent nothing yet"),
        });
    }
}

/// Prometheus metrics: ingest counts, gaps, reconnects, errors, queue depths.
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, description = "Prometheus text format.", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ck_bus::metrics::render_prometheus(),
    )
        .into_response()
}
