//! Kraken's `book` channel, WebSocket v2 and v1. No sequence numbers: the
//! checksum, the CRC-32 of the best 10 levels a side
//! ([`ck_book::checksum::kraken`]) after the book is cut to the depth
//! subscribed, is the check.
//!
//! - **v2** (what candlekeep subscribes to): a `snapshot`, then `update`s,
//!   each with `checksum`. Prices and sizes are JSON numbers written at the
//!   pair's full precision (`0.00100000`), so they are read as their text.
//!   The depth is the subscription's (`result.depth`, 10 unless asked).
//!   `{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000}],"asks":[],"checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}`
//! - **v1** (cryptofeed's recordings): a snapshot (`as`, `bs`), then
//!   updates (`a`, `b`, in one object or two) whose last object carries
//!   `c`; the depth is in the channel's name (`book-<depth>`).
//!   `[1664,{"b":[["13.225300","0.00000000","1618678133.711310"]],"c":"1344912611"},"book-1000","WAVES/EUR"]`

use std::collections::HashMap;

use ck_book::BookSide;
use ck_book::sync::{BookMessage, Change, Checksum, MessageKind, Sequence};
use ck_bus::{Origin, RawMessage};
use ck_model::{Exchange, Ts};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::book::{BookReader, SymbolBook, changes, kind, number};
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

/// A v2 message of the `book` channel, or the subscription's answer.
#[derive(Deserialize)]
struct V2<'a> {
    #[serde(default)]
    channel: Option<&'a str>,
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    data: Vec<V2Book<'a>>,
    #[serde(default)]
    method: Option<&'a str>,
    #[serde(borrow, default)]
    result: Option<V2Result<'a>>,
}

#[derive(Deserialize)]
struct V2Result<'a> {
    #[serde(default)]
    channel: Option<&'a str>,
    #[serde(default)]
    symbol: Option<&'a str>,
    #[serde(default)]
    depth: Option<usize>,
}

#[derive(Deserialize)]
struct V2Book<'a> {
    symbol: &'a str,
    #[serde(borrow, default)]
    bids: Vec<V2Level<'a>>,
    #[serde(borrow, default)]
    asks: Vec<V2Level<'a>>,
    #[serde(default)]
    checksum: Option<u32>,
    #[serde(default)]
    timestamp: Option<&'a str>,
}

#[derive(Deserialize)]
struct V2Level<'a> {
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
}

/// The depth v2 gives a book when the subscription names none.
const V2_DEFAULT_DEPTH: usize = 10;

impl KrakenBooks {
    fn read_v2(&mut self, data: &str, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        let m: V2<'_> = serde_json::from_str(data).map_err(json(EX))?;
        if m.method == Some("subscribe")
            && let Some(r) = m.result
            && r.channel == Some("book")
            && let Some(symbol) = r.symbol
        {
            self.depths
                .insert(symbol.to_owned(), r.depth.unwrap_or(V2_DEFAULT_DEPTH));
            return Ok(());
        }
        if m.channel != Some("book") {
            return Ok(());
        }
        let kind = kind(EX, "type", m.kind.unwrap_or_default(), ("snapshot", "update"))?;
        for b in m.data {
            let mut levels = Vec::with_capacity(b.bids.len() + b.asks.len());
            for (side, rows) in [(BookSide::Bid, &b.bids), (BookSide::Ask, &b.asks)] {
                for l in rows {
                    levels.push(Change {
                        side,
                        price: number(EX, "price", l.price.get())?,
                        size: number(EX, "qty", l.qty.get())?,
                    });
                }
            }
            self.depths
                .entry(b.symbol.to_owned())
                .or_insert(V2_DEFAULT_DEPTH);
            out.push(SymbolBook {
                symbol: b.symbol.to_owned(),
                message: BookMessage {
                    kind,
                    sequence: Sequence::None,
                    changes: levels,
                    checksum: b.checksum.map(Checksum::Kraken),
                    time: b.timestamp.and_then(|t| Ts::parse(t).ok()).map(|t| t.0),
                },
            });
        }
        Ok(())
    }
}

impl BookReader for KrakenBooks {
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        if raw.origin != Origin::Ws {
            return Ok(());
        }
        if raw.data.starts_with('{') {
            if raw.data.contains("\"book\"") {
                return self.read_v2(&raw.data, out);
            }
            return Ok(());
        }
        if !raw.data.starts_with('[') || !raw.data.contains("\"book-") {
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
        let mut time = None;
        for part in &frame[1..n - 2] {
            let p: Part<'_> = serde_json::from_str(part.get()).map_err(json(EX))?;
            if p.snapshot_asks.is_some() || p.snapshot_bids.is_some() {
                kind = MessageKind::Snapshot;
            }
            // v1 times each level (`"1618678133.711310"`): the message's
            // time is its latest.
            for row in [&p.snapshot_asks, &p.snapshot_bids]
                .into_iter()
                .flatten()
                .flatten()
                .chain(p.asks.iter())
                .chain(p.bids.iter())
            {
                if let Some(t) = row.get(2).and_then(|t| Ts::parse_unix_secs(t).ok()) {
                    time = time.max(Some(t.0));
                }
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
                time,
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

    use crate::book::tests::replay_clean;

    /// The v1 recording said again in v2's form, each number as the text
    /// v1 wrote (v2 writes full precision too), each update with its
    /// recorded checksum: every checksum holds through the v2 reader.
    #[test]
    fn v2_messages_keep_every_checksum_of_the_recording() {
        use ck_bus::{Origin, RawMessage};
        use serde_json::Value;

        use crate::book::BookReader;
        use crate::recordings::Recording;

        let path = ck_testkit::fixture("cryptofeed/KRAKEN.jsonl.zst");
        let mut reader = super::KrakenBooks::default();
        let mut books = std::collections::HashMap::new();
        let (mut checked, mut subscribed) = (0, std::collections::HashSet::new());
        let mut read = Vec::new();
        for raw in Recording::open_as(&path, Some(Exchange::Kraken)).expect("open") {
            let raw = raw.expect("line");
            if !raw.data.starts_with('[') || !raw.data.contains("\"book-") {
                continue;
            }
            let frame: Vec<Value> = serde_json::from_str(&raw.data).expect("v1 frame");
            let n = frame.len();
            let pair = frame[n - 1].as_str().expect("pair");
            let depth: usize = frame[n - 2].as_str().expect("channel")[5..].parse().expect("depth");
            let mut v2 = Vec::new();
            if subscribed.insert(pair.to_owned()) {
                v2.push(format!(
                    r#"{{"method":"subscribe","result":{{"channel":"book","depth":{depth},"snapshot":true,"symbol":"{pair}"}},"success":true}}"#
                ));
            }
            let (mut kind, mut bids, mut asks, mut checksum) = ("update", vec![], vec![], None);
            for part in &frame[1..n - 2] {
                for (key, is_ask, snapshot) in [
                    ("as", true, true),
                    ("bs", false, true),
                    ("a", true, false),
                    ("b", false, false),
                ] {
                    for level in part[key].as_array().into_iter().flatten() {
                        if snapshot {
                            kind = "snapshot";
                        }
                        let side = if is_ask { &mut asks } else { &mut bids };
                        side.push(format!(
                            r#"{{"price":{},"qty":{}}}"#,
                            level[0].as_str().expect("price"),
                            level[1].as_str().expect("qty")
                        ));
                    }
                }
                if let Some(c) = part["c"].as_str() {
                    checksum = Some(c.to_owned());
                }
            }
            let checksum = checksum.map(|c| format!(r#","checksum":{c}"#)).unwrap_or_default();
            v2.push(format!(
                r#"{{"channel":"book","type":"{kind}","data":[{{"symbol":"{pair}","bids":[{}],"asks":[{}]{checksum},"timestamp":"2021-04-17T16:48:53.711310Z"}}]}}"#,
                bids.join(","),
                asks.join(",")
            ));
            for data in v2 {
                read.clear();
                let msg = RawMessage {
                    exchange: Exchange::Kraken,
                    ts_received: raw.ts_received,
                    origin: Origin::Ws,
                    data,
                };
                reader.read(&msg, &mut read).expect("v2 message");
                for b in read.drain(..) {
                    let depth = reader.depth(&b.symbol);
                    assert_eq!(depth, Some(1_000));
                    let sync = books
                        .entry(b.symbol.clone())
                        .or_insert_with(|| ck_book::sync::BookSync::new(depth));
                    let has_checksum = b.message.checksum.is_some();
                    sync.on_message(&b.message).expect("no incident");
                    checked += usize::from(has_checksum);
                }
            }
        }
        assert_eq!(books.len(), 10);
        assert!(checked > 4_000, "{checked}");
    }

    #[test]
    fn the_recorded_books_keep_every_checksum() {
        let r = replay_clean(Exchange::Kraken, "cryptofeed/KRAKEN.jsonl.zst", 10, 4_000, true);
        assert!(r.checksums > 4_000, "{r:?}");
    }
}
