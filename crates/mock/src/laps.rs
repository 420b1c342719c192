//! Looping a recording: lap `k` plays the recorded frames again with every
//! time moved `k` lap lengths on and every trade id moved past the ids of
//! the laps before, so that each lap's trades are new trades continuing the
//! recorded sequences (a venue with sequential ids per instrument, such as
//! Coinbase Exchange, sees its ids run on without a gap from one lap to the
//! next).
//!
//! Ids are edited in the frame's text, field by field as [`crate::shift`]
//! edits times, so prices keep their exact digits:
//! - Coinbase Exchange `trade_id`, per `product_id`; Kraken v2 `trade_id`,
//!   per `symbol` (ids run per instrument);
//! - Coinbase Advanced `trade_id`, OKX `tradeId` (digits in strings),
//!   Bitstamp `id`, and Bitfinex trade rows' first element: moved by the
//!   recording's whole id span;
//! - Bybit `i` (a UUID): the lap is appended (`…-L2`);
//! - Kraken v1 trades carry no id: their id is made of their time, which
//!   moves.
//!
//! Trade snapshots (trades from before the subscription: Bitfinex's,
//! Coinbase Advanced's first `market_trades` event) play on every lap, moved
//! like the rest: the Bitfinex recording's trades are all in snapshots. A
//! lap's snapshot trades are older than the lap before's last trades, as a
//! venue's snapshot on a new subscription is: the candle stage takes them
//! as late trades.

use std::collections::HashMap;

use ck_model::{Exchange, Ts};

use crate::shift::edit_field;

use crate::venues::Ids;

fn ids(exchange: Exchange) -> Ids {
    crate::venues::wire(exchange).ids
}

/// A recording's frames, playable lap after lap.
#[derive(Debug, Clone)]
pub struct Laps {
    exchange: Exchange,
    frames: Vec<String>,
    recorded_at: Vec<Ts>,
    /// How far each lap's times move on: the recording's length and a second.
    length: i64,
    /// Per key (the instrument, or "" for the whole recording): the ids'
    /// span, max - min + 1.
    spans: HashMap<String, u64>,
}

impl Laps {
    /// The laps of `frames`, recorded at `recorded_at` (one each).
    #[must_use]
    pub fn new(exchange: Exchange, frames: Vec<String>, recorded_at: Vec<Ts>) -> Laps {
        let length = match (recorded_at.first(), recorded_at.last()) {
            (Some(first), Some(last)) => (last.0 - first.0).max(0) + 1_000_000_000,
            _ => 1_000_000_000,
        };
        let mut bounds: HashMap<String, (u64, u64)> = HashMap::new();
        for frame in &frames {
            for_each_id(exchange, frame, |key, id| {
                let b = bounds.entry(key.to_owned()).or_insert((id, id));
                b.0 = b.0.min(id);
                b.1 = b.1.max(id);
            });
        }
        let spans = bounds
            .into_iter()
            .map(|(k, (lo, hi))| (k, hi - lo + 1))
            .collect();
        Laps {
            exchange,
            frames,
            recorded_at,
            length,
            spans,
        }
    }

    /// Frames in one lap.
    #[must_use]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when there are no frames.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// How far each lap moves the times on (ns).
    #[must_use]
    pub fn length(&self) -> i64 {
        self.length
    }

    /// The recorded frame `n` counts from the start of the first lap (its
    /// index in the lap is `n % len`), with its ids and recorded time moved
    /// to its lap; `None` when there are no frames. The frame's own times
    /// are moved by the caller ([`crate::shift`]), by its lap's offset
    /// ([`Laps::offset`]).
    #[must_use]
    pub fn frame(&self, n: usize) -> Option<(String, Ts)> {
        let len = self.frames.len();
        if len == 0 {
            return None;
        }
        let (lap, i) = (n / len, n % len);
        let frame = &self.frames[i];
        let text = if lap == 0 {
            frame.clone()
        } else {
            self.move_ids(frame, lap as u64)
        };
        Some((text, Ts(self.recorded_at[i].0 + self.offset(n))))
    }

    /// When frame `n` (counted as in [`Laps::frame`]) was recorded, moved
    /// to its lap.
    #[must_use]
    pub fn recorded_at(&self, n: usize) -> Option<Ts> {
        let at = self.recorded_at.get(n.checked_rem(self.frames.len())?)?;
        Some(Ts(at.0 + self.offset(n)))
    }

    /// How far frame `n`'s times move for its lap (ns).
    #[must_use]
    pub fn offset(&self, n: usize) -> i64 {
        let lap = n.checked_div(self.frames.len()).unwrap_or(0);
        i64::try_from(lap)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.length)
    }

    fn move_ids(&self, frame: &str, lap: u64) -> String {
        match ids(self.exchange) {
            Ids::Field(field, key) => {
                let key = key.and_then(|k| string_field(frame, k)).unwrap_or("");
                let span = self.spans.get(key).copied().unwrap_or(0);
                edit_field(frame, field, |token| {
                    token
                        .parse::<u64>()
                        .ok()
                        .map(|id| (id + lap * span).to_string())
                })
            }
            Ids::Suffix(field) => edit_field(frame, field, |token| {
                (!token.is_empty()).then(|| format!("{token}-L{}", lap + 1))
            }),
            Ids::FirstOfRows => {
                let span = self.spans.get("").copied().unwrap_or(0);
                bitfinex_rows(frame, |id| id + lap * span).unwrap_or_else(|| frame.to_owned())
            }
            Ids::None => frame.to_owned(),
        }
    }
}

/// The text of a top-level-or-nested string field (the first one).
fn string_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":");
    let at = text.find(&pattern)? + pattern.len();
    let rest = text[at..].trim_start().strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// Calls `f(key, id)` for every numeric id in `frame`.
fn for_each_id(exchange: Exchange, frame: &str, mut f: impl FnMut(&str, u64)) {
    match ids(exchange) {
        Ids::Field(field, key) => {
            let key = key.and_then(|k| string_field(frame, k)).unwrap_or("");
            edit_field(frame, field, |token| {
                if let Ok(id) = token.parse::<u64>() {
                    f(key, id);
                }
                None
            });
        }
        Ids::FirstOfRows => {
            bitfinex_rows(frame, |id| {
                f("", id);
                id
            });
        }
        Ids::Suffix(_) | Ids::None => {}
    }
}

/// A Bitfinex trade frame with each row's id moved by `edit`: snapshots
/// `[CHAN, [[ID, MTS, AMOUNT, PRICE], ...]]` and updates
/// `[CHAN, "te"|"tu", [ID, MTS, AMOUNT, PRICE]]`, each with a trailing
/// sequence number when the connection asked for them; `None` for other
/// frames.
fn bitfinex_rows(frame: &str, mut edit: impl FnMut(u64) -> u64) -> Option<String> {
    type Raw<'a> = &'a serde_json::value::RawValue;
    if !frame.starts_with('[') {
        return None;
    }
    let top: Vec<Raw<'_>> = serde_json::from_str(frame).ok()?;
    let mut out: Vec<String> = top.iter().map(|r| r.get().to_owned()).collect();
    let mut row = |text: &str| -> Option<String> {
        let items: Vec<Raw<'_>> = serde_json::from_str(text).ok()?;
        if items.len() != 4 {
            return None;
        }
        let id: u64 = items[0].get().parse().ok()?;
        let mut cells: Vec<String> = items.iter().map(|r| r.get().to_owned()).collect();
        cells[0] = edit(id).to_string();
        Some(format!("[{}]", cells.join(",")))
    };
    match top.as_slice() {
        [_, rows] | [_, rows, _] if rows.get().starts_with("[[") => {
            let rows: Vec<Raw<'_>> = serde_json::from_str(rows.get()).ok()?;
            let moved: Option<Vec<String>> = rows.iter().map(|r| row(r.get())).collect();
            out[1] = format!("[{}]", moved?.join(","));
        }
        [_, kind, r] | [_, kind, r, _] if matches!(kind.get(), "\"te\"" | "\"tu\"") => {
            out[2] = row(r.get())?;
        }
        _ => return None,
    }
    Some(format!("[{}]", out.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laps(exchange: Exchange, frames: &[&str]) -> Laps {
        let n = frames.len() as i64;
        Laps::new(
            exchange,
            frames.iter().map(|f| (*f).to_owned()).collect(),
            (0..n).map(|i| Ts(i * 1_000_000_000)).collect(),
        )
    }

    #[test]
    fn coinbase_exchange_ids_run_on_per_product_across_laps() {
        let l = laps(
            Exchange::CoinbaseExchange,
            &[
                r#"{"type":"match","trade_id":10,"price":"1.50","product_id":"A-USD"}"#,
                r#"{"type":"match","trade_id":500,"price":"2","product_id":"B-USD"}"#,
                r#"{"type":"match","trade_id":12,"price":"1.50","product_id":"A-USD"}"#,
            ],
        );
        assert_eq!(l.length(), 3_000_000_000, "two seconds recorded, and one");
        let (f, at) = l.frame(3).expect("lap 2");
        assert_eq!(
            f,
            r#"{"type":"match","trade_id":13,"price":"1.50","product_id":"A-USD"}"#
        );
        assert_eq!(at, Ts(3_000_000_000));
        assert!(l.frame(4).expect("b").0.contains("\"trade_id\":501"));
        assert!(l.frame(8).expect("lap 3").0.contains("\"trade_id\":18"));
        assert_eq!(
            l.frame(1).expect("lap 1").0,
            l.frames[1],
            "the first lap as recorded"
        );
    }

    #[test]
    fn string_ids_uuids_and_bitfinex_rows_move() {
        let okx = laps(
            Exchange::Okx,
            &[r#"{"data":[{"tradeId":"7","px":"1.0"},{"tradeId":"9","px":"1.0"}]}"#],
        );
        assert_eq!(
            okx.frame(1).expect("lap 2").0,
            r#"{"data":[{"tradeId":"10","px":"1.0"},{"tradeId":"12","px":"1.0"}]}"#
        );
        let bybit = laps(
            Exchange::Bybit,
            &[r#"{"data":[{"i":"a9-82","p":"65114.20"}]}"#],
        );
        assert_eq!(
            bybit.frame(2).expect("lap 3").0,
            r#"{"data":[{"i":"a9-82-L3","p":"65114.20"}]}"#
        );
        // With and without the trailing sequence number.
        let bfx = laps(
            Exchange::Bitfinex,
            &[
                "[17,[[5,1,0.5,60000.10],[4,1,0.5,60000.10]],3]",
                "[17,\"te\",[6,2,0.5,60000.10]]",
                "[17,\"hb\",4]",
            ],
        );
        assert_eq!(
            bfx.frame(3).expect("snapshot").0,
            "[17,[[8,1,0.5,60000.10],[7,1,0.5,60000.10]],3]"
        );
        assert_eq!(
            bfx.frame(4).expect("te").0,
            "[17,\"te\",[9,2,0.5,60000.10]]"
        );
        assert_eq!(bfx.frame(5).expect("hb").0, "[17,\"hb\",4]");
        let cb = laps(
            Exchange::Coinbase,
            &[
                r#"{"channel":"market_trades","events":[{"type":"update","trades":[{"trade_id":"2"},{"trade_id":"1"}]}]}"#,
            ],
        );
        assert!(
            cb.frame(1)
                .expect("lap 2")
                .0
                .contains(r#"[{"trade_id":"4"},{"trade_id":"3"}]"#)
        );
    }
}
