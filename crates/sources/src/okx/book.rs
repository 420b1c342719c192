//! OKX's `books` channel: a `snapshot` of 400 levels a side, then
//! `update`s every 100 ms. Each carries `checksum` (CRC-32 of the best 25
//! levels a side, [`ck_book::checksum::okx`]) and, since 2022, `seqId` and
//! `prevSeqId` (`-1` on a snapshot): an update must name the last `seqId`
//! as its `prevSeqId`. Recordings from before carry the checksum alone.
//!
//! `{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["30238.8","2","0","1"]],"bids":[],"ts":"1652459225464","checksum":-914047754,"prevSeqId":123,"seqId":124}]}`

use ck_book::BookSide;
use ck_book::sync::{BookMessage, Checksum, Sequence};
use ck_bus::{Origin, RawMessage};
use ck_model::{Exchange, Ts};
use serde::Deserialize;

use crate::book::{BookReader, SymbolBook, changes, kind};
use crate::parse::{ParseError, json};

const EX: Exchange = Exchange::Okx;

#[derive(Deserialize)]
struct Push<'a> {
    #[serde(borrow)]
    arg: Option<Arg<'a>>,
    #[serde(default)]
    action: Option<&'a str>,
    #[serde(borrow, default)]
    data: Vec<Data<'a>>,
}

#[derive(Deserialize)]
struct Arg<'a> {
    channel: &'a str,
    #[serde(rename = "instId")]
    inst_id: &'a str,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow, default)]
    asks: Vec<Vec<&'a str>>,
    #[serde(borrow, default)]
    bids: Vec<Vec<&'a str>>,
    #[serde(default)]
    checksum: Option<i32>,
    #[serde(default)]
    ts: Option<&'a str>,
    #[serde(rename = "prevSeqId", default)]
    prev_seq_id: Option<i64>,
    #[serde(rename = "seqId", default)]
    seq_id: Option<i64>,
}

/// OKX's book reader (module docs).
#[derive(Debug, Default)]
pub struct OkxBooks;

impl BookReader for OkxBooks {
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        if raw.origin != Origin::Ws || !raw.data.contains("\"books") {
            return Ok(());
        }
        let push: Push<'_> = serde_json::from_str(&raw.data).map_err(json(EX))?;
        let (Some(arg), Some(action)) = (push.arg, push.action) else {
            return Ok(()); // a subscription ack
        };
        // `books`; the 5-level and tick-by-tick channels are other names.
        if arg.channel != "books" {
            return Ok(());
        }
        let kind = kind(EX, "action", action, ("snapshot", "update"))?;
        for d in push.data {
            let mut levels = Vec::with_capacity(d.asks.len() + d.bids.len());
            changes(EX, BookSide::Bid, &d.bids, &mut levels)?;
            changes(EX, BookSide::Ask, &d.asks, &mut levels)?;
            let sequence = match d.seq_id {
                Some(this) => Sequence::Chain {
                    prev: d.prev_seq_id.filter(|p| *p >= 0),
                    this,
                },
                None => Sequence::None,
            };
            out.push(SymbolBook {
                symbol: arg.inst_id.to_owned(),
                message: BookMessage {
                    kind,
                    sequence,
                    changes: levels,
                    checksum: d.checksum.map(Checksum::Okx),
                    time: d
                        .ts
                        .and_then(|t| t.parse::<i64>().ok())
                        .map(|ms| Ts::from_millis(ms).0),
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
    fn the_recorded_books_keep_every_checksum() {
        let r = replay_clean(Exchange::Okx, "cryptofeed/OKX.jsonl.zst", 3, 100, true);
        assert!(r.checksums > 100, "{r:?}");
        assert_eq!(r.checksums, r.applied, "every message carries one: {r:?}");
    }
}
