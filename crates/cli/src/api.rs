//! The API of a running command: bound, then served until the stop.

use ck_model::{Exchange, Instrument};
use tokio_util::sync::CancellationToken;

pub(crate) async fn start_api(
    listen: std::net::SocketAddr,
    settings: &ck_app::config::Settings,
    store: &std::sync::Arc<dyn ck_store::Store>,
    alerts: &ck_alerts::AlertHandle,
    capture: ck_api::Capture,
) -> anyhow::Result<Api> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!("the API cannot listen on {listen}: {e} (use --listen ADDR)")
    })?;
    let addr = listener.local_addr()?;
    eprintln!("API on http://{addr} (docs at /api/docs)");
    let state = ck_api::ApiState::new(
        store.clone(),
        settings.connectors.clone(),
        settings.feed.clone(),
        std::time::Duration::from_secs(settings.config.api.ws_heartbeat_secs),
    )
    .with_ws_queue(settings.config.api.ws_queue)
    .with_ws_linger(std::time::Duration::from_millis(
        settings.config.api.ws_linger_ms,
    ))
    .with_alerts(alerts.clone())
    .with_rate_limit(
        settings.config.api.rate_limit_per_sec,
        settings.config.api.rate_limit_burst,
    )
    // `CANDLEKEEP_API_TOKEN` arrives here as `api.token` (see the config).
    .with_token(settings.config.api.token.clone())
    .with_cors(settings.config.api.cors_origins.clone())
    .with_capture(capture);
    Ok(Api { listener, state })
}

/// The API, bound and ready to serve.
pub(crate) struct Api {
    listener: tokio::net::TcpListener,
    state: ck_api::ApiState,
}

impl Api {
    /// WebSocket clients may subscribe to `captured` before it is stored.
    pub(crate) fn captured(mut self, captured: Vec<(Exchange, Instrument)>) -> Api {
        self.state = self.state.with_captured(captured);
        self
    }

    /// Serves until `token` is cancelled.
    pub(crate) fn serve(self, token: &CancellationToken) -> tokio::task::JoinHandle<()> {
        let stop = token.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(e) = ck_api::serve(self.listener, self.state, stop).await {
                tracing::error!(error = %e, "API server failed");
            }
        })
    }
}
