//! Bybit's `orderbook.{depth}.{symbol}` (v5): a `snapshot`, then `delta`s
//! whose update id `u` runs on by one ([`Sequence::Chain`]). A later
//! `snapshot` (also one with `u` 1, after a restart of Bybit's service)
//! replaces the book.
//!
//! `{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1672304484978,"data":{"s":"BTCUSDT","b":[["16493.50","0.006"]],"a":[["16611.00","0"]],"u":18521288,"seq":7961638724},"cts":1672304484976}`

use ck_book::BookSide;
use ck_book::sync::{BookMessage, Sequence};
use ck_bus::{Origin, RawMessage};
use ck_model::{Exchange, Ts};
use serde::Deserialize;

use crate::book::{BookReader, SymbolBook, changes, kind};
use crate::parse::{ParseError, json};

const EX: Exchange = Exchange::Bybit;

#[derive(Deserialize)]
struct Push<'a> {
    #[serde(default)]
    ts: Option<i64>,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    data: Data<'a>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(borrow, rename = "b", default)]
    bids: Vec<Vec<&'a str>>,
    #[serde(borrow, rename = "a", default)]
    asks: Vec<Vec<&'a str>>,
    #[serde(rename = "u")]
    update_id: i64,
}

/// Bybit's book reader (module docs).
#[derive(Debug, Default)]
pub struct BybitBooks;

impl BookReader for BybitBooks {
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        // `orderbook.1.` is the quote channel (every message a snapshot of
        // the best level), not a book.
        if raw.origin != Origin::Ws
            || !raw.data.starts_with("{\"topic\":\"orderbook.")
            || raw.data.starts_with("{\"topic\":\"orderbook.1.")
        {
            return Ok(());
        }
        let push: Push<'_> = serde_json::from_str(&raw.data).map_err(json(EX))?;
        let kind = kind(EX, "type", push.kind, ("snapshot", "delta"))?;
        let time = push.ts.map(|ms| Ts::from_millis(ms).0);
        let d = push.data;
        let mut levels = Vec::with_capacity(d.bids.len() + d.asks.len());
        changes(EX, BookSide::Bid, &d.bids, &mut levels)?;
        changes(EX, BookSide::Ask, &d.asks, &mut levels)?;
        out.push(SymbolBook {
            symbol: d.symbol.to_owned(),
            message: BookMessage {
                kind,
                sequence: Sequence::Chain {
                    prev: None,
                    this: d.update_id,
                },
                changes: levels,
                checksum: None,
                time,
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
    fn the_recorded_books_run_on_by_one_update_id() {
        replay_clean(Exchange::Bybit, "cryptofeed/BYBIT.jsonl.zst", 2, 500, true);
    }
}
