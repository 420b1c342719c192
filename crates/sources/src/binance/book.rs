//! Binance's (and Binance.US's) book: `<symbol>@depth@100ms` diffs and the
//! REST snapshot `GET /api/v3/depth?symbol=…&limit=…`, kept by Binance's
//! documented procedure ([`Sequence::Range`]): diffs that come before the
//! snapshot are held; those it covers (`u <= lastUpdateId`) are dropped;
//! the first kept spans `lastUpdateId + 1`; each later `U` is the last
//! `u + 1`.
//!
//! `{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"s":"NKNUSDT","U":499869750,"u":499869752,"b":[["0.35130000","6195.00000000"]],"a":[]}}`

use ck_book::BookSide;
use ck_book::sync::{BookMessage, MessageKind, Sequence};
use ck_bus::{Origin, RawMessage};
use ck_model::{Exchange, Ts};
use serde::Deserialize;

use crate::book::{BookReader, SymbolBook, changes};
use crate::parse::{ParseError, json};

#[derive(Deserialize)]
struct Combined<'a> {
    #[serde(borrow)]
    data: Diff<'a>,
}

#[derive(Deserialize)]
struct Diff<'a> {
    #[serde(rename = "e")]
    event: &'a str,
    #[serde(rename = "E", default)]
    time_ms: Option<i64>,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "U")]
    first: u64,
    #[serde(rename = "u")]
    last: u64,
    #[serde(borrow, rename = "b", default)]
    bids: Vec<Vec<&'a str>>,
    #[serde(borrow, rename = "a", default)]
    asks: Vec<Vec<&'a str>>,
}

#[derive(Deserialize)]
struct Snapshot<'a> {
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
    #[serde(borrow, default)]
    bids: Vec<Vec<&'a str>>,
    #[serde(borrow, default)]
    asks: Vec<Vec<&'a str>>,
}

/// Binance's book reader (module docs), for Binance or Binance.US.
#[derive(Debug)]
pub struct BinanceBooks {
    exchange: Exchange,
}

impl Default for BinanceBooks {
    fn default() -> Self {
        BinanceBooks::new(Exchange::Binance)
    }
}

impl BinanceBooks {
    /// A reader of `exchange`'s messages (Binance's protocol).
    #[must_use]
    pub fn new(exchange: Exchange) -> BinanceBooks {
        BinanceBooks { exchange }
    }
}

impl BookReader for BinanceBooks {
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        let ex = self.exchange;
        match &raw.origin {
            Origin::Ws => {
                if !raw.data.contains("\"depthUpdate\"") {
                    return Ok(());
                }
                let diff = if raw.data.starts_with("{\"stream\"") {
                    serde_json::from_str::<Combined<'_>>(&raw.data)
                        .map_err(json(ex))?
                        .data
                } else {
                    serde_json::from_str::<Diff<'_>>(&raw.data).map_err(json(ex))?
                };
                if diff.event != "depthUpdate" {
                    return Ok(());
                }
                let mut levels = Vec::with_capacity(diff.bids.len() + diff.asks.len());
                changes(ex, BookSide::Bid, &diff.bids, &mut levels)?;
                changes(ex, BookSide::Ask, &diff.asks, &mut levels)?;
                out.push(SymbolBook {
                    symbol: diff.symbol.to_owned(),
                    message: BookMessage {
                        kind: MessageKind::Delta,
                        sequence: Sequence::Range {
                            first: diff.first,
                            last: diff.last,
                        },
                        changes: levels,
                        checksum: None,
                        time: diff.time_ms.map(|ms| Ts::from_millis(ms).0),
                    },
                });
            }
            Origin::Rest { url } => {
                let Some(symbol) = depth_symbol(url) else {
                    return Ok(());
                };
                let snap: Snapshot<'_> = serde_json::from_str(&raw.data).map_err(json(ex))?;
                let mut levels = Vec::with_capacity(snap.bids.len() + snap.asks.len());
                changes(ex, BookSide::Bid, &snap.bids, &mut levels)?;
                changes(ex, BookSide::Ask, &snap.asks, &mut levels)?;
                out.push(SymbolBook {
                    symbol: symbol.to_owned(),
                    message: BookMessage {
                        kind: MessageKind::Snapshot,
                        sequence: Sequence::Range {
                            first: snap.last_update_id,
                            last: snap.last_update_id,
                        },
                        changes: levels,
                        checksum: None,
                        time: None,
                    },
                });
            }
        }
        Ok(())
    }
}

/// The symbol of a depth snapshot's URL (`…/api/v3/depth?symbol=BTCUSDT&limit=1000`).
fn depth_symbol(url: &str) -> Option<&str> {
    let (path, query) = url.split_once('?')?;
    if !path.ends_with("/api/v3/depth") {
        return None;
    }
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("symbol="))
}

#[cfg(test)]
mod tests {
    use ck_model::Exchange;

    use crate::book::tests::replay_clean;

    #[test]
    fn the_recorded_books_follow_the_update_ids_from_their_snapshots() {
        replay_clean(Exchange::Binance, "cryptofeed/BINANCE.jsonl.zst", 4, 100, true);
    }
}
