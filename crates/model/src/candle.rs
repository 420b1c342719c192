//! Candles (OHLCV bars) and their lifecycle.

use crate::{Decimal, Exchange, Instrument, Interval, TradeId, Ts};

/// Where a candle is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CandleState {
    /// Its interval has not passed yet; it will change.
    Provisional,
    /// Its interval has passed (by the watermark or the timer).
    Closed,
    /// A late trade changed it after it closed.
    Revised,
}

impl CandleState {
    /// `provisional`, `closed` or `revised`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CandleState::Provisional => "provisional",
            CandleState::Closed => "closed",
            CandleState::Revised => "revised",
        }
    }

    /// Parses the name written by [`CandleState::as_str`].
    #[must_use]
    pub fn parse(text: &str) -> Option<CandleState> {
        match text {
            "provisional" => Some(CandleState::Provisional),
            "closed" => Some(CandleState::Closed),
            "revised" => Some(CandleState::Revised),
            _ => None,
        }
    }
}

/// What a candle stream does for an interval with no trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmptyIntervalPolicy {
    /// No candle (Coinbase, Bitfinex).
    Skip,
    /// A flat candle at the previous close with zero volume (Binance, Kraken).
    Flat,
}

/// One OHLCV candle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Candle {
    /// The venue.
    pub exchange: Exchange,
    /// The normalized instrument.
    pub instrument: Instrument,
    /// The interval.
    pub interval: Interval,
    /// The start of the interval (inclusive).
    pub open_time: Ts,
    /// The first trade's price, in exchange order.
    pub open: Decimal,
    /// The highest price.
    pub high: Decimal,
    /// The lowest price.
    pub low: Decimal,
    /// The last trade's price, in exchange order.
    pub close: Decimal,
    /// Base volume, exact.
    pub volume: Decimal,
    /// Quote volume (sum of price times size), exact.
    pub quote_volume: Decimal,
    /// Volume-weighted average price, `quote_volume / volume`, rounded half-even
    /// to four digits past the price's scale. Equal to `close` for a flat candle.
    pub vwap: Decimal,
    /// Base volume of trades whose taker bought.
    pub taker_buy_volume: Decimal,
    /// Exchange fills in the interval.
    pub trades: u64,
    /// The first trade's id, in exchange order.
    pub first_trade_id: Option<TradeId>,
    /// The last trade's id, in exchange order.
    pub last_trade_id: Option<TradeId>,
    /// Provisional, closed or revised.
    pub state: CandleState,
}

impl Candle {
    /// The end of the interval (exclusive), which is the next open time.
    #[must_use]
    pub fn close_time(&self) -> Ts {
        self.interval.next_start(self.open_time)
    }
}

/// A candle as the CLI and the API print it: the fields users asked for, with
/// decimals as strings and times in RFC 3339. CSV output has these columns,
/// in this order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CandleRecord {
    /// Start of the interval, RFC 3339.
    pub open_time: Ts,
    /// Open.
    pub open: Decimal,
    /// High.
    pub high: Decimal,
    /// Low.
    pub low: Decimal,
    /// Close.
    pub close: Decimal,
    /// Base volume.
    pub volume: Decimal,
    /// Quote volume.
    pub quote_volume: Decimal,
    /// Volume-weighted average price.
    pub vwap: Decimal,
    /// Base volume bought by takers.
    pub taker_buy_volume: Decimal,
    /// Number of exchange fills.
    pub trades: u64,
    /// First trade id.
    pub first_trade_id: Option<TradeId>,
    /// Last trade id.
    pub last_trade_id: Option<TradeId>,
    /// `provisional`, `closed` or `revised`.
    pub state: CandleState,
}

impl CandleRecord {
    /// The CSV columns, in order (the fields above).
    pub const COLUMNS: [&'static str; 13] = [
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "vwap",
        "taker_buy_volume",
        "trades",
        "first_trade_id",
        "last_trade_id",
        "state",
    ];
}

impl From<&Candle> for CandleRecord {
    fn from(c: &Candle) -> Self {
        CandleRecord {
            open_time: c.open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            quote_volume: c.quote_volume,
            vwap: c.vwap,
            taker_buy_volume: c.taker_buy_volume,
            trades: c.trades,
            first_trade_id: c.first_trade_id.clone(),
            last_trade_id: c.last_trade_id.clone(),
            state: c.state,
        }
    }
}
