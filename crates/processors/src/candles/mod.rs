//! Candles from trades: the pure [`CandleAggregator`] and its async runner.

mod acc;
mod aggregator;
mod dedup;
mod runner;
#[cfg(test)]
mod tests;

pub use aggregator::{AggregatorConfig, AggregatorStats, CandleAggregator, TradeOutcome};
pub use runner::{CandleRunner, RunnerConfig};
