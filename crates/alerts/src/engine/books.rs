//! Book rules (`book_spread_above`, `book_depth_below`,
//! `book_imbalance_above`): evaluated on a book's stats
//! ([`ck_book::stats::BookStats`]), which the service reads every second
//! from the books captured live.

use ck_model::{Exchange, Instrument, Ts};

use super::{Check, Engine, Firing, fire};
use crate::rule::Condition;

impl Engine {
    /// The books the rules watch (for the service to read their stats).
    #[must_use]
    pub fn books(&self) -> Vec<(Exchange, Instrument)> {
        let mut out: Vec<(Exchange, Instrument)> = self
            .entries
            .iter()
            .filter_map(|e| match &e.rule.condition {
                Condition::BookSpreadAbove {
                    exchange,
                    instrument,
                    ..
                }
                | Condition::BookDepthBelow {
                    exchange,
                    instrument,
                    ..
                }
                | Condition::BookImbalanceAbove {
                    exchange,
                    instrument,
                    ..
                } => Some((*exchange, instrument.clone())),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        out.dedup();
        out
    }

    /// A book's stats at `now`: the book rules of that book.
    pub fn on_book(
        &mut self,
        exchange: Exchange,
        instrument: &Instrument,
        stats: &ck_book::stats::BookStats,
        now: Ts,
    ) -> Vec<Firing> {
        let mut fired = Vec::new();
        for e in &mut self.entries {
            let h = e.rule.hysteresis.to_f64();
            let (check, message) = match &e.rule.condition {
                Condition::BookSpreadAbove {
                    exchange: x,
                    instrument: i,
                    bps,
                } if *x == exchange && i == instrument => (
                    Check::above(stats.spread_bps, *bps, h),
                    format!(
                        "{exchange} {instrument}: book spread {:.2} bps (bid {}, ask {})",
                        stats.spread_bps,
                        stats.best_bid.text(),
                        stats.best_ask.text()
                    ),
                ),
                Condition::BookDepthBelow {
                    exchange: x,
                    instrument: i,
                    band_bps,
                    size,
                } if *x == exchange && i == instrument => {
                    let Some(k) = ck_book::stats::DEPTH_BANDS_BPS
                        .iter()
                        .position(|b| b == band_bps)
                    else {
                        continue;
                    };
                    let (bid, ask) = (stats.bid_depth[k].to_f64(), stats.ask_depth[k].to_f64());
                    let thinner = bid.min(ask);
                    (
                        Check::below(thinner, *size, h),
                        format!(
                            "{exchange} {instrument}: depth within {band_bps} bps {thinner} (bids {}, asks {}), below {size}",
                            stats.bid_depth[k].text(),
                            stats.ask_depth[k].text()
                        ),
                    )
                }
                Condition::BookImbalanceAbove {
                    exchange: x,
                    instrument: i,
                    level,
                } if *x == exchange && i == instrument => (
                    Check::above(stats.imbalance.abs(), *level, h),
                    format!(
                        "{exchange} {instrument}: best-level imbalance {:.3}, beyond {level}",
                        stats.imbalance
                    ),
                ),
                _ => continue,
            };
            if !check.value.is_finite() {
                continue;
            }
            fired.extend(fire(e, check, (exchange, instrument), now, message));
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use ck_model::{Exchange, Instrument, Ts};

    use super::super::Engine;
    use crate::rule::Rule;

    const SEC: i64 = 1_000_000_000;

    fn btc() -> Instrument {
        Instrument::new("BTC", "USDT")
    }

    /// A book: bids and asks as (price, size) text.
    fn stats(bids: &[(&str, &str)], asks: &[(&str, &str)]) -> ck_book::stats::BookStats {
        let f = |t: &str| ck_book::Fixed::parse(t.as_bytes()).expect("number");
        let mut book = ck_book::Book::new();
        for (side, levels) in [
            (ck_book::BookSide::Bid, bids),
            (ck_book::BookSide::Ask, asks),
        ] {
            for (p, q) in levels {
                book.apply(side, f(p), f(q)).expect("level");
            }
        }
        ck_book::stats::BookStats::of(&book).expect("both sides")
    }

    #[test]
    fn book_rules_fire_on_a_book_s_stats_and_rearm_past_their_band() {
        let mut e = Engine::new(Ts(0));
        let rule = |json: &str| Rule::from_json(json).expect("rule");
        e.set_rules(vec![
            ("spread".into(), rule(r#"{"kind":"book_spread_above","exchange":"okx","instrument":"BTC-USDT","bps":10,"cooldown_secs":0,"hysteresis":"0.1"}"#)),
            ("depth".into(), rule(r#"{"kind":"book_depth_below","exchange":"okx","instrument":"BTC-USDT","band_bps":10,"size":5,"cooldown_secs":0}"#)),
            ("imbalance".into(), rule(r#"{"kind":"book_imbalance_above","exchange":"okx","instrument":"BTC-USDT","level":0.7,"cooldown_secs":0}"#)),
            ("other book".into(), rule(r#"{"kind":"book_spread_above","exchange":"bybit","instrument":"BTC-USDT","bps":1}"#)),
        ]);
        assert_eq!(
            e.books(),
            [(Exchange::Bybit, btc()), (Exchange::Okx, btc())],
            "each book once, by name"
        );
        // Spread 0.2 on a mid of 100.1: about 20 bps. Within 10 bps of the
        // mid: 1 bid, 9 asks. Imbalance (1 - 9) / 10 = -0.8.
        let wide = stats(
            &[("100", "1"), ("99", "50")],
            &[("100.2", "9"), ("101", "50")],
        );
        let fired = e.on_book(Exchange::Okx, &btc(), &wide, Ts(SEC));
        let mut ids: Vec<&str> = fired.iter().map(|f| f.rule_id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["depth", "imbalance", "spread"]);
        let spread = fired
            .iter()
            .find(|f| f.rule_id == "spread")
            .expect("spread");
        assert!(
            (spread.value - 0.2 / 100.1 * 1e4).abs() < 1e-6,
            "{}",
            spread.value
        );
        let depth = fired.iter().find(|f| f.rule_id == "depth").expect("depth");
        assert_eq!(depth.value, 1.0, "the thinner side");
        // Still wide: fired already, not re-armed.
        assert!(
            e.on_book(Exchange::Okx, &btc(), &wide, Ts(2 * SEC))
                .is_empty()
        );
        // 9.5 bps is under 10 but within its 10 % band: still not re-armed.
        let near = stats(&[("100", "10")], &[("100.095", "10")]);
        assert!(
            e.on_book(Exchange::Okx, &btc(), &near, Ts(3 * SEC))
                .is_empty()
        );
        let tight = stats(&[("100", "10")], &[("100.01", "10")]);
        assert!(
            e.on_book(Exchange::Okx, &btc(), &tight, Ts(4 * SEC))
                .is_empty()
        );
        let fired = e.on_book(Exchange::Okx, &btc(), &wide, Ts(5 * SEC));
        assert!(
            fired.iter().any(|f| f.rule_id == "spread"),
            "re-armed below its band, it fires again"
        );
    }

    #[test]
    fn book_rules_are_checked() {
        for (json, says) in [
            (
                r#"{"kind":"book_depth_below","exchange":"okx","instrument":"BTC-USDT","band_bps":20,"size":5}"#,
                "band_bps",
            ),
            (
                r#"{"kind":"book_imbalance_above","exchange":"okx","instrument":"BTC-USDT","level":1.5}"#,
                "level",
            ),
            (
                r#"{"kind":"book_spread_above","exchange":"okx","instrument":"BTC-USDT","bps":-1}"#,
                "bps",
            ),
        ] {
            let err = Rule::from_json(json).expect_err(json);
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}
