//! The candle aggregator: trades in, candles of every interval out. Pure, no IO.
//!
//! # How it stays fast
//! A trade touches one accumulator: its 1-second bucket. When a second closes
//! it is merged into the open bucket of every coarser interval, so the cost of
//! the other 14 intervals is paid once per second, not once per trade. Prices
//! are fixed-point `i64`s at a per-series scale (raised if a trade ever brings
//! more digits), volumes `i128`.
//!
//! # Lateness policy
//! - The *watermark* of a series is the latest exchange time seen on that
//!   series or on any series of the same exchange, or the wall clock given to
//!   [`CandleAggregator::on_tick`], whichever is later.
//! - A candle `[open, end)` closes when the watermark reaches `end + grace`.
//!   It is emitted with state `closed`.
//! - A trade for a closed candle that is no older than `lateness` behind the
//!   watermark revises that candle and every coarser candle holding it. Each
//!   revised candle is emitted again with state `revised`, and the trade is
//!   counted in [`AggregatorStats::late_trades`]. Flat candles after it are
//!   re-pointed at the new close.
//! - A trade older than that is counted in [`AggregatorStats::too_late`] and not
//!   applied to candles; it is still stored, and candles for that period can be
//!   rebuilt from the store.
//! - A trade id seen before changes nothing and is counted as a duplicate.
//! - A trade whose numbers do not fit (more than 18 digits past the point, or
//!   price and size scales adding up past 30) or whose exchange time is before
//!   1970 or after 2200 is counted as out of range and not applied.

use std::collections::{HashMap, VecDeque};

use ck_model::{
    Candle, EmptyIntervalPolicy, Exchange, Instrument, Interval, NANOS_PER_SEC, Side, Trade,
    TradeId, pow10,
};

use super::acc::{Acc, FixedTrade, SeriesScales};
use super::dedup::{Dedup, Seen};

/// Settings of the aggregator.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// The intervals to emit. All of them are always tracked internally.
    pub intervals: Vec<Interval>,
    /// How long after its end a candle stays open for stragglers, in ns.
    pub grace_nanos: i64,
    /// How far behind the watermark a trade may be and still revise candles, in ns.
    pub lateness_nanos: i64,
    /// Flat candles are made for at most this long after a series' last
    /// trade, in ns. A longer silence is treated as a capture gap (nothing
    /// was observed), not as a quiet market, and gets no candles.
    pub max_flat_span_nanos: i64,
    /// Empty-interval policy per exchange; exchanges not listed use
    /// [`Exchange::empty_interval_policy`].
    pub empty_policy: HashMap<Exchange, EmptyIntervalPolicy>,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            intervals: Interval::ALL.to_vec(),
            grace_nanos: 2 * NANOS_PER_SEC,
            lateness_nanos: 15 * 60 * NANOS_PER_SEC,
            max_flat_span_nanos: 6 * 3600 * NANOS_PER_SEC,
            empty_policy: HashMap::new(),
        }
    }
}

/// What happened to one trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeOutcome {
    /// Added to open candles.
    Applied,
    /// Added to one or more closed candles, which were revised.
    Revised,
    /// Seen before; nothing changed.
    Duplicate,
    /// Older than the lateness window; candles unchanged.
    TooLate,
    /// Its price or size does not fit the fixed-point range; candles unchanged.
    OutOfRange,
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Trades added to candles (on time or late).
    pub trades: u64,
    /// Repeated trades ignored.
    pub duplicates: u64,
    /// Trades that arrived after their candle closed and revised it.
    pub late_trades: u64,
    /// Trades older than the lateness window, not applied.
    pub too_late: u64,
    /// Trades whose numbers do not fit, not applied.
    pub out_of_range: u64,
    /// Candles emitted as closed (flat ones included).
    pub candles_closed: u64,
    /// Flat candles made for empty intervals.
    pub flat_candles: u64,
    /// Revised candles emitted.
    pub candles_revised: u64,
}

const BASE: Interval = Interval::S1;
/// 2200-01-01T00:00:00Z: later exchange times are refused.
const LATEST_TS: i64 = 7_258_118_400 * NANOS_PER_SEC;
/// The index of the 1m level, the second tier of merging.
const MINUTE: usize = 1;
const MAX_SCALE: u8 = 18;

struct Level {
    interval: Interval,
    /// The last bucket computed, `[start, end)`: most lookups hit it, and the
    /// calendar intervals are costly to compute.
    bucket: std::cell::Cell<(i64, i64)>,
    emit: bool,
    /// Buckets not closed yet, by open time.
    open: VecDeque<Acc>,
    /// Closed buckets kept for revision, by open time.
    closed: VecDeque<Acc>,
    /// Every bucket ending at or before this is closed (`i64::MIN`: none yet).
    closed_through: i64,
    /// The close of the newest closed bucket, for flat candles.
    prev_close: Option<i64>,
    /// The end of the newest bucket that had trades.
    last_real_end: i64,
}

impl Level {
    fn new(interval: Interval, emit: bool) -> Level {
        Level {
            interval,
            bucket: std::cell::Cell::new((0, 0)),
            emit,
            open: VecDeque::new(),
            closed: VecDeque::new(),
            closed_through: i64::MIN,
            prev_close: None,
            last_real_end: i64::MIN,
        }
    }

    #[inline]
    fn range(&self, ts: i64) -> (i64, i64) {
        let cached = self.bucket.get();
        if ts >= cached.0 && ts < cached.1 {
            return cached;
        }
        let start = self.interval.bucket_start(ck_model::Ts(ts)).0;
        let range = (start, self.interval.next_start(ck_model::Ts(start)).0);
        self.bucket.set(range);
        range
    }

    #[inline]
    fn start(&self, ts: i64) -> i64 {
        self.range(ts).0
    }

    /// The end of the bucket that opens at `open`. Fixed intervals add their
    /// length and leave the cache alone (old buckets would evict the current one).
    #[inline]
    fn end(&self, open: i64) -> i64 {
        match self.interval.fixed_nanos() {
            Some(n) => open + n,
            None => self.range(open).1,
        }
    }

    /// The open bucket starting at `start`, created in order if missing.
    fn open_bucket(&mut self, start: i64) -> &mut Acc {
        let pos = self.open.iter().rposition(|a| a.open_time <= start);
        match pos {
            Some(i) if self.open[i].open_time == start => &mut self.open[i],
            Some(i) => {
                self.open.insert(i + 1, Acc::empty(start));
                &mut self.open[i + 1]
            }
            None => {
                self.open.push_front(Acc::empty(start));
                &mut self.open[0]
            }
        }
    }
}

struct Series {
    exchange: Exchange,
    instrument: Instrument,
    policy: EmptyIntervalPolicy,
    ids_ordered: bool,
    price_scale: u8,
    size_scale: u8,
    /// One level per interval, finest first; inline, so the hot path does
    /// not chase another pointer.
    levels: [Level; Interval::ALL.len()],
    dedup: Dedup,
    watermark: i64,
    /// When the watermark reaches this, run the close step.
    next_due: i64,
    arrivals: u64,
    dirty: bool,
    /// The newest open second, kept out of `levels[0].open` so the trade path
    /// touches nothing else. Valid when `hot_start` is not `i64::MIN`; it is
    /// put back ("spilled") before anything else looks at the open seconds.
    hot: Acc,
    hot_start: i64,
}

/// Builds candles of every interval from trades. See the module docs for the
/// lateness policy.
pub struct CandleAggregator {
    config: AggregatorConfig,
    series: Vec<Series>,
    index: HashMap<(Exchange, Instrument), usize>,
    last: Option<usize>,
    /// Per exchange: the latest exchange time, and when to sweep next.
    exchange_watermark: [(i64, i64); Exchange::ALL.len()],
    stats: AggregatorStats,
}

impl CandleAggregator {
    /// An aggregator with no series yet.
    #[must_use]
    pub fn new(config: AggregatorConfig) -> CandleAggregator {
        CandleAggregator {
            config,
            series: Vec::new(),
            index: HashMap::new(),
            last: None,
            exchange_watermark: [(i64::MIN, i64::MIN); Exchange::ALL.len()],
            stats: AggregatorStats::default(),
        }
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> AggregatorStats {
        self.stats
    }

    fn series_index(&mut self, exchange: Exchange, instrument: &Instrument) -> usize {
        if let Some(i) = self.last {
            let s = &self.series[i];
            if s.exchange == exchange
                && (s.instrument.ptr_eq(instrument) || s.instrument == *instrument)
            {
                return i;
            }
        }
        let i = match self.index.get(&(exchange, instrument.clone())) {
            Some(&i) => i,
            None => {
                let i = self.series.len();
                let policy = self
                    .config
                    .empty_policy
                    .get(&exchange)
                    .copied()
                    .unwrap_or_else(|| exchange.empty_interval_policy());
                let levels =
                    Interval::ALL.map(|iv| Level::new(iv, self.config.intervals.contains(&iv)));
                self.series.push(Series {
                    exchange,
                    instrument: instrument.clone(),
                    policy,
                    ids_ordered: exchange.trade_ids_ordered(),
                    price_scale: 0,
                    size_scale: 0,
                    levels,
                    dedup: Dedup::default(),
                    watermark: i64::MIN,
                    next_due: i64::MIN,
                    arrivals: 0,
                    dirty: false,
                    hot: Acc::empty(i64::MIN),
                    hot_start: i64::MIN,
                });
                self.index.insert((exchange, instrument.clone()), i);
                i
            }
        };
        self.last = Some(i);
        i
    }

    /// Forgets an instrument's candles, open and closed, without emitting
    /// anything: its stream partition went to another processor, which
    /// rebuilds them from the store. Its next trade here starts afresh.
    pub fn forget(&mut self, exchange: Exchange, instrument: &Instrument) {
        let Some(i) = self.index.remove(&(exchange, instrument.clone())) else {
            return;
        };
        self.series.swap_remove(i);
        if let Some(moved) = self.series.get(i) {
            self.index
                .insert((moved.exchange, moved.instrument.clone()), i);
        }
        self.last = None;
    }

    /// Adds one trade. Candles that close or are revised because of it are
    /// pushed to `out`.
    pub fn on_trade(&mut self, trade: &Trade, out: &mut Vec<Candle>) -> TradeOutcome {
        let i = self.series_index(trade.exchange, &trade.instrument);
        let ts = trade.ts_exchange.0;
        let (grace, lateness) = (self.config.grace_nanos, self.config.lateness_nanos);
        let span = self.config.max_flat_span_nanos;
        let stats = &mut self.stats;
        let s = &mut self.series[i];

        // Times outside 1970..2200 are garbage from upstream; bucket arithmetic
        // near the ends of i64 would overflow.
        if !(0..=LATEST_TS).contains(&ts) {
            stats.out_of_range += 1;
            return TradeOutcome::OutOfRange;
        }
        let Some((price, size)) = s.fixed(trade) else {
            stats.out_of_range += 1;
            return TradeOutcome::OutOfRange;
        };
        if s.watermark != i64::MIN && ts < s.watermark.saturating_sub(lateness) {
            stats.too_late += 1;
            return TradeOutcome::TooLate;
        }
        match s.dedup.check(&trade.trade_id, ts) {
            Seen::New => {}
            Seen::Duplicate => {
                stats.duplicates += 1;
                return TradeOutcome::Duplicate;
            }
            Seen::Forgotten => {
                stats.too_late += 1;
                return TradeOutcome::TooLate;
            }
        }
        s.arrivals += 1;
        // Trades at one time are ordered by id where ids are ordered (also
        // string ids holding numbers, as Coinbase Advanced Trade sends), so
        // that open and close do not depend on arrival: a restart, a replay
        // or another node builds the same candle.
        let (tiebreak, id_in_key) = match (&trade.trade_id, s.ids_ordered) {
            (TradeId::Num(n), true) => (*n, true),
            (TradeId::Str(text), true) => match text.parse::<u64>() {
                Ok(n) => (n, false),
                Err(_) => (s.arrivals, false),
            },
            _ => (s.arrivals, false),
        };
        let fixed = FixedTrade {
            ts,
            key: (ts, tiebreak),
            price,
            size,
            taker_buy: trade.side == Side::Buy,
            fills: trade.fills,
            id: &trade.trade_id,
            id_in_key,
        };
        s.dirty = true;
        stats.trades += 1;

        let start = ts - ts.rem_euclid(NANOS_PER_SEC);
        let outcome = if start == s.hot_start {
            s.hot.add(&fixed);
            TradeOutcome::Applied
        } else if start + NANOS_PER_SEC <= s.levels[0].closed_through {
            s.apply_late(&fixed, stats, out);
            stats.late_trades += 1;
            TradeOutcome::Revised
        } else {
            s.add_to_open_second(start, &fixed);
            TradeOutcome::Applied
        };

        if ts > s.watermark {
            s.watermark = ts;
        }
        if s.watermark >= s.next_due {
            s.advance(s.watermark, grace, lateness, span, stats, out);
        }
        self.sweep_exchange(trade.exchange, ts, out);
        outcome
    }

    /// Moves the exchange-wide watermark, closing quiet series of that exchange
    /// once per second of exchange time.
    #[inline(never)]
    fn sweep_exchange(&mut self, exchange: Exchange, ts: i64, out: &mut Vec<Candle>) {
        let entry = &mut self.exchange_watermark[exchange.index()];
        if ts > entry.0 {
            entry.0 = ts;
        }
        if entry.0 < entry.1 {
            return;
        }
        let wm = entry.0;
        entry.1 = wm - wm.rem_euclid(NANOS_PER_SEC) + NANOS_PER_SEC;
        let (grace, lateness) = (self.config.grace_nanos, self.config.lateness_nanos);
        let span = self.config.max_flat_span_nanos;
        for s in self.series.iter_mut().filter(|s| s.exchange == exchange) {
            if wm >= s.next_due {
                s.advance(wm, grace, lateness, span, &mut self.stats, out);
            }
        }
    }

    /// The timer: closes every candle whose interval (plus grace) has passed by
    /// the wall clock `now` (ns), so quiet instruments close too.
    pub fn on_tick(&mut self, now: i64, out: &mut Vec<Candle>) {
        self.close_due(now, self.config.max_flat_span_nanos, out);
    }

    /// Closes every candle due by `now`, filling empty intervals flat for at
    /// most `span` ns after a series' last trade.
    fn close_due(&mut self, now: i64, span: i64, out: &mut Vec<Candle>) {
        let (grace, lateness) = (self.config.grace_nanos, self.config.lateness_nanos);
        for s in &mut self.series {
            if now >= s.next_due {
                s.advance(now, grace, lateness, span, &mut self.stats, out);
            }
        }
    }

    /// The provisional candles of every series that changed since the last
    /// call: the current bucket of each emitted interval.
    pub fn drain_provisional(&mut self, out: &mut Vec<Candle>) {
        for s in &mut self.series {
            if std::mem::take(&mut s.dirty) {
                s.provisional(out);
            }
        }
    }

    /// The end of a finite run (replay, import, backfill) at wall-clock
    /// `now` (ns): closes every candle whose end plus grace and the lateness
    /// window has passed, since no trade could revise it any more; the rest
    /// stay open for [`CandleAggregator::flush`]. No empty interval after a
    /// series' last trade is filled: the data ends there, not the trading.
    pub fn settle(&mut self, now: i64, out: &mut Vec<Candle>) {
        self.close_due(now.saturating_sub(self.config.lateness_nanos), 0, out);
    }

    /// Every open candle, provisional, for a clean stop.
    pub fn flush(&mut self, out: &mut Vec<Candle>) {
        for s in &mut self.series {
            s.dirty = false;
            s.provisional(out);
        }
    }
}

impl Series {
    /// Puts the hot second back among the open seconds (it is the newest).
    fn spill(&mut self) {
        if self.hot_start != i64::MIN {
            let acc = std::mem::replace(&mut self.hot, Acc::empty(i64::MIN));
            self.levels[0].open.push_back(acc);
            self.hot_start = i64::MIN;
        }
    }

    /// A trade for an open second other than the hot one.
    #[inline(never)]
    fn add_to_open_second(&mut self, start: i64, t: &FixedTrade<'_>) {
        self.spill();
        let base = &mut self.levels[0];
        match base.open.back() {
            Some(newest) if newest.open_time > start => base.open_bucket(start).add(t),
            Some(newest) if newest.open_time == start => {
                if let Some(acc) = base.open.pop_back() {
                    self.hot = acc;
                    self.hot_start = start;
                    self.hot.add(t);
                }
            }
            _ => {
                self.hot = Acc::empty(start);
                self.hot_start = start;
                self.hot.add(t);
            }
        }
    }

    /// Price and size at the series scales, raising the scales if the trade
    /// has more digits.
    #[inline]
    fn fixed(&mut self, t: &Trade) -> Option<(i64, i64)> {
        let (p, q) = (t.price, t.size);
        if p.scale() > self.price_scale || q.scale() > self.size_scale {
            // Keep the exchange's own number of digits, so candles print as its do.
            self.raise_scales(p.scale(), q.scale())?;
        }
        Some((
            p.to_fixed_i64(self.price_scale)?,
            q.to_fixed_i64(self.size_scale)?,
        ))
    }

    #[inline(never)]
    fn raise_scales(&mut self, price_scale: u8, size_scale: u8) -> Option<()> {
        self.spill();
        let (ps, zs) = (
            self.price_scale.max(price_scale),
            self.size_scale.max(size_scale),
        );
        // Quote volume carries both scales; it must stay a valid Decimal.
        if ps > MAX_SCALE || zs > MAX_SCALE || ps + zs > ck_model::MAX_SCALE {
            return None;
        }
        let pf = (price_scale > self.price_scale)
            .then(|| pow10(u32::from(price_scale - self.price_scale)))
            .flatten()
            .and_then(|f| i64::try_from(f).ok());
        let sf = (size_scale > self.size_scale)
            .then(|| pow10(u32::from(size_scale - self.size_scale)))
            .flatten()
            .and_then(|f| i64::try_from(f).ok());
        for level in &mut self.levels {
            for acc in level.open.iter_mut().chain(level.closed.iter_mut()) {
                if let Some(f) = pf {
                    acc.rescale_price(f);
                }
                if let Some(f) = sf {
                    acc.rescale_size(f);
                }
            }
            if let (Some(f), Some(p)) = (pf, level.prev_close.as_mut()) {
                *p *= f;
            }
        }
        self.price_scale = self.price_scale.max(price_scale);
        self.size_scale = self.size_scale.max(size_scale);
        Some(())
    }

    fn scales(&self) -> SeriesScales<'_> {
        SeriesScales {
            exchange: self.exchange,
            instrument: &self.instrument,
            price_scale: self.price_scale,
            size_scale: self.size_scale,
        }
    }

    /// Closes every bucket whose end plus grace is at or before `watermark`,
    /// merging closed seconds upward and making flat candles where the policy
    /// says so.
    #[inline(never)]
    fn advance(
        &mut self,
        watermark: i64,
        grace: i64,
        lateness: i64,
        max_flat_span: i64,
        stats: &mut AggregatorStats,
        out: &mut Vec<Candle>,
    ) {
        self.spill();
        let limit = watermark.saturating_sub(grace);
        let flat = (self.policy == EmptyIntervalPolicy::Flat).then_some(max_flat_span);
        let scales = SeriesScales {
            exchange: self.exchange,
            instrument: &self.instrument,
            price_scale: self.price_scale,
            size_scale: self.size_scale,
        };
        let (base, rest) = self.levels.split_at_mut(1);
        let (minute, coarse) = rest.split_at_mut(1);
        let (base, minute) = (&mut base[0], &mut minute[0]);
        // Two tiers: closed seconds merge into minutes; closed minutes merge
        // into every coarser interval (all are whole minutes).
        close_level(base, limit, flat, &scales, stats, out, &mut |acc| {
            let start = minute.start(acc.open_time);
            minute.open_bucket(start).merge(acc);
        });
        close_level(minute, limit, flat, &scales, stats, out, &mut |acc| {
            for level in coarse.iter_mut() {
                let start = level.start(acc.open_time);
                level.open_bucket(start).merge(acc);
            }
        });
        for level in coarse.iter_mut() {
            close_level(level, limit, flat, &scales, stats, out, &mut |_| {});
        }
        // Keep closed buckets while a late trade could still reach them.
        let keep_after = watermark.saturating_sub(lateness);
        for level in &mut self.levels {
            while level.closed.len() > 1 {
                let Some(front) = level.closed.front() else {
                    break;
                };
                if level.end(front.open_time) > keep_after {
                    break;
                }
                level.closed.pop_front();
            }
        }
        self.dedup.expire(keep_after);
        self.watermark = self.watermark.max(watermark);
        let base_closed = self.levels[0]
            .closed_through
            .max(limit - limit.rem_euclid(NANOS_PER_SEC));
        self.next_due = base_closed
            .saturating_add(NANOS_PER_SEC)
            .saturating_add(grace);
    }

    /// A trade whose second has closed: revise (or fill) the bucket holding it
    /// at every level.
    #[inline(never)]
    fn apply_late(
        &mut self,
        t: &FixedTrade<'_>,
        stats: &mut AggregatorStats,
        out: &mut Vec<Candle>,
    ) {
        let scales = SeriesScales {
            exchange: self.exchange,
            instrument: &self.instrument,
            price_scale: self.price_scale,
            size_scale: self.size_scale,
        };
        // Once the trade is in an open minute, the coarser candles receive it
        // when that minute closes.
        let mut in_open_minute = false;
        for (i, level) in self.levels.iter_mut().enumerate() {
            let start = level.start(t.ts);
            if level.end(start) > level.closed_through {
                if !in_open_minute {
                    level.open_bucket(start).add(t);
                    in_open_minute = i == MINUTE;
                }
                continue;
            }
            let pos = level.closed.partition_point(|a| a.open_time < start);
            let idx = if level.closed.get(pos).is_some_and(|a| a.open_time == start) {
                pos
            } else {
                // An interval that was skipped (no trades) or flat-filled before
                // we kept it: it gets its first candle now.
                let mut acc = Acc::empty(start);
                acc.closed = true;
                level.closed.insert(pos, acc);
                pos
            };
            let acc = &mut level.closed[idx];
            if acc.is_empty() {
                // A flat candle carries the previous close; a trade replaces it.
                let open_time = acc.open_time;
                *acc = Acc {
                    closed: true,
                    ..Acc::empty(open_time)
                };
            }
            acc.add(t);
            acc.revised = true;
            if level.emit {
                out.push(scales.candle(level.interval, acc));
                stats.candles_revised += 1;
            }
            // Flat candles after it copied the old close: move them to the new one.
            let close = level.closed[idx].close;
            let mut j = idx + 1;
            while let Some(next) = level.closed.get_mut(j) {
                if !next.is_empty() {
                    break;
                }
                if next.close != close {
                    *next = Acc {
                        closed: true,
                        revised: true,
                        ..Acc::flat(next.open_time, close)
                    };
                    if level.emit {
                        out.push(scales.candle(level.interval, next));
                        stats.candles_revised += 1;
                    }
                }
                j += 1;
            }
            if j == level.closed.len() {
                level.prev_close = Some(close);
            }
        }
    }

    fn provisional(&mut self, out: &mut Vec<Candle>) {
        self.spill();
        let scales = self.scales();
        let base = &self.levels[0];
        for level in &self.levels {
            if !level.emit {
                continue;
            }
            if level.interval == BASE {
                for acc in &base.open {
                    out.push(scales.candle(BASE, acc));
                }
                continue;
            }
            // Every open bucket of this level, plus the minutes and seconds not
            // merged into one yet.
            let mut current: Vec<Acc> = level.open.iter().cloned().collect();
            let minute = &self.levels[MINUTE];
            let pending = if level.interval == Interval::M1 {
                &[][..]
            } else {
                &[&minute.open][..]
            };
            for acc in pending
                .iter()
                .flat_map(|q| q.iter())
                .chain(base.open.iter())
            {
                let start = level.start(acc.open_time);
                match current.iter_mut().find(|c| c.open_time == start) {
                    Some(c) => c.merge(acc),
                    None => {
                        let mut c = Acc::empty(start);
                        c.merge(acc);
                        current.push(c);
                    }
                }
            }
            current.sort_by_key(|c| c.open_time);
            for c in current.iter().filter(|c| !c.is_empty()) {
                out.push(scales.candle(level.interval, c));
            }
        }
    }
}

/// Closes the buckets of one level that end at or before `limit`, in order,
/// with flat candles for empty intervals under the flat policy. Each closed
/// bucket with trades is shown to `on_closed`, which merges it upward.
fn close_level(
    level: &mut Level,
    limit: i64,
    flat: Option<i64>,
    scales: &SeriesScales<'_>,
    stats: &mut AggregatorStats,
    out: &mut Vec<Candle>,
    on_closed: &mut dyn FnMut(&Acc),
) {
    let new_through = level.start(limit);
    if new_through <= level.closed_through {
        return;
    }
    let mut emit_closed = |level: &mut Level, mut acc: Acc, stats: &mut AggregatorStats| {
        acc.closed = true;
        if !acc.is_empty() {
            level.prev_close = Some(acc.close);
            level.last_real_end = level.end(acc.open_time);
        }
        if level.emit {
            out.push(scales.candle(level.interval, &acc));
            stats.candles_closed += 1;
        }
        level.closed.push_back(acc);
    };
    let fill_flats =
        |level: &mut Level, until: i64, stats: &mut AggregatorStats, out_flat: &mut Vec<Acc>| {
            let Some(max_span) = flat else { return };
            if level.closed_through == i64::MIN {
                return;
            }
            let Some(price) = level.prev_close else {
                return;
            };
            let until = until.min(level.last_real_end.saturating_add(max_span));
            let mut t = level.closed_through;
            while t < until {
                out_flat.push(Acc::flat(t, price));
                if level.emit {
                    stats.flat_candles += 1;
                }
                t = level.end(t);
            }
        };
    while let Some(front) = level.open.front() {
        if level.end(front.open_time) > new_through {
            break;
        }
        let Some(acc) = level.open.pop_front() else {
            break;
        };
        let mut flats = Vec::new();
        fill_flats(level, acc.open_time, stats, &mut flats);
        for f in flats {
            emit_closed(level, f, stats);
        }
        if !acc.is_empty() {
            on_closed(&acc);
        }
        level.closed_through = level.end(acc.open_time);
        emit_closed(level, acc, stats);
    }
    let mut flats = Vec::new();
    fill_flats(level, new_through, stats, &mut flats);
    for f in flats {
        emit_closed(level, f, stats);
    }
    level.closed_through = new_through;
}
