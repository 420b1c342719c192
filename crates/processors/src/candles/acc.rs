//! The fixed-point accumulator behind one candle.

use ck_model::{Candle, CandleState, Decimal, Exchange, Instrument, Interval, TradeId, Ts};

/// Orders trades within a candle: exchange time, then the trade id where ids
/// are ordered, else the arrival number.
pub(crate) type OrderKey = (i64, u64);

/// One candle's running state. Prices are `i64` at the series' price scale,
/// sizes `i128` sums at the size scale, quote volume at both scales added.
#[derive(Debug, Clone)]
pub(crate) struct Acc {
    pub(crate) open_time: i64,
    pub(crate) open: i64,
    pub(crate) high: i64,
    pub(crate) low: i64,
    pub(crate) close: i64,
    pub(crate) open_key: OrderKey,
    pub(crate) close_key: OrderKey,
    pub(crate) volume: i128,
    pub(crate) quote: i128,
    pub(crate) taker_buy: i128,
    pub(crate) fills: u64,
    /// The first and last trade ids, kept only when they are not the order
    /// key's tiebreak already (numeric ids of venues with ordered ids are).
    pub(crate) first_id: Option<TradeId>,
    pub(crate) last_id: Option<TradeId>,
    /// Set once the candle was emitted as closed; a later change makes it revised.
    pub(crate) closed: bool,
    pub(crate) revised: bool,
}

/// One trade in fixed point, ready to fold into accumulators.
#[derive(Debug, Clone)]
pub(crate) struct FixedTrade<'a> {
    pub(crate) ts: i64,
    pub(crate) key: OrderKey,
    pub(crate) price: i64,
    pub(crate) size: i64,
    pub(crate) taker_buy: bool,
    pub(crate) fills: u32,
    pub(crate) id: &'a TradeId,
    /// The id is `key.1`; it need not be stored.
    pub(crate) id_in_key: bool,
}

impl Acc {
    pub(crate) fn empty(open_time: i64) -> Acc {
        Acc {
            open_time,
            open: 0,
            high: 0,
            low: 0,
            close: 0,
            open_key: (i64::MAX, u64::MAX),
            close_key: (i64::MIN, 0),
            volume: 0,
            quote: 0,
            taker_buy: 0,
            fills: 0,
            first_id: None,
            last_id: None,
            closed: false,
            revised: false,
        }
    }

    /// A flat candle at `price`: what Binance and Kraken publish for an
    /// interval without trades.
    pub(crate) fn flat(open_time: i64, price: i64) -> Acc {
        Acc {
            open: price,
            high: price,
            low: price,
            close: price,
            ..Acc::empty(open_time)
        }
    }

    /// True when no trade is in it (it may still be a flat candle).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.close_key.0 == i64::MIN
    }

    #[inline]
    pub(crate) fn add(&mut self, t: &FixedTrade<'_>) {
        let size = i128::from(t.size);
        if self.is_empty() {
            self.open = t.price;
            self.high = t.price;
            self.low = t.price;
            self.close = t.price;
            self.open_key = t.key;
            self.close_key = t.key;
            if !t.id_in_key {
                self.first_id = Some(t.id.clone());
                self.last_id = Some(t.id.clone());
            }
        } else {
            if t.price > self.high {
                self.high = t.price;
            }
            if t.price < self.low {
                self.low = t.price;
            }
            if t.key > self.close_key {
                self.close = t.price;
                self.close_key = t.key;
                if !t.id_in_key {
                    self.last_id = Some(t.id.clone());
                }
            } else if t.key < self.open_key {
                self.open = t.price;
                self.open_key = t.key;
                if !t.id_in_key {
                    self.first_id = Some(t.id.clone());
                }
            }
        }
        self.volume += size;
        self.quote += i128::from(t.price) * size;
        if t.taker_buy {
            self.taker_buy += size;
        }
        self.fills += u64::from(t.fills);
    }

    /// Folds another candle of the same or a finer interval into this one.
    pub(crate) fn merge(&mut self, other: &Acc) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            let (open_time, closed, revised) = (self.open_time, self.closed, self.revised);
            *self = Acc {
                open_time,
                closed,
                revised,
                ..other.clone()
            };
            return;
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        if other.open_key < self.open_key {
            self.open = other.open;
            self.open_key = other.open_key;
            self.first_id.clone_from(&other.first_id);
        }
        if other.close_key > self.close_key {
            self.close = other.close;
            self.close_key = other.close_key;
            self.last_id.clone_from(&other.last_id);
        }
        self.volume += other.volume;
        self.quote += other.quote;
        self.taker_buy += other.taker_buy;
        self.fills += other.fills;
    }

    /// Multiplies the price fields by `factor` (the series gained price digits).
    pub(crate) fn rescale_price(&mut self, factor: i64) {
        self.open *= factor;
        self.high *= factor;
        self.low *= factor;
        self.close *= factor;
        self.quote *= i128::from(factor);
    }

    /// Multiplies the size fields by `factor` (the series gained size digits).
    pub(crate) fn rescale_size(&mut self, factor: i64) {
        let f = i128::from(factor);
        self.volume *= f;
        self.taker_buy *= f;
        self.quote *= f;
    }

    fn trade_id(&self, stored: Option<&TradeId>, key: OrderKey) -> Option<TradeId> {
        if self.is_empty() {
            return None;
        }
        Some(stored.cloned().unwrap_or(TradeId::Num(key.1)))
    }

    pub(crate) fn state(&self) -> CandleState {
        match (self.closed, self.revised) {
            (false, _) => CandleState::Provisional,
            (true, false) => CandleState::Closed,
            (true, true) => CandleState::Revised,
        }
    }
}

/// What a series needs to turn accumulators back into decimals.
pub(crate) struct SeriesScales<'a> {
    pub(crate) exchange: Exchange,
    pub(crate) instrument: &'a Instrument,
    pub(crate) price_scale: u8,
    pub(crate) size_scale: u8,
}

/// Digits past the price scale kept in the VWAP.
pub(crate) const VWAP_EXTRA_DIGITS: u8 = 4;

impl SeriesScales<'_> {
    pub(crate) fn candle(&self, interval: Interval, acc: &Acc) -> Candle {
        let price = |m: i64| Decimal::new(i128::from(m), self.price_scale);
        let size = |m: i128| Decimal::new(m, self.size_scale);
        let quote_raw = Decimal::new(acc.quote, self.price_scale + self.size_scale);
        let volume = size(acc.volume);
        let vwap_scale = self.price_scale + VWAP_EXTRA_DIGITS;
        let vwap = quote_raw
            .checked_div(volume, vwap_scale)
            .unwrap_or_else(|| {
                price(acc.close)
                    .rescale(vwap_scale)
                    .unwrap_or(price(acc.close))
            });
        // Quote volume is exact; show it with the larger of the price and size
        // scales when that is exact (one division), else with the digits it needs.
        let quote = quote_raw
            .rescale(self.price_scale.max(self.size_scale))
            .unwrap_or_else(|| quote_raw.normalize());
        Candle {
            exchange: self.exchange,
            instrument: self.instrument.clone(),
            interval,
            open_time: Ts(acc.open_time),
            open: price(acc.open),
            high: price(acc.high),
            low: price(acc.low),
            close: price(acc.close),
            volume,
            quote_volume: quote,
            vwap,
            taker_buy_volume: size(acc.taker_buy),
            trades: acc.fills,
            first_trade_id: acc.trade_id(acc.first_id.as_ref(), acc.open_key),
            last_trade_id: acc.trade_id(acc.last_id.as_ref(), acc.close_key),
            state: acc.state(),
        }
    }
}
