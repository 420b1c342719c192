//! Process-wide counters and gauges, rendered in the Prometheus text format.
//!
//! A metric is created on first use by name and lives for the process, so
//! hot paths keep an `Arc` and update it with one atomic add. Names carry
//! their labels: `candlekeep_trades_total{exchange="binance"}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }
    /// The current value.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Sets the value.
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }
    /// The current value.
    #[must_use]
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<String, Arc<Counter>>,
    gauges: BTreeMap<String, Arc<Gauge>>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// The counter called `name` (with labels), created at zero on first use.
#[must_use]
pub fn counter(name: &str) -> Arc<Counter> {
    let mut r = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.counters.entry(name.to_owned()).or_default().clone()
}

/// The gauge called `name` (with labels), created at zero on first use.
#[must_use]
pub fn gauge(name: &str) -> Arc<Gauge> {
    let mut r = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.gauges.entry(name.to_owned()).or_default().clone()
}

/// Every metric in the Prometheus text exposition format.
#[must_use]
pub fn render_prometheus() -> String {
    let r = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = String::new();
    let mut typed = std::collections::BTreeSet::new();
    let family = |name: &str| name.split('{').next().unwrap_or(name).to_owned();
    for (name, c) in &r.counters {
        if typed.insert(family(name)) {
            let _ = writeln!(out, "# TYPE {} counter", family(name));
        }
        let _ = writeln!(out, "{name} {}", c.get());
    }
    for (name, g) in &r.gauges {
        if typed.insert(family(name)) {
            let _ = writeln!(out, "# TYPE {} gauge", family(name));
        }
        let _ = writeln!(out, "{name} {}", g.get());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_one_type_line_per_family() {
        counter("ck_test_events_total{exchange=\"binance\"}").inc_by(3);
        counter("ck_test_events_total{exchange=\"okx\"}").inc();
        gauge("ck_test_depth{queue=\"ingest\"}").set(7);
        let text = render_prometheus();
        assert_eq!(
            text.matches("# TYPE ck_test_events_total counter").count(),
            1,
            "{text}"
        );
        assert!(text.contains("ck_test_events_total{exchange=\"binance\"} 3"));
        assert!(text.contains("ck_test_events_total{exchange=\"okx\"} 1"));
        assert!(text.contains("# TYPE ck_test_depth gauge\nck_test_depth{queue=\"ingest\"} 7"));
    }
}
