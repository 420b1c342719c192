//! The WebSocket `book` channel: an instrument's live order book to
//! `depth` levels a side.
//!
//! `{"op":"subscribe","channel":"book","exchange":"okx","instrument":"BTC-USDT","depth":25}`
//! (depth default 25, at most 1,000) answers `subscribed`, then a
//! `snapshot` whose `data` is `{"sequence","message","time","bids","asks"}`
//! (best first, numbers as exact strings), then a `book` message for every
//! change of those levels: `sequence` one more each time, `bids` and `asks`
//! holding only the levels that changed, a size of `"0"` for a level gone
//! (changed, or pushed out of the depth). A level moving into the depth
//! from below is sent like a new one. When the book becomes unknown (an
//! incident, a lost connection) the client gets `book_invalid`; when it is
//! known again, and whenever the client fell behind, a fresh `snapshot`.
//! Each message is the client's view brought up to the book as it stands,
//! so a client that applies them in `sequence` order holds the book.

use std::collections::HashMap;
use std::sync::Arc;

use ck_book::{BookSide, Fixed, Level};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use crate::ws::Topic;
use ck_bus::books::LiveBooks;
use ck_model::{Exchange, Instrument, Ts};
use serde_json::json;

/// The depth of a `book` subscription that names none.
pub(crate) const DEFAULT_DEPTH: usize = 25;
/// The most levels a side a `book` subscription may ask for.
pub(crate) const MAX_DEPTH: usize = 1_000;

/// What one client was last sent of one book.
#[derive(Debug, Default)]
pub(crate) struct SentBook {
    valid: bool,
    sequence: u64,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

/// The book's top levels now.
struct Top {
    valid: bool,
    message: i64,
    time: Option<Ts>,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

fn top(
    books: Option<&LiveBooks>,
    exchange: Exchange,
    instrument: &Instrument,
    depth: usize,
) -> Option<Top> {
    books?.read(exchange, instrument, |b| Top {
        valid: b.valid,
        message: b.message,
        time: b.time,
        bids: if b.valid {
            b.book.levels(BookSide::Bid).take(depth).collect()
        } else {
            Vec::new()
        },
        asks: if b.valid {
            b.book.levels(BookSide::Ask).take(depth).collect()
        } else {
            Vec::new()
        },
    })
}

fn levels(levels: &[Level]) -> Vec<[String; 2]> {
    levels
        .iter()
        .map(|l| [l.price.text(), l.size.text()])
        .collect()
}

fn head(
    kind: &str,
    exchange: Exchange,
    instrument: &Instrument,
    depth: usize,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), json!(kind));
    m.insert("channel".into(), json!("book"));
    m.insert("exchange".into(), json!(exchange));
    m.insert("instrument".into(), json!(instrument));
    m.insert("depth".into(), json!(depth));
    m
}

/// A fresh `snapshot` of the book (its `data` null when none is known),
/// which `sent` now holds.
pub(crate) fn snapshot(
    books: Option<&LiveBooks>,
    exchange: Exchange,
    instrument: &Instrument,
    depth: usize,
    sent: &mut SentBook,
) -> String {
    let mut m = head("snapshot", exchange, instrument, depth);
    sent.sequence += 1;
    let data = match top(books, exchange, instrument, depth).filter(|t| t.valid) {
        Some(t) => {
            let data = json!({
                "sequence": sent.sequence, "message": t.message, "time": t.time,
                "bids": levels(&t.bids), "asks": levels(&t.asks),
            });
            sent.valid = true;
            sent.bids = t.bids;
            sent.asks = t.asks;
            data
        }
        None => {
            sent.valid = false;
            sent.bids.clear();
            sent.asks.clear();
            serde_json::Value::Null
        }
    };
    m.insert("data".into(), data);
    serde_json::Value::Object(m).to_string()
}

/// The next book-change notice, while the client follows a book (pending
/// for ever otherwise).
pub(crate) async fn next_change(
    changes: &mut Option<Receiver<Arc<(Exchange, Instrument)>>>,
    following: bool,
) -> Result<Arc<(Exchange, Instrument)>, RecvError> {
    match changes.as_mut() {
        Some(rx) if following => rx.recv().await,
        _ => std::future::pending().await,
    }
}

/// The messages for a client's `book` subscriptions after a notice: the
/// changes of the book that changed, or, when the client fell behind the
/// notices, a fresh snapshot of every book it follows.
pub(crate) fn on_change(
    changed: &Result<Arc<(Exchange, Instrument)>, RecvError>,
    books: Option<&LiveBooks>,
    sent_books: &mut HashMap<Topic, SentBook>,
) -> Vec<String> {
    let lagged = matches!(changed, Err(RecvError::Lagged(_)));
    let mut out = Vec::new();
    for (t, sent) in sent_books.iter_mut() {
        let Topic::Book(e, i, depth) = t else {
            continue;
        };
        let message = match changed {
            Ok(key) if key.0 == *e && &key.1 == i => update(books, *e, i, *depth, sent),
            _ if lagged => Some(snapshot(books, *e, i, *depth, sent)),
            _ => None,
        };
        out.extend(message);
    }
    out
}

/// What changed since `sent`, as the message that brings the client's view
/// up to the book; `None` when nothing within the depth did.
pub(crate) fn update(
    books: Option<&LiveBooks>,
    exchange: Exchange,
    instrument: &Instrument,
    depth: usize,
    sent: &mut SentBook,
) -> Option<String> {
    let now = top(books, exchange, instrument, depth).filter(|t| t.valid);
    let Some(now) = now else {
        if !sent.valid {
            return None;
        }
        sent.valid = false;
        sent.bids.clear();
        sent.asks.clear();
        sent.sequence += 1;
        let mut m = head("book_invalid", exchange, instrument, depth);
        m.insert("sequence".into(), json!(sent.sequence));
        return Some(serde_json::Value::Object(m).to_string());
    };
    if !sent.valid {
        return Some(snapshot(books, exchange, instrument, depth, sent));
    }
    let bids = changes(&sent.bids, &now.bids);
    let asks = changes(&sent.asks, &now.asks);
    if bids.is_empty() && asks.is_empty() {
        return None;
    }
    sent.sequence += 1;
    sent.bids = now.bids;
    sent.asks = now.asks;
    let mut m = head("book", exchange, instrument, depth);
    m.insert("sequence".into(), json!(sent.sequence));
    m.insert("message".into(), json!(now.message));
    m.insert("time".into(), json!(now.time));
    m.insert("bids".into(), json!(bids));
    m.insert("asks".into(), json!(asks));
    Some(serde_json::Value::Object(m).to_string())
}

/// The levels of `now` that `before` did not hold as they are, then a
/// size of `"0"` for each level of `before` that `now` does not hold.
fn changes(before: &[Level], now: &[Level]) -> Vec<[String; 2]> {
    let key = |l: &Level| l.price.normalized();
    let old: std::collections::HashMap<Fixed, Fixed> = before
        .iter()
        .map(|l| (key(l), l.size.normalized()))
        .collect();
    let new: std::collections::HashSet<Fixed> = now.iter().map(key).collect();
    let mut out: Vec<[String; 2]> = now
        .iter()
        .filter(|l| old.get(&key(l)) != Some(&l.size.normalized()))
        .map(|l| [l.price.text(), l.size.text()])
        .collect();
    out.extend(
        before
            .iter()
            .filter(|l| !new.contains(&key(l)))
            .map(|l| [l.price.text(), "0".to_owned()]),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(p: &str, s: &str) -> Level {
        Level {
            price: Fixed::parse(p.as_bytes()).expect("price"),
            size: Fixed::parse(s.as_bytes()).expect("size"),
        }
    }

    #[test]
    fn changes_name_what_moved_and_what_left() {
        let before = [level("10.0", "1"), level("9.5", "2"), level("9.0", "3")];
        let now = [level("10.00", "1"), level("9.5", "2.5"), level("8.5", "4")];
        assert_eq!(
            changes(&before, &now),
            [
                ["9.5".to_owned(), "2.5".to_owned()],
                ["8.5".to_owned(), "4".to_owned()],
                ["9.0".to_owned(), "0".to_owned()],
            ],
            "the same price written with another scale is no change"
        );
        assert!(changes(&now, &now).is_empty());
    }
}
