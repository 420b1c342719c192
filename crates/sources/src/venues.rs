//! The venue registry: one [`Venue`] per venue, defined in the venue's own
//! folder (`<venue>/mod.rs`, `VENUE`) and listed once in [`VENUES`] (the
//! `venues!` line of `lib.rs`, which declares its module too). Code
//! that needs a venue's parser, live protocol, REST history, public ticker
//! or names asks [`venue`] instead of matching on the exchange, so adding a
//! venue adds a folder and a name to that line.

use std::sync::Arc;

use ck_model::{Exchange, Instrument};

use crate::history::History;
use crate::live::connector::WsProtocol;
use crate::parse::Parser;
use crate::rest::RestClient;

/// A live WebSocket protocol and the venue's public URL for it.
pub type LiveProtocol = (Arc<dyn WsProtocol>, &'static str);

/// What candlekeep knows of one venue.
#[derive(Clone, Copy)]
pub struct Venue {
    /// Which venue.
    pub exchange: Exchange,
    /// A parser of its messages, WebSocket and REST, fresh (it keeps state:
    /// the instrument list, channel ids).
    pub parser: fn() -> Box<dyn Parser>,
    /// Its live WebSocket protocol and public URL; `api` picks a version
    /// where the venue has several (Kraken's `v1`).
    pub live: fn(api: Option<&str>) -> LiveProtocol,
    /// Its public REST root.
    pub rest_url: &'static str,
    /// Its published public REST limit: this much weight per period (see
    /// `exchanges.md`).
    pub rest_limit: (u32, std::time::Duration),
    /// Its REST history (trades, candles) on a client of that root.
    pub history: fn(Arc<RestClient>) -> Arc<dyn History>,
    /// The REST request of its public best bid/ask (or ticker) for one
    /// instrument, which its parser reads into a quote, and the request's
    /// weight against the venue's budget.
    pub ticker: fn(&Instrument) -> (String, u32),
    /// Why the venue refused a ticker request's symbol in the body of an
    /// HTTP 200, where it does so (then the instrument is no longer polled).
    pub ticker_refusal: fn(&serde_json::Value) -> Option<String>,
    /// Where it lists its instruments, checked before live capture starts
    /// (none: not checked).
    pub listing: Option<crate::listing::ListingRequest>,
    /// A reader of its book channel, for one connection.
    pub book: Option<fn() -> Box<dyn crate::book::BookReader>>,
    /// Its names in cryptofeed's recordings, upper case.
    pub cryptofeed_names: &'static [&'static str],
    /// The hosts of its URLs (a recording's URL ending in one is the venue's).
    pub hosts: &'static [&'static str],
}

impl std::fmt::Debug for Venue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Venue")
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

pub use crate::VENUES;

/// The venue `exchange` is, if candlekeep captures it.
#[must_use]
pub fn venue(exchange: Exchange) -> Option<&'static Venue> {
    VENUES.iter().copied().find(|v| v.exchange == exchange)
}

/// The venue cryptofeed records under `name` (any case).
#[must_use]
pub fn by_cryptofeed_name(name: &str) -> Option<&'static Venue> {
    let name = name.to_ascii_uppercase();
    VENUES
        .iter()
        .copied()
        .find(|v| v.cryptofeed_names.contains(&name.as_str()))
}

/// The venue whose URLs are on `host` (the longest matching host wins:
/// `exchange.coinbase.com` is Coinbase Exchange, `api.coinbase.com`
/// Advanced Trade).
#[must_use]
pub fn by_host(host: &str) -> Option<&'static Venue> {
    let host = host.to_ascii_lowercase();
    VENUES
        .iter()
        .copied()
        .flat_map(|v| v.hosts.iter().map(move |h| (v, *h)))
        .filter(|(_, h)| host == *h || host.ends_with(&format!(".{h}")))
        .max_by_key(|(_, h)| h.len())
        .map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exchange_has_one_venue() {
        for exchange in Exchange::ALL {
            let found: Vec<_> = VENUES.iter().filter(|v| v.exchange == exchange).collect();
            assert_eq!(found.len(), 1, "{exchange}");
        }
    }

    #[test]
    fn hosts_and_recording_names_find_their_venue() {
        let cases = [
            ("ws-feed.pro.coinbase.com", Exchange::CoinbaseExchange),
            ("api.exchange.coinbase.com", Exchange::CoinbaseExchange),
            ("advanced-trade-ws.coinbase.com", Exchange::Coinbase),
            ("api.coinbase.com", Exchange::Coinbase),
            ("stream.binance.com", Exchange::Binance),
            ("ws.kraken.com", Exchange::Kraken),
            ("api-pub.bitfinex.com", Exchange::Bitfinex),
            ("ws.bitstamp.net", Exchange::Bitstamp),
            ("www.okex.com", Exchange::Okx),
            ("stream.bybit.com", Exchange::Bybit),
        ];
        for (host, exchange) in cases {
            assert_eq!(by_host(host).map(|v| v.exchange), Some(exchange), "{host}");
        }
        assert!(by_host("example.com").is_none());
        assert_eq!(
            by_cryptofeed_name("coinbase_pro").map(|v| v.exchange),
            Some(Exchange::CoinbaseExchange)
        );
        assert_eq!(
            by_cryptofeed_name("OKEX").map(|v| v.exchange),
            Some(Exchange::Okx)
        );
    }
}
