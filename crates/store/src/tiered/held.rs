//! A day of one instrument's candles, held by an import until the day is
//! written to the archive ([`super::direct`]).
//!
//! A busy day has about 90,000 candles of the archived intervals, 86,400 of
//! them 1s. Held as `Candle` values in a map they took about 50 MB a day;
//! here each interval's candles sit in one vector in open-time order, packed
//! (the exchange, instrument and interval are the day's, and each decimal is
//! its mantissa and scale), about 19 MB a day. The last version of each
//! candle is kept.

use ck_model::{Candle, CandleState, Decimal, Exchange, Instrument, Interval, TradeId, Ts};

/// A day's candles, by interval.
pub(super) struct HeldDay {
    /// Indexed by [`Interval::index`]; each in open-time order.
    by_interval: Vec<Vec<HeldCandle>>,
}

/// One candle without what its day says.
struct HeldCandle {
    open_time: Ts,
    /// Open, high, low, close, volume, quote volume, vwap and taker buy
    /// volume: their mantissas…
    mantissas: [i128; 8],
    /// …and their scales.
    scales: [u8; 8],
    trades: u64,
    first_trade_id: Option<TradeId>,
    last_trade_id: Option<TradeId>,
    state: CandleState,
}

impl HeldCandle {
    fn of(c: &Candle) -> HeldCandle {
        let decimals = [
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            c.quote_volume,
            c.vwap,
            c.taker_buy_volume,
        ];
        HeldCandle {
            open_time: c.open_time,
            mantissas: decimals.map(Decimal::mantissa),
            scales: decimals.map(Decimal::scale),
            trades: c.trades,
            first_trade_id: c.first_trade_id.clone(),
            last_trade_id: c.last_trade_id.clone(),
            state: c.state,
        }
    }

    fn candle(&self, exchange: Exchange, instrument: &Instrument, interval: Interval) -> Candle {
        let d = |i: usize| Decimal::new(self.mantissas[i], self.scales[i]);
        Candle {
            exchange,
            instrument: instrument.clone(),
            interval,
            open_time: self.open_time,
            open: d(0),
            high: d(1),
            low: d(2),
            close: d(3),
            volume: d(4),
            quote_volume: d(5),
            vwap: d(6),
            taker_buy_volume: d(7),
            trades: self.trades,
            first_trade_id: self.first_trade_id.clone(),
            last_trade_id: self.last_trade_id.clone(),
            state: self.state,
        }
    }
}

impl HeldDay {
    pub(super) fn new() -> HeldDay {
        HeldDay {
            by_interval: Interval::ALL.iter().map(|_| Vec::new()).collect(),
        }
    }

    /// Keeps `c` (replacing an earlier version of it).
    pub(super) fn put(&mut self, c: &Candle) {
        let Some(held) = self.by_interval.get_mut(c.interval.index()) else {
            return;
        };
        let candle = HeldCandle::of(c);
        match held.last() {
            Some(last) if last.open_time >= c.open_time => {
                match held.binary_search_by_key(&c.open_time, |h| h.open_time) {
                    Ok(i) => held[i] = candle,
                    Err(i) => held.insert(i, candle),
                }
            }
            _ => {
                if held.len() == held.capacity() {
                    // Grown as a vector grows, but never past the day's
                    // number of intervals (doubling 86,400 1s slots would
                    // reserve 131,072).
                    let slots = c
                        .interval
                        .fixed_nanos()
                        .map_or(1, |n| (86_400 * 1_000_000_000 / n.max(1)).max(1));
                    let slots = usize::try_from(slots).unwrap_or(usize::MAX);
                    let more = held.len().max(64).min(slots.saturating_sub(held.len()));
                    held.reserve_exact(more.max(1));
                }
                held.push(candle);
            }
        }
    }

    /// The candles, one run per interval (finest first), each in open-time
    /// order: the order of a day's candle file.
    pub(super) fn runs<'a>(
        &'a self,
        exchange: Exchange,
        instrument: &'a Instrument,
    ) -> impl Iterator<Item = impl Iterator<Item = Candle> + 'a> + 'a {
        Interval::ALL
            .iter()
            .zip(&self.by_interval)
            .filter(|(_, held)| !held.is_empty())
            .map(move |(&interval, held)| {
                held.iter()
                    .map(move |h| h.candle(exchange, instrument, interval))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candle(interval: Interval, open_secs: i64, close: &str) -> Candle {
        let price = Decimal::parse(close).expect("decimal");
        Candle {
            exchange: Exchange::Binance,
            instrument: Instrument::new("BTC", "USDT"),
            interval,
            open_time: Ts(open_secs * 1_000_000_000),
            open: price,
            high: price,
            low: price,
            close: price,
            volume: Decimal::parse("0.00120").expect("decimal"),
            quote_volume: Decimal::parse("74.40000").expect("decimal"),
            vwap: price,
            taker_buy_volume: Decimal::parse("0").expect("decimal"),
            trades: 2,
            first_trade_id: Some(TradeId::Num(7)),
            last_trade_id: Some(TradeId::Str("x-8".into())),
            state: CandleState::Closed,
        }
    }

    #[test]
    fn a_held_day_gives_back_the_last_version_of_each_candle_in_file_order() {
        let mut day = HeldDay::new();
        let puts = [
            candle(Interval::M1, 60, "62000.10"),
            candle(Interval::S1, 2, "62000.10"),
            candle(Interval::S1, 0, "61999.5"),
            candle(Interval::S1, 1, "62000"),
            // A revision, and one of an earlier candle.
            candle(Interval::S1, 2, "62000.20"),
            candle(Interval::S1, 0, "61999.50"),
            candle(Interval::M1, 0, "61999.5"),
        ];
        for c in &puts {
            day.put(c);
        }
        let instrument = Instrument::new("BTC", "USDT");
        let back: Vec<Vec<Candle>> = day
            .runs(Exchange::Binance, &instrument)
            .map(Iterator::collect)
            .collect();
        let expect = vec![
            vec![puts[5].clone(), puts[3].clone(), puts[4].clone()],
            vec![puts[6].clone(), puts[0].clone()],
        ];
        assert_eq!(back, expect);
        // Exact to the scale: "61999.50" stays two places.
        assert_eq!(back[0][0].close.to_string(), "61999.50");
    }

    #[test]
    fn a_day_of_one_second_candles_reserves_no_more_than_the_day_holds() {
        let mut day = HeldDay::new();
        for s in 0..86_400 {
            day.put(&candle(Interval::S1, s, "1.5"));
        }
        let held = &day.by_interval[Interval::S1.index()];
        assert_eq!(held.len(), 86_400);
        assert_eq!(held.capacity(), 86_400, "not rounded up to a power of two");
    }
}
