//! Trades and quotes, normalized.

use std::fmt;
use std::sync::Arc;

use crate::{Decimal, Exchange, Instrument, Ts};

/// An exchange's trade id, exactly as sent: an integer or a string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TradeId {
    /// A numeric id (Binance, Kraken v2, Coinbase Exchange, OKX, Bitfinex, Bitstamp).
    Num(u64),
    /// A string id (Coinbase Advanced Trade, Bybit UUIDs).
    Str(Arc<str>),
}

impl TradeId {
    /// The numeric id, if there is one.
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            TradeId::Num(n) => Some(*n),
            TradeId::Str(_) => None,
        }
    }

    /// Reads an id from text, keeping it numeric when it is a plain integer
    /// that round-trips (no leading zeros).
    #[must_use]
    pub fn from_text(text: &str) -> TradeId {
        match text.parse::<u64>() {
            Ok(n) if n.to_string() == text => TradeId::Num(n),
            _ => TradeId::Str(text.into()),
        }
    }
}

impl fmt::Display for TradeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TradeId::Num(n) => write!(f, "{n}"),
            TradeId::Str(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for TradeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Every id serializes as a JSON string: venues' numeric ids exceed 2^53
/// (Bybit's `2290000001189048101`), which JavaScript's numbers round.
impl serde::Serialize for TradeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TradeId::Num(n) => s.collect_str(n),
            TradeId::Str(t) => s.serialize_str(t),
        }
    }
}

/// Reads a JSON string (numeric text becomes [`TradeId::Num`], as
/// [`TradeId::from_text`] reads it) or a JSON integer (as older versions
/// wrote numeric ids).
impl<'de> serde::Deserialize<'de> for TradeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TradeId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a trade id (integer or string)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TradeId, E> {
                Ok(TradeId::Num(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<TradeId, E> {
                u64::try_from(v).map(TradeId::Num).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TradeId, E> {
                Ok(TradeId::from_text(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The taker's side of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The taker bought (an up-tick).
    Buy,
    /// The taker sold.
    Sell,
    /// The venue did not say.
    Unknown,
}

impl Side {
    /// `buy`, `sell` or `unknown`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
            Side::Unknown => "unknown",
        }
    }

    /// Parses `buy`/`b` or `sell`/`s`, in any case.
    #[must_use]
    pub fn parse(text: &str) -> Option<Side> {
        match text.trim().to_ascii_lowercase().as_str() {
            "buy" | "b" => Some(Side::Buy),
            "sell" | "s" => Some(Side::Sell),
            "unknown" | "" => Some(Side::Unknown),
            _ => None,
        }
    }

    /// The other side: used where a venue reports the maker side.
    #[must_use]
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
            Side::Unknown => Side::Unknown,
        }
    }
}

/// One public trade, normalized.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trade {
    /// The venue.
    pub exchange: Exchange,
    /// The normalized instrument.
    pub instrument: Instrument,
    /// The exchange's trade id, as sent.
    pub trade_id: TradeId,
    /// The price, exact.
    pub price: Decimal,
    /// The size in the base asset, exact.
    pub size: Decimal,
    /// The taker's side.
    pub side: Side,
    /// When the exchange says the trade happened.
    pub ts_exchange: Ts,
    /// When candlekeep received it.
    pub ts_received: Ts,
    /// How many exchange fills this trade stands for: 1, except for aggregated
    /// feeds such as Binance `aggTrade`, where it is `l - f + 1`. Candle trade
    /// counts add these up, as the exchange's own candles count fills.
    #[serde(default = "one")]
    pub fills: u32,
}

const fn one() -> u32 {
    1
}

impl Trade {
    /// The ids this trade accounts for, first and last, on a venue with
    /// sequential ids ([`Exchange::sequential_trade_ids`]): its own id,
    /// or on a venue whose aggregated trades carry the last fill's id
    /// ([`Exchange::ids_end_aggregates`], OKX's `trades` with `count`) the
    /// `fills` ids up to it. `None` for a string id.
    #[must_use]
    pub fn id_span(&self) -> Option<(u64, u64)> {
        let last = self.trade_id.as_u64()?;
        let first = if self.exchange.ids_end_aggregates() {
            last.saturating_sub(u64::from(self.fills.max(1)) - 1)
        } else {
            last
        };
        Some((first, last))
    }
}

/// Best bid and ask (and the last price, where the venue sends it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quote {
    /// The venue.
    pub exchange: Exchange,
    /// The normalized instrument.
    pub instrument: Instrument,
    /// Best bid price.
    pub bid: Decimal,
    /// Size at the best bid, where the channel carries it.
    pub bid_size: Option<Decimal>,
    /// Best ask price.
    pub ask: Decimal,
    /// Size at the best ask, where the channel carries it.
    pub ask_size: Option<Decimal>,
    /// The last trade price, when the channel carries it.
    pub last: Option<Decimal>,
    /// Exchange time, or the receive time where the venue sends none.
    pub ts_exchange: Ts,
    /// When candlekeep received it.
    pub ts_received: Ts,
}
