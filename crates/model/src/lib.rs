//! The candlekeep domain model. Pure data, no IO, no async.
//!
//! Start with [`Trade`] and [`Candle`]; prices and sizes are [`Decimal`]s parsed
//! exactly from the exchange's own text, times are [`Ts`] (nanoseconds since the
//! Unix epoch, UTC). Instruments are identified by [`Exchange`] plus a normalized
//! [`Instrument`] (`BASE-QUOTE`); [`InstrumentInfo`] keeps the exchange-native symbol.

#![warn(missing_docs)]

mod candle;
mod decimal;
mod gap;
mod instrument;
mod interval;
mod time;
mod trade;

pub use candle::{Candle, CandleRecord, CandleState, EmptyIntervalPolicy};
pub use decimal::{Decimal, DecimalError, MAX_SCALE, pow10};
pub use gap::{BackfillProgress, Gap, GapState};
pub use instrument::{Exchange, Instrument, InstrumentError, InstrumentInfo, normalize_asset};
pub use interval::{Interval, IntervalError};
pub use time::{NANOS_PER_SEC, Ts, TsError};
pub use trade::{Quote, Side, Trade, TradeId};
