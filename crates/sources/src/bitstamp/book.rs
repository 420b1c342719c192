//! Bitstamp's `diff_order_book_<pair>` channel and the REST snapshot
//! `GET /api/v2/order_book/<pair>/`, joined by `microtimestamp`
//! ([`Sequence::Time`]): diffs that come before the snapshot are held,
//! those at or before its time are dropped, and diffs must not go back in
//! time. The channel carries no sequence number and no checksum.
//!
//! `{"data":{"timestamp":"1641343697","microtimestamp":"1641343697122361","bids":[["3802.90","0.00000000"]],"asks":[]},"channel":"diff_order_book_ethusd","event":"data"}`

use ck_book::BookSide;
use ck_book::sync::{BookMessage, MessageKind, Sequence};
use ck_bus::{Origin, RawMessage};
use ck_model::{Exchange, Ts};
use serde::Deserialize;

use crate::book::{BookReader, SymbolBook, changes};
use crate::parse::{ParseError, json};

const EX: Exchange = Exchange::Bitstamp;

#[derive(Deserialize)]
struct Push<'a> {
    #[serde(borrow)]
    data: Book<'a>,
    channel: &'a str,
    event: &'a str,
}

#[derive(Deserialize)]
struct Book<'a> {
    microtimestamp: &'a str,
    #[serde(borrow, default)]
    bids: Vec<Vec<&'a str>>,
    #[serde(borrow, default)]
    asks: Vec<Vec<&'a str>>,
}

/// Bitstamp's book reader (module docs).
#[derive(Debug, Default)]
pub struct BitstampBooks;

impl BookReader for BitstampBooks {
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        let (kind, symbol, book) = match &raw.origin {
            Origin::Ws => {
                if !raw.data.contains("\"diff_order_book_") || !raw.data.contains("\"event\":\"data\"") {
                    return Ok(());
                }
                let push: Push<'_> = serde_json::from_str(&raw.data).map_err(json(EX))?;
                let Some(pair) = push.channel.strip_prefix("diff_order_book_") else {
                    return Ok(());
                };
                if push.event != "data" {
                    return Ok(());
                }
                (MessageKind::Delta, pair.to_owned(), push.data)
            }
            Origin::Rest { url } => {
                let Some(pair) = url
                    .split_once("/api/v2/order_book/")
                    .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or_default())
                    .filter(|p| !p.is_empty())
                else {
                    return Ok(());
                };
                let book: Book<'_> = serde_json::from_str(&raw.data).map_err(json(EX))?;
                (MessageKind::Snapshot, pair.to_owned(), book)
            }
        };
        let time = book
            .microtimestamp
            .parse::<i64>()
            .map_err(|_| ParseError::BadField {
                exchange: EX,
                field: "microtimestamp",
                value: book.microtimestamp.to_owned(),
            })?;
        let mut levels = Vec::with_capacity(book.bids.len() + book.asks.len());
        changes(EX, BookSide::Bid, &book.bids, &mut levels)?;
        changes(EX, BookSide::Ask, &book.asks, &mut levels)?;
        out.push(SymbolBook {
            symbol,
            message: BookMessage {
                kind,
                sequence: Sequence::Time(time),
                changes: levels,
                checksum: None,
                time: Some(Ts::from_micros(time).0),
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
    fn the_recorded_books_follow_on_from_their_snapshots_in_time() {
        let r = replay_clean(Exchange::Bitstamp, "cryptofeed/BITSTAMP.jsonl.zst", 10, 100, true);
        assert!(r.stale > 0, "diffs older than their snapshot are dropped: {r:?}");
    }
}
