//! Process-wide counters, gauges and histograms, rendered in the Prometheus text format.
//!
//! A metric is created on first use by name and lives for the process, so
//! hot paths keep an `Arc` and update it with one atomic add. Names carry
//! their labels: `candlekeep_messages_total{exchange="binance"}`.
//!
//! Every family the process exports is listed in [`FAMILIES`] with its help
//! text, which `/metrics` prints as `# HELP`; every name starts with
//! `candlekeep_`. A test reads the workspace's sources and fails on a metric
//! that is missing from the list.

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

/// Every metric family candlekeep exports, with the help text `/metrics`
/// prints for it.
pub const FAMILIES: &[(&str, &str)] = &[
    (
        "candlekeep_alerts_delivered_total",
        "Alert notifications delivered, all channels.",
    ),
    (
        "candlekeep_alerts_delivery_failures_total",
        "Alert delivery attempts that failed (each retry counts).",
    ),
    ("candlekeep_alerts_fired_total", "Alert rules that fired."),
    (
        "candlekeep_alerts_updates_missed_total",
        "Live-feed updates the alert service fell too far behind to evaluate.",
    ),
    (
        "candlekeep_book_gaps_total",
        "Spans an order book was unknown (from an incident or a lost connection to its next snapshot), recorded as gaps.",
    ),
    (
        "candlekeep_book_incidents_total",
        "Order books found wrong (sequence gap, checksum mismatch, late snapshot), by cause; each is resynchronised.",
    ),
    (
        "candlekeep_book_parts_total",
        "Parts of order-book files finished (a snapshots and a deltas file each).",
    ),
    (
        "candlekeep_book_rows_total",
        "Order-book rows written to the archive's book files, by kind.",
    ),
    (
        "candlekeep_book_snapshot_failures_total",
        "REST order-book snapshots that could not be fetched (after the client's retries).",
    ),
    (
        "candlekeep_book_write_failures_total",
        "Order-book rows or parts that could not be written; the book is unknown until its next snapshot.",
    ),
    (
        "candlekeep_api_requests_limited_total",
        "API requests refused with 429 by the per-client rate limit.",
    ),
    (
        "candlekeep_bad_records_total",
        "Replayed records that could not be read and were skipped (each is an ingest error).",
    ),
    (
        "candlekeep_damaged_candle_days_total",
        "Packed candle days that did not decode; their rows were read instead.",
    ),
    (
        "candlekeep_duplicate_trades_total",
        "Trades seen twice and counted once.",
    ),
    (
        "candlekeep_gaps_detected_total",
        "Gaps found in trade ids or by reconnects.",
    ),
    (
        "candlekeep_gap_repairs_deferred_total",
        "Gaps not queued for repair because the repair queue was full; they stay open in the store and are repaired at the next start.",
    ),
    (
        "candlekeep_gaps_filled_total",
        "Gaps filled from the exchange's REST history.",
    ),
    (
        "candlekeep_gaps_unfillable_total",
        "Gaps the exchange's REST history cannot fill.",
    ),
    (
        "candlekeep_archive_days_failed_total",
        "Settled days the archive could not write (left in the store, retried each pass).",
    ),
    (
        "candlekeep_import_bad_rows_total",
        "Imported rows that could not be read and were skipped (each is an ingest error).",
    ),
    (
        "candlekeep_ingest_errors_total",
        "Exchange messages that could not be parsed, per exchange.",
    ),
    (
        "candlekeep_kafka_bus_publish_retries_total",
        "Messages a collector produced again to the cluster's Kafka topic after Kafka did not take them.",
    ),
    (
        "candlekeep_kafka_bus_published_total",
        "Events a collector produced to the cluster's Kafka topic (delivered).",
    ),
    (
        "candlekeep_kafka_bus_rebalances_total",
        "Times this processor handed its Kafka partitions on in a consumer-group rebalance.",
    ),
    (
        "candlekeep_kafka_bus_received_total",
        "Messages a processor read from the cluster's Kafka topic (redeliveries included).",
    ),
    (
        "candlekeep_kafka_bus_undecodable_total",
        "Cluster messages or notes read from Kafka that could not be decoded (recorded as ingest errors or logged).",
    ),
    (
        "candlekeep_kafka_delivered_total",
        "Messages the Kafka broker acknowledged.",
    ),
    (
        "candlekeep_kafka_producer_restarts_total",
        "Kafka producers the sink replaced after a fatal error (fenced after an outage).",
    ),
    (
        "candlekeep_kafka_undelivered_total",
        "Messages the Kafka sink could not deliver, by reason: broker (not taken in time), buffer_full, refused (by the producer: too large…), lagged (read too late from the live feed).",
    ),
    (
        "candlekeep_late_trades_total",
        "Trades that arrived after their candle closed and revised it.",
    ),
    (
        "candlekeep_messages_ignored_total",
        "Exchange messages read and deliberately ignored (acks, heartbeats), per exchange.",
    ),
    (
        "candlekeep_messages_total",
        "Exchange messages received, per exchange.",
    ),
    (
        "candlekeep_nats_live_lagged_total",
        "Live updates an API node missed because it fell behind core NATS.",
    ),
    (
        "candlekeep_nats_publish_retries_total",
        "JetStream publishes retried by collectors.",
    ),
    (
        "candlekeep_nats_published_total",
        "Events published to JetStream by collectors.",
    ),
    (
        "candlekeep_nats_received_total",
        "Events received from JetStream by processors.",
    ),
    (
        "candlekeep_nats_undecodable_total",
        "NATS messages that did not decode and were skipped.",
    ),
    (
        "candlekeep_out_of_range_trades_total",
        "Trades whose time or values lie outside what a candle can hold.",
    ),
    (
        "candlekeep_queue_depth",
        "Events waiting in each pipeline queue.",
    ),
    (
        "candlekeep_redis_failed_total",
        "Redis pipeline writes that failed.",
    ),
    (
        "candlekeep_redis_lagged_total",
        "Live updates the Redis sink fell too far behind to write.",
    ),
    ("candlekeep_redis_written_total", "Events written to Redis."),
    (
        "candlekeep_rest_failures_total",
        "Exchange REST requests that failed, per exchange.",
    ),
    (
        "candlekeep_rest_requests_total",
        "Exchange REST requests sent, per exchange.",
    ),
    (
        "candlekeep_stats_window_reads_total",
        "Statistics windows read whole from the store.",
    ),
    (
        "candlekeep_stats_window_tail_reads_total",
        "Statistics windows brought up to date by reading only their tail.",
    ),
    (
        "candlekeep_store_commit_failures_total",
        "Store commits that failed and were retried.",
    ),
    (
        "candlekeep_store_rows_written_total",
        "Rows committed to the store.",
    ),
    (
        "candlekeep_too_late_trades_total",
        "Trades older than the lateness window: stored, left for a candle rebuild.",
    ),
    (
        "candlekeep_unsupported_messages_total",
        "Exchange messages of a kind candlekeep does not read, per exchange.",
    ),
    (
        "candlekeep_ws_push_latency_seconds",
        "Time from receiving an update to writing it to a WebSocket client.",
    ),
];

/// The help text of `family`, from [`FAMILIES`].
fn help(family: &str) -> &'static str {
    FAMILIES
        .iter()
        .find(|(name, _)| *name == family)
        .map_or("(not documented)", |(_, help)| help)
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
    let mut head = |name: &str, kind: &str, out: &mut String| {
        let family = name.split('{').next().unwrap_or(name).to_owned();
        if typed.insert(family.clone()) {
            let _ = writeln!(out, "# HELP {family} {}", help(&family));
            let _ = writeln!(out, "# TYPE {family} {kind}");
        }
    };
    for (name, c) in &r.counters {
        head(name, "counter", &mut out);
        let _ = writeln!(out, "{name} {}", c.get());
    }
    for (name, g) in &r.gauges {
        head(name, "gauge", &mut out);
        let _ = writeln!(out, "{name} {}", g.get());
    }
    for (name, h) in &r.histograms {
        head(name, "histogram", &mut out);
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

    /// The metric names in calls to `counter`, `gauge` and `histogram`
    /// (string literals, `format!` templates, and the constants named
    /// there) in every source file of the workspace.
    fn names_in_sources() -> Vec<(String, String)> {
        fn walk(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("read the workspace's sources") {
                let path = entry.expect("directory entry").path();
                if path.is_dir() {
                    walk(&path, files);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        walk(&crates, &mut files);
        assert!(files.len() > 50, "found only {} source files", files.len());
        // This file's own calls are its tests'.
        files.retain(|f| !f.ends_with("bus/src/metrics.rs"));
        let texts: Vec<(String, String)> = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f).expect("read a source file");
                (f.display().to_string(), text)
            })
            .collect();
        // A constant named in a call, such as `ck_api::ws::PUSH_LATENCY`:
        // its definition, wherever it is.
        let constant = |path: &str| {
            let ident = path.rsplit("::").next().unwrap_or(path);
            let def = format!("const {ident}: &str = \"");
            texts
                .iter()
                .find_map(|(_, text)| {
                    let at = text.find(&def)? + def.len();
                    text[at..].split('"').next().map(str::to_owned)
                })
                .unwrap_or_else(|| format!("<constant {path} not found>"))
        };
        let mut names = Vec::new();
        for (file, text) in &texts {
            for call in [
                "metrics::counter(",
                "metrics::gauge(",
                "metrics::histogram(",
            ] {
                for (at, _) in text.match_indices(call) {
                    let rest = text[at + call.len()..]
                        .trim_start()
                        .trim_start_matches('&')
                        .trim_start_matches("format!(")
                        .trim_start();
                    let name = if let Some(lit) = rest.strip_prefix('"') {
                        lit.split(['"', '{']).next().unwrap_or_default().to_owned()
                    } else {
                        let path: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                            .collect();
                        constant(&path)
                    };
                    names.push((file.clone(), name));
                }
            }
        }
        names
    }

    #[test]
    fn every_metric_in_the_sources_is_listed_with_help_and_the_prefix() {
        for (name, help) in FAMILIES {
            assert!(name.starts_with("candlekeep_"), "{name} lacks the prefix");
            assert!(!help.is_empty(), "{name} has no help");
        }
        let names = names_in_sources();
        assert!(names.len() > 30, "found only {} metric uses", names.len());
        for (file, name) in names {
            assert!(
                FAMILIES.iter().any(|(f, _)| *f == name),
                "{file}: metric {name:?} is not in metrics::FAMILIES (with help and the candlekeep_ prefix)"
            );
        }
    }

    #[test]
    fn every_family_has_help_before_its_type() {
        counter("candlekeep_messages_total{exchange=\"ck-test\"}").inc();
        counter("ck_test_undocumented_total").inc();
        let text = render_prometheus();
        assert!(
            text.contains(
                "# HELP candlekeep_messages_total Exchange messages received, per exchange.\n# TYPE candlekeep_messages_total counter\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# HELP ck_test_undocumented_total (not documented)\n# TYPE ck_test_undocumented_total counter"),
            "{text}"
        );
    }
}
