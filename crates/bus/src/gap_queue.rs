//! The queue of open gaps from the stage that finds them (the candle stage,
//! or a collector) to the repairer.
//!
//! The repairer sends the trades it fetches back into the stage that found
//! the gap, so that stage must never wait on the repairer: the queue is
//! bounded and [`GapTap::offer`] never blocks. A gap that does not fit is
//! not lost: it is stored as open like every gap, counted in
//! `candlekeep_gap_repairs_deferred_total`, and repaired at the next start.

use std::sync::Arc;

use ck_model::Gap;
use tokio::sync::mpsc;

use crate::metrics::{self, Counter};

/// Open gaps the repair queue holds at most.
pub const GAP_QUEUE: usize = 4096;

/// The sending side: offers gaps to the repairer.
#[derive(Debug, Clone)]
pub struct GapTap {
    tx: mpsc::Sender<Gap>,
    deferred: Arc<Counter>,
}

/// The repair queue: its tap and the repairer's end.
#[must_use]
pub fn gap_queue() -> (GapTap, mpsc::Receiver<Gap>) {
    let (tx, rx) = mpsc::channel(GAP_QUEUE);
    let deferred = metrics::counter("candlekeep_gap_repairs_deferred_total");
    (GapTap { tx, deferred }, rx)
}

impl GapTap {
    /// Queues `gap` for repair, waiting for room (for the gaps read from the
    /// store at start, fed by a task of their own). False once the repairer
    /// has stopped.
    pub async fn send(&self, gap: Gap) -> bool {
        self.tx.send(gap).await.is_ok()
    }

    /// Queues `gap` for repair, if there is room; never waits.
    pub fn offer(&self, gap: &Gap) {
        match self.tx.try_send(gap.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.deferred.inc();
                tracing::warn!(
                    exchange = %gap.exchange,
                    instrument = %gap.instrument,
                    queue = GAP_QUEUE,
                    "the gap repair queue is full; this gap stays open and is repaired at the next start"
                );
            }
            // The repairer has stopped (shutting down): the gap is stored open.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ck_model::{Exchange, GapState, Instrument, Ts};

    fn gap(n: u64) -> Gap {
        Gap {
            exchange: Exchange::Binance,
            instrument: Instrument::parse("BTC-USDT").expect("instrument"),
            from_ts: Ts(0),
            to_ts: Ts(1),
            first_missing_id: Some(n),
            last_missing_id: Some(n),
            state: GapState::Open,
            reason: "test".into(),
            detected_at: Ts(1),
            kind: ck_model::GapKind::Trades,
        }
    }

    #[test]
    fn a_full_queue_defers_gaps_without_waiting_and_counts_them() {
        let (tap, mut rx) = gap_queue();
        let before = tap.deferred.get();
        for n in 0..GAP_QUEUE as u64 + 3 {
            tap.offer(&gap(n));
        }
        assert_eq!(tap.deferred.get() - before, 3);
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, GAP_QUEUE);
    }
}
