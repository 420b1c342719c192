//! Binance.US spot: Binance's protocol family on its own hosts
//! (`stream.binance.us:9443`, `api.binance.us`) with its own instruments
//! (`BTCUSD`, `BTCUSDT`, …). The parser, WebSocket protocol and REST
//! history are Binance's, run as this venue ([`crate::binance`]); what
//! differs is here:
//!
//! - the hosts, and a REST budget of 1,200 weight a minute (the
//!   `REQUEST_WEIGHT` limit its `exchangeInfo` publishes);
//! - `historicalTrades` (trades by id, which gap repair and backfill use)
//!   is a `MARKET_DATA` endpoint on Binance.US and wants an API key in
//!   `X-MBX-APIKEY`: candlekeep sends the one in
//!   `CANDLEKEEP_BINANCE_US_API_KEY`. Without it, gaps are recorded and
//!   stay open, and trade backfill fails naming the variable; candles,
//!   `verify` and polling need no key.

use std::sync::Arc;

use ck_model::Exchange;

use crate::binance::{ApiKey, BinanceParser, BinanceProtocol, BinanceRest};

/// The public market-data WebSocket.
pub const DEFAULT_WS_URL: &str = "wss://stream.binance.us:9443";

/// The public REST API.
pub const DEFAULT_REST_URL: &str = "https://api.binance.us";

/// The environment variable holding the API key for `historicalTrades`.
pub const API_KEY_ENV: &str = "CANDLEKEEP_BINANCE_US_API_KEY";

/// Binance.US in the venue registry ([`crate::venues`]).
pub const VENUE: crate::venues::Venue = crate::venues::Venue {
    exchange: Exchange::BinanceUs,
    parser: || Box::new(BinanceParser::of(Exchange::BinanceUs)),
    live: |_| {
        (
            Arc::new(BinanceProtocol::of(Exchange::BinanceUs)),
            DEFAULT_WS_URL,
        )
    },
    rest_url: DEFAULT_REST_URL,
    rest_limit: (1_200, std::time::Duration::from_secs(60)),
    history: |c| Arc::new(BinanceRest::new(c).with_api_key(ApiKey::from_env(API_KEY_ENV))),
    ticker: crate::binance::ticker,
    ticker_refusal: |_| None,
    listing: Some(crate::binance::LISTING),
    book: Some(|| Box::new(crate::binance::book::BinanceBooks::new(Exchange::BinanceUs))),
    cryptofeed_names: &["BINANCE_US"],
    hosts: &["binance.us"],
};

#[cfg(test)]
mod tests {
    use ck_bus::{Event, Origin, RawMessage};
    use ck_model::{Instrument, TradeId, Ts};

    use super::*;
    use crate::parse::Parsed;

    #[test]
    fn binance_us_frames_become_binance_us_events() {
        let mut parser = (VENUE.parser)();
        let mut out = Vec::new();
        let frame = r#"{"stream":"btcusd@trade","data":{"e":"trade","E":1,"s":"BTCUSD","t":42,"p":"43000.12","q":"0.5","T":1700000000000,"m":true,"M":true}}"#;
        let msg = RawMessage {
            exchange: Exchange::BinanceUs,
            ts_received: Ts(7),
            origin: Origin::Ws,
            data: frame.into(),
        };
        assert_eq!(
            parser.parse(&msg, &mut out).expect("parses"),
            Parsed::Events(1)
        );
        let Some(Event::Trade(t)) = out.pop() else {
            panic!("a trade");
        };
        assert_eq!(t.exchange, Exchange::BinanceUs);
        assert_eq!(t.instrument.as_str(), "BTC-USD");
        assert_eq!(t.trade_id, TradeId::Num(42));
        assert_eq!(parser.exchange(), Exchange::BinanceUs);
    }

    #[test]
    fn the_live_protocol_is_binances_on_the_us_hosts() {
        let (protocol, url) = (VENUE.live)(None);
        assert_eq!(protocol.exchange(), Exchange::BinanceUs);
        assert_eq!(url, "wss://stream.binance.us:9443");
        let i = Instrument::parse("BTC-USD").expect("i");
        assert_eq!(
            protocol.connect_url(url, std::slice::from_ref(&i)),
            "wss://stream.binance.us:9443/stream?streams=btcusd@trade/btcusd@bookTicker"
        );
        assert_eq!(
            crate::venues::by_host("stream.binance.us").map(|v| v.exchange),
            Some(Exchange::BinanceUs)
        );
        assert_eq!(
            crate::venues::by_host("api.binance.com").map(|v| v.exchange),
            Some(Exchange::Binance)
        );
        assert_eq!(
            crate::venues::by_cryptofeed_name("binance_us").map(|v| v.exchange),
            Some(Exchange::BinanceUs)
        );
    }
}
