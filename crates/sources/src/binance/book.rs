//! Binance's (and Binance.US's) book: `<symbol>@depth@100ms` diffs and the
//! REST snapshot `GET /api/v3/depth?symbol=…&limit=…`, kept by Binance's
//! documented procedure ([`Sequence::Range`]): diffs that come before the
//! snapshot are held; those it covers (`u <= lastUpdateId`) are dropped;
//! the first kept spans `lastUpdateId + 1`; each later `U` is the last
//! `u + 1`.
//!
//! `{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"s":"NKNUSDT","U":499869750,"u":499869752,"b":[["0.35130000","6195.00000000"]],"a":[]}}`
//!
//! hftbacktest's collector writes the REST snapshot into its file as a
//! frame of its own (`{"lastUpdateId":…}`), which names no symbol: it is
//! the snapshot of the one symbol whose diffs the connection carries (a
//! file holds one symbol), and an error where it carries several.

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
    /// The symbols whose diffs came on this connection.
    symbols: Vec<String>,
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
        BinanceBooks {
            exchange,
            symbols: Vec::new(),
        }
    }
}

impl BookReader for BinanceBooks {
    fn read(&mut self, raw: &RawMessage, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        let ex = self.exchange;
        match &raw.origin {
            Origin::Ws => {
                if raw.data.starts_with("{\"lastUpdateId\"") {
                    let [symbol] = self.symbols.as_slice() else {
                        return Err(ParseError::BadField {
                            exchange: ex,
                            field: "snapshot",
                            value: format!(
                                "a snapshot frame names no symbol, and the connection carries {}",
                                if self.symbols.is_empty() {
                                    "none yet".to_owned()
                                } else {
                                    self.symbols.join(", ")
                                }
                            ),
                        });
                    };
                    let symbol = symbol.clone();
                    return self.snapshot(symbol, &raw.data, out);
                }
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
                if !self.symbols.iter().any(|s| s == diff.symbol) {
                    self.symbols.push(diff.symbol.to_owned());
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
                return self.snapshot(symbol.to_owned(), &raw.data, out);
            }
        }
        Ok(())
    }
}

impl BinanceBooks {
    /// A depth snapshot's body (`{"lastUpdateId":…,"bids":…,"asks":…}`) as
    /// the snapshot of `symbol`.
    fn snapshot(&self, symbol: String, body: &str, out: &mut Vec<SymbolBook>) -> Result<(), ParseError> {
        let ex = self.exchange;
        let snap: Snapshot<'_> = serde_json::from_str(body).map_err(json(ex))?;
        let mut levels = Vec::with_capacity(snap.bids.len() + snap.asks.len());
        changes(ex, BookSide::Bid, &snap.bids, &mut levels)?;
        changes(ex, BookSide::Ask, &snap.asks, &mut levels)?;
        out.push(SymbolBook {
            symbol,
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

    /// Six minutes of BTCUSDT depth from hftbacktest's collector: its
    /// snapshot frame (no symbol) comes after the first diffs, which are
    /// held (those it covers dropped, the one spanning it applied), then
    /// every `U` follows on from the last `u`, and the book equals a plain
    /// map's after every one of its 3,449 diffs.
    #[test]
    fn hftbacktest_depth_follows_on_from_its_snapshot_frame() {
        replay_clean(
            Exchange::Binance,
            "hftbacktest/binance_spot_btcusdt_20240808.gz",
            1,
            3_000,
            true,
        );
    }

    #[test]
    fn a_snapshot_frame_on_a_connection_of_several_symbols_is_refused() {
        use ck_bus::{Origin, RawMessage};

        use crate::book::BookReader;

        let frame = |data: &str| RawMessage {
            exchange: Exchange::Binance,
            ts_received: ck_model::Ts(1),
            origin: Origin::Ws,
            data: data.to_owned(),
        };
        let diff = |s: &str| {
            frame(&format!(
                r#"{{"stream":"x@depth@100ms","data":{{"e":"depthUpdate","E":1,"s":"{s}","U":1,"u":2,"b":[],"a":[]}}}}"#
            ))
        };
        let snapshot = frame(r#"{"lastUpdateId":5,"bids":[["1.0","2"]],"asks":[]}"#);
        let mut reader = super::BinanceBooks::default();
        let mut out = Vec::new();
        let err = reader.read(&snapshot, &mut out).expect_err("no symbol yet");
        assert!(err.to_string().contains("snapshot"), "{err}");
        reader.read(&diff("BTCUSDT"), &mut out).expect("diff");
        reader.read(&snapshot, &mut out).expect("one symbol: its snapshot");
        assert_eq!(out.last().map(|b| b.symbol.as_str()), Some("BTCUSDT"));
        reader.read(&diff("ETHUSDT"), &mut out).expect("diff");
        assert!(reader.read(&snapshot, &mut out).is_err(), "two symbols");
    }
}
