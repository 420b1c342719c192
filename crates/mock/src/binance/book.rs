//! The mock's trade history: every trade of the recording, per symbol, with
//! the same time shift as the WebSocket, and repeated lap after lap when the
//! mock loops (each lap shifts ids by the recording's id span and times by its
//! time span, so ids stay unique and increasing).

use std::collections::BTreeMap;

/// One trade as `historicalTrades` serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockTrade {
    /// Trade id.
    pub id: u64,
    /// Price text, as recorded.
    pub price: String,
    /// Quantity text, as recorded.
    pub qty: String,
    /// Trade time, ms, shifted.
    pub time_ms: i64,
    /// The buyer was the maker.
    pub buyer_is_maker: bool,
}

/// The trades of one symbol.
#[derive(Debug, Default)]
pub(crate) struct SymbolBook {
    /// One lap, by id.
    pub(crate) trades: Vec<MockTrade>,
}

impl SymbolBook {
    fn id_span(&self) -> u64 {
        match (self.trades.first(), self.trades.last()) {
            (Some(a), Some(b)) => b.id - a.id + 1,
            _ => 1,
        }
    }

    /// Trade `index` of lap `lap`.
    fn at(&self, lap: u64, index: usize, time_span_ms: i64) -> Option<MockTrade> {
        let t = self.trades.get(index)?;
        let lap_i = i64::try_from(lap).ok()?;
        Some(MockTrade {
            id: t.id.checked_add(lap.checked_mul(self.id_span())?)?,
            time_ms: t.time_ms.checked_add(lap_i.checked_mul(time_span_ms)?)?,
            ..t.clone()
        })
    }
}

/// Every symbol's trades.
#[derive(Debug, Default)]
pub(crate) struct TradeBook {
    pub(crate) symbols: BTreeMap<String, SymbolBook>,
    /// How far one lap moves times, ms.
    pub(crate) time_span_ms: i64,
}

impl TradeBook {
    /// Up to `limit` trades with id `>= from_id`, over laps `0..laps`.
    pub(crate) fn trades_from_id(
        &self,
        symbol: &str,
        from_id: u64,
        limit: usize,
        laps: u64,
    ) -> Vec<MockTrade> {
        let Some(book) = self.symbols.get(symbol) else {
            return Vec::new();
        };
        let Some(first) = book.trades.first() else {
            return Vec::new();
        };
        let span = book.id_span();
        let mut lap = from_id.saturating_sub(first.id) / span;
        let mut out = Vec::new();
        while lap < laps && out.len() < limit {
            let start = book.trades.partition_point(|t| t.id + lap * span < from_id);
            for i in start..book.trades.len() {
                if out.len() >= limit {
                    break;
                }
                if let Some(t) = book.at(lap, i, self.time_span_ms) {
                    out.push(t);
                }
            }
            lap += 1;
        }
        out
    }

    /// The latest `limit` trades (of laps `0..laps`).
    pub(crate) fn latest(&self, symbol: &str, limit: usize, laps: u64) -> Vec<MockTrade> {
        let Some(book) = self.symbols.get(symbol) else {
            return Vec::new();
        };
        let Some(last) = book.trades.last() else {
            return Vec::new();
        };
        let top = last.id + (laps.max(1) - 1) * book.id_span();
        self.trades_from_id(symbol, top.saturating_sub(limit as u64 - 1), limit, laps)
    }

    /// Up to `limit` trades with time in `[start_ms, end_ms]`.
    pub(crate) fn in_time(
        &self,
        symbol: &str,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
        laps: u64,
    ) -> Vec<MockTrade> {
        let Some(book) = self.symbols.get(symbol) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for lap in 0..laps {
            let shift = i64::try_from(lap).unwrap_or(i64::MAX) * self.time_span_ms;
            let start = book
                .trades
                .partition_point(|t| t.time_ms + shift < start_ms);
            for i in start..book.trades.len() {
                let Some(t) = book.at(lap, i, self.time_span_ms) else {
                    break;
                };
                if t.time_ms > end_ms || out.len() >= limit {
                    return out;
                }
                out.push(t);
            }
        }
        out
    }
}
