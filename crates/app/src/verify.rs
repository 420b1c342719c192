//! `candlekeep verify`: our candles against the exchange's own, field by field.

use std::collections::BTreeMap;

use ck_model::{Candle, CandleField, Ts};

/// One way a candle pair differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// We have a candle the exchange does not.
    OnlyOurs(Ts),
    /// The exchange has a candle we do not.
    OnlyExchange(Ts),
    /// A field differs.
    Field {
        /// The candle's open time.
        open_time: Ts,
        /// The field.
        field: &'static str,
        /// Our value.
        ours: String,
        /// The exchange's value.
        exchange: String,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::OnlyOurs(t) => write!(f, "{t}  only in ours"),
            Difference::OnlyExchange(t) => write!(f, "{t}  only in the exchange's"),
            Difference::Field {
                open_time,
                field,
                ours,
                exchange,
            } => write!(f, "{open_time}  {field}: ours {ours}, exchange {exchange}"),
        }
    }
}

/// The outcome of a comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Candles present on both sides.
    pub compared: usize,
    /// Of those, identical in every compared field.
    pub equal: usize,
    /// Every difference, by open time.
    pub differences: Vec<Difference>,
}

/// Compares by open time, in each of `fields` (decimals numerically, so
/// `1.50` equals `1.5`): pass the fields the exchange publishes,
/// [`ck_model::Exchange::candle_fields`].
#[must_use]
pub fn compare(ours: &[Candle], exchange: &[Candle], fields: &[CandleField]) -> VerifyReport {
    let ours: BTreeMap<Ts, &Candle> = ours.iter().map(|c| (c.open_time, c)).collect();
    let theirs: BTreeMap<Ts, &Candle> = exchange.iter().map(|c| (c.open_time, c)).collect();
    let mut report = VerifyReport::default();
    let mut times: Vec<Ts> = ours.keys().chain(theirs.keys()).copied().collect();
    times.sort();
    times.dedup();
    for t in times {
        match (ours.get(&t), theirs.get(&t)) {
            (Some(a), Some(b)) => {
                report.compared += 1;
                let before = report.differences.len();
                for &field in fields {
                    let (x, y) = (field.value(a), field.value(b));
                    if x != y {
                        report.differences.push(Difference::Field {
                            open_time: t,
                            field: field.as_str(),
                            ours: x.to_string(),
                            exchange: y.to_string(),
                        });
                    }
                }
                if report.differences.len() == before {
                    report.equal += 1;
                }
            }
            (Some(_), None) => report.differences.push(Difference::OnlyOurs(t)),
            (None, Some(_)) => report.differences.push(Difference::OnlyExchange(t)),
            (None, None) => {}
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use ck_model::{CandleState, Decimal, Exchange, Instrument, Interval};

    fn candle(secs: i64, close: &str, trades: u64) -> Candle {
        let d = |s: &str| Decimal::parse(s).expect("decimal");
        Candle {
            exchange: Exchange::Binance,
            instrument: Instrument::parse("BTC-USDT").expect("i"),
            interval: Interval::M1,
            open_time: Ts::from_secs(secs),
            open: d("1"),
            high: d("2"),
            low: d("1"),
            close: d(close),
            volume: d("3"),
            quote_volume: d("4"),
            vwap: d("1.5"),
            taker_buy_volume: d("1"),
            trades,
            first_trade_id: None,
            last_trade_id: None,
            state: CandleState::Closed,
        }
    }

    #[test]
    fn every_difference_is_reported_and_equal_numbers_are_equal() {
        let ours = [
            candle(0, "1.50", 3),
            candle(60, "2", 3),
            candle(120, "1", 1),
        ];
        let theirs = [
            candle(0, "1.5", 3),
            candle(60, "1.9", 4),
            candle(180, "1", 1),
        ];
        let r = compare(&ours, &theirs, &CandleField::ALL);
        assert_eq!((r.compared, r.equal), (2, 1));
        assert_eq!(
            r.differences,
            vec![
                Difference::Field {
                    open_time: Ts::from_secs(60),
                    field: "close",
                    ours: "2".into(),
                    exchange: "1.9".into()
                },
                Difference::Field {
                    open_time: Ts::from_secs(60),
                    field: "trades",
                    ours: "3".into(),
                    exchange: "4".into()
                },
                Difference::OnlyOurs(Ts::from_secs(120)),
                Difference::OnlyExchange(Ts::from_secs(180)),
            ]
        );
        assert!(
            r.differences[0]
                .to_string()
                .contains("close: ours 2, exchange 1.9")
        );
    }

    #[test]
    fn only_the_fields_the_exchange_publishes_are_compared() {
        // A venue without trade counts or quote volume: those differ, and
        // are not differences; a close that differs still is.
        let ours = [candle(0, "1", 3), candle(60, "2", 3)];
        let mut theirs = [candle(0, "1", 0), candle(60, "2.5", 0)];
        theirs[0].quote_volume = Decimal::parse("0").expect("zero");
        let r = compare(&ours, &theirs, &CandleField::OHLCV);
        assert_eq!((r.compared, r.equal), (2, 1));
        assert_eq!(r.differences.len(), 1);
        assert!(
            r.differences[0]
                .to_string()
                .contains("close: ours 2, exchange 2.5")
        );
        let all = compare(&ours, &theirs, &CandleField::ALL);
        assert_eq!(all.equal, 0, "with every field compared, counts differ");
    }
}
