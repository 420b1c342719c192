//! candlekeep processors: they turn market events into derived data.
//!
//! - [`candles::CandleAggregator`]: pure, sync; trades in, candles of all 15
//!   intervals out, with duplicates ignored, late trades revising closed
//!   candles, and per-exchange empty-interval policy. Start reading here.
//! - [`candles::CandleRunner`]: the async shell that feeds it from the bus and
//!   drives its timer, and runs the [`gaps::GapDetector`] on the same trades.

#![warn(missing_docs)]

pub mod candles;
pub mod gaps;
