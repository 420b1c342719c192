//! What every live connector shares: reconnect backoff with jitter, the
//! connector status the rest of the program reads, and the one WebSocket
//! connector ([`connector::run_ws`]) driven by a venue's [`connector::WsProtocol`].

pub mod books;
pub mod connector;

use std::time::Duration;

use ck_model::Exchange;

/// Reconnect delays: exponential, capped, with jitter; reset after a good
/// connection.
#[derive(Debug, Clone)]
pub struct BackoffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Growth per failed attempt.
    pub multiplier: f64,
    /// Each delay is scaled by a random factor in `[1 - jitter, 1]`.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.3,
        }
    }
}

/// The state of one backoff sequence.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    current: Duration,
    rng: u64,
}

impl Backoff {
    /// A fresh sequence. `seed` varies the jitter between connectors.
    #[must_use]
    pub fn new(policy: BackoffPolicy, seed: u64) -> Backoff {
        Backoff {
            current: policy.initial,
            policy,
            rng: seed | 1,
        }
    }

    /// The next delay to wait before reconnecting.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift: jitter needs spread, not cryptographic randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 - self.policy.jitter.clamp(0.0, 1.0) * unit;
        let delay = self.current.mul_f64(factor);
        self.current = self
            .current
            .mul_f64(self.policy.multiplier.max(1.0))
            .min(self.policy.max);
        delay
    }

    /// Back to the initial delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.current = self.policy.initial;
    }
}

// The connector status types live in `ck-bus`, where the API reads them.
pub use ck_bus::connectors::{
    ConnectionState, ConnectorRegistry, ConnectorSnapshot, ConnectorStatus, REMOTE_FORGOTTEN_AFTER,
};

/// The WebSocket protocol and default URL of `exchange`. `kraken_v1` picks
/// Kraken's v1 API instead of v2.
#[must_use]
pub fn protocol_for(
    exchange: Exchange,
    kraken_v1: bool,
) -> Option<(std::sync::Arc<dyn connector::WsProtocol>, &'static str)> {
    crate::venues::venue(exchange).map(|v| (v.live)(kraken_v1.then_some("v1")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_jitters_and_resets() {
        let policy = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(800),
            multiplier: 2.0,
            jitter: 0.5,
        };
        let mut b = Backoff::new(policy, 42);
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        let ceilings = [100, 200, 400, 800, 800, 800];
        for (d, c) in delays.iter().zip(ceilings) {
            assert!(
                *d <= Duration::from_millis(c) && *d >= Duration::from_millis(c / 2),
                "{d:?} vs {c}"
            );
        }
        assert!(
            delays.windows(2).any(|w| w[0] != w[1]),
            "jitter varies the delays"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
