//! The Redis sink: hot state and pub/sub for outside apps, kept up to date
//! from the live feed.
//!
//! - **Latest candle per stream:** a hash per exchange, instrument and
//!   interval (`redis.candle_key`; by default the older OHLCV database's
//!   `ws_send_{exchange};;{base};;{quote}` for 1m).
//! - **Price, bid and ask history** (`redis.history`): sorted sets
//!   `<namespace>:PRICE_HISTORY`, `BID_HISTORY` and `ASK_HISTORY` scored by
//!   unix time in seconds, members `<unix ms>:<price>`, the original
//!   tracker's layout. Entries older than `redis.history_secs` behind the
//!   newest are trimmed.
//! - **Pub/sub:** `<prefix>.trades.<exchange>.<instrument>`,
//!   `<prefix>.tickers.…` and `<prefix>.candles.<exchange>.<instrument>.<interval>`,
//!   JSON.
//!
//! The sink reads the live feed, which never waits for it: Redis being slow
//! or down never stops capture. It reconnects by itself; what it could not
//! write is counted (`candlekeep_redis_failed_total`) and logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ck_bus::{Event, LiveFeed, metrics};
use ck_model::{Candle, Exchange, Instrument, Interval, Ts};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// The Redis sink. Off unless `url` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://HOST:PORT/DB`; empty turns the sink off.
    pub url: String,
    /// Key of the hash holding the latest candle of a stream. Placeholders:
    /// `{exchange}`, `{base}`, `{quote}`, `{instrument}`, `{interval}`. The
    /// default is the older OHLCV database's.
    pub candle_key: String,
    /// Intervals whose latest candle is kept.
    pub candle_intervals: Vec<Interval>,
    /// Keep price, bid and ask history in sorted sets scored by unix time
    /// (`<namespace>:PRICE_HISTORY`, `BID_HISTORY`, `ASK_HISTORY`).
    pub history: bool,
    /// Namespace of an instrument's history keys (same placeholders).
    pub history_namespace: String,
    /// History older than this many seconds is trimmed.
    pub history_secs: u64,
    /// Prefix of the pub/sub channels: `<prefix>.trades.<exchange>.<instrument>`,
    /// `<prefix>.tickers.…` and `<prefix>.candles.<exchange>.<instrument>.<interval>`.
    pub channel_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: String::new(),
            candle_key: "ws_send_{exchange};;{base};;{quote}".into(),
            candle_intervals: vec![Interval::M1],
            history: true,
            history_namespace: "{exchange}:{instrument}".into(),
            history_secs: 24 * 3600,
            channel_prefix: "candlekeep".into(),
        }
    }
}

/// What the sink did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Events written (one pipeline may hold many).
    pub written: u64,
    /// Events that could not be written (Redis down or refusing).
    pub failed: u64,
    /// Events the sink fell too far behind to see.
    pub lagged: u64,
}

/// Fills a key template.
fn key(
    template: &str,
    exchange: Exchange,
    instrument: &Instrument,
    interval: Option<Interval>,
) -> String {
    template
        .replace("{exchange}", exchange.as_str())
        .replace("{base}", instrument.base())
        .replace("{quote}", instrument.quote())
        .replace("{instrument}", instrument.as_str())
        .replace("{interval}", interval.map_or("", Interval::as_str))
}

/// The hash key of a stream's latest candle. A template without
/// `{interval}` names the 1m hash; other intervals get `;;<interval>` added.
#[must_use]
pub fn candle_key(config: &RedisConfig, c: &Candle) -> String {
    let base = key(
        &config.candle_key,
        c.exchange,
        &c.instrument,
        Some(c.interval),
    );
    if config.candle_key.contains("{interval}") || c.interval == Interval::M1 {
        base
    } else {
        format!("{base};;{}", c.interval)
    }
}

/// The history namespace of an instrument.
#[must_use]
pub fn history_namespace(
    config: &RedisConfig,
    exchange: Exchange,
    instrument: &Instrument,
) -> String {
    key(&config.history_namespace, exchange, instrument, None)
}

fn unix_secs(ts: Ts) -> f64 {
    ts.0 as f64 / 1e9
}

/// Runs the sink until `stop`.
pub async fn run_redis_sink(
    config: RedisConfig,
    feed: LiveFeed,
    stop: CancellationToken,
) -> RedisStats {
    let mut rx = feed.subscribe();
    let mut stats = RedisStats::default();
    let written = metrics::counter("candlekeep_redis_written_total");
    let failed = metrics::counter("candlekeep_redis_failed_total");
    let lagged = metrics::counter("candlekeep_redis_lagged_total");
    let client = match redis::Client::open(config.url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %ck_bus::secrets::redact_credentials(&config.url), error = %ck_bus::secrets::scrub(&e.to_string(), &ck_bus::secrets::url_secrets(&config.url)), "redis.url is not usable; the Redis sink is off");
            return stats;
        }
    };
    tracing::info!(url = %ck_bus::secrets::redact_credentials(&config.url), "Redis sink on: connects with the first events");
    let mut conn: Option<redis::aio::ConnectionManager> = None;
    let mut latest: HashMap<String, i64> = HashMap::new();
    let mut newest_score: HashMap<String, f64> = HashMap::new();
    let mut last_trim: HashMap<String, f64> = HashMap::new();
    let mut last_error_log: Option<std::time::Instant> = None;
    let mut batch: Vec<Arc<Event>> = Vec::new();
    loop {
        // Wait for one event, then take what else is ready (up to 512).
        let first = tokio::select! {
            () = stop.cancelled() => break,
            r = rx.recv() => r,
        };
        match first {
            Ok(e) => batch.push(e),
            Err(RecvError::Lagged(n)) => {
                stats.lagged += n;
                lagged.inc_by(n);
                continue;
            }
            Err(RecvError::Closed) => break,
        }
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    stats.lagged += n;
                    lagged.inc_by(n);
                }
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        let mut events = 0u64;
        for event in batch.drain(..) {
            if add(
                &config,
                &event,
                &mut pipe,
                &mut latest,
                &mut newest_score,
                &mut last_trim,
            ) {
                events += 1;
            }
        }
        if events == 0 {
            continue;
        }
        if conn.is_none() {
            let cm_config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(2));
            match redis::aio::ConnectionManager::new_with_config(client.clone(), cm_config).await {
                Ok(c) => {
                    tracing::info!(url = %ck_bus::secrets::redact_credentials(&config.url), "Redis sink connected");
                    conn = Some(c);
                }
                Err(e) => {
                    note_failure(&mut stats, &failed, events, &e, &mut last_error_log);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match pipe.query_async::<()>(c).await {
            Ok(()) => {
                stats.written += events;
                written.inc_by(events);
            }
            Err(e) => {
                note_failure(&mut stats, &failed, events, &e, &mut last_error_log);
                if e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error() {
                    // The manager reconnects in the background; start anew
                    // if it gave up.
                    conn = None;
                }
            }
        }
    }
    stats
}

fn note_failure(
    stats: &mut RedisStats,
    failed: &metrics::Counter,
    events: u64,
    error: &redis::RedisError,
    last_log: &mut Option<std::time::Instant>,
) {
    stats.failed += events;
    failed.inc_by(events);
    if last_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
        *last_log = Some(std::time::Instant::now());
        tracing::warn!(error = %error, lost = stats.failed, "Redis write failed; capture goes on, the sink retries");
    }
}

/// Adds an event's commands to `pipe`; false when the sink ignores it.
fn add(
    config: &RedisConfig,
    event: &Event,
    pipe: &mut redis::Pipeline,
    latest: &mut HashMap<String, i64>,
    newest_score: &mut HashMap<String, f64>,
    last_trim: &mut HashMap<String, f64>,
) -> bool {
    let p = &config.channel_prefix;
    let mut history =
        |name: &str, exchange: Exchange, instrument: &Instrument, ts: Ts, value: String| {
            if !config.history {
                return;
            }
            let k = format!("{}:{name}", history_namespace(config, exchange, instrument));
            let score = unix_secs(ts);
            pipe.zadd(&k, format!("{}:{value}", ts.as_millis()), score)
                .ignore();
            let newest = newest_score.entry(k.clone()).or_insert(score);
            *newest = newest.max(score);
            let newest = *newest;
            // Trim at most once a minute of data time per key.
            let trimmed = last_trim.entry(k.clone()).or_insert(f64::MIN);
            if newest - *trimmed >= 60.0 {
                *trimmed = newest;
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(&k)
                    .arg("-inf")
                    .arg(format!("({}", newest - config.history_secs as f64))
                    .ignore();
            }
        };
    match event {
        Event::Trade(t) => {
            history(
                "PRICE_HISTORY",
                t.exchange,
                &t.instrument,
                t.ts_exchange,
                t.price.to_string(),
            );
            let body = serde_json::json!({
                "exchange": t.exchange, "instrument": t.instrument, "trade_id": t.trade_id,
                "price": t.price, "size": t.size, "side": t.side, "time": t.ts_exchange,
            });
            pipe.publish(
                format!("{p}.trades.{}.{}", t.exchange, t.instrument),
                body.to_string(),
            )
            .ignore();
            true
        }
        Event::Quote(q) => {
            history(
                "BID_HISTORY",
                q.exchange,
                &q.instrument,
                q.ts_exchange,
                q.bid.to_string(),
            );
            history(
                "ASK_HISTORY",
                q.exchange,
                &q.instrument,
                q.ts_exchange,
                q.ask.to_string(),
            );
            let body = serde_json::json!({
                "exchange": q.exchange, "instrument": q.instrument, "bid": q.bid, "ask": q.ask,
                "bid_size": q.bid_size, "ask_size": q.ask_size, "last": q.last, "time": q.ts_exchange,
            });
            pipe.publish(
                format!("{p}.tickers.{}.{}", q.exchange, q.instrument),
                body.to_string(),
            )
            .ignore();
            true
        }
        Event::Candle(c) => {
            let body = serde_json::to_string(c.as_ref()).unwrap_or_default();
            pipe.publish(
                format!("{p}.candles.{}.{}.{}", c.exchange, c.instrument, c.interval),
                body,
            )
            .ignore();
            if config.candle_intervals.contains(&c.interval) {
                let k = candle_key(config, c);
                // A revision of an older candle never replaces the latest.
                let newest = latest.entry(k.clone()).or_insert(i64::MIN);
                if c.open_time.0 >= *newest {
                    *newest = c.open_time.0;
                    let fields: [(&str, String); 16] = [
                        ("exchange", c.exchange.to_string()),
                        ("base", c.instrument.base().to_owned()),
                        ("quote", c.instrument.quote().to_owned()),
                        ("interval", c.interval.to_string()),
                        ("timestamp", c.open_time.as_millis().to_string()),
                        ("open_time", c.open_time.to_string()),
                        ("open", c.open.to_string()),
                        ("high", c.high.to_string()),
                        ("low", c.low.to_string()),
                        ("close", c.close.to_string()),
                        ("volume", c.volume.to_string()),
                        ("quote_volume", c.quote_volume.to_string()),
                        ("vwap", c.vwap.to_string()),
                        ("taker_buy_volume", c.taker_buy_volume.to_string()),
                        ("trades", c.trades.to_string()),
                        ("state", c.state.as_str().to_owned()),
                    ];
                    pipe.hset_multiple(&k, &fields).ignore();
                }
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_older_conventions() {
        let config = RedisConfig::default();
        let i = Instrument::parse("BTC-USD").expect("instrument");
        assert_eq!(
            key(
                &config.candle_key,
                Exchange::Bitfinex,
                &i,
                Some(Interval::M1)
            ),
            "ws_send_bitfinex;;BTC;;USD"
        );
        assert_eq!(
            history_namespace(&config, Exchange::Bitfinex, &i),
            "bitfinex:BTC-USD"
        );
    }
}
