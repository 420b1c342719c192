//! Order books in the venue mock: which recorded frames are book
//! snapshots and deltas of which product, the fresh snapshot a venue sends
//! when a book channel is subscribed again, and the book faults.
//!
//! - **Catch-up.** A client that subscribes (again) while the recording
//!   plays gets, for each product it names, the product's last recorded
//!   book snapshot before its place and every book frame of that product
//!   since, then the recording goes on: the book it rebuilds is the book
//!   at its place, as a venue's fresh snapshot would give it. A client
//!   that reconnects and resumes mid-recording gets the same.
//! - **A skipped diff** is the `withhold` fault on a book frame's marker.
//! - **A corrupted checksum** ([`corrupt_checksum`]): the checksum of every
//!   Nth frame that carries one is off by one.
//! - **Per-connection numbers.** Coinbase Advanced numbers every message of
//!   a connection (`sequence_num`); the mock numbers them per connection
//!   as it sends them, a withheld frame taking its number.

use serde_json::Value;

/// A book frame: a snapshot or a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookFrame {
    /// A whole book (to the depth subscribed).
    Snapshot,
    /// Changes.
    Delta,
}

/// Reads whether a frame is a book frame, and which kind.
pub type BookFrames = fn(&Value) -> Option<BookFrame>;

fn kind(snapshot: bool) -> BookFrame {
    if snapshot {
        BookFrame::Snapshot
    } else {
        BookFrame::Delta
    }
}

/// OKX: `{"arg":{"channel":"books",…},"action":"snapshot"|"update",…}`.
pub(crate) fn okx(v: &Value) -> Option<BookFrame> {
    (v["arg"]["channel"] == "books").then(|| kind(v["action"] == "snapshot"))
}

/// Bybit: `{"topic":"orderbook.{depth}.{symbol}","type":"snapshot"|"delta"}`
/// (depth 1 is the quote channel, not a book).
pub(crate) fn bybit(v: &Value) -> Option<BookFrame> {
    let topic = v["topic"].as_str()?;
    (topic.starts_with("orderbook.") && !topic.starts_with("orderbook.1."))
        .then(|| kind(v["type"] == "snapshot"))
}

/// Kraken v2 (`{"channel":"book","type":…}`) and v1
/// (`[id,{"as":…,"bs":…},"book-N","PAIR"]`).
pub(crate) fn kraken(v: &Value) -> Option<BookFrame> {
    if v["channel"] == "book" {
        return Some(kind(v["type"] == "snapshot"));
    }
    let parts = v.as_array()?;
    let name = parts.get(parts.len().checked_sub(2)?)?.as_str()?;
    if !name.starts_with("book-") {
        return None;
    }
    let snapshot = parts[1].get("as").is_some() || parts[1].get("bs").is_some();
    Some(kind(snapshot))
}

/// Coinbase Advanced: `{"channel":"l2_data","events":[{"type":…}]}`.
pub(crate) fn coinbase_advanced(v: &Value) -> Option<BookFrame> {
    (v["channel"] == "l2_data").then(|| kind(v["events"][0]["type"] == "snapshot"))
}

/// Coinbase Exchange: `{"type":"snapshot"|"l2update",…}`.
pub(crate) fn coinbase_exchange(v: &Value) -> Option<BookFrame> {
    match v["type"].as_str()? {
        "snapshot" => Some(BookFrame::Snapshot),
        "l2update" => Some(BookFrame::Delta),
        _ => None,
    }
}

/// The frames of a catch-up for a client at `at` (the next frame it would
/// get), of the products `wanted`: for each, its last snapshot before `at`
/// and its book frames since, in recorded order. `book[i]` and
/// `products[i]` describe frame `i` of a lap; `at` counts over laps and
/// the catch-up stays within `at`'s lap.
pub(crate) fn catch_up(
    book: &[Option<BookFrame>],
    products: &[Option<crate::route::Product>],
    wanted: &std::collections::HashSet<crate::route::Product>,
    at: usize,
) -> Vec<usize> {
    let len = book.len();
    if len == 0 || at == 0 {
        return Vec::new();
    }
    // The lap of the last frame sent (`at` is one past it).
    let lap_start = ((at - 1) / len) * len;
    let mut out = Vec::new();
    for product in wanted {
        let of = |i: usize| products.get(i % len).and_then(Option::as_ref) == Some(product);
        let Some(snapshot) = (lap_start..at)
            .rev()
            .find(|&i| book[i % len] == Some(BookFrame::Snapshot) && of(i))
        else {
            continue;
        };
        out.extend((snapshot..at).filter(|&i| book[i % len].is_some() && of(i)));
    }
    out.sort_unstable();
    out
}

/// `frame` with its book checksum off by one (OKX and Kraken v2
/// `"checksum":N`, Kraken v1 `"c":"N"`, Bitfinex `[CHAN,"cs",N]`); `None`
/// when it carries none.
#[must_use]
pub fn corrupt_checksum(frame: &str) -> Option<String> {
    for (key, quoted) in [
        ("\"checksum\":", false),
        ("\"c\":\"", true),
        ("\"cs\",", false),
    ] {
        let Some(at) = frame.find(key) else {
            continue;
        };
        let start = at + key.len();
        let rest = &frame[start..];
        let sign = usize::from(!quoted && rest.starts_with('-'));
        let digits = rest[sign..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            continue;
        }
        let text = &rest[..sign + digits];
        let n: i64 = text.parse().ok()?;
        // Off by one, staying a valid checksum (CRC-32 text is unsigned
        // in Kraken's; OKX's and Bitfinex's are signed 32-bit).
        let off = if n == i64::from(i32::MAX) || n == i64::from(u32::MAX) {
            n - 1
        } else {
            n + 1
        };
        return Some(format!(
            "{}{off}{}",
            &frame[..start],
            &rest[sign + digits..]
        ));
    }
    None
}

/// `frame` with `"<field>":N` set to `number` (Coinbase Advanced's
/// `sequence_num`); `frame` as it is when it has none.
#[must_use]
pub fn renumber(frame: &str, field: &str, number: u64) -> String {
    let key = format!("\"{field}\":");
    let Some(at) = frame.find(&key) else {
        return frame.to_owned();
    };
    let start = at + key.len();
    let digits = frame[start..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    format!("{}{number}{}", &frame[..start], &frame[start + digits..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_corrupted_in_place() {
        assert_eq!(
            corrupt_checksum(r#"{"data":[{"checksum":-914047754,"seqId":1}]}"#).as_deref(),
            Some(r#"{"data":[{"checksum":-914047753,"seqId":1}]}"#)
        );
        assert_eq!(
            corrupt_checksum(r#"[1664,{"b":[],"c":"1344912611"},"book-1000","WAVES/EUR"]"#)
                .as_deref(),
            Some(r#"[1664,{"b":[],"c":"1344912612"},"book-1000","WAVES/EUR"]"#)
        );
        assert_eq!(
            corrupt_checksum(r#"[17,"cs",-12345,7]"#).as_deref(),
            Some(r#"[17,"cs",-12344,7]"#)
        );
        assert_eq!(corrupt_checksum(r#"{"type":"l2update"}"#), None);
    }

    #[test]
    fn sequence_numbers_are_set() {
        assert_eq!(
            renumber(
                r#"{"channel":"l2_data","sequence_num":14,"events":[]}"#,
                "sequence_num",
                3
            ),
            r#"{"channel":"l2_data","sequence_num":3,"events":[]}"#
        );
        assert_eq!(renumber("{}", "sequence_num", 3), "{}");
    }

    #[test]
    fn a_catch_up_is_the_last_snapshot_and_the_book_frames_since() {
        use BookFrame::{Delta, Snapshot};
        let book = [
            Some(Snapshot),
            None,
            Some(Delta),
            Some(Snapshot),
            Some(Delta),
            Some(Delta),
            None,
        ];
        let p = |s: &str| Some(s.to_owned());
        let products = [p("A"), p("A"), p("B"), p("A"), p("B"), p("A"), p("A")];
        let wanted = ["A".to_owned()].into_iter().collect();
        assert_eq!(catch_up(&book, &products, &wanted, 6), [3, 5]);
        assert_eq!(catch_up(&book, &products, &wanted, 3), [0]);
        assert_eq!(catch_up(&book, &products, &wanted, 0), Vec::<usize>::new());
        // In the second lap: within it only.
        assert_eq!(catch_up(&book, &products, &wanted, 7 + 1), [7]);
        // At the end of a lap: that lap's.
        assert_eq!(catch_up(&book, &products, &wanted, 7), [3, 5]);
    }
}
