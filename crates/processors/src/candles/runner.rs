//! The async shell around the aggregator: a `select!` loop over the bus and a timer.

use std::sync::Arc;
use std::time::Duration;

use ck_bus::gap_queue::GapTap;
use ck_bus::metrics::{self, Counter};
use ck_bus::{Clock, Closed, Event, Receiver, Sender};
use ck_model::{Candle, Exchange, Gap, GapState, Instrument, Ts};

use super::{AggregatorStats, CandleAggregator, TradeOutcome};
use crate::gaps::GapDetector;

/// Settings of the candle stage.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The wall clock that closes quiet candles; `None` during replay, where
    /// only exchange time moves the watermark.
    pub clock: Option<Arc<dyn Clock>>,
    /// How often the timer runs: closes by wall clock and emits the current
    /// provisional candles of series that changed.
    pub tick: Duration,
    /// Events taken from the bus per wake-up.
    pub batch: usize,
    /// Every open gap found (or passed through) is also sent here, for repair.
    pub gap_tap: Option<GapTap>,
    /// Last known trade ids (from the store) to continue id-gap detection from.
    pub gap_seeds: Vec<(Exchange, Instrument, u64, Ts)>,
    /// Trades, quotes and candles are also published here (never waits).
    pub feed: Option<ck_bus::LiveFeed>,
    /// A finite run's wall clock (replay, import, backfill): when the input
    /// ends, candles past their end plus the lateness window by this clock
    /// are closed ([`CandleAggregator::settle`]) before the rest are flushed
    /// as provisional. `None` for live runs, whose timer closes them.
    pub settle_at_end: Option<Arc<dyn Clock>>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            clock: None,
            tick: Duration::from_millis(250),
            batch: 1024,
            gap_tap: None,
            gap_seeds: Vec::new(),
            feed: None,
            settle_at_end: None,
        }
    }
}

struct Meters {
    gaps: Arc<Counter>,
    duplicates: Arc<Counter>,
    late: Arc<Counter>,
    too_late: Arc<Counter>,
    out_of_range: Arc<Counter>,
}

/// Publishes trades, quotes, candles and gaps to the live feed, if anyone listens.
fn publish(feed: Option<&ck_bus::LiveFeed>, event: &Event) {
    let Some(feed) = feed else { return };
    if feed.receiver_count() == 0 {
        return;
    }
    if matches!(
        event,
        Event::Trade(_) | Event::Quote(_) | Event::Candle(_) | Event::Gap(_)
    ) {
        // Send fails only when nobody listens: nothing to do then.
        let _ = feed.send(Arc::new(event.clone()));
    }
}

/// Feeds trades from the bus to a [`CandleAggregator`] and a [`GapDetector`],
/// and passes every event on, followed by the gaps and candles it caused.
pub struct CandleRunner {
    aggregator: CandleAggregator,
    config: RunnerConfig,
}

impl CandleRunner {
    /// A runner around `aggregator`.
    #[must_use]
    pub fn new(aggregator: CandleAggregator, config: RunnerConfig) -> CandleRunner {
        CandleRunner { aggregator, config }
    }

    /// Runs until `input` closes, then emits the open candles as provisional and
    /// returns the aggregator's counters. Fails only if `output` closes first.
    pub async fn run(
        mut self,
        mut input: Receiver<Event>,
        output: Sender<Event>,
    ) -> Result<AggregatorStats, Closed> {
        let meters = Meters {
            gaps: metrics::counter("candlekeep_gaps_detected_total"),
            duplicates: metrics::counter("candlekeep_duplicate_trades_total"),
            late: metrics::counter("candlekeep_late_trades_total"),
            too_late: metrics::counter("candlekeep_too_late_trades_total"),
            out_of_range: metrics::counter("candlekeep_out_of_range_trades_total"),
        };
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(self.config.batch);
        let mut candles: Vec<Candle> = Vec::new();
        let mut gaps = GapDetector::new();
        for (exchange, instrument, id, at) in std::mem::take(&mut self.config.gap_seeds) {
            gaps.seed(exchange, instrument, id, at);
        }
        let feed = self.config.feed.clone();
        let tap = |g: &Gap| {
            if let Some(tap) = &self.config.gap_tap
                && g.state == GapState::Open
            {
                tap.offer(g);
            }
        };
        loop {
            tokio::select! {
                n = input.recv_many(&mut batch, self.config.batch) => {
                    if n == 0 {
                        break;
                    }
                    for event in batch.drain(..) {
                        let mut gap = None;
                        if let Event::Trade(trade) = &event {
                            if gaps.covered(trade) {
                                // A fill of an aggregated trade already counted.
                                meters.duplicates.inc();
                                tracing::debug!(exchange = %trade.exchange, instrument = %trade.instrument, id = %trade.trade_id, "fill inside an aggregated trade already counted; dropped");
                                continue;
                            }
                            let now = self.config.clock.as_ref().map_or(trade.ts_received, |c| c.now());
                            gap = gaps.on_trade(trade, now);
                            match self.aggregator.on_trade(trade, &mut candles) {
                                TradeOutcome::Duplicate => meters.duplicates.inc(),
                                TradeOutcome::Revised => meters.late.inc(),
                                TradeOutcome::TooLate => meters.too_late.inc(),
                                TradeOutcome::OutOfRange => meters.out_of_range.inc(),
                                TradeOutcome::Applied => {}
                            }
                        }
                        if let Event::Gap(g) = &event {
                            tap(g);
                        }
                        if let Event::Release(released) = &event {
                            for (exchange, instrument) in released {
                                self.aggregator.forget(*exchange, instrument);
                                gaps.forget(*exchange, instrument);
                            }
                            tracing::info!(instruments = released.len(), "released instruments to another processor");
                            continue;
                        }
                        if let Event::IngestError(e) = &event
                            && let (Some(exchange), Some((instrument, id))) = (e.exchange, &e.skipped_trade)
                        {
                            gaps.skip(exchange, instrument, *id);
                        }
                        publish(feed.as_ref(), &event);
                        output.send(event).await?;
                        if let Some(g) = gap {
                            if g.state == GapState::Open {
                                meters.gaps.inc();
                                tracing::warn!(exchange = %g.exchange, instrument = %g.instrument, reason = %g.reason, "gap detected");
                                tap(&g);
                            } else {
                                tracing::info!(exchange = %g.exchange, instrument = %g.instrument, reason = %g.reason, "gap filled");
                            }
                            output.send(Event::Gap(g)).await?;
                        }
                        for c in candles.drain(..) {
                            let e = Event::Candle(Box::new(c));
                            publish(feed.as_ref(), &e);
                            output.send(e).await?;
                        }
                    }
                }
                _ = tick.tick() => {
                    if let Some(clock) = &self.config.clock {
                        self.aggregator.on_tick(clock.now().0, &mut candles);
                    }
                    self.aggregator.drain_provisional(&mut candles);
                    for c in candles.drain(..) {
                        let e = Event::Candle(Box::new(c));
                        publish(feed.as_ref(), &e);
                        output.send(e).await?;
                    }
                }
            }
        }
        if let Some(clock) = &self.config.settle_at_end {
            self.aggregator.settle(clock.now().0, &mut candles);
        }
        self.aggregator.flush(&mut candles);
        for c in candles.drain(..) {
            let e = Event::Candle(Box::new(c));
            publish(feed.as_ref(), &e);
            output.send(e).await?;
        }
        Ok(self.aggregator.stats())
    }
}
