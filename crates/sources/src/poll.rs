//! The REST polling source: best bid/ask fetched at a cadence set per
//! instrument, for venues or pairs without a WebSocket feed. Each response is
//! a raw message like any other (taped, then parsed into a quote), and every
//! request spends the venue's shared REST budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ck_bus::{Origin, RawMessage, Sender};
use ck_model::{Exchange, Instrument, Ts};
use tokio::task::JoinSet;

use crate::rest::{RestClient, RestError};

/// One polled instrument.
#[derive(Debug, Clone)]
pub struct PollTarget {
    /// The instrument.
    pub instrument: Instrument,
    /// How often.
    pub every: Duration,
}

/// What polling did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Responses passed on.
    pub responses: u64,
    /// Instruments the venue refused (unknown or delisted), with the reason;
    /// they are no longer polled.
    pub refused: Vec<String>,
}

/// The ticker request of `instrument` and its weight, where candlekeep
/// can poll `exchange`: each venue's public best bid/ask (or ticker) for one
/// instrument, which its parser reads into a quote.
#[must_use]
pub fn ticker_path(exchange: Exchange, instrument: &Instrument) -> Option<(String, u32)> {
    crate::venues::venue(exchange).map(|v| (v.ticker)(instrument))
}

/// Why a venue refused a ticker request's symbol in the body of an HTTP
/// 200, where it does so: OKX `code` 51001, Bybit `retCode` 10001, Kraken
/// `EQuery:Unknown asset pair`. The instrument is then no longer polled, as
/// after a 4xx. Other errors in a body (such as rate limits) are not
/// refusals: the parser reports them and the next tick tries again.
#[must_use]
pub fn refusal_in_body(exchange: Exchange, body: &str) -> Option<String> {
    if body.len() > 4_096 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    (crate::venues::venue(exchange)?.ticker_refusal)(&v)
}

/// Polls every target until `stop`.
pub async fn run_ticker_poll(
    client: Arc<RestClient>,
    targets: Vec<PollTarget>,
    tx: Sender<RawMessage>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> PollStats {
    let exchange = client.exchange();
    let responses = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for target in targets {
        let (client, tx, responses) = (client.clone(), tx.clone(), responses.clone());
        tasks.spawn(async move {
            let Some((path, weight)) = ticker_path(exchange, &target.instrument) else {
                return Some(format!("{exchange} cannot be polled"));
            };
            let mut tick = tokio::time::interval(target.every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match client.get(&path, weight).await {
                    Ok(r) if let Some(why) = refusal_in_body(exchange, &r.body) => {
                        let why = format!("{} refused: {}: {why}", target.instrument, r.url);
                        tracing::error!(%exchange, %why, "polling stopped for this instrument");
                        return Some(why);
                    }
                    Ok(r) => {
                        responses.fetch_add(1, Ordering::Relaxed);
                        let msg = RawMessage {
                            exchange,
                            ts_received: Ts::now(),
                            origin: Origin::Rest { url: r.url },
                            data: r.body,
                        };
                        if tx.send(msg).await.is_err() {
                            return None;
                        }
                    }
                    Err(RestError::Refused { url, status, body }) => {
                        let why = format!(
                            "{} refused: {url}: HTTP {status}: {body}",
                            target.instrument
                        );
                        tracing::error!(%exchange, %why, "polling stopped for this instrument");
                        return Some(why);
                    }
                    Err(RestError::Closed) => return None,
                    // Failures are recorded by the client; the next tick retries.
                    Err(e) => tracing::warn!(%exchange, error = %e, "ticker poll failed"),
                }
            }
        });
    }
    let mut stats = PollStats::default();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            done = tasks.join_next() => match done {
                Some(Ok(refused)) => stats.refused.extend(refused),
                Some(Err(e)) => tracing::error!(error = %e, "poll task failed"),
                None => break,
            },
        }
    }
    tasks.abort_all();
    stats.responses = responses.load(Ordering::Relaxed);
    stats
}
