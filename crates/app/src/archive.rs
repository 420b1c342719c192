//! Moving settled days to the archive (`[archive]`): on a schedule while
//! `run` captures, and when `replay`, `import` and `backfill` finish. The
//! store does the moving ([`Store::archive_settled`]); this decides when a
//! day is settled and logs what moved.

use ck_model::Ts;
use ck_store::{ArchiveReport, Store};

use crate::config::Settings;

/// The time before which every UTC day is settled: past the lateness
/// window and the grace, no trade can change it any more.
#[must_use]
pub fn cutoff(settings: &Settings, now: Ts) -> Ts {
    let agg = &settings.aggregator;
    Ts(now
        .0
        .saturating_sub(agg.lateness_nanos)
        .saturating_sub(agg.grace_nanos))
}

/// Moves the settled days to the archive when `[archive]` is enabled,
/// logging what moved.
///
/// # Errors
/// When the store or the archive fails (days moved before stay moved).
pub async fn settle(
    settings: &Settings,
    store: &dyn Store,
    now: Ts,
) -> anyhow::Result<ArchiveReport> {
    if !settings.config.archive.enabled {
        return Ok(ArchiveReport::default());
    }
    let started = std::time::Instant::now();
    let report = store.archive_settled(cutoff(settings, now)).await?;
    if report.days + report.swept > 0 {
        tracing::info!(
            days = report.days,
            trades = report.trades,
            quotes = report.quotes,
            deleted = report.deleted,
            bytes = report.bytes,
            swept = report.swept,
            took = ?started.elapsed(),
            "archived settled days"
        );
    }
    Ok(report)
}

/// Archives settled days every `every` (the first pass a minute after
/// the start, or sooner when `every` is shorter, leaving the start-up
/// reads the store) until `stop`. Failures are logged and retried at the
/// next round, never fatal to capture. A stop interrupts a pass: what it
/// moved stays moved, and a day it was writing is left in the store (its
/// half-written file is swept by the next pass).
pub async fn run_schedule(
    settings: Settings,
    store: std::sync::Arc<dyn Store>,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let first = every.min(std::time::Duration::from_secs(60));
    let mut rounds = crate::retention::Rounds::after(first, every);
    while rounds.next(&stop).await {
        tokio::select! {
            () = stop.cancelled() => return,
            settled = settle(&settings, store.as_ref(), Ts::now()) => {
                if let Err(e) = settled {
                    tracing::warn!(error = %e, "archiving settled days failed; retrying next round");
                }
            }
        }
    }
}
