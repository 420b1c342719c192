//! Bitfinex's `book` channel (v2, precision `P0` to `P4`), for trading
//! pairs. A channel id (per connection) names the pair; the first message
//! is the snapshot `[CHAN,[[PRICE,COUNT,AMOUNT],…]]`, then one level per
//! message `[CHAN,[PRICE,COUNT,AMOUNT]]`: `COUNT` 0 removes the level
//! (`AMOUNT` 1 a bid, -1 an ask), else `AMOUNT` is the size, positive
//! for bids and negative for asks.
//!
//! The connection's flags (`conf`) add the checks: `SEQ_ALL` (65536)
//! numbers every message of the connection as its last element, checked
//! here ([`Sequence::Connection`]); `OB_CHECKSUM` (131072) sends
//! `[CHAN,"cs",CHECKSUM]` after updates, the CRC-32 of the best 25 levels a
//! side ([`ck_book::checksum::bitfinex`]). The book is cut to the length
//! subscribed (`len`).

use std::collections::HashMap;

use ck_book::sync::{BookMessage, Change, Checksum, MessageKind, Sequence};
use ck_book::{BookSide, Fixed};
use ck_bus::{Origin, RawMessage};
use ck_model::Exchange;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::book::{BookReader, SymbolBook, number};
use crate::parse::{ParseError, json};

const EX: Exchange = Exchange::Bitfinex;
/// `conf` flag: every message numbered.
const SEQ_ALL: u64 = 65_536;

#[derive(Deserialize)]
struct Event<'a> {
    event: &'a str,
    #[serde(default)]
    channel: Option<&'a str>,
    #[serde(rename = "chanId", default)]
    chan_id: Option<u64>,
    #[serde(default)]
    symbol: Option<&'a str>,
    #[serde(default)]
    len: Option<&'a str>,
    #[serde(default)]
    flags: Option<u64>,
}

/// A subscribed book channel.
#[derive(Debug)]
struct Channel {
    symbol: String,
}

/// Bitfinex's book reader, for one connection (module docs).
#[derive(Debug, Default)]
pub struct BitfinexBooks {
    flags: u64,
    books: HashMap<u64, Channel>,
    depths: HashMap<String, usize>,
    last_seq: Option<u64>,
    /// Book channels whose next message follows a skipped number.
    suspect: Vec<u64>,
}

impl BookReader for BitfinexBooks {
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        if raw.origin != Origin::Ws {
            return Ok(());
        }
        if raw.data.starts_with('{') {
            let e: Event<'_> = serde_json::from_str(&raw.data).map_err(json(EX))?;
            match e.event {
                "conf" => self.flags = e.flags.unwrap_or(0),
                "subscribed" if e.channel == Some("book") => {
                    if let (Some(id), Some(symbol)) = (e.chan_id, e.symbol) {
                        let len = e.len.and_then(|l| l.parse().ok());
                        if let Some(len) = len {
                            self.depths.insert(symbol.to_owned(), len);
                        }
                        self.books.insert(
                            id,
                            Channel {
                                symbol: symbol.to_owned(),
                            },
                        );
                    }
                }
                // A new connection's numbering starts again.
                "info" => self.last_seq = None,
                _ => {}
            }
            return Ok(());
        }
        let mut frame: Vec<&RawValue> = serde_json::from_str(&raw.data).map_err(json(EX))?;
        if self.flags & SEQ_ALL != 0 {
            let seq = frame
                .pop()
                .and_then(|v| v.get().parse::<u64>().ok())
                .ok_or_else(|| bad("sequence", &raw.data))?;
            if self.last_seq.is_some_and(|last| seq != last + 1) {
                self.suspect.extend(self.books.keys().copied());
            }
            self.last_seq = Some(seq);
        }
        let Some(id) = frame.first().and_then(|v| v.get().parse::<u64>().ok()) else {
            return Err(bad("channel id", &raw.data));
        };
        let Some(channel) = self.books.get(&id) else {
            return Ok(()); // another channel
        };
        let Some(body) = frame.get(1).map(|v| v.get()) else {
            return Err(bad("book message", &raw.data));
        };
        let skipped = if let Some(at) = self.suspect.iter().position(|c| *c == id) {
            self.suspect.swap_remove(at);
            true
        } else {
            false
        };
        let sequence = if self.flags & SEQ_ALL != 0 {
            Sequence::Connection { skipped }
        } else {
            Sequence::None
        };
        let symbol = channel.symbol.clone();
        if body == "\"hb\"" {
            return Ok(());
        }
        if body == "\"cs\"" {
            let value = frame
                .get(2)
                .and_then(|v| v.get().parse::<i32>().ok())
                .ok_or_else(|| bad("checksum", &raw.data))?;
            out.push(SymbolBook {
                symbol,
                message: BookMessage {
                    kind: MessageKind::Delta,
                    sequence,
                    changes: Vec::new(),
                    checksum: Some(Checksum::Bitfinex(value)),
                    time: None,
                },
            });
            return Ok(());
        }
        let (kind, rows): (MessageKind, Vec<Vec<&RawValue>>) = if body.starts_with("[[") {
            (MessageKind::Snapshot, serde_json::from_str(body).map_err(json(EX))?)
        } else {
            (MessageKind::Delta, vec![serde_json::from_str(body).map_err(json(EX))?])
        };
        let mut levels = Vec::with_capacity(rows.len());
        for row in &rows {
            levels.push(level(row, &raw.data)?);
        }
        out.push(SymbolBook {
            symbol,
            message: BookMessage {
                kind,
                sequence,
                changes: levels,
                checksum: None,
                time: None,
            },
        });
        Ok(())
    }

    fn depth(&self, symbol: &str) -> Option<usize> {
        self.depths.get(symbol).copied()
    }
}

/// One `[PRICE, COUNT, AMOUNT]` row as a change.
fn level(row: &[&RawValue], data: &str) -> Result<Change, ParseError> {
    let [price, count, amount] = row else {
        return Err(bad("book level", data));
    };
    let price = number(EX, "price", price.get())?;
    let amount = number(EX, "amount", amount.get())?;
    let side = if amount.mantissa > 0 {
        BookSide::Bid
    } else {
        BookSide::Ask
    };
    let size = if count.get() == "0" {
        Fixed::new(0, 0)
    } else {
        Fixed::new(amount.mantissa.abs(), amount.scale)
    };
    Ok(Change { side, price, size })
}

fn bad(field: &'static str, data: &str) -> ParseError {
    ParseError::BadField {
        exchange: EX,
        field,
        value: data.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use ck_model::Exchange;

    use crate::book::tests::replay_clean;

    #[test]
    fn the_recorded_books_see_every_number_of_the_connection() {
        // No venue time: the connection's flags asked for none.
        replay_clean(Exchange::Bitfinex, "cryptofeed/BITFINEX.jsonl.zst", 7, 100, false);
    }
}
