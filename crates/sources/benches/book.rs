//! The book engine's updates per second on one core, against cryptofeed's C
//! order book (`order-book` from PyPI, `tools/bench/order_book_peer.py`)
//! applying the same stream in the same run, and the memory each keeps per
//! level.
//!
//! The stream: every book message of every venue's recorded book traffic
//! (`../shared/fixtures/cryptofeed`), read by the venues' book readers, in
//! recorded order, each book numbered. A snapshot replaces its book
//! whole (`Book::load`; the peer assigns its two dicts, as cryptofeed
//! does); each delta's levels are applied one by one. Two runs: in the
//! first, both read the best bid and ask after each message, as every
//! consumer of a book does (which makes `order-book` sort what it has not
//! sorted yet); in the second, the top is never read. Both sides apply it
//! `CK_BENCH_RUNS` times (default 5) to fresh books; the median round is
//! reported, in level changes a second (a snapshot's levels count).
//!
//! `cargo bench -p ck-sources --bench book` (Python: `target/ci-venv/bin/python`
//! with `order-book` installed, else `python3`).

use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use ck_book::sync::MessageKind;
use ck_book::{Book, BookSide, Fixed};

/// One message of the stream: a snapshot or a delta of one book.
struct Item {
    book: usize,
    snapshot: bool,
    levels: Vec<(BookSide, Fixed, Fixed)>,
}

use ck_model::Exchange;
use ck_sources::book::{BOOK_RECORDINGS, SymbolBook, book_reader_for};
use ck_sources::recordings::Recording;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    let venv = root().join("target/ci-venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        "python3".into()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("CK_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let mut names: Vec<(Exchange, String)> = Vec::new();
    let mut stream: Vec<Item> = Vec::new();
    let mut changes = 0usize;
    let mut messages = 0usize;
    for (exchange, file) in BOOK_RECORDINGS {
        let path = ck_testkit::fixture(file);
        let mut reader = book_reader_for(exchange).expect("a book reader");
        let mut read = Vec::new();
        for raw in Recording::open_as(&path, Some(exchange)).expect("open") {
            read.clear();
            reader
                .read(&raw.expect("line"), &mut read)
                .expect("book message");
            for SymbolBook { symbol, message } in read.drain(..) {
                messages += 1;
                let key = (exchange, symbol);
                let book = names.iter().position(|n| *n == key).unwrap_or_else(|| {
                    names.push(key);
                    names.len() - 1
                });
                changes += message.changes.len();
                let snapshot = message.kind == MessageKind::Snapshot;
                stream.push(Item {
                    book,
                    snapshot,
                    levels: message
                        .changes
                        .iter()
                        .filter(|c| !(snapshot && c.size.is_zero()))
                        .map(|c| (c.side, c.price, c.size))
                        .collect(),
                });
            }
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("stream.txt");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("stream file"));
    let side = |s: BookSide| if s == BookSide::Bid { 'b' } else { 'a' };
    for item in &stream {
        let kind = if item.snapshot { 'S' } else { 'D' };
        writeln!(out, "{kind} {}", item.book).expect("write");
        for (s, price, size) in &item.levels {
            writeln!(out, "{} {price} {size}", side(*s)).expect("write");
        }
    }
    drop(out);

    for reads in [true, false] {
        // candlekeep: each round applies the whole stream to fresh books.
        let mut ours = Vec::new();
        let mut state = (0usize, 0usize);
        for _ in 0..runs {
            let mut books = vec![Book::new(); names.len()];
            let start = Instant::now();
            for item in &stream {
                let book = &mut books[item.book];
                if item.snapshot {
                    let _ = black_box(book.load(item.levels.iter().copied()));
                } else {
                    for &(side, price, size) in &item.levels {
                        let _ = black_box(book.apply(side, price, size));
                    }
                }
                if reads {
                    // What every consumer reads after a message: the top.
                    black_box((book.best(BookSide::Bid), book.best(BookSide::Ask)));
                }
            }
            ours.push(start.elapsed().as_secs_f64());
            state = books.iter().fold((0, 0), |(bytes, levels), b| {
                (
                    bytes + b.state_bytes(),
                    levels + b.len(BookSide::Bid) + b.len(BookSide::Ask),
                )
            });
        }
        let ours = median(ours);
        let mode = if reads { "reads" } else { "apply" };
        let peer = Command::new(python())
            .arg(root().join("tools/bench/order_book_peer.py"))
            .arg(&file)
            .arg(runs.to_string())
            .arg(mode)
            .output()
            .expect("run the order-book peer");
        assert!(
            peer.status.success(),
            "the order-book peer failed (pip install order-book into target/ci-venv): {}",
            String::from_utf8_lossy(&peer.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&peer.stdout).expect("peer json");
        let peer_seconds = median(
            report["seconds"]
                .as_array()
                .expect("seconds")
                .iter()
                .filter_map(serde_json::Value::as_f64)
                .collect(),
        );
        let n = changes as f64;
        assert_eq!(
            report["updates"].as_u64(),
            Some(changes as u64),
            "the same stream"
        );
        assert_eq!(
            report["levels"].as_u64(),
            Some(state.1 as u64),
            "both end with the same levels"
        );
        let peer_bytes = report["bytes"].as_f64().unwrap_or(0.0);
        let what = if reads {
            "applying each message, then reading the best bid and ask"
        } else {
            "applying only (the top never read)"
        };
        println!(
            "book/engine, {what}: {changes} level changes in {messages} messages over {} books, median of {runs} rounds: candlekeep {:.2} M changes/s ({:.2} ms), order-book {:.2} M changes/s ({:.2} ms): {:.1}x; state at the end: candlekeep {} bytes for {} levels ({:.1} B a level), order-book {:.0} bytes ({:.1} B a level)",
            names.len(),
            n / ours / 1e6,
            ours * 1e3,
            n / peer_seconds / 1e6,
            peer_seconds * 1e3,
            peer_seconds / ours,
            state.0,
            state.1,
            state.0 as f64 / state.1 as f64,
            peer_bytes,
            peer_bytes / state.1 as f64
        );
    }
}
