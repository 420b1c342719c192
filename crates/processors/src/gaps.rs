//! Gap detection by trade-id continuity, for venues whose ids are sequential.
//!
//! Per instrument, the detector remembers the highest id seen. A trade whose
//! id is more than one above it opens a gap over the ids in between, with the
//! exchange times of the trades on either side. Lower ids (late or repeated
//! trades) never open a gap. Venues without sequential ids are ignored here;
//! their gaps come from reconnect windows.

use std::collections::HashMap;

use ck_model::{Exchange, Gap, GapState, Instrument, Trade, TradeId, Ts};

/// Finds gaps in sequential trade ids.
#[derive(Debug, Default)]
pub struct GapDetector {
    last: HashMap<(Exchange, Instrument), (u64, Ts)>,
}

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
        let TradeId::Num(id) = trade.trade_id else {
            return None;
        };
        let key = (trade.exchange, trade.instrument.clone());
        let Some(&(last, last_ts)) = self.last.get(&key) else {
            self.last.insert(key, (id, trade.ts_exchange));
            return None;
        };
        if id <= last {
            return None;
        }
        self.last.insert(key, (id, trade.ts_exchange));
        (id > last + 1).then(|| Gap {
            exchange: trade.exchange,
            instrument: trade.instrument.clone(),
            from_ts: last_ts,
            to_ts: trade.ts_exchange,
            first_missing_id: Some(last + 1),
            last_missing_id: Some(id - 1),
            state: GapState::Open,
            reason: format!("trade ids jumped from {last} to {id}"),
            detected_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ck_model::{Decimal, Side};

    fn trade(exchange: Exchange, id: u64, secs: i64) -> Trade {
        Trade {
            exchange,
            instrument: Instrument::parse("BTC-USDT").expect("i"),
            trade_id: TradeId::Num(id),
            price: Decimal::from(1),
            size: Decimal::from(1),
            side: Side::Buy,
            ts_exchange: Ts::from_secs(secs),
            ts_received: Ts::from_secs(secs),
            fills: 1,
        }
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
