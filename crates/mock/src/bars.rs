//! Candles computed from a mock's trades, the way a venue computes its
//! own, so that every REST mock serves candles from the same data it serves
//! trades from. Written apart from candlekeep's aggregator on purpose: the
//! tests compare the two.

use std::collections::{BTreeMap, HashMap};

use ck_model::Decimal;

/// One trade, as the candles need it.
#[derive(Debug, Clone)]
pub(crate) struct Fill {
    /// Exchange time, ns.
    pub(crate) time_ns: i64,
    pub(crate) price: Decimal,
    pub(crate) size: Decimal,
    /// The taker bought.
    pub(crate) taker_buy: bool,
}

impl Fill {
    /// A fill from the venue's price and size text; `None` if either is
    /// not a number (such a trade is left out of the candles).
    pub(crate) fn parse(time_ns: i64, price: &str, size: &str, taker_buy: bool) -> Option<Fill> {
        Some(Fill {
            time_ns,
            price: Decimal::parse(price.trim_matches('"')).ok()?,
            size: Decimal::parse(size.trim_matches('"')).ok()?.abs(),
            taker_buy,
        })
    }
}

/// Fills by the venue's symbol, in exchange order.
pub(crate) type Fills = HashMap<String, Vec<Fill>>;

/// One second, in ns.
pub(crate) const SEC: i64 = 1_000_000_000;

/// The fills of a mock's trade book (rows by symbol, in exchange order),
/// each read by `fill`.
pub(crate) fn fills_of<K, V>(
    book: &HashMap<String, BTreeMap<K, V>>,
    fill: impl Fn(&K, &V) -> Option<Fill>,
) -> Fills {
    book.iter()
        .map(|(symbol, rows)| {
            let fills = rows.iter().filter_map(|(k, v)| fill(k, v)).collect();
            (symbol.clone(), fills)
        })
        .collect()
}

/// One candle.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    /// Open time, ns.
    pub(crate) open_ns: i64,
    pub(crate) open: Decimal,
    pub(crate) high: Decimal,
    pub(crate) low: Decimal,
    pub(crate) close: Decimal,
    pub(crate) volume: Decimal,
    /// Sum of price times size.
    pub(crate) quote: Decimal,
    pub(crate) taker_base: Decimal,
    pub(crate) taker_quote: Decimal,
    pub(crate) trades: u64,
}

impl Bar {
    /// The open time in ms.
    pub(crate) fn open_ms(&self) -> i64 {
        self.open_ns.div_euclid(1_000_000)
    }

    /// The open time in seconds.
    pub(crate) fn open_secs(&self) -> i64 {
        self.open_ns.div_euclid(1_000_000_000)
    }

    fn flat(open_ns: i64, close: Decimal) -> Bar {
        let zero = Decimal::new(0, 0);
        Bar {
            open_ns,
            open: close,
            high: close,
            low: close,
            close,
            volume: zero,
            quote: zero,
            taker_base: zero,
            taker_quote: zero,
            trades: 0,
        }
    }
}

/// The candles of `step_ns` of `fills` (in exchange order), oldest first.
/// With `flat`, quiet intervals between trades get a candle at the previous
/// close with no volume (Binance, Kraken); without, they get none
/// (Coinbase, Bitfinex).
pub(crate) fn bars(fills: &[Fill], step_ns: i64, flat: bool) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::new();
    let add = |a: Decimal, b: Decimal| a.checked_add(b).unwrap_or(a);
    for f in fills {
        let open_ns = f.time_ns.div_euclid(step_ns) * step_ns;
        while flat
            && let Some(last) = out.last()
            && last.open_ns + step_ns < open_ns
        {
            let next = Bar::flat(last.open_ns + step_ns, last.close);
            out.push(next);
        }
        let notional = f.price.checked_mul(f.size).unwrap_or(Decimal::new(0, 0));
        let (taker_base, taker_quote) = if f.taker_buy {
            (f.size, notional)
        } else {
            (Decimal::new(0, 0), Decimal::new(0, 0))
        };
        match out.last_mut() {
            Some(b) if b.open_ns == open_ns => {
                b.high = b.high.max(f.price);
                b.low = b.low.min(f.price);
                b.close = f.price;
                b.volume = add(b.volume, f.size);
                b.quote = add(b.quote, notional);
                b.taker_base = add(b.taker_base, taker_base);
                b.taker_quote = add(b.taker_quote, taker_quote);
                b.trades += 1;
            }
            _ => out.push(Bar {
                open_ns,
                open: f.price,
                high: f.price,
                low: f.price,
                close: f.price,
                volume: f.size,
                quote: notional,
                taker_base,
                taker_quote,
                trades: 1,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_intervals_are_flat_or_absent() {
        let f = |s: i64, p: &str, q: &str, buy: bool| {
            Fill::parse(s * 1_000_000_000, p, q, buy).expect("fill")
        };
        let fills = [
            f(0, "10", "1", true),
            f(30, "12", "2", false),
            f(150, "11", "1", true),
        ];
        let step = 60 * 1_000_000_000;
        let flat = bars(&fills, step, true);
        assert_eq!(flat.len(), 3);
        assert_eq!(
            (flat[0].open.to_string(), flat[0].close.to_string()),
            ("10".into(), "12".into())
        );
        assert_eq!(
            (flat[0].volume.to_string(), flat[0].quote.to_string()),
            ("3".into(), "34".into())
        );
        assert_eq!(flat[0].taker_base.to_string(), "1");
        assert_eq!((flat[1].open_secs(), flat[1].trades), (60, 0));
        assert_eq!(flat[1].close.to_string(), "12");
        let skipped = bars(&fills, step, false);
        assert_eq!(
            skipped.iter().map(Bar::open_secs).collect::<Vec<_>>(),
            [0, 120]
        );
    }
}
