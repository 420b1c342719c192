//! Per-client request rate limits: a token bucket per client address
//! (`rate` requests a second, bursts up to `burst`). A client over its limit
//! gets `429 Too Many Requests` with `Retry-After`, counted in
//! `candlekeep_api_requests_limited_total`; other clients are not affected.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::{ApiState, error};

/// Buckets are kept in this many maps, by address, so that concurrent
/// requests rarely wait on one another's lock.
const SHARDS: usize = 16;

/// The limits, and a bucket per client.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
    limited: Arc<ck_bus::metrics::Counter>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub(crate) fn new(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            limited: ck_bus::metrics::counter("candlekeep_api_requests_limited_total"),
        }
    }

    /// Takes a token for `client` at `now`, or says how long until one is there.
    fn take(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let shard = match client {
            IpAddr::V4(a) => a.to_bits() as usize,
            IpAddr::V6(a) => a.to_bits() as usize,
        } % SHARDS;
        let Ok(mut buckets) = self.shards[shard].lock() else {
            return Ok(()); // a poisoned lock never blocks the API
        };
        if buckets.len() > 10_000 {
            // Forget only buckets that have filled up again: a new one
            // starts full, so forgetting them changes nothing.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

/// The middleware: every request takes a token from its client's bucket.
pub(crate) async fn limit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(limiter) = &state.limiter else {
        return next.run(request).await;
    };
    // Without a peer address (an in-process call), all such calls share one bucket.
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    match limiter.take(client, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            limiter.limited.inc();
            let mut response = error::error_response(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many requests from {client}: the limit is {} a second (bursts of {}); retry after {} ms",
                    limiter.rate,
                    limiter.burst,
                    wait.as_millis().max(1)
                ),
            );
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let l = RateLimiter::new(10, 3);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(a, t0).is_ok());
        }
        let wait = l.take(a, t0).expect_err("over the burst");
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(l.take(b, t0).is_ok(), "another client has its own bucket");
        assert!(
            l.take(a, t0 + Duration::from_millis(100)).is_ok(),
            "a token a tenth of a second"
        );
        assert!(l.take(a, t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn forgetting_idle_clients_never_refills_an_empty_bucket() {
        let l = RateLimiter::new(1, 2);
        let t0 = Instant::now();
        let busy: IpAddr = std::net::Ipv4Addr::from_bits(16).into();
        assert!(l.take(busy, t0).is_ok() && l.take(busy, t0).is_ok());
        // Enough other clients in the same shard to make it clean up.
        for i in 2..10_005u32 {
            let other: IpAddr = std::net::Ipv4Addr::from_bits(i * 16).into();
            let _ = l.take(other, t0 + Duration::from_secs(10));
        }
        let at = t0 + Duration::from_millis(10_500);
        assert!(l.take(busy, at).is_ok(), "refilled by its rate");
        assert!(
            l.take(busy, at).is_ok(),
            "a second token after 10 s (burst 2)"
        );
        assert!(
            l.take(busy, at).is_err(),
            "but no more: its bucket was not reset"
        );
    }
}
