//! Coinbase Advanced Trade's `level2` channel (`l2_data` messages): a
//! `snapshot` event, then `update` events of `new_quantity` per
//! `price_level`. Coinbase numbers every message of a connection, whatever
//! its channel, with `sequence_num`; a number skipped anywhere may have
//! been any book's update, so every book of the connection is then
//! suspect ([`Sequence::Connection`]) until its next snapshot.
//!
//! `{"channel":"l2_data","timestamp":"…","sequence_num":14,"events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"…","price_level":"65062.5","new_quantity":"0.00583"}]}]}`

use std::collections::HashSet;

use ck_book::sync::{BookMessage, Change, Sequence};
use ck_bus::{Origin, RawMessage};
use ck_model::{Exchange, Ts};
use serde::Deserialize;

use crate::book::{BookReader, SymbolBook, kind, number, side};
use crate::parse::{ParseError, json};

const EX: Exchange = Exchange::Coinbase;

#[derive(Deserialize)]
struct Numbered {
    sequence_num: Option<u64>,
}

#[derive(Deserialize)]
struct Message<'a> {
    channel: &'a str,
    #[serde(default)]
    sequence_num: Option<u64>,
    #[serde(default)]
    timestamp: Option<&'a str>,
    #[serde(borrow, default)]
    events: Vec<Event<'a>>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    product_id: &'a str,
    #[serde(borrow, default)]
    updates: Vec<Update<'a>>,
}

#[derive(Deserialize)]
struct Update<'a> {
    side: &'a str,
    price_level: &'a str,
    new_quantity: &'a str,
}

/// Coinbase Advanced Trade's book reader, for one connection (module docs).
#[derive(Debug, Default)]
pub struct CoinbaseBooks {
    last: Option<u64>,
    /// Products whose next message follows a skipped number.
    suspect: HashSet<String>,
    /// Every product a book message has named.
    seen: HashSet<String>,
}

impl CoinbaseBooks {
    /// Takes the connection's next number: one skipped makes every book
    /// seen suspect.
    fn number(&mut self, n: Option<u64>) {
        if let Some(n) = n {
            if self.last.is_some_and(|last| n != last + 1) {
                self.suspect.extend(self.seen.iter().cloned());
            }
            self.last = Some(n);
        }
    }
}

impl BookReader for CoinbaseBooks {
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        if raw.origin != Origin::Ws {
            return Ok(());
        }
        // Every message counts towards the connection's numbering; a book
        // message is read once, its number with it.
        if !raw.data.contains("\"l2_data\"") {
            if raw.data.contains("\"sequence_num\"") {
                let n: Numbered = serde_json::from_str(&raw.data).map_err(json(EX))?;
                self.number(n.sequence_num);
            }
            return Ok(());
        }
        let m: Message<'_> = serde_json::from_str(&raw.data).map_err(json(EX))?;
        self.number(m.sequence_num);
        if m.channel != "l2_data" {
            return Ok(());
        }
        let time = m.timestamp.and_then(|t| Ts::parse(t).ok()).map(|t| t.0);
        for e in m.events {
            let kind = kind(EX, "type", e.kind, ("snapshot", "update"))?;
            let mut levels = Vec::with_capacity(e.updates.len());
            for u in &e.updates {
                let side = side(EX, u.side, (&["bid"], &["offer", "ask"]))?;
                levels.push(Change {
                    side,
                    price: number(EX, "price_level", u.price_level)?,
                    size: number(EX, "new_quantity", u.new_quantity)?,
                });
            }
            if !self.seen.contains(e.product_id) {
                self.seen.insert(e.product_id.to_owned());
            }
            let skipped = self.suspect.remove(e.product_id);
            out.push(SymbolBook {
                symbol: e.product_id.to_owned(),
                message: BookMessage {
                    kind,
                    sequence: Sequence::Connection { skipped },
                    changes: levels,
                    checksum: None,
                    time,
                },
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ck_model::Exchange;

    use crate::book::tests::replay_clean;

    #[test]
    fn the_recorded_books_see_every_number_of_the_connection() {
        replay_clean(Exchange::Coinbase, "cryptofeed/COINBASE.jsonl.zst", 2, 500, true);
    }
}
