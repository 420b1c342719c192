//! Kraken's `book` channel, WebSocket v1 (cryptofeed's recordings; v2 is
//! read the same way once the pair's precisions are known): a snapshot
//! (`as`, `bs`), then updates (`a`, `b`, in one object or two) whose last
//! object carries `c`, the CRC-32 of the best 10 levels a side
//! ([`ck_book::checksum::kraken`]), after the book is cut to the depth
//! subscribed (`book-<depth>`). No sequence numbers: the checksum is the
//! check.
//!
//! `[1664,{"b":[["13.225300","0.00000000","1618678133.711310"]],"c":"1344912611"},"book-1000","WAVES/EUR"]`

use std::collections::HashMap;

use ck_book::BookSide;
use ck_book::sync::{BookMessage, Checksum, MessageKind, Sequence};
use ck_bus::{Origin, RawMessage};
use ck_model::Exchange;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::book::{BookReader, SymbolBook, changes};
use crate::parse::{ParseError, json};

const EX: Exchange = Exchange::Kraken;

/// One object of a v1 book frame.
#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, rename = "as", default)]
    snapshot_asks: Option<Vec<Vec<&'a str>>>,
    #[serde(borrow, rename = "bs", default)]
    snapshot_bids: Option<Vec<Vec<&'a str>>>,
    #[serde(borrow, rename = "a", default)]
    asks: Vec<Vec<&'a str>>,
    #[serde(borrow, rename = "b", default)]
    bids: Vec<Vec<&'a str>>,
    #[serde(rename = "c", default)]
    checksum: Option<&'a str>,
}

/// Kraken's book reader (module docs).
#[derive(Debug, Default)]
pub struct KrakenBooks {
    /// Depth subscribed, by pair.
    depths: HashMap<String, usize>,
}

impl BookReader for KrakenBooks {
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        if raw.origin != Origin::Ws || !raw.data.starts_with('[') || !raw.data.contains("\"book-") {
            return Ok(());
        }
        let frame: Vec<&RawValue> = serde_json::from_str(&raw.data).map_err(json(EX))?;
        let n = frame.len();
        if n < 4 {
            return Ok(());
        }
        let channel: &str = serde_json::from_str(frame[n - 2].get()).map_err(json(EX))?;
        let pair: &str = serde_json::from_str(frame[n - 1].get()).map_err(json(EX))?;
        let Some(depth) = channel
            .strip_prefix("book-")
            .and_then(|d| d.parse::<usize>().ok())
        else {
            return Ok(());
        };
        self.depths.insert(pair.to_owned(), depth);
        let mut levels = Vec::new();
        let mut kind = MessageKind::Delta;
        let mut checksum = None;
        for part in &frame[1..n - 2] {
            let p: Part<'_> = serde_json::from_str(part.get()).map_err(json(EX))?;
            if p.snapshot_asks.is_some() || p.snapshot_bids.is_some() {
                kind = MessageKind::Snapshot;
            }
            changes(EX, BookSide::Ask, &p.snapshot_asks.unwrap_or_default(), &mut levels)?;
            changes(EX, BookSide::Bid, &p.snapshot_bids.unwrap_or_default(), &mut levels)?;
            changes(EX, BookSide::Ask, &p.asks, &mut levels)?;
            changes(EX, BookSide::Bid, &p.bids, &mut levels)?;
            if let Some(c) = p.checksum {
                checksum = Some(c.parse::<u32>().map_err(|_| ParseError::BadField {
                    exchange: EX,
                    field: "c",
                    value: c.to_owned(),
                })?);
            }
        }
        out.push(SymbolBook {
            symbol: pair.to_owned(),
            message: BookMessage {
                kind,
                sequence: Sequence::None,
                changes: levels,
                checksum: checksum.map(Checksum::Kraken),
            },
        });
        Ok(())
    }

    fn depth(&self, symbol: &str) -> Option<usize> {
        self.depths.get(symbol).copied()
    }
}

#[cfg(test)]
mod tests {
    use ck_model::Exchange;

    use crate::book::tests::replay;

    #[test]
    fn the_recorded_books_keep_every_checksum() {
        let r = replay(Exchange::Kraken, "cryptofeed/KRAKEN.jsonl.zst");
        assert!(r.incidents.is_empty(), "{:?}", &r.incidents[..r.incidents.len().min(5)]);
        assert_eq!((r.books, r.valid), (10, 10), "{r:?}");
        assert!(r.checksums > 4_000, "{r:?}");
    }
}
