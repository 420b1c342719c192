//! REST access to the exchanges: one [`RestClient`] per exchange, with one
//! [`RateBudget`] that everything in the process shares (backfill, gap repair,
//! instrument lists), retries with backoff, and a record of every failure.
//!
//! The budget is a token bucket over request weight (Binance publishes weights
//! per endpoint; other venues count requests, weight 1). A 429 or 418 pauses
//! the whole budget for the `Retry-After` the venue asked for (or the backoff
//! delay, if longer), so no other task hammers a venue that already said stop.

use std::sync::Mutex;
use std::time::Duration;

use ck_bus::metrics::{self, Counter};
use ck_bus::{Event, IngestError, Sender, WeakSender};
use ck_model::Exchange;
use tokio::time::Instant;

use crate::live::{Backoff, BackoffPolicy};

/// Weight allowed per window, refilled continuously.
#[derive(Debug)]
pub struct RateBudget {
    exchange: Exchange,
    capacity: f64,
    per_sec: f64,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    available: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
}

impl RateBudget {
    /// `capacity` weight per `window`, starting full.
    #[must_use]
    pub fn new(exchange: Exchange, capacity: u32, window: Duration) -> RateBudget {
        let capacity = f64::from(capacity.max(1));
        RateBudget {
            exchange,
            capacity,
            per_sec: capacity / window.as_secs_f64().max(0.001),
            state: Mutex::new(BudgetState {
                available: capacity,
                refilled: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// The published limit of the venue's public REST API (its
    /// [`crate::venues::Venue::rest_limit`]), or a conservative 5 requests
    /// per second.
    #[must_use]
    pub fn for_exchange(exchange: Exchange) -> RateBudget {
        let (capacity, per) =
            crate::venues::venue(exchange).map_or((5, Duration::from_secs(1)), |v| v.rest_limit);
        RateBudget::new(exchange, capacity, per)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `weight` is available (and no pause is in force), then takes it.
    pub async fn acquire(&self, weight: u32) {
        let weight = f64::from(weight).min(self.capacity);
        loop {
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
                s.available = (s.available + elapsed * self.per_sec).min(self.capacity);
                s.refilled = now;
                match s.paused_until {
                    Some(until) if until > now => until - now,
                    _ if s.available >= weight => {
                        s.available -= weight;
                        return;
                    }
                    _ => Duration::from_secs_f64((weight - s.available) / self.per_sec),
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// Stops every request for `pause` (after a 429 or 418).
    pub fn pause_for(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut s = self.lock();
        if s.paused_until.is_none_or(|u| u < until) {
            s.paused_until = Some(until);
        }
        tracing::warn!(exchange = %self.exchange, ?pause, "REST rate limit: pausing requests");
    }
}

/// Why a REST request failed for good.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The venue refused the request itself (a 4xx other than 429/418): retrying cannot help.
    #[error("GET {url}: HTTP {status}: {body}")]
    Refused {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body (the venue's error message).
        body: String,
    },
    /// Every attempt failed.
    #[error("GET {url}: gave up after {attempts} attempts; last error: {last}")]
    GaveUp {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The pipeline is stopping.
    #[error("stopping")]
    Closed,
}

/// Settings of one exchange's REST client.
#[derive(Debug, Clone)]
pub struct RestSettings {
    /// Base URL, such as `https://api.binance.com`.
    pub base_url: String,
    /// Delays between attempts.
    pub backoff: BackoffPolicy,
    /// Attempts per request before giving up (429s count too).
    pub max_attempts: u32,
    /// Per-request timeout (a slow response counts as a failure).
    pub timeout: Duration,
}

impl RestSettings {
    /// Defaults around `base_url`.
    #[must_use]
    pub fn new(base_url: impl Into<String>) -> RestSettings {
        RestSettings {
            base_url: base_url.into(),
            backoff: BackoffPolicy {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(30),
                ..BackoffPolicy::default()
            },
            max_attempts: 10,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A successful response.
#[derive(Debug, Clone)]
pub struct RestResponse {
    /// The full URL fetched.
    pub url: String,
    /// The body, as text.
    pub body: String,
}

/// GETs one exchange's public REST API within its [`RateBudget`].
#[derive(Debug)]
pub struct RestClient {
    exchange: Exchange,
    http: reqwest::Client,
    settings: RestSettings,
    budget: RateBudget,
    failures: Mutex<Option<WeakSender<Event>>>,
    requests: std::sync::Arc<Counter>,
    failed: std::sync::Arc<Counter>,
}

impl RestClient {
    /// A client for `exchange` with the venue's published budget.
    ///
    /// # Errors
    /// When the TLS stack cannot be set up.
    pub fn new(exchange: Exchange, settings: RestSettings) -> Result<RestClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("candlekeep/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(RestClient {
            exchange,
            http,
            settings,
            budget: RateBudget::for_exchange(exchange),
            failures: Mutex::new(None),
            requests: metrics::counter(&format!(
                "candlekeep_rest_requests_total{{exchange=\"{exchange}\"}}"
            )),
            failed: metrics::counter(&format!(
                "candlekeep_rest_failures_total{{exchange=\"{exchange}\"}}"
            )),
        })
    }

    /// Replaces the rate budget (tests, or a venue-specific limit).
    #[must_use]
    pub fn with_budget(mut self, budget: RateBudget) -> RestClient {
        self.budget = budget;
        self
    }

    /// Records every failed attempt as an [`IngestError`] event on `sink`
    /// (stored, so `candlekeep errors` lists them), for as long as the
    /// channel is open: the client does not keep a pipeline alive.
    pub fn record_failures_to(&self, sink: &Sender<Event>) {
        *self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sink.downgrade());
    }

    /// The venue.
    #[must_use]
    pub fn exchange(&self) -> Exchange {
        self.exchange
    }

    /// The base URL.
    #[must_use]
    pub fn base_url(&self) -> &str {
        self.settings.base_url.trim_end_matches('/')
    }

    /// The shared budget.
    #[must_use]
    pub fn budget(&self) -> &RateBudget {
        &self.budget
    }

    /// GETs `base_url + path_and_query`, spending `weight`, retrying failures
    /// with backoff and honouring `Retry-After` on 429 and 418.
    pub async fn get(&self, path_and_query: &str, weight: u32) -> Result<RestResponse, RestError> {
        self.get_with(path_and_query, weight, &[]).await
    }

    /// [`RestClient::get`] with request headers (a venue's API key for the
    /// few public endpoints that want one). Their values are never logged.
    pub async fn get_with(
        &self,
        path_and_query: &str,
        weight: u32,
        headers: &[(&'static str, &str)],
    ) -> Result<RestResponse, RestError> {
        let url = format!("{}{path_and_query}", self.base_url());
        let mut backoff = Backoff::new(self.settings.backoff.clone(), url.len() as u64 + 1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.budget.acquire(weight).await;
            self.requests.inc();
            let request = headers
                .iter()
                .fold(self.http.get(&url), |r, (name, value)| {
                    r.header(*name, *value)
                });
            let (failure, retry_after) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match response.text().await {
                        Ok(body) if status.is_success() => {
                            return Ok(RestResponse { url, body });
                        }
                        Ok(body) => {
                            let code = status.as_u16();
                            let excerpt: String = body.chars().take(300).collect();
                            let limited = code == 429 || code == 418;
                            if status.is_client_error() && !limited {
                                self.record(&url, &format!("HTTP {code}: {excerpt}"), &body)
                                    .await?;
                                return Err(RestError::Refused {
                                    url,
                                    status: code,
                                    body: excerpt,
                                });
                            }
                            let retry_after = if limited {
                                Some(retry_after.unwrap_or(Duration::from_secs(1)))
                            } else {
                                retry_after
                            };
                            (format!("HTTP {code}: {excerpt}"), retry_after)
                        }
                        Err(e) => (
                            format!(
                                "HTTP {status}: reading the body: {}",
                                ck_bus::error_chain(&e)
                            ),
                            None,
                        ),
                    }
                }
                Err(e) => (format!("request failed: {}", ck_bus::error_chain(&e)), None),
            };
            self.record(&url, &failure, "").await?;
            if attempt >= self.settings.max_attempts {
                return Err(RestError::GaveUp {
                    url,
                    attempts: attempt,
                    last: failure,
                });
            }
            let delay = backoff.next_delay().max(retry_after.unwrap_or_default());
            if retry_after.is_some() {
                self.budget.pause_for(delay);
            }
            tracing::warn!(exchange = %self.exchange, %url, attempt, %failure, ?delay, "REST request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn record(&self, url: &str, failure: &str, body: &str) -> Result<(), RestError> {
        self.failed.inc();
        let sink = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .and_then(WeakSender::upgrade);
        if let Some(sink) = sink {
            let error = IngestError::new(Some(self.exchange), format!("GET {url}"), failure, body);
            sink.send(Event::IngestError(error))
                .await
                .map_err(|_| RestError::Closed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_spends_refills_and_pauses() {
        let budget = RateBudget::new(Exchange::Binance, 100, Duration::from_secs(10));
        let start = Instant::now();
        budget.acquire(60).await;
        budget.acquire(40).await;
        assert_eq!(Instant::now(), start, "a full bucket serves at once");
        budget.acquire(50).await;
        let waited = Instant::now() - start;
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_millis(5_100),
            "50 weight at 10/s: {waited:?}"
        );
        budget.pause_for(Duration::from_secs(30));
        let before = Instant::now();
        budget.acquire(1).await;
        assert!(
            Instant::now() - before >= Duration::from_secs(30),
            "the pause holds"
        );
    }
}
