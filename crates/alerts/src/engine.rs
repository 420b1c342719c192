//! Rule evaluation: pure and synchronous. The engine is fed every relevant
//! update (trades, 1m candles, gaps) and a clock tick for stale feeds, and
//! answers with the rules that fire.
//!
//! Each rule fires when its condition becomes true, then not again until
//! the value has gone back past the threshold by the rule's hysteresis (a
//! fraction of the threshold) *and* its cooldown has passed. Event-driven
//! rules run on the data's own time (the trade's exchange time), so a replay
//! fires exactly as the live market did; stale-feed rules run on the clock.

use std::collections::{HashMap, VecDeque};

use ck_bus::Event;
use ck_model::{Exchange, GapState, Instrument, Interval, Ts};
use serde::Serialize;

use crate::rule::{Condition, Rule, window_nanos};

mod books;
/// A rule that fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firing {
    /// The rule's id.
    pub rule_id: String,
    /// The rule's name.
    pub rule: String,
    /// The rule's kind.
    pub kind: String,
    /// The exchange concerned, if one.
    pub exchange: Option<Exchange>,
    /// The instrument concerned, if one.
    pub instrument: Option<Instrument>,
    /// The value that crossed: a price, a percentage, a z-score, a multiple,
    /// seconds.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// A sentence for people.
    pub message: String,
    /// When (the data's time; the clock's for stale feeds).
    pub time: Ts,
}

const MINUTE: i64 = 60_000_000_000;

/// One 1m candle, as the statistics need it.
#[derive(Debug, Clone, Copy)]
struct Minute {
    open_time: Ts,
    open: f64,
    close: f64,
    volume: f64,
}

/// What the engine knows of one instrument.
#[derive(Debug, Default)]
struct Series {
    price: Option<f64>,
    /// When the last trade was received (wall clock).
    last_received: Option<Ts>,
    minutes: VecDeque<Minute>,
}

#[derive(Debug, Clone, Copy)]
struct RuleState {
    armed: bool,
    last_fired: Option<Ts>,
}

#[derive(Debug)]
struct Entry {
    id: String,
    rule: Rule,
    state: RuleState,
    /// The window, for the kinds that have one.
    window: i64,
}

/// A condition's reading now.
#[derive(Debug, Clone, Copy)]
struct Check {
    value: f64,
    threshold: f64,
    active: bool,
    rearm: bool,
}

impl Check {
    /// True above the threshold; re-armed below it by the hysteresis.
    fn above(value: f64, threshold: f64, h: f64) -> Check {
        Check {
            value,
            threshold,
            active: value > threshold,
            rearm: value < threshold * (1.0 - h),
        }
    }

    /// True below the threshold; re-armed above it by the hysteresis.
    fn below(value: f64, threshold: f64, h: f64) -> Check {
        Check {
            value,
            threshold,
            active: value < threshold,
            rearm: value > threshold * (1.0 + h),
        }
    }
}

/// The engine: rules, their states, and the series they read.
#[derive(Debug)]
pub struct Engine {
    entries: Vec<Entry>,
    series: HashMap<(Exchange, Instrument), Series>,
    /// The longest window any rule looks back over.
    keep: i64,
    started: Ts,
}

impl Engine {
    /// An engine with no rules, started at `now` (stale feeds count from it).
    #[must_use]
    pub fn new(now: Ts) -> Engine {
        Engine {
            entries: Vec::new(),
            series: HashMap::new(),
            keep: 0,
            started: now,
        }
    }

    /// Replaces the rules. A rule whose id and content are unchanged keeps
    /// its state (armed, last fired); rules are assumed valid.
    pub fn set_rules(&mut self, rules: Vec<(String, Rule)>) {
        let mut old: HashMap<String, Entry> =
            self.entries.drain(..).map(|e| (e.id.clone(), e)).collect();
        self.entries = rules
            .into_iter()
            .map(|(id, rule)| {
                let window = match &rule.condition {
                    Condition::PctChange { window, .. }
                    | Condition::Zscore { window, .. }
                    | Condition::VolumeSpike { window, .. } => window_nanos(window).unwrap_or(0),
                    _ => 0,
                };
                let state = old.remove(&id).filter(|e| e.rule == rule).map_or(
                    RuleState {
                        armed: true,
                        last_fired: None,
                    },
                    |e| e.state,
                );
                Entry {
                    id,
                    rule,
                    state,
                    window,
                }
            })
            .collect();
        self.keep = self.entries.iter().map(|e| e.window).max().unwrap_or(0);
    }

    /// How many rules it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no rules.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn watched(&self, exchange: Exchange, instrument: &Instrument) -> bool {
        self.entries.iter().any(|e| match &e.rule.condition {
            Condition::PriceAbove {
                exchange: x,
                instrument: i,
                ..
            }
            | Condition::PriceBelow {
                exchange: x,
                instrument: i,
                ..
            }
            | Condition::PctChange {
                exchange: x,
                instrument: i,
                ..
            }
            | Condition::Zscore {
                exchange: x,
                instrument: i,
                ..
            }
            | Condition::VolumeSpike {
                exchange: x,
                instrument: i,
                ..
            }
            | Condition::StaleFeed {
                exchange: x,
                instrument: i,
                ..
            } => *x == exchange && i == instrument,
            Condition::SpreadAbove {
                instrument: i,
                exchanges,
                ..
            } => i == instrument && exchanges.contains(&exchange),
            // Evaluated on the books' stats ([`Engine::on_book`]).
            Condition::GapUnfillable { .. }
            | Condition::BookSpreadAbove { .. }
            | Condition::BookDepthBelow { .. }
            | Condition::BookImbalanceAbove { .. } => false,
        })
    }

    /// Takes one update; returns the rules it fired.
    pub fn on_event(&mut self, event: &Event) -> Vec<Firing> {
        match event {
            Event::Trade(t) => {
                if !self.watched(t.exchange, &t.instrument) {
                    return Vec::new();
                }
                let s = self
                    .series
                    .entry((t.exchange, t.instrument.clone()))
                    .or_default();
                s.price = Some(t.price.to_f64());
                s.last_received = Some(t.ts_received);
                self.evaluate(t.exchange, &t.instrument, t.ts_exchange, None)
            }
            Event::Candle(c) if c.interval == Interval::M1 => {
                if !self.watched(c.exchange, &c.instrument) {
                    return Vec::new();
                }
                let keep = self.keep;
                let s = self
                    .series
                    .entry((c.exchange, c.instrument.clone()))
                    .or_default();
                let m = Minute {
                    open_time: c.open_time,
                    open: c.open.to_f64(),
                    close: c.close.to_f64(),
                    volume: c.volume.to_f64(),
                };
                match s.minutes.iter().rposition(|x| x.open_time <= m.open_time) {
                    Some(i) if s.minutes[i].open_time == m.open_time => s.minutes[i] = m,
                    Some(i) => s.minutes.insert(i + 1, m),
                    None => s.minutes.push_front(m),
                }
                let newest = s.minutes.back().map_or(m.open_time, |x| x.open_time);
                while s
                    .minutes
                    .front()
                    .is_some_and(|x| x.open_time.0 < newest.0 - keep - MINUTE)
                {
                    s.minutes.pop_front();
                }
                if s.price.is_none() {
                    s.price = Some(m.close);
                }
                self.evaluate(c.exchange, &c.instrument, c.close_time(), None)
            }
            Event::Gap(g) if g.state == GapState::Unfillable => {
                let at = g.detected_at.max(g.to_ts);
                self.evaluate(g.exchange, &g.instrument, at, Some(g))
            }
            _ => Vec::new(),
        }
    }

    /// The clock: stale-feed rules.
    pub fn on_tick(&mut self, now: Ts) -> Vec<Firing> {
        let mut fired = Vec::new();
        for e in &mut self.entries {
            let Condition::StaleFeed {
                exchange,
                instrument,
                seconds,
            } = &e.rule.condition
            else {
                continue;
            };
            let last = self
                .series
                .get(&(*exchange, instrument.clone()))
                .and_then(|s| s.last_received)
                .unwrap_or(self.started);
            let age = (now.0 - last.0) as f64 / 1e9;
            let limit = *seconds as f64;
            let check = Check {
                value: age,
                threshold: limit,
                active: age > limit,
                rearm: age < limit,
            };
            if consider(&mut e.state, check, e.rule.cooldown_secs, now) {
                fired.push(firing(
                    e,
                    Some(*exchange),
                    Some(instrument.clone()),
                    check,
                    now,
                    format!(
                        "no trade from {exchange} {instrument} for {age:.0} s (limit {limit:.0} s)"
                    ),
                ));
            }
        }
        fired
    }

    fn evaluate(
        &mut self,
        exchange: Exchange,
        instrument: &Instrument,
        now: Ts,
        gap: Option<&ck_model::Gap>,
    ) -> Vec<Firing> {
        let mut fired = Vec::new();
        let series = &self.series;
        for e in &mut self.entries {
            let h = e.rule.hysteresis.to_f64();
            let read = |x: Exchange, i: &Instrument| series.get(&(x, i.clone()));
            let (check, message) = match &e.rule.condition {
                Condition::GapUnfillable {
                    exchange: x,
                    instrument: i,
                    gap: kind,
                } => {
                    let Some(g) = gap else { continue };
                    if x.is_some_and(|x| x != exchange)
                        || i.as_ref().is_some_and(|i| i != instrument)
                        || kind.is_some_and(|k| k != g.kind)
                    {
                        continue;
                    }
                    let check = Check {
                        value: (g.to_ts.0 - g.from_ts.0) as f64 / 1e9,
                        threshold: 0.0,
                        active: true,
                        rearm: true,
                    };
                    (
                        check,
                        format!(
                            "{}gap on {exchange} {instrument} from {} to {} cannot be filled: {}",
                            match g.kind {
                                ck_model::GapKind::Book => "book ",
                                ck_model::GapKind::Trades => "",
                            },
                            g.from_ts,
                            g.to_ts,
                            g.reason
                        ),
                    )
                }
                _ if gap.is_some() => continue,
                Condition::StaleFeed {
                    exchange: x,
                    instrument: i,
                    seconds,
                } => {
                    // A trade re-arms it; only the clock fires it.
                    if *x == exchange && i == instrument {
                        let fresh = read(*x, i).and_then(|s| s.last_received).is_some_and(|t| {
                            (Ts::now().0 - t.0)
                                < i64::try_from(*seconds).unwrap_or(i64::MAX) * 1_000_000_000
                        });
                        if fresh {
                            e.state.armed = true;
                        }
                    }
                    continue;
                }
                Condition::PriceAbove {
                    exchange: x,
                    instrument: i,
                    level,
                }
                | Condition::PriceBelow {
                    exchange: x,
                    instrument: i,
                    level,
                } => {
                    if *x != exchange || i != instrument {
                        continue;
                    }
                    let Some(p) = read(*x, i).and_then(|s| s.price) else {
                        continue;
                    };
                    let above = matches!(e.rule.condition, Condition::PriceAbove { .. });
                    let check = if above {
                        Check::above(p, level.to_f64(), h)
                    } else {
                        Check::below(p, level.to_f64(), h)
                    };
                    let word = if above { "above" } else { "below" };
                    (
                        check,
                        format!("{exchange} {instrument} at {p} is {word} {level}"),
                    )
                }
                Condition::PctChange {
                    exchange: x,
                    instrument: i,
                    window,
                    percent,
                } => {
                    if *x != exchange || i != instrument {
                        continue;
                    }
                    let Some(s) = read(*x, i) else { continue };
                    let (Some(p), Some(base)) = (s.price, window_start(s, now, e.window)) else {
                        continue;
                    };
                    let change = (p / base.open - 1.0) * 100.0;
                    let check = Check::above(change.abs(), *percent, h);
                    (
                        check,
                        format!(
                            "{exchange} {instrument} moved {change:+.2}% in {window} (from {} to {p})",
                            base.open
                        ),
                    )
                }
                Condition::Zscore {
                    exchange: x,
                    instrument: i,
                    window,
                    threshold,
                } => {
                    if *x != exchange || i != instrument {
                        continue;
                    }
                    let Some(s) = read(*x, i) else { continue };
                    let Some(p) = s.price else { continue };
                    if window_start(s, now, e.window).is_none() {
                        continue;
                    }
                    // The baseline: the window's minutes before the current one.
                    let current = s.minutes.back().map_or(now, |m| m.open_time);
                    let closes: Vec<f64> = in_window(s, now, e.window)
                        .filter(|m| m.open_time < current)
                        .map(|m| m.close)
                        .collect();
                    let Some((mean, sd)) = mean_sd(&closes) else {
                        continue;
                    };
                    let z = (p - mean) / sd;
                    let check = Check::above(z.abs(), *threshold, h);
                    (
                        check,
                        format!(
                            "{exchange} {instrument} at {p} is {z:+.2} standard deviations from its {window} mean {mean:.8}"
                        ),
                    )
                }
                Condition::VolumeSpike {
                    exchange: x,
                    instrument: i,
                    window,
                    factor,
                } => {
                    if *x != exchange || i != instrument {
                        continue;
                    }
                    let Some(s) = read(*x, i) else { continue };
                    let Some(current) = s.minutes.back() else {
                        continue;
                    };
                    if window_start(s, now, e.window).is_none() {
                        continue;
                    }
                    let before: Vec<f64> = in_window(s, now, e.window)
                        .filter(|m| m.open_time < current.open_time)
                        .map(|m| m.volume)
                        .collect();
                    if before.len() < 3 {
                        continue;
                    }
                    let mean = before.iter().sum::<f64>() / before.len() as f64;
                    if mean <= 0.0 {
                        continue;
                    }
                    let multiple = current.volume / mean;
                    let check = Check::above(multiple, *factor, h);
                    (
                        check,
                        format!(
                            "{exchange} {instrument} traded {} in the minute from {}: {multiple:.1}x its {window} mean {mean:.8}",
                            current.volume, current.open_time
                        ),
                    )
                }
                // Evaluated on the books' stats ([`Engine::on_book`]).
                Condition::BookSpreadAbove { .. }
                | Condition::BookDepthBelow { .. }
                | Condition::BookImbalanceAbove { .. } => continue,
                Condition::SpreadAbove {
                    instrument: i,
                    exchanges,
                    percent,
                } => {
                    if i != instrument || !exchanges.contains(&exchange) {
                        continue;
                    }
                    let (Some(a), Some(b)) = (
                        read(exchanges[0], i).and_then(|s| s.price),
                        read(exchanges[1], i).and_then(|s| s.price),
                    ) else {
                        continue;
                    };
                    let spread = (a - b).abs() / a.min(b) * 100.0;
                    let check = Check::above(spread, *percent, h);
                    (
                        check,
                        format!(
                            "{instrument}: {} {a} vs {} {b}, spread {spread:.3}%",
                            exchanges[0], exchanges[1]
                        ),
                    )
                }
            };
            fired.extend(fire(e, check, (exchange, instrument), now, message));
        }
        fired
    }
}

/// The firing of `e` if `check` fires it (armed, cooled down, active):
/// a firing about one book or series.
fn fire(
    e: &mut Entry,
    check: Check,
    (exchange, instrument): (Exchange, &Instrument),
    now: Ts,
    message: String,
) -> Option<Firing> {
    consider(&mut e.state, check, e.rule.cooldown_secs, now).then(|| {
        firing(
            e,
            Some(exchange),
            Some(instrument.clone()),
            check,
            now,
            message,
        )
    })
}

/// The first minute of the window ending at `now`, if the data reaches
/// back that far (within a minute).
fn window_start(s: &Series, now: Ts, window: i64) -> Option<Minute> {
    let start = now.0 - window;
    let first = s.minutes.front()?;
    if first.open_time.0 > start + MINUTE {
        return None;
    }
    s.minutes.iter().find(|m| m.open_time.0 >= start).copied()
}

fn in_window(s: &Series, now: Ts, window: i64) -> impl Iterator<Item = &Minute> {
    let start = now.0 - window;
    s.minutes
        .iter()
        .filter(move |m| m.open_time.0 >= start && m.open_time <= now)
}

/// The mean and sample standard deviation, if defined and not zero.
fn mean_sd(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.len() < 2 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
    let sd = var.sqrt();
    (sd > 0.0 && sd.is_finite()).then_some((mean, sd))
}

/// Whether the rule fires on `check` at `now`, updating its state.
fn consider(state: &mut RuleState, check: Check, cooldown_secs: u64, now: Ts) -> bool {
    if !state.armed {
        if check.rearm {
            state.armed = true;
        }
        return false;
    }
    let cooled = state.last_fired.is_none_or(|t| {
        now.0.saturating_sub(t.0)
            >= i64::try_from(cooldown_secs)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000_000)
    });
    if check.active && cooled {
        state.armed = false;
        state.last_fired = Some(now);
        return true;
    }
    false
}

fn firing(
    e: &Entry,
    exchange: Option<Exchange>,
    instrument: Option<Instrument>,
    check: Check,
    time: Ts,
    message: String,
) -> Firing {
    let kind = serde_json::to_value(&e.rule.condition)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_default();
    Firing {
        rule_id: e.id.clone(),
        rule: e.rule.display_name(),
        kind,
        exchange,
        instrument,
        value: check.value,
        threshold: check.threshold,
        message,
        time,
    }
}

#[cfg(test)]
mod tests {
    use ck_model::{Candle, CandleState, Decimal, Gap, Side, Trade, TradeId};

    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn btc() -> Instrument {
        Instrument::new("BTC", "USDT")
    }

    fn trade(exchange: Exchange, secs: i64, price: &str) -> Event {
        Event::Trade(Trade {
            exchange,
            instrument: btc(),
            trade_id: TradeId::Num(secs as u64),
            price: Decimal::parse(price).expect("price"),
            size: Decimal::from(1),
            side: Side::Buy,
            ts_exchange: Ts(secs * SEC),
            ts_received: Ts(secs * SEC),
            fills: 1,
        })
    }

    fn minute(n: i64, open: f64, close: f64, volume: f64) -> Event {
        let d = |x: f64| Decimal::parse(&format!("{x}")).expect("decimal");
        Event::Candle(Box::new(Candle {
            exchange: Exchange::Binance,
            instrument: btc(),
            interval: Interval::M1,
            open_time: Ts(n * 60 * SEC),
            open: d(open),
            high: d(open.max(close)),
            low: d(open.min(close)),
            close: d(close),
            volume: d(volume),
            quote_volume: d(volume * close),
            vwap: d(close),
            taker_buy_volume: d(0.0),
            trades: 1,
            first_trade_id: None,
            last_trade_id: None,
            state: CandleState::Closed,
        }))
    }

    fn engine(json: &str) -> Engine {
        let mut e = Engine::new(Ts(0));
        e.set_rules(vec![("1".into(), Rule::from_json(json).expect("rule"))]);
        e
    }

    fn run(e: &mut Engine, events: &[Event]) -> Vec<Firing> {
        events.iter().flat_map(|ev| e.on_event(ev)).collect()
    }

    #[test]
    fn a_price_wobbling_around_its_level_fires_once() {
        let mut e = engine(
            r#"{"kind":"price_above","exchange":"binance","instrument":"BTC-USDT","level":"100","cooldown_secs":0,"hysteresis":"0.01"}"#,
        );
        let wobble: Vec<Event> = (0..100)
            .map(|i| {
                trade(
                    Exchange::Binance,
                    i,
                    if i % 2 == 0 { "100.5" } else { "99.5" },
                )
            })
            .collect();
        let fired = run(&mut e, &wobble);
        assert_eq!(fired.len(), 1, "within the 1 % band it does not re-arm");
        assert_eq!(fired[0].value, 100.5);
        assert!(
            fired[0].message.contains("above 100"),
            "{}",
            fired[0].message
        );
        // Back below 99 (1 % under), then above again: a second firing.
        let again = run(
            &mut e,
            &[
                trade(Exchange::Binance, 200, "98.9"),
                trade(Exchange::Binance, 201, "101"),
            ],
        );
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn the_cooldown_holds_a_rearmed_rule_back() {
        let mut e = engine(
            r#"{"kind":"price_below","exchange":"binance","instrument":"BTC-USDT","level":"100","cooldown_secs":60,"hysteresis":"0"}"#,
        );
        let fired = run(
            &mut e,
            &[
                trade(Exchange::Binance, 0, "99"),   // fires
                trade(Exchange::Binance, 10, "101"), // re-arms
                trade(Exchange::Binance, 20, "99"),  // cooling down
                trade(Exchange::Binance, 59, "98"),  // still
                trade(Exchange::Binance, 60, "97"),  // fires again
                trade(Exchange::Binance, 61, "101"),
            ],
        );
        let times: Vec<i64> = fired.iter().map(|f| f.time.0 / SEC).collect();
        assert_eq!(times, [0, 60]);
    }

    #[test]
    fn percent_change_zscore_and_volume_spikes_read_the_minutes() {
        // Ten quiet minutes, then a jump in price and volume.
        let mut quiet: Vec<Event> = (0..10)
            .map(|n| minute(n, 100.0, 100.0 + (n % 2) as f64 * 0.1, 5.0))
            .collect();
        let mut pct = engine(
            r#"{"kind":"pct_change","exchange":"binance","instrument":"BTC-USDT","window":"10m","percent":2}"#,
        );
        let mut z = engine(
            r#"{"kind":"zscore","exchange":"binance","instrument":"BTC-USDT","window":"10m","threshold":3}"#,
        );
        let mut vol = engine(
            r#"{"kind":"volume_spike","exchange":"binance","instrument":"BTC-USDT","window":"10m","factor":4}"#,
        );
        for e in [&mut pct, &mut z, &mut vol] {
            assert!(run(e, &quiet).is_empty(), "nothing while quiet");
        }
        quiet.clear();
        let jump = [
            minute(10, 100.0, 103.0, 30.0),
            trade(Exchange::Binance, 10 * 60 + 30, "103"),
        ];
        let p = run(&mut pct, &jump);
        assert_eq!(p.len(), 1);
        assert!(
            (p[0].value - 3.0).abs() < 1e-9,
            "3 % from the window's first open: {}",
            p[0].value
        );
        let zs = run(&mut z, &jump);
        assert_eq!(zs.len(), 1, "103 is far outside 100.0-100.1");
        assert!(zs[0].value > 3.0);
        let v = run(&mut vol, &jump);
        assert_eq!(v.len(), 1);
        assert!(
            (v[0].value - 6.0).abs() < 1e-9,
            "30 against a mean of 5: {}",
            v[0].value
        );
    }

    #[test]
    fn a_window_not_yet_covered_by_data_does_not_fire() {
        let mut pct = engine(
            r#"{"kind":"pct_change","exchange":"binance","instrument":"BTC-USDT","window":"1h","percent":1}"#,
        );
        let events: Vec<Event> = (0..10)
            .map(|n| minute(n, 100.0, 100.0 + n as f64, 1.0))
            .collect();
        assert!(run(&mut pct, &events).is_empty());
    }

    #[test]
    fn spreads_stale_feeds_and_unfillable_gaps() {
        let mut spread = engine(
            r#"{"kind":"spread_above","instrument":"BTC-USDT","exchanges":["binance","okx"],"percent":0.5}"#,
        );
        let fired = run(
            &mut spread,
            &[
                trade(Exchange::Binance, 0, "100"),
                trade(Exchange::Okx, 1, "100.4"),
                trade(Exchange::Okx, 2, "100.6"),
            ],
        );
        assert_eq!(fired.len(), 1);
        assert!((fired[0].value - 0.6).abs() < 1e-9);

        let mut stale = engine(
            r#"{"kind":"stale_feed","exchange":"binance","instrument":"BTC-USDT","seconds":30,"cooldown_secs":0}"#,
        );
        assert!(stale.on_tick(Ts(10 * SEC)).is_empty());
        let fired = stale.on_tick(Ts(31 * SEC));
        assert_eq!(fired.len(), 1, "30 s with no trade since the start");
        assert!(stale.on_tick(Ts(40 * SEC)).is_empty(), "once");

        let mut gaps =
            engine(r#"{"kind":"gap_unfillable","exchange":"binance","cooldown_secs":0}"#);
        let gap = |exchange, state| {
            Event::Gap(Gap {
                exchange,
                instrument: btc(),
                from_ts: Ts(0),
                to_ts: Ts(5 * SEC),
                first_missing_id: Some(1),
                last_missing_id: Some(9),
                state,
                reason: "REST has no trades there".into(),
                detected_at: Ts(6 * SEC),
                kind: ck_model::GapKind::Trades,
            })
        };
        let fired = run(
            &mut gaps,
            &[
                gap(Exchange::Binance, GapState::Open),
                gap(Exchange::Okx, GapState::Unfillable),
                gap(Exchange::Binance, GapState::Unfillable),
            ],
        );
        assert_eq!(fired.len(), 1);
        assert!(fired[0].message.contains("REST has no trades there"));

        // Told apart by kind: a book-gap rule fires on book gaps only.
        let mut books = engine(r#"{"kind":"gap_unfillable","gap":"book","cooldown_secs":0}"#);
        let of = |kind| match gap(Exchange::Binance, GapState::Unfillable) {
            Event::Gap(g) => Event::Gap(Gap { kind, ..g }),
            other => other,
        };
        let fired = run(
            &mut books,
            &[of(ck_model::GapKind::Trades), of(ck_model::GapKind::Book)],
        );
        assert_eq!(fired.len(), 1, "the book gap only");
        assert!(
            fired[0].message.starts_with("book gap on binance"),
            "{}",
            fired[0].message
        );
    }

    #[test]
    fn a_changed_rule_starts_afresh_and_an_unchanged_one_keeps_its_state() {
        let json = r#"{"kind":"price_above","exchange":"binance","instrument":"BTC-USDT","level":"100","cooldown_secs":0}"#;
        let mut e = engine(json);
        assert_eq!(run(&mut e, &[trade(Exchange::Binance, 0, "101")]).len(), 1);
        e.set_rules(vec![("1".into(), Rule::from_json(json).expect("rule"))]);
        assert!(
            run(&mut e, &[trade(Exchange::Binance, 1, "102")]).is_empty(),
            "still disarmed"
        );
        let raised = json.replace("\"100\"", "\"101.5\"");
        e.set_rules(vec![("1".into(), Rule::from_json(&raised).expect("rule"))]);
        assert_eq!(
            run(&mut e, &[trade(Exchange::Binance, 2, "102")]).len(),
            1,
            "a new rule"
        );
    }
}
