//! The venues candlekeep knows, and what the rest of the system must know
//! of each without asking its connector: its names, how its own candles
//! treat empty intervals and which fields they carry, how it spells an
//! instrument, and how its trade ids run. One [`ExchangeFacts`] per venue,
//! in [`FACTS`]; the venue's connector, REST history and mock are in
//! `ck-sources` (`venues.rs`) and `ck-mock` (`venues.rs`).

use std::fmt;
use std::str::FromStr;

use crate::{CandleField, EmptyIntervalPolicy, Instrument, InstrumentError};

/// A venue candlekeep knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Exchange {
    /// Binance spot.
    Binance,
    /// Coinbase Exchange (formerly GDAX, Coinbase Pro).
    CoinbaseExchange,
    /// Coinbase Advanced Trade.
    Coinbase,
    /// Bitfinex API v2.
    Bitfinex,
    /// Kraken spot.
    Kraken,
    /// Bitstamp.
    Bitstamp,
    /// OKX v5.
    Okx,
    /// Bybit v5.
    Bybit,
    /// Binance.US spot (Binance's protocol on its own hosts and instruments).
    BinanceUs,
}

/// How a venue spells an instrument in its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolStyle {
    /// `BTCUSDT`.
    Concat,
    /// `btcusd`.
    ConcatLower,
    /// `BTC-USD`.
    Dashed,
    /// `BTC/USD`.
    Slashed,
    /// `tBTCUSD`, or `tDOGE:USD` when either side is longer than three.
    Bitfinex,
}

/// What the system knows of one venue.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeFacts {
    /// Which venue.
    pub exchange: Exchange,
    /// The lowercase name used in configs, the CLI, the store and the API.
    pub name: &'static str,
    /// Other names it is known by (any case), in configs and the CLI.
    pub aliases: &'static [&'static str],
    /// How its own candles treat intervals without trades.
    pub empty_intervals: EmptyIntervalPolicy,
    /// The fields of its own candles.
    pub candle_fields: &'static [CandleField],
    /// How it spells an instrument.
    pub symbols: SymbolStyle,
    /// Whether consecutive trades of one instrument have consecutive ids.
    pub sequential_ids: bool,
    /// Whether an aggregated trade carries the id of its last fill.
    pub ids_end_aggregates: bool,
    /// Whether trade ids increase with exchange order.
    pub ids_ordered: bool,
}

const OHLCV: &[CandleField] = &CandleField::OHLCV;

const BINANCE_FAMILY: ExchangeFacts = ExchangeFacts {
    exchange: Exchange::Binance,
    name: "binance",
    aliases: &[],
    // Binance publishes flat candles, and every field of ours.
    empty_intervals: EmptyIntervalPolicy::Flat,
    candle_fields: &CandleField::ALL,
    symbols: SymbolStyle::Concat,
    // `t` of `trade`, `a` of `aggTrade` (which numbers its aggregates).
    sequential_ids: true,
    ids_end_aggregates: false,
    ids_ordered: true,
};

/// Every venue's facts, in the order of [`Exchange::ALL`].
pub static FACTS: [ExchangeFacts; Exchange::ALL.len()] = [
    BINANCE_FAMILY,
    ExchangeFacts {
        exchange: Exchange::CoinbaseExchange,
        name: "coinbase-exchange",
        aliases: &["coinbase-pro", "coinbasepro", "gdax", "coinbase_exchange"],
        empty_intervals: EmptyIntervalPolicy::Skip,
        candle_fields: OHLCV,
        symbols: SymbolStyle::Dashed,
        // `trade_id` per product.
        sequential_ids: true,
        ids_end_aggregates: false,
        ids_ordered: true,
    },
    ExchangeFacts {
        exchange: Exchange::Coinbase,
        name: "coinbase",
        aliases: &["coinbase-advanced"],
        empty_intervals: EmptyIntervalPolicy::Skip,
        candle_fields: OHLCV,
        symbols: SymbolStyle::Dashed,
        sequential_ids: false,
        ids_end_aggregates: false,
        ids_ordered: true,
    },
    ExchangeFacts {
        exchange: Exchange::Bitfinex,
        name: "bitfinex",
        aliases: &[],
        empty_intervals: EmptyIntervalPolicy::Skip,
        candle_fields: OHLCV,
        symbols: SymbolStyle::Bitfinex,
        sequential_ids: false,
        ids_end_aggregates: false,
        ids_ordered: true,
    },
    ExchangeFacts {
        exchange: Exchange::Kraken,
        name: "kraken",
        aliases: &[],
        empty_intervals: EmptyIntervalPolicy::Flat,
        // OHLCV and the trade count.
        candle_fields: &[
            CandleField::Open,
            CandleField::High,
            CandleField::Low,
            CandleField::Close,
            CandleField::Volume,
            CandleField::Trades,
        ],
        symbols: SymbolStyle::Slashed,
        // v2 `trade_id` per symbol.
        sequential_ids: true,
        ids_end_aggregates: false,
        ids_ordered: true,
    },
    ExchangeFacts {
        exchange: Exchange::Bitstamp,
        name: "bitstamp",
        aliases: &[],
        // Unverified; flat keeps a continuous series for charts.
        empty_intervals: EmptyIntervalPolicy::Flat,
        candle_fields: OHLCV,
        symbols: SymbolStyle::ConcatLower,
        sequential_ids: false,
        ids_end_aggregates: false,
        ids_ordered: true,
    },
    ExchangeFacts {
        exchange: Exchange::Okx,
        name: "okx",
        aliases: &[],
        // Unverified; flat keeps a continuous series for charts.
        empty_intervals: EmptyIntervalPolicy::Flat,
        // OHLCV and the quote volume (`volCcyQuote`).
        candle_fields: QUOTED_OHLCV,
        symbols: SymbolStyle::Dashed,
        // `tradeId` per instrument; an aggregated trade takes `count` ids,
        // its own the last (documented, unverified by the 2022 recording,
        // which has no `count`).
        sequential_ids: true,
        ids_end_aggregates: true,
        ids_ordered: true,
    },
    ExchangeFacts {
        exchange: Exchange::Bybit,
        name: "bybit",
        aliases: &[],
        // Unverified; flat keeps a continuous series for charts.
        empty_intervals: EmptyIntervalPolicy::Flat,
        // OHLCV and the quote volume (`turnover`).
        candle_fields: QUOTED_OHLCV,
        symbols: SymbolStyle::Concat,
        // UUIDs on spot: neither sequential nor ordered.
        sequential_ids: false,
        ids_end_aggregates: false,
        ids_ordered: false,
    },
    ExchangeFacts {
        exchange: Exchange::BinanceUs,
        name: "binance-us",
        aliases: &["binance_us", "binanceus"],
        ..BINANCE_FAMILY
    },
];

const QUOTED_OHLCV: &[CandleField] = &[
    CandleField::Open,
    CandleField::High,
    CandleField::Low,
    CandleField::Close,
    CandleField::Volume,
    CandleField::QuoteVolume,
];

impl Exchange {
    /// Every exchange, in a stable order.
    pub const ALL: [Exchange; 9] = [
        Exchange::Binance,
        Exchange::CoinbaseExchange,
        Exchange::Coinbase,
        Exchange::Bitfinex,
        Exchange::Kraken,
        Exchange::Bitstamp,
        Exchange::Okx,
        Exchange::Bybit,
        Exchange::BinanceUs,
    ];

    /// What the system knows of this venue.
    #[must_use]
    pub const fn facts(self) -> &'static ExchangeFacts {
        &FACTS[self.index()]
    }

    /// The lowercase name used in configs, the CLI, the store and the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        self.facts().name
    }

    /// The position in [`Exchange::ALL`], for per-exchange arrays.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// All valid names, for error messages.
    #[must_use]
    pub fn names() -> Vec<&'static str> {
        Exchange::ALL.iter().map(|e| e.as_str()).collect()
    }

    /// How this exchange's own candles treat intervals without trades, so that
    /// our candles equal theirs by default.
    #[must_use]
    pub const fn empty_interval_policy(self) -> EmptyIntervalPolicy {
        self.facts().empty_intervals
    }

    /// The fields of this exchange's own candles, which `verify` compares
    /// with ours; the others are absent from its candles (and stored as 0).
    #[must_use]
    pub const fn candle_fields(self) -> &'static [CandleField] {
        self.facts().candle_fields
    }

    /// How this venue writes `instrument` in its API (`BTCUSDT`, `BTC-USD`,
    /// `tBTCUSD` or `tDOGE:USD`, `BTC/USD`, `btcusd`), for listings the
    /// venue never sent.
    #[must_use]
    pub fn native_symbol(self, instrument: &Instrument) -> String {
        let (b, q) = (instrument.base(), instrument.quote());
        match self.facts().symbols {
            SymbolStyle::Concat => format!("{b}{q}"),
            SymbolStyle::ConcatLower => format!("{b}{q}").to_ascii_lowercase(),
            SymbolStyle::Dashed => format!("{b}-{q}"),
            SymbolStyle::Slashed => format!("{b}/{q}"),
            SymbolStyle::Bitfinex if b.len() > 3 || q.len() > 3 => format!("t{b}:{q}"),
            SymbolStyle::Bitfinex => format!("t{b}{q}"),
        }
    }

    /// Whether consecutive trades of one instrument have consecutive ids, so
    /// that a jump in ids is a gap.
    #[must_use]
    pub const fn sequential_trade_ids(self) -> bool {
        self.facts().sequential_ids
    }

    /// Whether an aggregated trade (`fills` > 1) carries the id of its last
    /// fill and stands for the `fills` ids up to it, so that the next trade
    /// is `id + 1` and a single fill of it (from REST) has an id inside it.
    #[must_use]
    pub const fn ids_end_aggregates(self) -> bool {
        self.facts().ids_end_aggregates
    }

    /// Whether the exchange's trade ids increase with exchange order, so that
    /// open and close can follow them. Otherwise time (then arrival) orders trades.
    #[must_use]
    pub const fn trade_ids_ordered(self) -> bool {
        self.facts().ids_ordered
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Exchange {
    type Err = InstrumentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        FACTS
            .iter()
            .find(|f| f.name == lower || f.aliases.contains(&lower.as_str()))
            .map(|f| f.exchange)
            .ok_or_else(|| InstrumentError::UnknownExchange(s.to_owned()))
    }
}

impl serde::Serialize for Exchange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Exchange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exchange_has_its_facts_in_its_place() {
        for e in Exchange::ALL {
            assert_eq!(FACTS[e.index()].exchange, e);
            assert_eq!(e.as_str().parse::<Exchange>(), Ok(e));
        }
        assert_eq!("Binance_US".parse::<Exchange>(), Ok(Exchange::BinanceUs));
        assert_eq!(
            Exchange::BinanceUs.candle_fields(),
            Exchange::Binance.candle_fields()
        );
        let doge = Instrument::new("DOGE", "USD");
        assert_eq!(Exchange::Bitfinex.native_symbol(&doge), "tDOGE:USD");
        assert_eq!(Exchange::Bitstamp.native_symbol(&doge), "dogeusd");
        assert_eq!(Exchange::Kraken.native_symbol(&doge), "DOGE/USD");
        assert!(Exchange::Okx.ids_end_aggregates() && !Exchange::Bybit.trade_ids_ordered());
    }
}
