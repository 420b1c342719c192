//! Process-wide counters, gauges and histograms, rendered in the Prometheus text format.
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

/// Upper bounds of the [`Histogram`] buckets, in seconds: from half a
/// millisecond to ten seconds.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A distribution of durations in the buckets of [`LATENCY_BUCKETS`]
/// (and one above them).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// How many durations were counted.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound of the bucket holding the `q` quantile (0 to 1), in
    /// seconds; infinity when it lies above the last bucket, `None` when
    /// nothing was counted.
    #[must_use]
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }

    /// Prometheus lines for the histogram `name` (with labels).
    fn render(&self, name: &str, out: &mut String) {
        let (family, labels) = match name.split_once('{') {
            Some((f, rest)) => (f, rest.trim_end_matches('}')),
            None => (name, ""),
        };
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            let _ = writeln!(
                out,
                "{family}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{family}_sum{labels} {sum}");
        let _ = writeln!(out, "{family}_count{labels} {cumulative}");
    }
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<String, Arc<Counter>>,
    gauges: BTreeMap<String, Arc<Gauge>>,
    histograms: BTreeMap<String, Arc<Histogram>>,
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

/// The histogram called `name` (with labels), created empty on first use.
#[must_use]
pub fn histogram(name: &str) -> Arc<Histogram> {
    let mut r = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.histograms.entry(name.to_owned()).or_default().clone()
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
    for (name, h) in &r.histograms {
        if typed.insert(family(name)) {
            let _ = writeln!(out, "# TYPE {} histogram", family(name));
        }
        h.render(name, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_into_cumulative_buckets_and_bound_quantiles() {
        let h = histogram("ck_test_latency_seconds{stage=\"push\"}");
        for ms in [0, 1, 3, 3, 40] {
            h.observe(std::time::Duration::from_millis(ms));
        }
        h.observe(std::time::Duration::from_secs(60));
        assert_eq!(h.count(), 6);
        // Ranks: 0 and 1 ms fall in 0.5 and 1 ms, 3 ms twice in 5 ms.
        assert_eq!(h.quantile_bound(0.5), Some(0.005));
        assert_eq!(h.quantile_bound(0.8), Some(0.05));
        assert_eq!(h.quantile_bound(1.0), Some(f64::INFINITY));
        let text = render_prometheus();
        assert!(
            text.contains("# TYPE ck_test_latency_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("ck_test_latency_seconds_bucket{stage=\"push\",le=\"0.005\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("ck_test_latency_seconds_bucket{stage=\"push\",le=\"+Inf\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("ck_test_latency_seconds_count{stage=\"push\"} 6"),
            "{text}"
        );
        assert!(
            histogram("ck_test_empty_seconds")
                .quantile_bound(0.99)
                .is_none()
        );
    }

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
