//! The collector role: capture's events published to the cluster's stream.

use super::*;

/// What a collector published.
#[derive(Debug, Clone, Copy, Default)]
pub struct CollectorStats {
    /// Events JetStream acknowledged (in batches, one message per subject).
    pub published: u64,
    /// Gaps found by trade-id continuity.
    pub gaps: u64,
}

/// The collector's last stage, in place of the candle stage and the store
/// writer: finds id gaps (sending them to repair) and publishes everything.
pub async fn run_collector(
    bus: Bus,
    mut events: Receiver<Event>,
    gap_tap: Option<ck_bus::gap_queue::GapTap>,
    seeds: Vec<(Exchange, Instrument, u64, Ts)>,
    stop: CancellationToken,
) -> CollectorStats {
    let mut stats = CollectorStats::default();
    let gaps_found = metrics::counter("candlekeep_gaps_detected_total");
    let duplicates = metrics::counter("candlekeep_duplicate_trades_total");
    let mut detector = GapDetector::new();
    for (exchange, instrument, id, at) in seeds {
        detector.seed(exchange, instrument, id, at);
    }
    let mut batch = Vec::new();
    let mut out = Vec::new();
    while events.recv_many(&mut batch, 1024).await > 0 {
        for event in batch.drain(..) {
            if let Event::Trade(t) = &event
                && detector.covered(t)
            {
                // A fill of an aggregated trade already published.
                duplicates.inc();
                continue;
            }
            let found = match &event {
                Event::Trade(t) => detector.on_trade(t, Ts::now()),
                Event::Gap(g) if g.state == ck_model::GapState::Open => Some(g.clone()),
                _ => None,
            };
            let passed_through = matches!(event, Event::Gap(_));
            out.push(event);
            if let Some(gap) = found {
                let open = gap.state == ck_model::GapState::Open;
                if let (Some(tap), true) = (&gap_tap, open) {
                    tap.offer(&gap);
                }
                if !passed_through {
                    if open {
                        stats.gaps += 1;
                        gaps_found.inc();
                        tracing::warn!(exchange = %gap.exchange, instrument = %gap.instrument, reason = %gap.reason, "gap detected");
                    } else {
                        // Its missing trades arrived late.
                        tracing::info!(exchange = %gap.exchange, instrument = %gap.instrument, reason = %gap.reason, "gap filled");
                    }
                    out.push(Event::Gap(gap));
                }
            }
        }
        stats.published += bus.publish_all(&out, &stop).await;
        out.clear();
    }
    stats
}
