//! Coinbase Exchange's `level2` (and `level2_batch`) channel: a `snapshot`
//! of the whole book, then `l2update`s of `changes`. The channel carries no
//! sequence numbers and no checksum ([`Sequence::None`]): a book is as
//! good as the connection, and is rebuilt from the snapshot each
//! subscription sends.
//!
//! `{"type":"l2update","product_id":"BTC-USD","changes":[["buy","55000.01","0.5"]],"time":"2021-04-17T16:43:37.915735Z"}`

use ck_book::BookSide;
use ck_book::sync::{BookMessage, Change, MessageKind, Sequence};
use ck_bus::{Origin, RawMessage};
use ck_model::{Exchange, Ts};
use serde::Deserialize;

use crate::book::{self, BookReader, SymbolBook, changes, number};
use crate::parse::{ParseError, json};

const EX: Exchange = Exchange::CoinbaseExchange;

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    product_id: &'a str,
    #[serde(borrow, default)]
    bids: Vec<Vec<&'a str>>,
    #[serde(borrow, default)]
    asks: Vec<Vec<&'a str>>,
    #[serde(borrow, default)]
    changes: Vec<[&'a str; 3]>,
    #[serde(default)]
    time: Option<&'a str>,
}

/// Coinbase Exchange's book reader (module docs).
#[derive(Debug, Default)]
pub struct CoinbaseExchangeBooks;

impl BookReader for CoinbaseExchangeBooks {
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        if raw.origin != Origin::Ws
            || !(raw.data.starts_with("{\"type\":\"l2update\"")
                || raw.data.starts_with("{\"type\":\"snapshot\""))
        {
            return Ok(());
        }
        let m: Message<'_> = serde_json::from_str(&raw.data).map_err(json(EX))?;
        let mut levels = Vec::new();
        let kind = if m.kind == "snapshot" {
            changes(EX, BookSide::Bid, &m.bids, &mut levels)?;
            changes(EX, BookSide::Ask, &m.asks, &mut levels)?;
            MessageKind::Snapshot
        } else {
            for [side, price, size] in &m.changes {
                let side = book::side(EX, side, (&["buy"], &["sell"]))?;
                levels.push(Change {
                    side,
                    price: number(EX, "price", price)?,
                    size: number(EX, "size", size)?,
                });
            }
            MessageKind::Delta
        };
        out.push(SymbolBook {
            symbol: m.product_id.to_owned(),
            message: BookMessage {
                kind,
                sequence: Sequence::None,
                changes: levels,
                checksum: None,
                time: m.time.and_then(|t| Ts::parse(t).ok()).map(|t| t.0),
            },
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ck_model::Exchange;

    use crate::book::tests::replay_clean;

    #[test]
    fn the_recorded_books_build_from_their_snapshots() {
        replay_clean(
            Exchange::CoinbaseExchange,
            "cryptofeed/COINBASE_EXCHANGE.ws.28.0",
            10,
            1_000,
            true,
        );
    }
}
