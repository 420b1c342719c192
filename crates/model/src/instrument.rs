//! Exchanges and instruments.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::Exchange;

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
