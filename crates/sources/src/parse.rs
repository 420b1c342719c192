//! The parser contract: one raw message in, normalized events out.

use std::collections::HashMap;

use ck_bus::{Event, RawMessage};
use ck_model::{Decimal, Exchange, Instrument, InstrumentInfo};

/// Why a message could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not valid JSON, or not the shape the venue documents.
    #[error("malformed {exchange} message")]
    Json {
        /// The venue.
        exchange: Exchange,
        /// The decoder's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A symbol that the venue's instrument list does not have.
    #[error("unknown {exchange} symbol `{symbol}`")]
    UnknownSymbol {
        /// The venue.
        exchange: Exchange,
        /// The symbol as sent.
        symbol: String,
    },
    /// A field that should hold a number or time does not.
    #[error("bad {field} `{value}` in {exchange} message")]
    BadField {
        /// The venue.
        exchange: Exchange,
        /// Which field.
        field: &'static str,
        /// What it held.
        value: String,
    },
    /// The venue said something went wrong (an error event).
    #[error("{exchange} reported an error: {message}")]
    Venue {
        /// The venue.
        exchange: Exchange,
        /// Its message.
        message: String,
    },
}

/// What a parser made of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// It produced this many events.
    Events(usize),
    /// A message we understand and deliberately do not use (book diffs,
    /// subscription acks, heartbeats). Counted per exchange, not an error.
    Ignored,
}

/// Turns one venue's raw messages into normalized events. Parsers keep the
/// state they need (the symbol table, channel ids) and never read the clock:
/// receive times come with the message.
pub trait Parser: Send {
    /// The venue this parser reads.
    fn exchange(&self) -> Exchange;

    /// Parses one message, appending events to `out`.
    fn parse(&mut self, msg: &RawMessage, out: &mut Vec<Event>) -> Result<Parsed, ParseError>;
}

/// A parser for `exchange`, if candlekeep has one yet.
#[must_use]
pub fn parser_for(exchange: Exchange) -> Option<Box<dyn Parser>> {
    crate::venues::venue(exchange).map(|v| (v.parser)())
}

/// Exchange-native symbols to normalized instruments, filled from the
/// venue's instrument list, with a fallback that splits a known quote asset
/// off the end of concatenated symbols (`BTCUSDT`) until the list arrives.
#[derive(Debug, Default)]
pub struct SymbolMap {
    by_native: HashMap<String, Instrument>,
    /// Set once the venue's list arrived: from then on, only listed symbols pass.
    listed: bool,
}

/// Quote assets, longest first, for splitting concatenated symbols.
const KNOWN_QUOTES: &[&str] = &[
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "EUR", "GBP", "TRY", "BRL", "AUD",
    "JPY", "RUB", "UAH", "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE", "USD",
];

impl SymbolMap {
    /// Records one listing.
    pub fn insert(&mut self, native: &str, instrument: Instrument) {
        if !self.listed {
            // Guesses made before the list arrived must not outlive it.
            self.by_native.clear();
            self.listed = true;
        }
        self.by_native.insert(native.to_owned(), instrument);
    }

    /// The instrument for a native symbol. `splittable` allows the fallback
    /// for venues whose symbols concatenate base and quote.
    pub fn resolve(
        &mut self,
        exchange: Exchange,
        native: &str,
        splittable: bool,
    ) -> Result<Instrument, ParseError> {
        if let Some(i) = self.by_native.get(native) {
            return Ok(i.clone());
        }
        let unknown = || ParseError::UnknownSymbol {
            exchange,
            symbol: native.to_owned(),
        };
        if !splittable || self.listed {
            return Err(unknown());
        }
        let upper = native.to_ascii_uppercase();
        let quote = KNOWN_QUOTES
            .iter()
            .find(|q| upper.len() > q.len() && upper.ends_with(*q))
            .ok_or_else(unknown)?;
        let base = &upper[..upper.len() - quote.len()];
        let instrument = Instrument::new(base, quote);
        self.by_native.insert(native.to_owned(), instrument.clone());
        Ok(instrument)
    }

    /// The instrument for a native id already written `BASE-QUOTE`
    /// (Coinbase, OKX): the listing decides once it has arrived; before that,
    /// the id itself is parsed.
    pub fn resolve_dashed(
        &mut self,
        exchange: Exchange,
        native: &str,
    ) -> Result<Instrument, ParseError> {
        match self.resolve(exchange, native, false) {
            Err(e) if self.by_native.is_empty() => Instrument::parse(native).map_err(|_| e),
            other => other,
        }
    }

    /// How many symbols are known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_native.len()
    }

    /// True when no symbol is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_native.is_empty()
    }
}

/// Parses one WebSocket frame (received at `Ts(5)`), for parser unit tests.
#[cfg(test)]
pub(crate) fn parse_ws(parser: &mut dyn Parser, data: &str) -> Result<Vec<Event>, ParseError> {
    let msg = RawMessage {
        exchange: parser.exchange(),
        ts_received: ck_model::Ts(5),
        origin: ck_bus::Origin::Ws,
        data: data.into(),
    };
    let mut out = Vec::new();
    parser.parse(&msg, &mut out).map(|_| out)
}

/// The path segment of `url` right after `marker` (up to the next `/` or
/// `?`): the symbol of a REST answer whose body does not name it.
pub(crate) fn segment_after<'a>(url: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &url[url.find(marker)? + marker.len()..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|s| !s.is_empty())
}

/// A polled ticker's fields, as text (the REST polling source), with the
/// venue's names for the two it must have.
pub(crate) struct PolledTicker<'a> {
    pub(crate) bid: (&'static str, Option<&'a str>),
    pub(crate) bid_size: Option<&'a str>,
    pub(crate) ask: (&'static str, Option<&'a str>),
    pub(crate) ask_size: Option<&'a str>,
    pub(crate) last: Option<&'a str>,
}

impl PolledTicker<'_> {
    /// The quote of `instrument` on `exchange`, at `at` (venues without a
    /// time in their ticker: the time it was received).
    pub(crate) fn quote(
        &self,
        exchange: Exchange,
        instrument: ck_model::Instrument,
        at: ck_model::Ts,
        received: ck_model::Ts,
    ) -> Result<ck_model::Quote, ParseError> {
        let opt = |field, v: Option<&str>| {
            v.filter(|t| !t.is_empty())
                .map(|t| decimal(exchange, field, t))
                .transpose()
        };
        Ok(ck_model::Quote {
            exchange,
            instrument,
            bid: decimal(
                exchange,
                self.bid.0,
                required(exchange, self.bid.0, self.bid.1)?,
            )?,
            bid_size: opt("bid size", self.bid_size)?,
            ask: decimal(
                exchange,
                self.ask.0,
                required(exchange, self.ask.0, self.ask.1)?,
            )?,
            ask_size: opt("ask size", self.ask_size)?,
            last: opt("last", self.last)?,
            ts_exchange: at,
            ts_received: received,
        })
    }
}

/// Test helper: parses one REST answer from `url` with `parser`.
#[cfg(test)]
pub(crate) fn parse_rest(
    parser: &mut dyn Parser,
    url: &str,
    data: &str,
) -> Result<Vec<Event>, ParseError> {
    let msg = RawMessage {
        exchange: parser.exchange(),
        ts_received: ck_model::Ts(5),
        origin: ck_bus::Origin::Rest { url: url.into() },
        data: data.into(),
    };
    let mut out = Vec::new();
    parser.parse(&msg, &mut out).map(|_| out)
}

/// The one quote in `events` (test helper): instrument, bid, ask, last,
/// as text.
#[cfg(test)]
pub(crate) fn only_quote(events: &[Event]) -> (String, String, String, Option<String>) {
    match events {
        [Event::Quote(q)] => (
            q.instrument.to_string(),
            q.bid.to_string(),
            q.ask.to_string(),
            q.last.map(|l| l.to_string()),
        ),
        other => panic!("one quote expected: {other:?}"),
    }
}

/// Maps a decoder error to [`ParseError::Json`] for `exchange`.
pub(crate) fn json(exchange: Exchange) -> impl Fn(serde_json::Error) -> ParseError {
    move |source| ParseError::Json { exchange, source }
}

/// The value of a field the message must have.
pub(crate) fn required<T>(
    exchange: Exchange,
    field: &'static str,
    v: Option<T>,
) -> Result<T, ParseError> {
    v.ok_or(ParseError::BadField {
        exchange,
        field,
        value: "(missing)".into(),
    })
}

/// Parses an exact decimal field, naming the field on failure.
pub(crate) fn decimal(
    exchange: Exchange,
    field: &'static str,
    text: &str,
) -> Result<Decimal, ParseError> {
    Decimal::parse(text).map_err(|_| ParseError::BadField {
        exchange,
        field,
        value: text.to_owned(),
    })
}

/// Builds the listing event for one instrument.
pub(crate) fn listing(
    exchange: Exchange,
    instrument: Instrument,
    native: &str,
    status: Option<&str>,
) -> Event {
    Event::Instrument(InstrumentInfo {
        exchange,
        instrument,
        native_symbol: native.to_owned(),
        status: status.map(str::to_owned),
    })
}
