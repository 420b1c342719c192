//! REST history behind one trait, so gap repair works the same for every
//! venue: by trade id (Binance, Coinbase Exchange, OKX) or by time
//! (Bitfinex, Kraken, Coinbase Advanced, and the venues that keep only
//! recent trades).

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
    /// The venue: its REST client's.
    fn exchange(&self) -> Exchange {
        self.client().exchange()
    }

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

    /// The exchange's own candles opening at or after `start` (one
    /// request's worth, at most `limit`), oldest first; the candle still
    /// open is provisional. Fields the venue does not publish
    /// ([`Exchange::candle_fields`]) are 0.
    async fn candles(
        &self,
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<CandlePage, HistoryError>;
}

/// One answer of exchange candles, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandlePage {
    /// Candles opening at or after the start asked for, oldest first.
    pub candles: Vec<Candle>,
    /// Every candle the exchange has between the start asked for and this
    /// time is in `candles`: the next page starts here. Venues asked for a
    /// time window say its end (a window may hold no candle where the
    /// venue skips quiet intervals); the others the last candle's close.
    pub next: Ts,
    /// The answer reached the present (or all the venue serves): there is
    /// no next page.
    pub at_end: bool,
}

impl CandlePage {
    /// A page of a venue asked for the window from `start` to `end`
    /// (exclusive): the next page starts at `end`, and there is none once
    /// the window reaches the present.
    #[must_use]
    pub fn window(candles: Vec<Candle>, end: Ts, now: Ts) -> CandlePage {
        CandlePage {
            candles,
            next: end,
            at_end: end > now,
        }
    }
}

/// One window of candles, `[start, end)`: GETs `path` (which asks for that
/// window), reads the body with `read` (given the time now, for which
/// candles are still open), keeps the candles inside the window, and says
/// the next window starts at `end`. Rate limits reported in the body and
/// recognised by `limited` are waited out as [`get_read`] does.
pub(crate) async fn candle_window(
    client: &RestClient,
    path: &str,
    (start, end): (Ts, Ts),
    limited: impl Fn(&str) -> bool,
    read: impl Fn(&str, Ts) -> Result<Vec<Candle>, ParseError>,
) -> Result<CandlePage, HistoryError> {
    let now = Ts::now();
    let mut candles = get_read(client, path, limited, |body| read(body, now)).await?;
    candles.retain(|c| c.open_time >= start && c.open_time < end);
    Ok(CandlePage::window(candles, end, now))
}

/// Candles from rows of a time and five numbers, `[t, a, b, c, d, e]`
/// (Bitfinex's and Coinbase Exchange's, in either order), oldest first:
/// `fields` names a row's numbers (their JSON text) for the venue.
pub(crate) fn number_row_candles<'a>(
    exchange: Exchange,
    body: &'a str,
    (instrument, interval, now): (&Instrument, Interval, Ts),
    fields: impl Fn(i64, [&'a str; 5]) -> VenueCandle<'a>,
) -> Result<Vec<Candle>, ParseError> {
    use serde_json::value::RawValue;
    type Row<'a> = (
        i64,
        &'a RawValue,
        &'a RawValue,
        &'a RawValue,
        &'a RawValue,
        &'a RawValue,
    );
    let mut rows: Vec<Row<'a>> =
        serde_json::from_str(body).map_err(crate::parse::json(exchange))?;
    rows.sort_by_key(|r| r.0);
    rows.into_iter()
        .map(|(t, a, b, c, d, e)| {
            fields(t, [a.get(), b.get(), c.get(), d.get(), e.get()])
                .candle(exchange, instrument, interval, now)
        })
        .collect()
}

/// The end (exclusive) of a window of `limit` candles of `interval` from
/// `start`, for venues asked by time window.
#[must_use]
pub fn window_end(interval: Interval, start: Ts, limit: u32) -> Ts {
    let mut end = start;
    for _ in 0..limit.max(1) {
        end = interval.next_start(end);
    }
    end
}

/// One exchange candle's fields as a venue writes them; `None` for what it
/// does not publish.
pub(crate) struct VenueCandle<'a> {
    pub open_time: Ts,
    pub open: &'a str,
    pub high: &'a str,
    pub low: &'a str,
    pub close: &'a str,
    pub volume: &'a str,
    pub quote_volume: Option<&'a str>,
    pub trades: Option<u64>,
}

impl VenueCandle<'_> {
    /// The candle, exact decimals read from the venue's text; provisional
    /// while its interval has not passed at `now`. Unpublished volumes and
    /// counts are 0, and so is the VWAP without a quote volume.
    pub(crate) fn candle(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        interval: Interval,
        now: Ts,
    ) -> Result<Candle, ParseError> {
        use crate::parse::decimal;
        let zero = ck_model::Decimal::new(0, 0);
        let close = decimal(exchange, "candle close", self.close)?;
        let volume = decimal(exchange, "candle volume", self.volume)?;
        let quote_volume = match self.quote_volume {
            Some(q) => decimal(exchange, "candle quote volume", q)?,
            None => zero,
        };
        let vwap = match self.quote_volume {
            Some(_) => quote_volume
                .checked_div(volume, close.scale().saturating_add(4))
                .unwrap_or(close),
            None => zero,
        };
        Ok(Candle {
            exchange,
            instrument: instrument.clone(),
            interval,
            open_time: self.open_time,
            open: decimal(exchange, "candle open", self.open)?,
            high: decimal(exchange, "candle high", self.high)?,
            low: decimal(exchange, "candle low", self.low)?,
            close,
            volume,
            quote_volume,
            vwap,
            taker_buy_volume: zero,
            trades: self.trades.unwrap_or(0),
            first_trade_id: None,
            last_trade_id: None,
            state: if interval.next_start(self.open_time) > now {
                ck_model::CandleState::Provisional
            } else {
                ck_model::CandleState::Closed
            },
        })
    }
}

/// The refusal of an interval a venue's candles do not come in.
pub(crate) fn no_such_interval(
    exchange: Exchange,
    interval: Interval,
    valid: &str,
) -> HistoryError {
    HistoryError::Unsupported(format!(
        "{exchange} publishes no {interval} candles; it has {valid}"
    ))
}

/// The REST history of `exchange` over `client`, where candlekeep has one.
#[must_use]
pub fn for_exchange(exchange: Exchange, client: Arc<RestClient>) -> Option<Arc<dyn History>> {
    crate::venues::venue(exchange).map(|v| (v.history)(client))
}

/// The public REST root of a venue whose history candlekeep reads.
#[must_use]
pub fn default_rest_url(exchange: Exchange) -> Option<&'static str> {
    crate::venues::venue(exchange).map(|v| v.rest_url)
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
