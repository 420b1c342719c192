//! Gap detection by trade-id continuity, for venues whose ids are sequential.
//!
//! Per instrument, the detector remembers the highest id seen. A trade whose
//! first id ([`Trade::id_span`]) is more than one above it opens a gap over
//! the ids in between, with the exchange times of the trades on either side.
//! Lower ids (late or repeated trades) never open a gap. Venues without
//! sequential ids are ignored here; their gaps come from reconnect windows.
//!
//! A trade that arrives late with an id inside a gap the detector opened
//! (messages redelivered out of order after a processor fails over, or a
//! venue's own reordering) counts towards it: once every missing id of a
//! gap of up to [`LATE_FILL_IDS`] ids has arrived, the gap is reported
//! again as filled.
//!
//! On a venue whose aggregated trades carry their last fill's id (OKX), the
//! detector also remembers recent aggregates, so that a single fill inside
//! one (REST history serves fills one by one) is known to be counted
//! already: [`GapDetector::covered`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ck_model::{Exchange, Gap, GapState, Instrument, Trade, Ts};

/// Finds gaps in sequential trade ids.
#[derive(Debug, Default)]
pub struct GapDetector {
    last: HashMap<(Exchange, Instrument), (u64, Ts)>,
    /// Recent aggregated trades per instrument: last id to first id.
    aggregates: HashMap<(Exchange, Instrument), BTreeMap<u64, u64>>,
    /// Gaps opened here that late trades may still fill, per instrument,
    /// by their first missing id.
    open: HashMap<(Exchange, Instrument), BTreeMap<u64, OpenGap>>,
}

/// A gap opened by the detector, and the ids of it that arrived since.
#[derive(Debug)]
struct OpenGap {
    gap: Gap,
    arrived: BTreeSet<u64>,
}

/// The largest gap (in ids) that late trades are counted towards; larger
/// ones are left to repair.
pub const LATE_FILL_IDS: u64 = 10_000;

/// How many open gaps per instrument late trades are counted towards (the
/// most recent).
pub const LATE_FILL_GAPS: usize = 64;

/// How many aggregated trades per instrument [`GapDetector::covered`]
/// remembers (the most recent ids): hours of a busy market, far more than
/// a repair reaches back.
pub const AGGREGATES_KEPT: usize = 1 << 16;

impl GapDetector {
    /// A detector that has seen nothing.
    #[must_use]
    pub fn new() -> GapDetector {
        GapDetector::default()
    }

    /// Starts `instrument` from a known last trade (the last one stored before
    /// a restart), so the first live trade reveals what was missed meanwhile.
    pub fn seed(&mut self, exchange: Exchange, instrument: Instrument, last_id: u64, at: Ts) {
        self.last.insert((exchange, instrument), (last_id, at));
    }

    /// Looks at one trade; returns the gap it reveals, if any. `now` stamps
    /// the detection.
    pub fn on_trade(&mut self, trade: &Trade, now: Ts) -> Option<Gap> {
        if !trade.exchange.sequential_trade_ids() {
            return None;
        }
        let (first, id) = trade.id_span()?;
        let key = (trade.exchange, trade.instrument.clone());
        // One lookup per trade: the newest id moves on in place.
        let (last, last_ts) = match self.last.get_mut(&key) {
            None => {
                self.last.insert(key, (id, trade.ts_exchange));
                return None;
            }
            Some(newest) => {
                let before = *newest;
                if id > before.0 {
                    *newest = (id, trade.ts_exchange);
                }
                before
            }
        };
        if id <= last {
            return self.late(&key, first, id, now);
        }
        let gap = (first > last + 1).then(|| Gap {
            exchange: trade.exchange,
            instrument: trade.instrument.clone(),
            from_ts: last_ts,
            to_ts: trade.ts_exchange,
            first_missing_id: Some(last + 1),
            last_missing_id: Some(first - 1),
            state: GapState::Open,
            reason: if first == id {
                format!("trade ids jumped from {last} to {id}")
            } else {
                format!(
                    "trade ids jumped from {last} to {first} (the first of {} fills up to {id})",
                    trade.fills
                )
            },
            detected_at: now,
            kind: ck_model::GapKind::Trades,
        })?;
        if first - 1 - last < LATE_FILL_IDS {
            let open = self.open.entry(key).or_default();
            open.insert(
                last + 1,
                OpenGap {
                    gap: gap.clone(),
                    arrived: BTreeSet::new(),
                },
            );
            if open.len() > LATE_FILL_GAPS {
                open.pop_first();
            }
        }
        Some(gap)
    }

    /// A trade with ids `first..=id` at or below the highest seen: if they
    /// fall in a gap opened here, they count towards it; the gap, filled,
    /// when its last missing id arrived.
    fn late(&mut self, key: &(Exchange, Instrument), first: u64, id: u64, now: Ts) -> Option<Gap> {
        let open = self.open.get_mut(key)?;
        let (&start, entry) = open.range_mut(..=id).next_back()?;
        let end = entry.gap.last_missing_id?;
        if first > end {
            return None;
        }
        entry.arrived.extend(first.max(start)..=id.min(end));
        if entry.arrived.len() as u64 <= end - start {
            return None;
        }
        let filled = open.remove(&start)?;
        Some(Gap {
            state: GapState::Filled,
            reason: format!(
                "filled by {} trades that arrived late ({})",
                end - start + 1,
                filled.gap.reason
            ),
            detected_at: now,
            ..filled.gap
        })
    }

    /// Forgets an instrument (its stream partition went to another
    /// processor): its next trade starts a new run, as the first one did.
    pub fn forget(&mut self, exchange: Exchange, instrument: &Instrument) {
        let key = (exchange, instrument.clone());
        self.last.remove(&key);
        self.aggregates.remove(&key);
        self.open.remove(&key);
    }

    /// Takes trade `id` as seen without a trade: the id of input that could
    /// not be used (an import's bad row), which is an ingest error, not
    /// missing data. Only the next id in sequence moves the detector on.
    pub fn skip(&mut self, exchange: Exchange, instrument: &Instrument, id: u64) {
        if !exchange.sequential_trade_ids() {
            return;
        }
        if let Some((last, _)) = self.last.get_mut(&(exchange, instrument.clone()))
            && id == *last + 1
        {
            *last = id;
        }
    }

    /// True when `trade` is a single fill whose id lies inside an aggregated
    /// trade seen before (on a venue whose aggregates carry their last
    /// fill's id): the aggregate counts it already, so it must be dropped,
    /// not counted twice. An aggregate is remembered as it passes. A fill
    /// with the aggregate's own id is not covered: the id deduplicates it.
    pub fn covered(&mut self, trade: &Trade) -> bool {
        if !trade.exchange.ids_end_aggregates() {
            return false;
        }
        let Some((first, last)) = trade.id_span() else {
            return false;
        };
        let key = (trade.exchange, trade.instrument.clone());
        if first < last {
            let kept = self.aggregates.entry(key).or_default();
            kept.insert(last, first);
            if kept.len() > AGGREGATES_KEPT {
                kept.pop_first();
            }
            return false;
        }
        self.aggregates
            .get(&key)
            .and_then(|kept| kept.range(last..).next())
            .is_some_and(|(&end, &start)| start <= last && last < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ck_model::{Decimal, Side, TradeId};

    fn trade(exchange: Exchange, id: u64, secs: i64) -> Trade {
        fills(exchange, id, 1, secs)
    }

    fn fills(exchange: Exchange, id: u64, fills: u32, secs: i64) -> Trade {
        Trade {
            exchange,
            instrument: Instrument::parse("BTC-USDT").expect("i"),
            trade_id: TradeId::Num(id),
            price: Decimal::from(1),
            size: Decimal::from(1),
            side: Side::Buy,
            ts_exchange: Ts::from_secs(secs),
            ts_received: Ts::from_secs(secs),
            fills,
        }
    }

    #[test]
    fn trades_that_arrive_late_fill_the_gap_they_were_missing_from() {
        let mut d = GapDetector::new();
        let now = Ts::from_secs(100);
        let ex = Exchange::Binance;
        assert_eq!(d.on_trade(&trade(ex, 10, 1), now), None);
        let gap = d.on_trade(&trade(ex, 14, 5), now).expect("gap 11..=13");
        assert_eq!(
            (gap.first_missing_id, gap.last_missing_id),
            (Some(11), Some(13))
        );
        assert_eq!(d.on_trade(&trade(ex, 12, 3), now), None, "one of three");
        assert_eq!(
            d.on_trade(&trade(ex, 12, 3), now),
            None,
            "a repeat counts once"
        );
        assert_eq!(d.on_trade(&trade(ex, 9, 0), now), None, "below the gap");
        assert_eq!(d.on_trade(&trade(ex, 11, 2), now), None, "two of three");
        let filled = d.on_trade(&trade(ex, 13, 4), now).expect("filled");
        assert_eq!(filled.state, GapState::Filled);
        assert_eq!(
            (
                filled.from_ts,
                filled.to_ts,
                filled.first_missing_id,
                filled.last_missing_id
            ),
            (
                gap.from_ts,
                gap.to_ts,
                gap.first_missing_id,
                gap.last_missing_id
            ),
            "the same gap, so the store updates it"
        );
        assert_eq!(d.on_trade(&trade(ex, 13, 4), now), None, "filled once");
        // A gap too large to count ids of is left to repair.
        let big = d
            .on_trade(&trade(ex, 14 + LATE_FILL_IDS + 1, 9), now)
            .expect("gap");
        assert_eq!(big.state, GapState::Open);
        assert!((15..15 + LATE_FILL_IDS).all(|id| d.on_trade(&trade(ex, id, 6), now).is_none()));
    }

    #[test]
    fn okx_aggregates_take_their_fills_ids_and_cover_single_fills() {
        let mut d = GapDetector::new();
        let now = Ts::from_secs(99);
        // 10, then 13 standing for fills 11..=13: no gap.
        for t in [
            fills(Exchange::Okx, 10, 1, 1),
            fills(Exchange::Okx, 13, 3, 2),
        ] {
            assert!(!d.covered(&t));
            assert_eq!(d.on_trade(&t, now), None);
        }
        // 20 standing for 18..=20: ids 14..=17 are missing.
        let gap = d
            .on_trade(&fills(Exchange::Okx, 20, 3, 3), now)
            .expect("gap");
        assert_eq!(
            (gap.first_missing_id, gap.last_missing_id),
            (Some(14), Some(17))
        );
        assert!(
            gap.reason.contains("18 (the first of 3 fills up to 20)"),
            "{}",
            gap.reason
        );
        // REST's single fills inside the aggregate 11..=13 are covered; its
        // last fill (the aggregate's id) and fills outside are not.
        assert!(d.covered(&fills(Exchange::Okx, 11, 1, 2)));
        assert!(d.covered(&fills(Exchange::Okx, 12, 1, 2)));
        assert!(!d.covered(&fills(Exchange::Okx, 13, 1, 2)));
        assert!(!d.covered(&fills(Exchange::Okx, 10, 1, 1)));
        assert!(!d.covered(&fills(Exchange::Okx, 14, 1, 2)));
        assert!(
            !d.covered(&fills(Exchange::Binance, 12, 1, 2)),
            "Binance numbers its aggregates"
        );
        // Memory stays bounded.
        for k in 0..(AGGREGATES_KEPT as u64 + 10) {
            d.covered(&fills(Exchange::Okx, 100 + 2 * k, 2, 4));
        }
        assert!(
            !d.covered(&fills(Exchange::Okx, 12, 1, 2)),
            "forgotten: the oldest go first"
        );
        let newest = 100 + 2 * (AGGREGATES_KEPT as u64 + 9);
        assert!(d.covered(&fills(Exchange::Okx, newest - 1, 1, 4)));
    }

    #[test]
    fn skipped_ids_of_bad_input_are_not_gaps() {
        let mut d = GapDetector::new();
        let now = Ts::from_secs(99);
        let i = Instrument::parse("BTC-USDT").expect("i");
        assert_eq!(d.on_trade(&trade(Exchange::Binance, 10, 1), now), None);
        d.skip(Exchange::Binance, &i, 11);
        d.skip(Exchange::Binance, &i, 12);
        assert_eq!(d.on_trade(&trade(Exchange::Binance, 13, 2), now), None);
        // A skipped id out of sequence moves nothing: 14 is still missing.
        d.skip(Exchange::Binance, &i, 15);
        let gap = d
            .on_trade(&trade(Exchange::Binance, 16, 3), now)
            .expect("gap");
        assert_eq!(
            (gap.first_missing_id, gap.last_missing_id),
            (Some(14), Some(15))
        );
    }

    #[test]
    fn jumps_open_gaps_and_late_ids_do_not() {
        let mut d = GapDetector::new();
        let now = Ts::from_secs(99);
        assert_eq!(d.on_trade(&trade(Exchange::Binance, 10, 1), now), None);
        assert_eq!(d.on_trade(&trade(Exchange::Binance, 11, 2), now), None);
        let gap = d
            .on_trade(&trade(Exchange::Binance, 15, 5), now)
            .expect("gap");
        assert_eq!(
            (gap.first_missing_id, gap.last_missing_id),
            (Some(12), Some(14))
        );
        assert_eq!(
            (gap.from_ts, gap.to_ts, gap.state),
            (Ts::from_secs(2), Ts::from_secs(5), GapState::Open)
        );
        assert_eq!(
            d.on_trade(&trade(Exchange::Binance, 13, 3), now),
            None,
            "a late trade opens nothing"
        );
        assert_eq!(
            d.on_trade(&trade(Exchange::Binance, 15, 5), now),
            None,
            "nor does a repeat"
        );
        assert_eq!(d.on_trade(&trade(Exchange::Bybit, 1, 1), now), None);
        assert_eq!(
            d.on_trade(&trade(Exchange::Bybit, 9, 2), now),
            None,
            "Bybit ids are not sequential"
        );
    }
}
