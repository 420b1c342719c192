//! `candlekeep export --kind book --format hftbacktest`: an instrument's
//! recorded order book, with its stored trades, as hftbacktest's
//! normalised event data (`.npz`: a zip holding `data.npy`, an array of
//! its 64-byte `event_dtype`), which `BacktestAsset().data([...])` loads.
//!
//! - Each part of the recording within the range begins with a
//!   `DEPTH_CLEAR_EVENT` without a side (hftbacktest then clears both
//!   sides whole, not only within the snapshot's range: a snapshot after
//!   an incident replaces the book) and a `DEPTH_SNAPSHOT_EVENT` per
//!   level; every delta after it is a `DEPTH_EVENT` (`qty` 0: the level is
//!   gone). A span where the book was unknown has no events.
//! - Trades (those the store holds in the range, by the venue's time;
//!   the book's parts are selected by receive time) are `TRADE_EVENT` with `BUY_EVENT` or `SELL_EVENT` for the
//!   taker's side (neither where the venue does not say); at one receive time they come before the book's
//!   events, as hftbacktest asks (a trade's depth change must not reduce
//!   a queue twice).
//! - `exch_ts` is the venue's time (the receive time where it sends
//!   none), `local_ts` the receive time, in nanoseconds. Events are
//!   ordered by both clocks as hftbacktest's `correct_event_order` does:
//!   an event whose venue time is out of order is written twice, once
//!   for each processor (`EXCH_EVENT`, `LOCAL_EVENT`), the others once
//!   with both. Times are not shifted: a negative feed latency stays as
//!   recorded.
//! - Prices and sizes are `f64`, as hftbacktest holds them; the exact
//!   decimals are in the archive and the Tardis export.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use ck_model::{Side, Trade};

use crate::export_book::{BookExport, each_line, recorded_parts};

/// The depth has changed at a price.
pub(crate) const DEPTH_EVENT: u64 = 1;
/// A trade.
pub(crate) const TRADE_EVENT: u64 = 2;
/// The depth is cleared (both sides, without a side flag).
pub(crate) const DEPTH_CLEAR_EVENT: u64 = 3;
/// A level of a whole book.
pub(crate) const DEPTH_SNAPSHOT_EVENT: u64 = 4;
/// For the exchange-side processor, in `exch_ts` order.
pub(crate) const EXCH_EVENT: u64 = 1 << 31;
/// For the local processor, in `local_ts` order.
pub(crate) const LOCAL_EVENT: u64 = 1 << 30;
/// A bid (depth), or a buyer taker (trade).
pub(crate) const BUY_EVENT: u64 = 1 << 29;
/// An ask, or a seller taker.
pub(crate) const SELL_EVENT: u64 = 1 << 28;

/// numpy's description of hftbacktest's `event_dtype`.
const DESCR: &str = "[('ev', '<u8'), ('exch_ts', '<i8'), ('local_ts', '<i8'), ('px', '<f8'), ('qty', '<f8'), ('order_id', '<u8'), ('ival', '<i8'), ('fval', '<f8')]";

/// One event (`order_id`, `ival` and `fval` are written as zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Event {
    pub(crate) ev: u64,
    pub(crate) exch_ts: i64,
    pub(crate) local_ts: i64,
    pub(crate) px: f64,
    pub(crate) qty: f64,
}

impl Event {
    fn bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&self.ev.to_le_bytes());
        b[8..16].copy_from_slice(&self.exch_ts.to_le_bytes());
        b[16..24].copy_from_slice(&self.local_ts.to_le_bytes());
        b[24..32].copy_from_slice(&self.px.to_le_bytes());
        b[32..40].copy_from_slice(&self.qty.to_le_bytes());
        b
    }
}

/// Writes the export of the book and `trades` (those of the range by the
/// venue's time, as the store selects them; in any order); how many
/// events.
pub(crate) fn export(request: &BookExport, trades: &[Trade]) -> anyhow::Result<u64> {
    let parts = recorded_parts(request)?;
    let mut book = Vec::new();
    each_line(request, &parts, |l| {
        if l.first {
            book.push(Event {
                ev: DEPTH_CLEAR_EVENT,
                exch_ts: l.exchange_time.0,
                local_ts: l.local_time.0,
                px: 0.0,
                qty: 0.0,
            });
        }
        let kind = if l.snapshot {
            DEPTH_SNAPSHOT_EVENT
        } else {
            DEPTH_EVENT
        };
        book.push(Event {
            ev: kind | if l.bid { BUY_EVENT } else { SELL_EVENT },
            exch_ts: l.exchange_time.0,
            local_ts: l.local_time.0,
            px: l.price.to_f64(),
            qty: l.size.to_f64(),
        });
        Ok(())
    })?;
    let mut trades: Vec<Event> = trades
        .iter()
        .map(|t| Event {
            ev: TRADE_EVENT
                | match t.side {
                    Side::Buy => BUY_EVENT,
                    Side::Sell => SELL_EVENT,
                    // As hftbacktest's Tardis converter: no side flag.
                    Side::Unknown => 0,
                },
            exch_ts: t.ts_exchange.0,
            local_ts: t.ts_received.0,
            px: t.price.to_f64(),
            qty: t.size.to_f64(),
        })
        .collect();
    trades.sort_by_key(|e| e.local_ts);
    let events = in_both_orders(&merge_by_local_time(trades, book));
    let partial = crate::export::partial_path(&request.out);
    let written = write_npz(&partial, &events).map(|()| events.len() as u64);
    crate::export::put_in_place(&partial, &request.out, written)
}

/// `trades` and `book` (each in `local_ts` order) in one `local_ts`
/// order, trades first at one time.
fn merge_by_local_time(trades: Vec<Event>, book: Vec<Event>) -> Vec<Event> {
    let mut out = Vec::with_capacity(trades.len() + book.len());
    let mut trades = trades.into_iter().peekable();
    for e in book {
        while let Some(t) = trades.next_if(|t| t.local_ts <= e.local_ts) {
            out.push(t);
        }
        out.push(e);
    }
    out.extend(trades);
    out
}

/// The events (in `local_ts` order) flagged for hftbacktest's two
/// processors: walking the `exch_ts` order and the `local_ts` order
/// together, an event next in both is written once with both flags;
/// otherwise the one due first is written with its own flag alone, and
/// again later for the other processor.
pub(crate) fn in_both_orders(events: &[Event]) -> Vec<Event> {
    let mut by_exchange: Vec<usize> = (0..events.len()).collect();
    by_exchange.sort_by_key(|&i| events[i].exch_ts); // stable
    let mut out = Vec::with_capacity(events.len() + events.len() / 8);
    let (mut x, mut l) = (0, 0);
    let n = events.len();
    while x < n || l < n {
        let ex = by_exchange.get(x).map(|&i| events[i]);
        let lo = events.get(l).copied();
        match (ex, lo) {
            (Some(e), Some(o)) if e.exch_ts == o.exch_ts && e.local_ts == o.local_ts => {
                out.push(Event {
                    ev: e.ev | EXCH_EVENT | LOCAL_EVENT,
                    ..e
                });
                x += 1;
                l += 1;
            }
            (Some(e), Some(o))
                if e.exch_ts < o.exch_ts || (e.exch_ts == o.exch_ts && e.local_ts < o.local_ts) =>
            {
                out.push(Event {
                    ev: e.ev | EXCH_EVENT,
                    ..e
                });
                x += 1;
            }
            (_, Some(o)) => {
                out.push(Event {
                    ev: o.ev | LOCAL_EVENT,
                    ..o
                });
                l += 1;
            }
            (Some(e), None) => {
                out.push(Event {
                    ev: e.ev | EXCH_EVENT,
                    ..e
                });
                x += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// `events` as `path`, numpy's `savez_compressed` layout: a zip (zip64
/// where large) holding `data.npy`.
fn write_npz(path: &Path, events: &[Event]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(events.len() as u64 * 64 > u64::from(u32::MAX) / 2);
    zip.start_file("data.npy", options)?;
    zip.write_all(&npy_header(events.len()))?;
    for e in events {
        zip.write_all(&e.bytes())?;
    }
    let mut inner = zip.finish()?;
    inner.flush()?;
    inner
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// The `.npy` 1.0 header of `n` events: the magic, its length, and the
/// dictionary padded with spaces to a multiple of 64 bytes.
fn npy_header(n: usize) -> Vec<u8> {
    let mut dict = format!("{{'descr': {DESCR}, 'fortran_order': False, 'shape': ({n},), }}");
    // magic (6) + version (2) + length (2) + dict + '\n'
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&u16::try_from(dict.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(exch_ts: i64, local_ts: i64) -> Event {
        Event {
            ev: DEPTH_EVENT | BUY_EVENT,
            exch_ts,
            local_ts,
            px: exch_ts as f64,
            qty: 1.0,
        }
    }

    #[test]
    fn events_out_of_venue_order_are_written_for_each_processor() {
        // The second event's venue time is before the first's.
        let events = [ev(10, 100), ev(5, 110), ev(20, 120)];
        let out = in_both_orders(&events);
        let flags: Vec<(i64, u64)> = out
            .iter()
            .map(|e| (e.exch_ts, e.ev & (EXCH_EVENT | LOCAL_EVENT)))
            .collect();
        assert_eq!(
            flags,
            [
                (5, EXCH_EVENT),
                (10, EXCH_EVENT | LOCAL_EVENT),
                (5, LOCAL_EVENT),
                (20, EXCH_EVENT | LOCAL_EVENT),
            ]
        );
        // Each processor sees every event once, in its own time order.
        for (flag, time) in [(EXCH_EVENT, 0), (LOCAL_EVENT, 1)] {
            let seen: Vec<i64> = out
                .iter()
                .filter(|e| e.ev & flag == flag)
                .map(|e| if time == 0 { e.exch_ts } else { e.local_ts })
                .collect();
            assert_eq!(seen.len(), 3);
            assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        }
    }

    #[test]
    fn trades_come_first_at_one_receive_time() {
        let mut trade = ev(1, 100);
        trade.ev = TRADE_EVENT | SELL_EVENT;
        let merged = merge_by_local_time(vec![trade], vec![ev(1, 50), ev(1, 100)]);
        assert_eq!(
            merged.iter().map(|e| e.ev).collect::<Vec<_>>(),
            [
                DEPTH_EVENT | BUY_EVENT,
                TRADE_EVENT | SELL_EVENT,
                DEPTH_EVENT | BUY_EVENT
            ]
        );
    }

    #[test]
    fn the_npy_header_is_numpy_s() {
        let h = npy_header(3);
        assert_eq!(h.len() % 64, 0);
        assert!(h.starts_with(b"\x93NUMPY\x01\x00"));
        assert!(h.ends_with(b"\n"));
        let text = String::from_utf8_lossy(&h[10..]);
        assert!(text.contains("'shape': (3,)"), "{text}");
    }
}
