//! REST history behind one trait, so gap repair works the same for every
//! venue: by trade id (Binance, Coinbase Exchange) or by time (Bitfinex,
//! Kraken).

use ck_model::{Candle, Exchange, Instrument, Interval, Trade, Ts};

use std::sync::Arc;

use crate::parse::ParseError;
use crate::rest::{RestClient, RestError};

/// Why a history request failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The request failed.
    #[error(transparent)]
    Rest(#[from] RestError),
    /// The venue does not serve this.
    #[error("{0}")]
    Unsupported(String),
    /// The response could not be read.
    #[error("{url}: {source}")]
    Parse {
        /// The URL.
        url: String,
        /// What was wrong.
        #[source]
        source: ParseError,
    },
}

/// A venue's REST history. Every call spends the venue's shared rate budget.
#[async_trait::async_trait]
pub trait History: Send + Sync + std::fmt::Debug {
    /// The venue.
    fn exchange(&self) -> Exchange;

    /// The REST client (and so the rate budget) this history spends.
    fn client(&self) -> &RestClient;

    /// The most rows one request returns.
    fn page_size(&self) -> u32;

    /// True when the venue's history is read by time
    /// ([`History::trades_from_time`]) rather than by trade id.
    fn by_time(&self) -> bool {
        false
    }

    /// What the venue keeps, when it serves only recent trades (one page,
    /// whatever the time asked for), such as "its 60 most recent spot
    /// trades": history older than that cannot be fetched. `None` for
    /// venues with their whole history. Such a venue's
    /// [`History::trades_from_time`] returns its whole page, trades before
    /// `from` too, so that the caller sees how far back it reaches.
    fn keeps_only(&self) -> Option<&'static str> {
        None
    }

    /// Up to `limit` trades at or after `from`, oldest first (venues read
    /// by time; trades at the page's last instant may continue on the next).
    async fn trades_from_time(
        &self,
        instrument: &Instrument,
        from: Ts,
        limit: u32,
    ) -> Result<Vec<Trade>, HistoryError> {
        let _ = (instrument, from, limit);
        Err(HistoryError::Unsupported(format!(
            "{} history is read by trade id",
            self.exchange()
        )))
    }

    /// Up to `limit` trades with id `>= from_id`, oldest first (venues read
    /// by id).
    async fn trades_from_id(
        &self,
        instrument: &Instrument,
        from_id: u64,
        limit: u32,
    ) -> Result<Vec<Trade>, HistoryError> {
        let _ = (instrument, from_id, limit);
        Err(self.read_by_time())
    }

    /// The id of the first trade at or after `at`; `None` if none happened
    /// since (venues read by id).
    async fn first_trade_id_at(
        &self,
        instrument: &Instrument,
        at: Ts,
    ) -> Result<Option<u64>, HistoryError> {
        let _ = (instrument, at);
        Err(self.read_by_time())
    }

    /// The refusal of a by-id call on a venue read by time.
    fn read_by_time(&self) -> HistoryError {
        HistoryError::Unsupported(format!(
            "{} REST pages trades by time, not by id",
            self.exchange()
        ))
    }

    /// Up to `limit` of the exchange's own candles opening at or after
    /// `start`, oldest first; the candle still open is provisional.
    async fn candles(
        &self,
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<Vec<Candle>, HistoryError>;
}

/// The REST history of `exchange` over `client`, where candlekeep has one.
#[must_use]
pub fn for_exchange(exchange: Exchange, client: Arc<RestClient>) -> Option<Arc<dyn History>> {
    match exchange {
        Exchange::Binance => Some(Arc::new(crate::binance::BinanceRest::new(client))),
        Exchange::CoinbaseExchange => Some(Arc::new(
            crate::coinbase_exchange::rest::CoinbaseExchangeRest::new(client),
        )),
        Exchange::Bitfinex => Some(Arc::new(crate::bitfinex::rest::BitfinexRest::new(client))),
        Exchange::Kraken => Some(Arc::new(crate::kraken::rest::KrakenRest::new(client))),
        Exchange::Bybit => Some(Arc::new(crate::bybit::rest::BybitRest::new(client))),
        Exchange::Bitstamp => Some(Arc::new(crate::bitstamp::rest::BitstampRest::new(client))),
        _ => None,
    }
}

/// The public REST root of a venue whose history candlekeep reads.
#[must_use]
pub fn default_rest_url(exchange: Exchange) -> Option<&'static str> {
    match exchange {
        Exchange::Binance => Some(crate::binance::DEFAULT_REST_URL),
        Exchange::CoinbaseExchange => Some(crate::coinbase_exchange::rest::DEFAULT_REST_URL),
        Exchange::Bitfinex => Some(crate::bitfinex::rest::DEFAULT_REST_URL),
        Exchange::Kraken => Some(crate::kraken::rest::DEFAULT_REST_URL),
        Exchange::Bybit => Some(crate::bybit::rest::DEFAULT_REST_URL),
        Exchange::Bitstamp => Some(crate::bitstamp::rest::DEFAULT_REST_URL),
        _ => None,
    }
}

/// Pause after a venue says, in an answer's body, that it is rate limited.
const LIMITED_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// Times a request is made again after such an answer.
const LIMITED_RETRIES: u32 = 5;

/// GETs `path` and reads the body with `read`. Some venues say they are
/// rate limited in the body of an HTTP 200 (Kraken's `Too many requests`,
/// Bybit's `retCode` 10006), which the client cannot see: when `read`
/// reports a venue error that `limited` recognises, the venue's budget is
/// paused and the request made again (five times at most).
pub(crate) async fn get_read<T>(
    client: &RestClient,
    path: &str,
    limited: impl Fn(&str) -> bool,
    read: impl Fn(&str) -> Result<T, ParseError>,
) -> Result<T, HistoryError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let response = client.get(path, 1).await?;
        match read(&response.body) {
            Err(ParseError::Venue { message, .. })
                if limited(&message) && attempt <= LIMITED_RETRIES =>
            {
                tracing::warn!(url = %response.url, %message, "rate limited; pausing");
                client.budget().pause_for(LIMITED_PAUSE);
            }
            Ok(value) => return Ok(value),
            Err(source) => {
                return Err(HistoryError::Parse {
                    url: response.url.clone(),
                    source,
                });
            }
        }
    }
}
