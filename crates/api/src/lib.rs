//! candlekeep's HTTP API, served by `candlekeep run` on one port:
//!
//! - REST under `/api/v1`: reference lists ([`status`]), market data
//!   ([`market`]), completeness and connectors;
//! - WebSocket push at `/api/v1/ws` ([`ws`]: subscriptions to trades,
//!   candles and tickers; snapshot first, then live updates; heartbeats;
//!   `lagged` notices for clients that fall behind);
//! - `/health` and `/metrics` (Prometheus text);
//! - the OpenAPI document at `/api/openapi.json`, generated from the
//!   handlers' annotations, and a readable page of it at `/api/docs`;
//! - the web page at `/` ([`ui`]): live chart, comparison, statistics and
//!   status, every asset compiled in.
//!
//! Every error is JSON ([`error::ApiError`]).

#![warn(missing_docs)]

mod alerts;
pub mod book;
pub mod book_series;
pub mod error;
mod latest;
mod limit;
mod market;
mod params;
mod product_stats;
mod server;
mod stats;
mod status;
mod ui;
mod windows;
mod ws;
mod ws_book;
pub use ws::PUSH_LATENCY;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use ck_bus::connectors::ConnectorRegistry;
use ck_store::Store;
use utoipa::OpenApi;

/// What the handlers read. Build it with [`ApiState::new`].
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The live connectors of this process.
    pub connectors: Arc<ConnectorRegistry>,
    /// Live updates for WebSocket clients.
    pub feed: ck_bus::LiveFeed,
    /// How often the WebSocket sends a heartbeat.
    pub heartbeat: std::time::Duration,
    /// The latest candles, as JSON.
    latest: Arc<latest::LatestCandles>,
    /// The bearer token state-changing requests need; `None` refuses them all.
    token: Option<Arc<str>>,
    /// Origins allowed to call the API from a browser (`*` for any).
    cors_origins: Vec<String>,
    /// Updates a WebSocket client may fall behind the newest by before it is told it lagged.
    ws_queue: usize,
    /// How long the WebSocket encoder keeps collecting updates into one
    /// batch after the first (zero: only what is ready).
    ws_linger: std::time::Duration,
    /// Per-client request limits; none when `None`.
    limiter: Option<Arc<limit::RateLimiter>>,
    /// What the WebSocket clients share: topics listened to, encoded updates.
    hub: Arc<ws::Hub>,
    /// Rolling windows of candles for statistics.
    windows: Arc<windows::WindowCache>,
    /// The config's alert rules, the channel names, and the service's reload.
    alerts: ck_alerts::AlertHandle,
    /// What readiness (`/health`) asks of this process.
    capture: Capture,
    /// The stages' problems readiness lists (the process's by default).
    problems: Arc<ck_bus::health::Board>,
    /// The instruments this process's sources capture: WebSocket clients
    /// may subscribe to these and to what the store holds.
    captured: Arc<std::collections::HashSet<(ck_model::Exchange, ck_model::Instrument)>>,
    /// Where order books are found (live and archived).
    books: book::BookSource,
}

/// What this process is expected to do, for readiness (`/health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// It serves stored data only (`serve`, a processor): ready while the
    /// store answers; the page says "not capturing".
    Nothing,
    /// It captures live: ready while every connector is connected and has
    /// had a message within `stale_after`.
    Live {
        /// How long a connector may be silent.
        stale_after: std::time::Duration,
    },
    /// An API node of a cluster: ready while a processor has reported
    /// lately, and every collector connector reported is connected.
    Cluster,
}

impl ApiState {
    /// The state over `store`, showing `connectors`, pushing `feed`.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        connectors: Arc<ConnectorRegistry>,
        feed: ck_bus::LiveFeed,
        heartbeat: std::time::Duration,
    ) -> ApiState {
        ApiState {
            store,
            connectors,
            feed,
            heartbeat,
            latest: Arc::new(latest::LatestCandles::new(
                std::time::Duration::from_millis(250),
            )),
            token: None,
            cors_origins: Vec::new(),
            ws_queue: 4_096,
            ws_linger: std::time::Duration::ZERO,
            limiter: None,
            hub: Arc::default(),
            windows: Arc::new(windows::WindowCache::new()),
            alerts: ck_alerts::AlertHandle::default(),
            capture: Capture::Nothing,
            problems: ck_bus::health::Board::process(),
            captured: Arc::default(),
            books: book::BookSource::default(),
        }
    }

    /// The instruments this process's live sources capture (WebSocket
    /// subscriptions to them are taken before any is stored).
    #[must_use]
    pub fn with_captured(
        mut self,
        captured: impl IntoIterator<Item = (ck_model::Exchange, ck_model::Instrument)>,
    ) -> ApiState {
        self.captured = Arc::new(captured.into_iter().collect());
        self
    }

    /// Serves order books (`/api/v1/book`): `live`, the books this
    /// process captures, and the archive's book files under `archive`.
    #[must_use]
    pub fn with_books(
        mut self,
        live: Option<ck_bus::books::LiveBooks>,
        archive: std::path::PathBuf,
    ) -> ApiState {
        self.books = book::BookSource {
            live,
            root: Some(archive),
        };
        self
    }

    /// Lists `board`'s problems in readiness instead of the process's.
    #[must_use]
    pub fn with_problems(mut self, board: Arc<ck_bus::health::Board>) -> ApiState {
        self.problems = board;
        self
    }

    /// What readiness asks of this process (default: [`Capture::Nothing`]).
    #[must_use]
    pub fn with_capture(mut self, capture: Capture) -> ApiState {
        self.capture = capture;
        self
    }

    /// Limits each client (by address) to `per_second` requests a second,
    /// in bursts of up to `burst`; 0 turns the limit off (the default).
    #[must_use]
    pub fn with_rate_limit(mut self, per_second: u32, burst: u32) -> ApiState {
        self.limiter =
            (per_second > 0).then(|| Arc::new(limit::RateLimiter::new(per_second, burst)));
        self
    }

    /// Serves the alert rules of `handle` (the config's, and the store's),
    /// and wakes its service when the API changes them.
    #[must_use]
    pub fn with_alerts(mut self, handle: ck_alerts::AlertHandle) -> ApiState {
        self.alerts = handle;
        self
    }

    /// How many updates a WebSocket client may fall behind the newest by
    /// before the oldest are dropped and it gets a `lagged` notice with the
    /// number it missed (default 4096).
    #[must_use]
    pub fn with_ws_queue(mut self, updates: usize) -> ApiState {
        self.ws_queue = updates.max(1);
        self
    }

    /// Collects WebSocket updates for up to `linger` after the first before
    /// sending them on as one batch (default zero: only what is ready). A
    /// few milliseconds let many clients of busy streams keep up, at that
    /// much added latency.
    #[must_use]
    pub fn with_ws_linger(mut self, linger: std::time::Duration) -> ApiState {
        self.ws_linger = linger;
        self
    }

    /// Lets browsers on `origins` (or any, with `*`) call the API; none by default.
    #[must_use]
    pub fn with_cors(mut self, origins: Vec<String>) -> ApiState {
        self.cors_origins = origins;
        self
    }

    /// Requires `token` (as `Authorization: Bearer <token>`) on every
    /// request that changes state; an empty token counts as none.
    #[must_use]
    pub fn with_token(mut self, token: Option<String>) -> ApiState {
        self.token = token.filter(|t| !t.is_empty()).map(Arc::from);
        self
    }
}

/// Refuses a state-changing request (anything but GET, HEAD, OPTIONS)
/// without the configured bearer token, with a 401.
async fn require_token(
    axum::extract::State(state): axum::extract::State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&state.token, given) {
        (Some(expected), Some(given))
            if constant_time_eq(expected.as_bytes(), given.as_bytes()) =>
        {
            next.run(request).await
        }
        (None, _) => refuse_unread(
            &request,
            "state-changing requests are disabled: set api.token or CANDLEKEEP_API_TOKEN",
        ),
        _ => refuse_unread(
            &request,
            "this request changes state: send Authorization: Bearer <api.token>",
        ),
    }
}

/// A 401 for `request`, whose body is left unread: the connection then
/// cannot carry another request, and the answer says so
/// (`connection: close`) rather than the client finding out.
fn refuse_unread(request: &axum::extract::Request, message: &str) -> Response {
    let mut response = error::error_response(StatusCode::UNAUTHORIZED, message.into());
    let has_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v != "0")
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    if has_body {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Declares the bearer token scheme the state-changing endpoints use.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    info(
        title = "candlekeep",
        description = "Gap-free crypto market data: trades, quotes and exact candles. Decimals are exact strings; times are RFC 3339 UTC; ranges are half-open [from, to).",
    ),
    paths(
        status::exchanges,
        status::instruments,
        market::candles,
        market::latest_candle,
        market::trades,
        market::tickers,
        market::prices,
        book::book,
        book::stats,
        book_series::book_series,
        product_stats::stats_1min,
        product_stats::stats_1hour,
        product_stats::stats_1day,
        stats::stats,
        stats::cross,
        alerts::list,
        alerts::create,
        alerts::get,
        alerts::replace,
        alerts::delete,
        alerts::firings,
        status::completeness,
        status::connectors,
        status::health,
        status::liveness,
        status::metrics,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        ck_model::CandleRecord,
        ck_model::Gap
    )),
    tags(
        (name = "reference", description = "Exchanges and instruments."),
        (name = "market", description = "Candles, trades, tickers and price series."),
        (name = "stats", description = "Statistics and rankings."),
        (name = "alerts", description = "Alert rules (changes need the bearer token) and their firings."),
        (name = "status", description = "Completeness, connectors, health and metrics."),
    )
)]
pub struct ApiDoc;

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    let cors = cors(&state.cors_origins);
    let app = Router::new()
        .route("/api/v1/exchanges", get(status::exchanges))
        .route("/api/v1/instruments", get(status::instruments))
        .route("/api/v1/candles", get(market::candles))
        .route("/api/v1/candles/latest", get(market::latest_candle))
        .route("/api/v1/trades", get(market::trades))
        .route("/api/v1/tickers", get(market::tickers))
        .route("/api/v1/prices", get(market::prices))
        .route("/api/v1/book", get(book::book))
        .route("/api/v1/book/stats", get(book::stats))
        .route("/api/v1/book/series", get(book_series::book_series))
        .route("/stats1min/{product}", get(product_stats::stats_1min))
        .route("/stats1hour/{product}", get(product_stats::stats_1hour))
        .route("/stats1day/{product}", get(product_stats::stats_1day))
        .route("/api/v1/stats", get(stats::stats))
        .route("/api/v1/stats/cross", get(stats::cross))
        .route("/api/v1/alerts", get(alerts::list).post(alerts::create))
        .route("/api/v1/alerts/firings", get(alerts::firings))
        .route(
            "/api/v1/alerts/{id}",
            get(alerts::get).put(alerts::replace).delete(alerts::delete),
        )
        .route("/api/v1/completeness", get(status::completeness))
        .route("/api/v1/connectors", get(status::connectors))
        .route("/api/v1/ws", get(ws::upgrade))
        .route("/health", get(status::health))
        .route("/health/ready", get(status::health))
        .route("/health/live", get(status::liveness))
        .route("/metrics", get(status::metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/docs", get(docs))
        .route("/", get(ui::index))
        .route("/ui/{*path}", get(ui::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit::limit,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(server::limits))
        .with_state(state);
    match cors {
        Some(layer) => app.layer(layer),
        None => app,
    }
}

/// The CORS layer for `origins`, if any are allowed.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(Any)
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([
                header::LINK,
                header::HeaderName::from_static("x-next-cursor"),
            ]),
    )
}

async fn openapi() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the OpenAPI document");
            error::error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
        }
    }
}

async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error::error_response(
        StatusCode::NOT_FOUND,
        format!("no such endpoint `{}`; see /api/docs", uri.path()),
    )
}

async fn method_not_allowed() -> Response {
    error::error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint".into(),
    )
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let follower = tokio::spawn(latest::follow(state.feed.clone(), state.latest.clone()));
    let served = server::serve(listener, router(state), shutdown).await;
    follower.abort();
    served
}
