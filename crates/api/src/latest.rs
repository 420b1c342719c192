//! The latest candle per (exchange, instrument, interval), kept in memory as
//! ready JSON: updated from the live feed as candles change, read through
//! from the store when missing or older than a short time-to-live (so a
//! process that only serves, or a quiet market, still sees the store).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use ck_model::{Candle, CandleRecord, Exchange, Instrument, Interval, Ts};
use tokio::time::Instant;

type Key = (Exchange, Instrument, Interval);

struct Entry {
    open_time: Ts,
    json: Bytes,
    at: Instant,
}

/// The cache.
pub(crate) struct LatestCandles {
    entries: Mutex<HashMap<Key, Entry>>,
    ttl: Duration,
}

impl std::fmt::Debug for LatestCandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatestCandles")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LatestCandles {
    pub(crate) fn new(ttl: Duration) -> LatestCandles {
        LatestCandles {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached JSON, if fresh.
    pub(crate) fn get(&self, key: &Key) -> Option<Bytes> {
        let entries = self.lock();
        let e = entries.get(key)?;
        (e.at.elapsed() < self.ttl).then(|| e.json.clone())
    }

    /// Records `candle` unless a later one is cached; returns its JSON.
    pub(crate) fn put(&self, candle: &Candle) -> Bytes {
        let json = Bytes::from(serde_json::to_vec(&CandleRecord::from(candle)).unwrap_or_default());
        let key = (candle.exchange, candle.instrument.clone(), candle.interval);
        let mut entries = self.lock();
        match entries.get_mut(&key) {
            Some(e) if e.open_time > candle.open_time => {
                e.at = Instant::now();
                e.json.clone()
            }
            _ => {
                entries.insert(
                    key,
                    Entry {
                        open_time: candle.open_time,
                        json: json.clone(),
                        at: Instant::now(),
                    },
                );
                json
            }
        }
    }
}

/// Keeps `cache` current from the live feed until the feed closes.
pub(crate) async fn follow(feed: ck_bus::LiveFeed, cache: std::sync::Arc<LatestCandles>) {
    let mut rx = feed.subscribe();
    loop {
        match rx.recv().await {
            Ok(e) => {
                if let ck_bus::Event::Candle(c) = e.as_ref() {
                    cache.put(c);
                }
            }
            // Missed updates: entries expire and are read from the store.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ck_model::{CandleState, Decimal};

    fn candle(minute: i64, close: i64) -> Candle {
        let d = Decimal::from(close);
        Candle {
            exchange: Exchange::Binance,
            instrument: Instrument::new("BTC", "USDT"),
            interval: Interval::M1,
            open_time: Ts::from_secs(minute * 60),
            open: d,
            high: d,
            low: d,
            close: d,
            volume: d,
            quote_volume: d,
            vwap: d,
            taker_buy_volume: d,
            trades: 1,
            first_trade_id: None,
            last_trade_id: None,
            state: CandleState::Provisional,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn newer_candles_win_and_entries_expire() {
        let cache = LatestCandles::new(Duration::from_millis(250));
        let key = (
            Exchange::Binance,
            Instrument::new("BTC", "USDT"),
            Interval::M1,
        );
        assert!(cache.get(&key).is_none());
        cache.put(&candle(2, 20));
        cache.put(&candle(1, 10));
        let json = String::from_utf8(cache.get(&key).expect("cached").to_vec()).expect("utf8");
        assert!(
            json.contains("\"close\":\"20\""),
            "an older candle does not replace a newer one: {json}"
        );
        cache.put(&candle(2, 21));
        let json = String::from_utf8(cache.get(&key).expect("cached").to_vec()).expect("utf8");
        assert!(
            json.contains("\"close\":\"21\""),
            "the same candle updates: {json}"
        );
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(
            cache.get(&key).is_none(),
            "stale entries are read from the store again"
        );
    }
}
