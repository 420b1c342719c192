//! Retention: the history manager. Policies per kind of data (`[retention]`
//! in the config: tapes, trades, quotes, and candles per interval) become a
//! [`PrunePlan`] of cutoffs, which the store carries out in small batches.
//! It also has the store pack settled days of candles for fast long reads
//! ([`pack`], every `store.pack_every_secs` in `run` and after finite runs).
//!
//! Safety: trades are kept until every candle built from them is closed and
//! past the lateness window, whatever the policy says: the trade cutoff is
//! never later than the start of the current bucket of the longest candle
//! interval, taken at `now - lateness - grace`. Candles are stored apart
//! from trades, so pruning trades never changes a candle.

use std::path::Path;

use ck_model::{Interval, Ts};
use ck_store::postgres::TimescalePolicies;
use ck_store::{PackReport, PrunePlan, PruneReport, Store};

use crate::config::{ConfigError, Settings};

/// How long to keep one kind of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Never prune.
    Forever,
    /// Prune what is older than this many nanoseconds.
    For(i64),
}

impl Keep {
    /// `"forever"`, or a whole number and a unit: `90m`, `36h`, `30d`, `52w`.
    ///
    /// # Errors
    /// Anything else, with a message naming `what`.
    pub fn parse(what: &str, text: &str) -> Result<Keep, ConfigError> {
        if text == "forever" {
            return Ok(Keep::Forever);
        }
        let bad = || {
            ConfigError::Invalid(format!(
                "retention.{what} = `{text}`: write \"forever\" or a whole number and a unit s, m, h, d or w (such as \"30d\")"
            ))
        };
        ck_model::parse_span(text).map(Keep::For).ok_or_else(bad)
    }

    fn cutoff(self, now: Ts) -> Option<Ts> {
        match self {
            Keep::Forever => None,
            Keep::For(n) => Some(Ts(now.0.saturating_sub(n))),
        }
    }
}

/// The policies, read from `[retention]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Raw tapes (whole days).
    pub tapes: Keep,
    /// Trades.
    pub trades: Keep,
    /// Quotes.
    pub quotes: Keep,
    /// Candles, per interval (intervals not named are kept forever).
    pub candles: Vec<(Interval, Keep)>,
    /// Rows per delete transaction.
    pub batch_rows: usize,
}

impl Policy {
    /// Whether anything is ever pruned.
    #[must_use]
    pub fn prunes_anything(&self) -> bool {
        [self.tapes, self.trades, self.quotes]
            .iter()
            .chain(self.candles.iter().map(|(_, k)| k))
            .any(|k| *k != Keep::Forever)
    }

    /// Only the tapes' policy: what a collector prunes (the store it reads
    /// is the processors' to prune).
    #[must_use]
    pub fn tapes_only(&self) -> Policy {
        Policy {
            trades: Keep::Forever,
            quotes: Keep::Forever,
            candles: Vec::new(),
            ..self.clone()
        }
    }
}

/// The cutoffs for `now`, with the trade cutoff held back so that no open
/// or still-revisable candle loses its trades.
#[must_use]
pub fn plan(settings: &Settings, policy: &Policy, now: Ts, dry_run: bool) -> PrunePlan {
    PrunePlan {
        trades_before: policy
            .trades
            .cutoff(now)
            .map(|cut| cut.min(safe_trade_cutoff(settings, now))),
        quotes_before: policy.quotes.cutoff(now),
        candles_before: policy
            .candles
            .iter()
            .filter_map(|(i, k)| k.cutoff(now).map(|c| (*i, c)))
            .collect(),
        batch_rows: policy.batch_rows,
        dry_run,
    }
}

/// The latest time before which every candle built from trades is closed
/// and past the lateness window.
#[must_use]
pub fn safe_trade_cutoff(settings: &Settings, now: Ts) -> Ts {
    let agg = &settings.aggregator;
    let settled = Ts(now
        .0
        .saturating_sub(agg.lateness_nanos)
        .saturating_sub(agg.grace_nanos));
    agg.intervals
        .iter()
        .map(|i| i.bucket_start(settled))
        .min()
        .unwrap_or(settled)
}

/// TimescaleDB's policies for this configuration: the server drops chunks
/// of trades and quotes past their retention even while candlekeep is not
/// pruning. The trade policy waits the longest candle interval, the
/// lateness window and the grace longer than the configured retention, so
/// it never drops a trade that [`safe_trade_cutoff`] still keeps.
#[must_use]
pub fn timescale_policies(settings: &Settings, policy: &Policy) -> TimescalePolicies {
    const MONTH: i64 = 31 * 86_400 * 1_000_000_000;
    let agg = &settings.aggregator;
    let longest = agg
        .intervals
        .iter()
        .map(|i| i.fixed_nanos().unwrap_or(MONTH))
        .max()
        .unwrap_or(0);
    let hold = longest
        .saturating_add(agg.lateness_nanos)
        .saturating_add(agg.grace_nanos);
    let after = |keep: Keep, extra: i64| match keep {
        Keep::Forever => None,
        Keep::For(n) => Some(n.saturating_add(extra)),
    };
    TimescalePolicies {
        drop_trades_after: after(policy.trades, hold),
        drop_quotes_after: after(policy.quotes, 0),
        ..TimescalePolicies::default()
    }
}

/// What one prune did: the store's report and the tapes removed.
#[derive(Debug, Clone, Default)]
pub struct RetentionReport {
    /// Rows and bytes.
    pub store: PruneReport,
    /// Tape files removed (or, in a dry run, that would be).
    pub tapes: Vec<std::path::PathBuf>,
}

/// Prunes the store and the tapes by `policy` as of `now`.
///
/// # Errors
/// When the store fails or a tape cannot be removed.
pub async fn prune(
    settings: &Settings,
    store: &dyn Store,
    policy: &Policy,
    now: Ts,
    dry_run: bool,
) -> anyhow::Result<RetentionReport> {
    let plan = plan(settings, policy, now, dry_run);
    let store = store.prune(&plan).await?;
    let tapes = match policy.tapes.cutoff(now) {
        Some(cut) => prune_tapes(&settings.data_dir.join("tapes"), cut, dry_run)?,
        None => Vec::new(),
    };
    Ok(RetentionReport { store, tapes })
}

/// Tape files whose whole day ended before `cut`
/// (`<dir>/<exchange>/<YYYY-MM-DD>[_rNNN].tape.zst`).
fn prune_tapes(dir: &Path, cut: Ts, dry_run: bool) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut gone = Vec::new();
    let Ok(exchanges) = std::fs::read_dir(dir) else {
        return Ok(gone); // no tapes yet
    };
    for exchange in exchanges.flatten() {
        let Ok(files) = std::fs::read_dir(exchange.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Some(day) = name.get(..10).and_then(|d| Ts::parse(d).ok()) else {
                continue;
            };
            if !name.ends_with(".tape.zst") || Interval::D1.next_start(day) > cut {
                continue;
            }
            if !dry_run {
                std::fs::remove_file(file.path())
                    .map_err(|e| anyhow::anyhow!("removing tape {}: {e}", file.path().display()))?;
            }
            gone.push(file.path());
        }
    }
    gone.sort();
    Ok(gone)
}

/// The time before which days of candles are settled enough to pack: an
/// hour past the lateness window. A later revision only makes its day's
/// pack stale; this keeps repacking rare.
#[must_use]
pub fn pack_cutoff(settings: &Settings, now: Ts) -> Ts {
    let agg = &settings.aggregator;
    Ts(now
        .0
        .saturating_sub(agg.lateness_nanos)
        .saturating_sub(agg.grace_nanos)
        .saturating_sub(3_600 * 1_000_000_000))
}

/// Packs the settled days of candles that changed since they were last
/// packed (see [`Store::pack_candle_days`]), logging what it did.
///
/// # Errors
/// When the store fails.
pub async fn pack(settings: &Settings, store: &dyn Store, now: Ts) -> anyhow::Result<PackReport> {
    let started = std::time::Instant::now();
    let report = store.pack_candle_days(pack_cutoff(settings, now)).await?;
    if report.days_packed + report.days_dropped > 0 {
        tracing::info!(
            days = report.days_packed,
            dropped = report.days_dropped,
            candles = report.candles,
            bytes = report.bytes,
            took = ?started.elapsed(),
            "packed settled candle days"
        );
    }
    Ok(report)
}

/// Packs settled candle days every `every` until `stop`; failures are
/// logged and retried at the next round, never fatal to capture.
pub async fn run_pack_schedule(
    settings: Settings,
    store: std::sync::Arc<dyn Store>,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut rounds = Rounds::new(every);
    while rounds.next(&stop).await {
        if let Err(e) = pack(&settings, store.as_ref(), Ts::now()).await {
            tracing::warn!(error = %e, "packing candle days failed; retrying next round");
        }
    }
}

/// The rounds of a task on a schedule: the first at once, then every
/// period (a round that overruns delays the next), until stopped.
pub(crate) struct Rounds(tokio::time::Interval);

impl Rounds {
    pub(crate) fn new(every: std::time::Duration) -> Rounds {
        Rounds::after(std::time::Duration::ZERO, every)
    }

    /// The first round after `first`, then every `every`.
    pub(crate) fn after(first: std::time::Duration, every: std::time::Duration) -> Rounds {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Rounds(tick)
    }

    /// Waits for the next round; false once `stop` is cancelled.
    pub(crate) async fn next(&mut self, stop: &tokio_util::sync::CancellationToken) -> bool {
        tokio::select! {
            () = stop.cancelled() => false,
            _ = self.0.tick() => true,
        }
    }
}

/// Prunes every `every` until `stop`, logging what went; failures are
/// logged and retried at the next round, never fatal to capture.
pub async fn run_schedule(
    settings: Settings,
    store: std::sync::Arc<dyn Store>,
    policy: Policy,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match prune(&settings, store.as_ref(), &policy, Ts::now(), false).await {
            Ok(r) => tracing::info!(
                trades = r.store.trades,
                quotes = r.store.quotes,
                candles = r.store.candles.iter().map(|c| c.1).sum::<u64>(),
                tapes = r.tapes.len(),
                bytes_before = r.store.bytes_before,
                bytes_after = r.store.bytes_after,
                "retention: pruned"
            ),
            Err(e) => tracing::warn!(error = %e, "retention: prune failed; retrying next round"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_reads_forever_and_durations_and_refuses_the_rest() {
        assert_eq!(Keep::parse("trades", "forever").ok(), Some(Keep::Forever));
        assert_eq!(
            Keep::parse("trades", "30d").ok(),
            Some(Keep::For(30 * 86_400 * 1_000_000_000))
        );
        for bad in ["30", "d", "0d", "-1d", "1y", "99999999999999w"] {
            let e = Keep::parse("trades", bad).expect_err(bad);
            assert!(e.to_string().contains("retention.trades"), "{e}");
        }
    }

    #[test]
    fn timescale_drops_trades_only_after_every_candle_built_from_them_settled() {
        const DAY: i64 = 86_400 * 1_000_000_000;
        let mut config = crate::config::AppConfig::default();
        config.retention.trades = "30d".into();
        let settings = config.settings().expect("settings");
        let policy = config.retention.policy().expect("policy");
        let agg = &settings.aggregator;
        let p = timescale_policies(&settings, &policy);
        assert_eq!(
            p.drop_trades_after,
            Some(30 * DAY + 31 * DAY + agg.lateness_nanos + agg.grace_nanos),
            "the default intervals run to 1M: a month more, with the lateness window"
        );
        assert_eq!(p.drop_quotes_after, None, "quotes are kept forever");
        assert_eq!(p.compress_after_days, 7);
        // The policy never drops what the prune's safe cutoff keeps.
        let now = Ts::from_secs(1_800_000_000);
        let dropped_before = Ts(now.0 - p.drop_trades_after.expect("set"));
        assert!(
            dropped_before
                <= plan(&settings, &policy, now, false)
                    .trades_before
                    .expect("cut")
        );
        assert!(dropped_before <= safe_trade_cutoff(&settings, now));
    }
}
