//! Alert rules: what to watch, read from JSON (the API) or TOML (the config)
//! and checked field by field, so that a typo or a bad value is refused with
//! a message that names it.
//!
//! A rule is one flat object: its `kind`, the fields of that kind, and the
//! common fields `name`, `cooldown_secs`, `hysteresis` and `notify`:
//!
//! ```json
//! {"kind":"price_above","exchange":"binance","instrument":"BTC-USDT","level":"70000",
//!  "cooldown_secs":300,"hysteresis":"0.001","notify":["ops"]}
//! ```

use ck_model::{Decimal, Exchange, Instrument};
use serde::{Deserialize, Serialize};

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Condition {
    /// The last trade price goes above `level`.
    PriceAbove {
        /// The exchange.
        exchange: Exchange,
        /// The instrument.
        instrument: Instrument,
        /// The level.
        level: Decimal,
    },
    /// The last trade price goes below `level`.
    PriceBelow {
        /// The exchange.
        exchange: Exchange,
        /// The instrument.
        instrument: Instrument,
        /// The level.
        level: Decimal,
    },
    /// The price moved by at least `percent` (either way) over `window`.
    PctChange {
        /// The exchange.
        exchange: Exchange,
        /// The instrument.
        instrument: Instrument,
        /// How far back: `15m`, `1h`, `24h`.
        window: String,
        /// The move, in percent.
        percent: f64,
    },
    /// The price is at least `threshold` standard deviations from the mean
    /// of the 1m closes over `window` (the minutes before the current one).
    Zscore {
        /// The exchange.
        exchange: Exchange,
        /// The instrument.
        instrument: Instrument,
        /// How far back.
        window: String,
        /// The z-score (absolute).
        threshold: f64,
    },
    /// The current 1m volume is at least `factor` times the mean 1m volume
    /// over `window`.
    VolumeSpike {
        /// The exchange.
        exchange: Exchange,
        /// The instrument.
        instrument: Instrument,
        /// How far back.
        window: String,
        /// The multiple of the mean.
        factor: f64,
    },
    /// The last prices of one instrument on two exchanges differ by more
    /// than `percent` of the lower.
    SpreadAbove {
        /// The instrument.
        instrument: Instrument,
        /// The two exchanges.
        exchanges: [Exchange; 2],
        /// The spread, in percent.
        percent: f64,
    },
    /// No trade for `seconds`.
    StaleFeed {
        /// The exchange.
        exchange: Exchange,
        /// The instrument.
        instrument: Instrument,
        /// Seconds without a trade.
        seconds: u64,
    },
    /// The spread of one venue's order book is above `bps` basis points of
    /// its mid (a book captured with `books = true`).
    BookSpreadAbove {
        /// The exchange.
        exchange: Exchange,
        /// The instrument.
        instrument: Instrument,
        /// The spread, in basis points of the mid.
        bps: f64,
    },
    /// The size within `band_bps` (10, 50 or 100) of the mid, on the
    /// thinner side of the book, is below `size`.
    BookDepthBelow {
        /// The exchange.
        exchange: Exchange,
        /// The instrument.
        instrument: Instrument,
        /// The band: 10, 50 or 100 basis points of the mid.
        band_bps: u32,
        /// The size, in the base asset.
        size: f64,
    },
    /// The best level's imbalance, `(bid size - ask size) / (bid size +
    /// ask size)`, is beyond `level` either way (0 to 1).
    BookImbalanceAbove {
        /// The exchange.
        exchange: Exchange,
        /// The instrument.
        instrument: Instrument,
        /// The level, from 0 to 1.
        level: f64,
    },
    /// A gap could not be filled (on this exchange or instrument, or any;
    /// of trades or of an order book, or either).
    GapUnfillable {
        /// Only this exchange.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exchange: Option<Exchange>,
        /// Only this instrument.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instrument: Option<Instrument>,
        /// Only gaps of this kind: `trades` or `book`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gap: Option<ck_model::GapKind>,
    },
}

/// The fields each kind takes, for the check against typos.
fn fields_of(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "price_above" | "price_below" => &["exchange", "instrument", "level"],
        "pct_change" => &["exchange", "instrument", "window", "percent"],
        "zscore" => &["exchange", "instrument", "window", "threshold"],
        "volume_spike" => &["exchange", "instrument", "window", "factor"],
        "spread_above" => &["instrument", "exchanges", "percent"],
        "stale_feed" => &["exchange", "instrument", "seconds"],
        "gap_unfillable" => &["exchange", "instrument", "gap"],
        "book_spread_above" => &["exchange", "instrument", "bps"],
        "book_depth_below" => &["exchange", "instrument", "band_bps", "size"],
        "book_imbalance_above" => &["exchange", "instrument", "level"],
        _ => return None,
    })
}

const KINDS: &str = "price_above, price_below, pct_change, zscore, volume_spike, spread_above, stale_feed, gap_unfillable, book_spread_above, book_depth_below, book_imbalance_above";
const COMMON: [&str; 5] = ["kind", "name", "cooldown_secs", "hysteresis", "notify"];

/// A rule: a condition, and how it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// What it watches.
    #[serde(flatten)]
    pub condition: Condition,
    /// A name for messages (default: made from the condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The least time between two firings.
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    /// How far back past its threshold (a fraction of it) the value must go
    /// before the rule can fire again: a price wobbling around a level fires
    /// once, not a hundred times.
    #[serde(default = "default_hysteresis")]
    pub hysteresis: Decimal,
    /// The notification channels, by name (`[[alerts.channels]]`); the log
    /// always gets every firing.
    #[serde(default)]
    pub notify: Vec<String>,
}

fn default_cooldown() -> u64 {
    300
}

fn default_hysteresis() -> Decimal {
    Decimal::new(1, 3) // 0.1 %
}

/// A rule that cannot be used, with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

impl Rule {
    /// Reads and checks a rule from JSON.
    ///
    /// # Errors
    /// Not JSON, an unknown kind or field, a missing or bad value.
    pub fn from_json(text: &str) -> Result<Rule, RuleError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| RuleError(format!("not JSON: {e}")))?;
        Rule::from_value(value)
    }

    /// Reads and checks a rule from a JSON value.
    ///
    /// # Errors
    /// As [`Rule::from_json`].
    pub fn from_value(value: serde_json::Value) -> Result<Rule, RuleError> {
        let object = value
            .as_object()
            .ok_or_else(|| RuleError("a rule is a JSON object".into()))?;
        let kind = object
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| RuleError(format!("`kind` is missing; valid: {KINDS}")))?;
        let fields = fields_of(kind)
            .ok_or_else(|| RuleError(format!("unknown kind `{kind}`; valid: {KINDS}")))?;
        if let Some(extra) = object
            .keys()
            .find(|k| !COMMON.contains(&k.as_str()) && !fields.contains(&k.as_str()))
        {
            return Err(RuleError(format!(
                "unknown field `{extra}` for a {kind} rule; it takes {}, and {}",
                fields.join(", "),
                COMMON[1..].join(", ")
            )));
        }
        let rule: Rule = serde_json::from_value(value.clone())
            .map_err(|e| RuleError(format!("{kind} rule: {e}")))?;
        rule.check()?;
        Ok(rule)
    }

    fn check(&self) -> Result<(), RuleError> {
        let bad = |m: String| Err(RuleError(m));
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(RuleError(format!(
                    "`{name}` must be a positive number, got {v}"
                )))
            }
        };
        match &self.condition {
            Condition::PriceAbove { level, .. } | Condition::PriceBelow { level, .. } => {
                if *level <= Decimal::from(0) {
                    return bad(format!("`level` must be above zero, got {level}"));
                }
            }
            Condition::PctChange {
                window, percent, ..
            } => {
                window_nanos(window)?;
                positive("percent", *percent)?;
            }
            Condition::Zscore {
                window, threshold, ..
            } => {
                window_nanos(window)?;
                positive("threshold", *threshold)?;
            }
            Condition::VolumeSpike { window, factor, .. } => {
                window_nanos(window)?;
                positive("factor", *factor)?;
            }
            Condition::SpreadAbove {
                exchanges, percent, ..
            } => {
                if exchanges[0] == exchanges[1] {
                    return bad("`exchanges` must name two different exchanges".into());
                }
                positive("percent", *percent)?;
            }
            Condition::StaleFeed { seconds, .. } => {
                if *seconds == 0 {
                    return bad("`seconds` must be above zero".into());
                }
            }
            Condition::GapUnfillable { .. } => {}
            Condition::BookSpreadAbove { bps, .. } => positive("bps", *bps)?,
            Condition::BookDepthBelow { band_bps, size, .. } => {
                if !ck_book::stats::DEPTH_BANDS_BPS.contains(band_bps) {
                    return bad(format!(
                        "`band_bps` is 10, 50 or 100 (the bands a book's depth is summed over), got {band_bps}"
                    ));
                }
                positive("size", *size)?;
            }
            Condition::BookImbalanceAbove { level, .. } => {
                if !(level.is_finite() && *level > 0.0 && *level < 1.0) {
                    return bad(format!(
                        "`level` is an imbalance above 0 and below 1, got {level}"
                    ));
                }
            }
        }
        if self.hysteresis < Decimal::from(0) || self.hysteresis >= Decimal::from(1) {
            return bad(format!(
                "`hysteresis` is a fraction from 0 to below 1 (0.001 = 0.1 %), got {}",
                self.hysteresis
            ));
        }
        Ok(())
    }

    /// The rule's name, or one made from its condition.
    #[must_use]
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match &self.condition {
            Condition::PriceAbove {
                exchange,
                instrument,
                level,
            } => format!("{exchange} {instrument} above {level}"),
            Condition::PriceBelow {
                exchange,
                instrument,
                level,
            } => format!("{exchange} {instrument} below {level}"),
            Condition::PctChange {
                exchange,
                instrument,
                window,
                percent,
            } => format!("{exchange} {instrument} moves {percent}% in {window}"),
            Condition::Zscore {
                exchange,
                instrument,
                window,
                threshold,
            } => format!("{exchange} {instrument} z-score {threshold} over {window}"),
            Condition::VolumeSpike {
                exchange,
                instrument,
                window,
                factor,
            } => format!("{exchange} {instrument} volume {factor}x its {window} mean"),
            Condition::SpreadAbove {
                instrument,
                exchanges,
                percent,
            } => format!(
                "{instrument} spread {} vs {} above {percent}%",
                exchanges[0], exchanges[1]
            ),
            Condition::StaleFeed {
                exchange,
                instrument,
                seconds,
            } => format!("{exchange} {instrument} silent {seconds}s"),
            Condition::BookSpreadAbove {
                exchange,
                instrument,
                bps,
            } => format!("{exchange} {instrument} book spread above {bps} bps"),
            Condition::BookDepthBelow {
                exchange,
                instrument,
                band_bps,
                size,
            } => format!("{exchange} {instrument} depth within {band_bps} bps below {size}"),
            Condition::BookImbalanceAbove {
                exchange,
                instrument,
                level,
            } => format!("{exchange} {instrument} book imbalance beyond {level}"),
            Condition::GapUnfillable {
                exchange,
                instrument,
                gap,
            } => format!(
                "unfillable {}gap{}{}",
                gap.map(|g| format!("{} ", g.as_str())).unwrap_or_default(),
                exchange.map(|e| format!(" on {e}")).unwrap_or_default(),
                instrument
                    .as_ref()
                    .map(|i| format!(" in {i}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// A rule's `window`, in nanoseconds (at most 30 days).
///
/// # Errors
/// Anything but a whole number and a unit s, m, h, d or w.
pub fn window_nanos(window: &str) -> Result<i64, RuleError> {
    ck_model::parse_span(window)
        .filter(|n| *n <= 30 * 86_400 * 1_000_000_000)
        .ok_or_else(|| {
            RuleError(format!(
                "`window` = `{window}`: write a whole number and a unit s, m, h, d or w (such as 1h), up to 30d"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_reads_with_defaults() {
        let r = Rule::from_json(
            r#"{"kind":"price_above","exchange":"binance","instrument":"BTC-USDT","level":"70000"}"#,
        )
        .expect("valid");
        assert_eq!(r.cooldown_secs, 300);
        assert_eq!(r.display_name(), "binance BTC-USDT above 70000");
        // It writes back to the same flat shape.
        let back = serde_json::to_value(&r).expect("json");
        assert_eq!(back["kind"], "price_above");
        assert_eq!(back["level"], "70000");
    }

    #[test]
    fn bad_rules_are_refused_with_what_is_wrong() {
        let cases = [
            ("[]", "a JSON object"),
            (r#"{"exchange":"binance"}"#, "`kind` is missing"),
            (
                r#"{"kind":"price_sideways"}"#,
                "unknown kind `price_sideways`",
            ),
            (
                r#"{"kind":"price_above","exchange":"binance","instrument":"BTC-USDT","levle":"1"}"#,
                "unknown field `levle`",
            ),
            (
                r#"{"kind":"price_above","exchange":"binance","instrument":"BTC-USDT"}"#,
                "missing field `level`",
            ),
            (
                r#"{"kind":"price_above","exchange":"mtgox","instrument":"BTC-USDT","level":"1"}"#,
                "mtgox",
            ),
            (
                r#"{"kind":"price_below","exchange":"binance","instrument":"BTC-USDT","level":"-5"}"#,
                "above zero",
            ),
            (
                r#"{"kind":"pct_change","exchange":"binance","instrument":"BTC-USDT","window":"1y","percent":5}"#,
                "`window` = `1y`",
            ),
            (
                r#"{"kind":"zscore","exchange":"binance","instrument":"BTC-USDT","window":"1h","threshold":0}"#,
                "`threshold` must be a positive number",
            ),
            (
                r#"{"kind":"spread_above","instrument":"BTC-USD","exchanges":["kraken","kraken"],"percent":1}"#,
                "two different exchanges",
            ),
            (
                r#"{"kind":"stale_feed","exchange":"binance","instrument":"BTC-USDT","seconds":0}"#,
                "`seconds` must be above zero",
            ),
            (
                r#"{"kind":"gap_unfillable","hysteresis":"1.5"}"#,
                "`hysteresis` is a fraction",
            ),
        ];
        for (json, needle) in cases {
            let e = Rule::from_json(json).expect_err(json);
            assert!(e.0.contains(needle), "{json}: {e}");
        }
    }
}
