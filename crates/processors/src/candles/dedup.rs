//! Remembers which trade ids a series has seen, so a repeated trade changes nothing.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use ck_model::TradeId;

/// How many numeric ids below the highest one are remembered exactly.
pub(crate) const NUMERIC_WINDOW: u64 = 1 << 20;
const WORDS: usize = (NUMERIC_WINDOW / 64) as usize;

/// The answer for one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First time: it has now been recorded.
    New,
    /// Seen before.
    Duplicate,
    /// So far below the highest id that it is out of memory; it cannot be told
    /// apart from a duplicate, so the candles leave it alone (the store still
    /// deduplicates and keeps it).
    Forgotten,
}

/// Numeric ids: a bitmap over the `NUMERIC_WINDOW` ids up to the highest seen.
/// String ids: a set, forgotten in arrival order after they fall out of the
/// lateness window.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    max: Option<u64>,
    bits: Vec<u64>,
    strings: HashSet<Arc<str>>,
    string_order: VecDeque<(i64, Arc<str>)>,
}

impl Dedup {
    #[inline]
    pub(crate) fn check(&mut self, id: &TradeId, ts: i64) -> Seen {
        match id {
            TradeId::Num(n) => self.check_num(*n),
            TradeId::Str(s) => {
                if self.strings.insert(s.clone()) {
                    self.string_order.push_back((ts, s.clone()));
                    Seen::New
                } else {
                    Seen::Duplicate
                }
            }
        }
    }

    #[inline]
    fn check_num(&mut self, id: u64) -> Seen {
        let Some(max) = self.max else {
            self.bits = vec![0; WORDS];
            self.max = Some(id);
            self.set(id);
            return Seen::New;
        };
        if id > max {
            if id - max >= NUMERIC_WINDOW {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                for cleared in max + 1..id {
                    self.clear(cleared);
                }
            }
            self.set(id);
            self.max = Some(id);
            return Seen::New;
        }
        if max - id >= NUMERIC_WINDOW {
            return Seen::Forgotten;
        }
        let (word, bit) = Self::slot(id);
        if self.bits[word] & bit != 0 {
            Seen::Duplicate
        } else {
            self.bits[word] |= bit;
            Seen::New
        }
    }

    /// Forgets string ids older than `cutoff` (exchange time, ns).
    pub(crate) fn expire(&mut self, cutoff: i64) {
        while let Some((ts, _)) = self.string_order.front() {
            if *ts >= cutoff {
                break;
            }
            if let Some((_, id)) = self.string_order.pop_front() {
                self.strings.remove(&id);
            }
        }
    }

    #[inline]
    fn slot(id: u64) -> (usize, u64) {
        let i = id % NUMERIC_WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    #[inline]
    fn set(&mut self, id: u64) {
        let (w, b) = Self::slot(id);
        self.bits[w] |= b;
    }

    #[inline]
    fn clear(&mut self, id: u64) {
        let (w, b) = Self::slot(id);
        self.bits[w] &= !b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_in_and_out_of_order() {
        let mut d = Dedup::default();
        let n = TradeId::Num;
        assert_eq!(d.check(&n(100), 0), Seen::New);
        assert_eq!(d.check(&n(100), 0), Seen::Duplicate);
        assert_eq!(d.check(&n(105), 0), Seen::New);
        assert_eq!(
            d.check(&n(102), 0),
            Seen::New,
            "a late id inside the window is new"
        );
        assert_eq!(d.check(&n(102), 0), Seen::Duplicate);
        assert_eq!(d.check(&n(101), 0), Seen::New);
        let far = 105 + NUMERIC_WINDOW + 10;
        assert_eq!(d.check(&n(far), 0), Seen::New);
        assert_eq!(d.check(&n(105), 0), Seen::Forgotten);
        // Bits of the old window were cleared when the window jumped.
        assert_eq!(d.check(&n(far - 3), 0), Seen::New);
    }

    #[test]
    fn string_ids_expire_by_time() {
        let mut d = Dedup::default();
        let id = TradeId::Str("abc".into());
        assert_eq!(d.check(&id, 10), Seen::New);
        assert_eq!(d.check(&id, 11), Seen::Duplicate);
        d.expire(11);
        assert_eq!(d.check(&id, 12), Seen::New);
    }
}
