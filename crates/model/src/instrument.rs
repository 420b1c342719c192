//! Exchanges and instruments.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::{CandleField, EmptyIntervalPolicy};

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

/// Why an exchange or instrument name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstrumentError {
    /// The exchange name is not one candlekeep knows.
    #[error("unknown exchange `{0}`; valid exchanges: {list}", list = Exchange::names().join(", "))]
    UnknownExchange(String),
    /// The instrument is not written `BASE-QUOTE`.
    #[error("instrument `{0}` is not of the form BASE-QUOTE (for example BTC-USDT)")]
    BadInstrument(String),
}

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

    /// The lowercase name used in configs, the CLI, the store and the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Exchange::Binance => "binance",
            Exchange::CoinbaseExchange => "coinbase-exchange",
            Exchange::Coinbase => "coinbase",
            Exchange::Bitfinex => "bitfinex",
            Exchange::Kraken => "kraken",
            Exchange::Bitstamp => "bitstamp",
            Exchange::Okx => "okx",
            Exchange::Bybit => "bybit",
            Exchange::BinanceUs => "binance-us",
        }
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
        match self {
            Exchange::Coinbase | Exchange::CoinbaseExchange | Exchange::Bitfinex => {
                EmptyIntervalPolicy::Skip
            }
            // Binance and Kraken publish flat candles; OKX, Bybit and Bitstamp are
            // unverified, and flat keeps a continuous series for charts.
            _ => EmptyIntervalPolicy::Flat,
        }
    }

    /// The fields of this exchange's own candles, which `verify` compares
    /// with ours; the others are absent from its candles (and stored as 0).
    /// Binance publishes all of them; Kraken adds the trade count to OHLCV,
    /// OKX and Bybit the quote volume (`volCcyQuote`, `turnover`).
    #[must_use]
    pub const fn candle_fields(self) -> &'static [CandleField] {
        use CandleField::{Close, High, Low, Open, QuoteVolume, Trades, Volume};
        match self {
            Exchange::Binance | Exchange::BinanceUs => &CandleField::ALL,
            Exchange::Kraken => &[Open, High, Low, Close, Volume, Trades],
            Exchange::Okx | Exchange::Bybit => &[Open, High, Low, Close, Volume, QuoteVolume],
            Exchange::Coinbase
            | Exchange::CoinbaseExchange
            | Exchange::Bitfinex
            | Exchange::Bitstamp => &CandleField::OHLCV,
        }
    }

    /// How this venue writes `instrument` in its API (`BTCUSDT`, `BTC-USD`,
    /// `tBTCUSD` or `tDOGE:USD`, `BTC/USD`, `btcusd`), for listings the
    /// venue never sent.
    #[must_use]
    pub fn native_symbol(self, instrument: &Instrument) -> String {
        let (b, q) = (instrument.base(), instrument.quote());
        match self {
            Exchange::Coinbase | Exchange::CoinbaseExchange | Exchange::Okx => format!("{b}-{q}"),
            // Bitfinex: `t` and the pair; a colon when either side is longer than three.
            Exchange::Bitfinex if b.len() > 3 || q.len() > 3 => format!("t{b}:{q}"),
            Exchange::Bitfinex => format!("t{b}{q}"),
            Exchange::Kraken => format!("{b}/{q}"),
            Exchange::Bitstamp => format!("{b}{q}").to_ascii_lowercase(),
            Exchange::Binance | Exchange::BinanceUs | Exchange::Bybit => format!("{b}{q}"),
        }
    }

    /// Whether consecutive trades of one instrument have consecutive ids, so
    /// that a jump in ids is a gap: Binance (`t` of `trade`, `a` of
    /// `aggTrade`), Coinbase Exchange (`trade_id` per product), Kraken v2
    /// (`trade_id` per symbol) and OKX (`tradeId` per instrument, where an
    /// aggregated trade takes `count` ids: [`Exchange::ids_end_aggregates`]).
    #[must_use]
    pub const fn sequential_trade_ids(self) -> bool {
        matches!(
            self,
            Exchange::Binance
                | Exchange::BinanceUs
                | Exchange::CoinbaseExchange
                | Exchange::Kraken
                | Exchange::Okx
        )
    }

    /// Whether an aggregated trade (`fills` > 1) carries the id of its last
    /// fill and stands for the `fills` ids up to it, so that the next trade
    /// is `id + 1` and a single fill of it (from REST) has an id inside it.
    /// OKX's `trades` channel: `tradeId` is the last of `count` fills
    /// (documented, unverified by the 2022 recording, which has no `count`).
    /// Binance's `aggTrade` numbers its aggregates themselves (`a`), so no.
    #[must_use]
    pub const fn ids_end_aggregates(self) -> bool {
        matches!(self, Exchange::Okx)
    }

    /// Whether the exchange's trade ids increase with exchange order, so that
    /// open and close can follow them. Otherwise time (then arrival) orders trades.
    #[must_use]
    pub const fn trade_ids_ordered(self) -> bool {
        !matches!(self, Exchange::Bybit)
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
        let found = match lower.as_str() {
            "coinbase-pro" | "coinbasepro" | "gdax" | "coinbase_exchange" => {
                Some(Exchange::CoinbaseExchange)
            }
            "coinbase-advanced" => Some(Exchange::Coinbase),
            "binance_us" | "binanceus" => Some(Exchange::BinanceUs),
            other => Exchange::ALL.into_iter().find(|e| e.as_str() == other),
        };
        found.ok_or_else(|| InstrumentError::UnknownExchange(s.to_owned()))
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

/// Maps exchange-specific asset codes to the common code (`XBT` to `BTC`).
#[must_use]
pub fn normalize_asset(code: &str) -> String {
    let upper = code.trim().to_ascii_uppercase();
    match upper.as_str() {
        "XBT" | "XXBT" => "BTC".to_owned(),
        "XDG" | "XXDG" => "DOGE".to_owned(),
        "XETH" => "ETH".to_owned(),
        "ZUSD" => "USD".to_owned(),
        "ZEUR" => "EUR".to_owned(),
        "ZGBP" => "GBP".to_owned(),
        "ZJPY" => "JPY".to_owned(),
        "ZCAD" => "CAD".to_owned(),
        "UST" => "USDT".to_owned(),
        _ => upper,
    }
}

/// A normalized instrument, `BASE-QUOTE` in upper case (`BTC-USDT`).
///
/// Cheap to clone: the text is shared.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instrument(Arc<str>);

impl Instrument {
    /// Builds `BASE-QUOTE` from two asset codes, normalizing aliases.
    #[must_use]
    pub fn new(base: &str, quote: &str) -> Instrument {
        Instrument(format!("{}-{}", normalize_asset(base), normalize_asset(quote)).into())
    }

    /// Parses `BASE-QUOTE` (also `BASE/QUOTE`), normalizing aliases.
    pub fn parse(text: &str) -> Result<Instrument, InstrumentError> {
        let bad = || InstrumentError::BadInstrument(text.to_owned());
        let (base, quote) = text.split_once(['-', '/']).ok_or_else(bad)?;
        let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid(base) || !valid(quote) {
            return Err(bad());
        }
        Ok(Instrument::new(base, quote))
    }

    /// The base asset (`BTC` of `BTC-USDT`).
    #[must_use]
    pub fn base(&self) -> &str {
        self.0.split_once('-').map_or(&*self.0, |(b, _)| b)
    }

    /// The quote asset (`USDT` of `BTC-USDT`).
    #[must_use]
    pub fn quote(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, q)| q)
    }

    /// The text, `BASE-QUOTE`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when both share the same text allocation (a fast equality hint).
    #[must_use]
    pub fn ptr_eq(&self, other: &Instrument) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl FromStr for Instrument {
    type Err = InstrumentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Instrument::parse(s)
    }
}

impl fmt::Display for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Instrument {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Instrument {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Instrument::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An instrument as one exchange lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstrumentInfo {
    /// The venue.
    pub exchange: Exchange,
    /// The normalized instrument.
    pub instrument: Instrument,
    /// The exchange's own symbol (`BTCUSDT`, `tBTCUSD`, `XBT/USD`).
    pub native_symbol: String,
    /// The venue's status text, such as `TRADING`, when known.
    pub status: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruments_normalize_aliases() {
        assert_eq!(
            Instrument::parse("xbt/usd").expect("valid").as_str(),
            "BTC-USD"
        );
        let i = Instrument::parse("BTC-USDT").expect("valid");
        assert_eq!((i.base(), i.quote()), ("BTC", "USDT"));
        for bad in ["BTCUSDT", "BTC-", "-USD", "BTC-US D"] {
            assert!(Instrument::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_exchange_lists_valid_ones() {
        let err = "binanse".parse::<Exchange>().expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("binanse") && msg.contains("binance, coinbase-exchange"),
            "{msg}"
        );
        assert_eq!("GDAX".parse::<Exchange>(), Ok(Exchange::CoinbaseExchange));
        for e in Exchange::ALL {
            assert_eq!(e.as_str().parse::<Exchange>(), Ok(e));
        }
    }
}
