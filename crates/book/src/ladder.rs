//! One side of a book, in two tiers: the best levels in a vector sorted
//! best-last, where nearly every change falls and an insert moves only the
//! levels better than it; the deep rest in a B-tree, where a change costs
//! a few node visits instead of moving every better level. Levels move
//! between the tiers in blocks: the worst of a full top go deep, and the
//! best of the deep part come up when the top runs low, so every deep key
//! is below every top key, and the top is never empty while the deep part
//! is not.

use std::collections::BTreeMap;

/// A level as kept: the sort key (the price at the book's scale, negated
/// for asks) and the size's mantissa, with the scales they were written at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) key: i64,
    pub(crate) size: i64,
    pub(crate) price_scale: u8,
    pub(crate) size_scale: u8,
}

/// A deep level: a slot without its key, which is the map's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deep {
    size: i64,
    price_scale: u8,
    size_scale: u8,
}

impl Deep {
    fn slot(self, key: i64) -> Slot {
        Slot {
            key,
            size: self.size,
            price_scale: self.price_scale,
            size_scale: self.size_scale,
        }
    }
}

/// The top holds at most this many levels; then its worst [`SPILL`] go deep.
pub(crate) const TOP_MAX: usize = 1_024;
/// Levels moved deep at once.
const SPILL: usize = 512;
/// Below this many top levels, the best [`REFILL`] deep ones come up.
const REFILL_BELOW: usize = 64;
/// Levels brought up at once.
const REFILL: usize = 512;
/// Bytes a deep level takes in the B-tree, estimated: a leaf of 11 keys and
/// values (276 bytes) about two thirds full, and the inner nodes above.
pub(crate) const DEEP_LEVEL_BYTES: usize = 40;

/// One side (module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Ladder {
    /// The best levels, ascending by key: the best last.
    top: Vec<Slot>,
    /// The rest, every key below the top's first.
    deep: BTreeMap<i64, Deep>,
}

impl PartialEq for Ladder {
    /// Equal when they hold the same levels, however they are split.
    fn eq(&self, other: &Ladder) -> bool {
        self.len() == other.len() && self.best_first().eq(other.best_first())
    }
}

impl Eq for Ladder {}

impl Ladder {
    pub(crate) fn len(&self) -> usize {
        self.top.len() + self.deep.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.top.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.top.clear();
        self.deep.clear();
    }

    pub(crate) fn best(&self) -> Option<&Slot> {
        self.top.last()
    }

    /// Every level, best first.
    pub(crate) fn best_first(&self) -> impl Iterator<Item = Slot> + '_ {
        self.top
            .iter()
            .rev()
            .copied()
            .chain(self.deep.iter().rev().map(|(&key, d)| d.slot(key)))
    }

    /// Sets `slot`'s level, or removes the level at its key.
    pub(crate) fn apply(&mut self, slot: Slot, remove: bool) {
        let in_top = self.deep.is_empty() || self.top.first().is_some_and(|w| slot.key >= w.key);
        if !in_top {
            if remove {
                self.deep.remove(&slot.key);
            } else {
                self.deep.insert(slot.key, deep(slot));
            }
            return;
        }
        match (find(&self.top, slot.key), remove) {
            (Ok(i), true) => {
                self.top.remove(i);
                if self.top.len() < REFILL_BELOW && !self.deep.is_empty() {
                    self.refill();
                }
            }
            (Err(_), true) => {}
            (Ok(i), false) => self.top[i] = slot,
            (Err(i), false) => {
                self.top.insert(i, slot);
                if self.top.len() > TOP_MAX {
                    for s in self.top.drain(..SPILL) {
                        self.deep.insert(s.key, deep(s));
                    }
                    // Room to fill up to the next spill, no more.
                    self.top.shrink_to(TOP_MAX + 1);
                }
            }
        }
    }

    /// The best deep levels up to the top.
    fn refill(&mut self) {
        let mut up = Vec::with_capacity(REFILL + self.top.len());
        while up.len() < REFILL {
            match self.deep.pop_last() {
                Some((key, d)) => up.push(d.slot(key)),
                None => break,
            }
        }
        up.reverse();
        up.append(&mut self.top);
        self.top = up;
    }

    /// Replaces the side with `slots`, sorted ascending by key without
    /// repeats.
    pub(crate) fn load_sorted(&mut self, mut slots: Vec<Slot>) {
        self.deep.clear();
        if slots.len() > TOP_MAX {
            let top = slots.split_off(slots.len() - SPILL);
            self.deep = slots.into_iter().map(|s| (s.key, deep(s))).collect();
            self.top = top;
        } else {
            self.top = slots;
        }
    }

    /// Keeps the best `depth` levels, appending those dropped to `dropped`
    /// (worst first).
    pub(crate) fn truncate(&mut self, depth: usize, mut dropped: Option<&mut Vec<Slot>>) {
        let mut over = self.len().saturating_sub(depth);
        while over > 0 {
            let Some((key, d)) = self.deep.pop_first() else {
                break;
            };
            over -= 1;
            if let Some(out) = dropped.as_deref_mut() {
                out.push(d.slot(key));
            }
        }
        if over > 0 {
            let cut = self.top.drain(..over);
            match dropped {
                Some(out) => out.extend(cut),
                None => drop(cut),
            }
        }
    }

    /// Whether every key times `factor` fits.
    pub(crate) fn keys_fit(&self, factor: i64) -> bool {
        self.top
            .iter()
            .map(|s| s.key)
            .chain(self.deep.keys().copied())
            .all(|k| k.checked_mul(factor).is_some())
    }

    /// Every key times `factor` (which [`Ladder::keys_fit`] allowed).
    pub(crate) fn scale_keys(&mut self, factor: i64) {
        for s in &mut self.top {
            s.key *= factor;
        }
        self.deep = std::mem::take(&mut self.deep)
            .into_iter()
            .map(|(k, d)| (k * factor, d))
            .collect();
    }

    /// Bytes held: the top's capacity, and the deep levels' estimate.
    pub(crate) fn state_bytes(&self) -> usize {
        self.top.capacity() * std::mem::size_of::<Slot>() + self.deep.len() * DEEP_LEVEL_BYTES
    }
}

fn deep(s: Slot) -> Deep {
    Deep {
        size: s.size,
        price_scale: s.price_scale,
        size_scale: s.size_scale,
    }
}

/// Where `key` is (or would go) in `levels`: the last few levels (the top
/// of the book, where most changes fall) are looked at first.
fn find(levels: &[Slot], key: i64) -> Result<usize, usize> {
    const NEAR: usize = 8;
    let n = levels.len();
    let near = n.saturating_sub(NEAR);
    if levels.get(near).is_some_and(|s| s.key <= key) {
        for (i, s) in levels.iter().enumerate().skip(near) {
            match s.key.cmp(&key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Ok(i),
                std::cmp::Ordering::Greater => return Err(i),
            }
        }
        return Err(n);
    }
    levels[..near].binary_search_by(|s| s.key.cmp(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: i64, size: i64) -> Slot {
        Slot {
            key,
            size,
            price_scale: 0,
            size_scale: 0,
        }
    }

    /// Thousands of levels, changed all through: the two tiers hold what a
    /// plain map holds, in order, as levels move between them.
    #[test]
    fn the_tiers_hold_what_a_plain_map_holds() {
        let mut ladder = Ladder::default();
        let mut model = std::collections::BTreeMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..300_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // The first half fills up to ~5,000 levels; the second empties
            // them mostly, so the top runs low and refills.
            let key = (x % 5_000) as i64;
            let remove = if step < 150_000 {
                x.is_multiple_of(5)
            } else {
                !x.is_multiple_of(5)
            };
            ladder.apply(slot(key, step.into()), remove);
            if remove {
                model.remove(&key);
            } else {
                model.insert(key, i64::from(step));
            }
            if step % 10_000 == 0 || step == 299_999 {
                let got: Vec<(i64, i64)> = ladder.best_first().map(|s| (s.key, s.size)).collect();
                let want: Vec<(i64, i64)> = model.iter().rev().map(|(k, v)| (*k, *v)).collect();
                assert_eq!(got, want, "step {step}");
                assert_eq!(
                    ladder.best().map(|s| s.key),
                    model.keys().next_back().copied()
                );
            }
        }
        let mut dropped = Vec::new();
        let before: Vec<Slot> = ladder.best_first().collect();
        ladder.truncate(10, Some(&mut dropped));
        assert_eq!(
            ladder.best_first().collect::<Vec<_>>(),
            before[..10.min(before.len())]
        );
        let mut worst_first = before[10.min(before.len())..].to_vec();
        worst_first.reverse();
        assert_eq!(dropped, worst_first);
    }
}
