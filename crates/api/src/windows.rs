//! Rolling windows of candles kept in memory, so that statistics over the
//! live window never rescan the store per request. The first request for a
//! series, interval and window length reads the window once; later ones
//! read only the tail (from the newest cached candle, less [`TAIL`] so that
//! recent revisions are seen) and drop what fell out of the window. Each
//! window is read whole again every [`REFRESH`] (a gap repaired far back
//! revises older candles), and the cache forgets everything past
//! [`MAX_WINDOWS`] windows.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ck_model::{Candle, Exchange, Instrument, Interval, Ts};
use ck_store::{CandleSource, RangeQuery, Store};

/// How far back from the newest cached candle each request reads again.
const TAIL: i64 = 30 * 60 * 1_000_000_000;

/// How often a window is read whole again.
const REFRESH: Duration = Duration::from_secs(600);

/// Windows kept at most.
const MAX_WINDOWS: usize = 1_024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    exchange: Exchange,
    instrument: Instrument,
    interval: Interval,
    window: i64,
}

#[derive(Debug, Default)]
struct Window {
    candles: VecDeque<Candle>,
    /// The start of the range the candles cover, once read.
    covers_from: Option<Ts>,
    read_whole: Option<Instant>,
}

/// The cache.
#[derive(Debug, Default)]
pub(crate) struct WindowCache {
    windows: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Window>>>>,
    whole: Arc<ck_bus::metrics::Counter>,
    tails: Arc<ck_bus::metrics::Counter>,
}

impl WindowCache {
    pub(crate) fn new() -> WindowCache {
        WindowCache {
            windows: Mutex::default(),
            whole: ck_bus::metrics::counter("candlekeep_stats_window_reads_total"),
            tails: ck_bus::metrics::counter("candlekeep_stats_window_tail_reads_total"),
        }
    }

    /// Runs `f` on the candles of `[end - window, end)`, oldest first.
    pub(crate) async fn with<R>(
        &self,
        store: &dyn Store,
        (exchange, instrument): (Exchange, &Instrument),
        interval: Interval,
        window: i64,
        end: Ts,
        f: impl FnOnce(&[Candle]) -> R,
    ) -> Result<R, ck_store::Error> {
        let key = Key {
            exchange,
            instrument: instrument.clone(),
            interval,
            window,
        };
        let entry = {
            let mut windows = self
                .windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if windows.len() >= MAX_WINDOWS && !windows.contains_key(&key) {
                windows.clear();
            }
            windows.entry(key).or_default().clone()
        };
        let mut w = entry.lock().await;
        let start = Ts(end.0.saturating_sub(window));
        let newest = w.candles.back().map(|c| c.open_time);
        let stale = w.read_whole.is_none_or(|t| t.elapsed() > REFRESH);
        let covered = w.covers_from.is_some_and(|f| f <= start);
        let read_from = match newest {
            Some(n) if covered && !stale && n >= start => Ts(n.0.saturating_sub(TAIL).max(start.0)),
            _ => start,
        };
        let query = RangeQuery {
            exchange,
            instrument: instrument.clone(),
            from: read_from,
            to: end,
            limit: usize::MAX,
        };
        let fresh = store.candles(&query, interval, CandleSource::Ours).await?;
        if read_from == start {
            self.whole.inc();
            w.candles = fresh.into();
            w.read_whole = Some(Instant::now());
        } else {
            self.tails.inc();
            while w.candles.back().is_some_and(|c| c.open_time >= read_from) {
                w.candles.pop_back();
            }
            w.candles.extend(fresh);
        }
        while w.candles.front().is_some_and(|c| c.open_time < start) {
            w.candles.pop_front();
        }
        w.covers_from = Some(start);
        // A request for an earlier end than the last one.
        while w.candles.back().is_some_and(|c| c.open_time >= end) {
            w.candles.pop_back();
            w.read_whole = None;
        }
        Ok(f(w.candles.make_contiguous()))
    }
}
