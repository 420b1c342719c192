//! The book recorder's tests: parts, book gaps and the stats series.

use ck_archive::books::{BookFile, BookRow, archived_book_at, book_parts};
use ck_book::BookSide;
use ck_bus::books::LiveBooks;
use ck_model::{Decimal, Exchange, Instrument, Ts};

use super::{Recorder, RecorderSettings};
use crate::live::books::{BookEvent, BookUpdate};

const T0: i64 = 1_723_161_600_000_000_000;

fn row(ms: i64, message: i64, bid: bool, price: &str, size: &str) -> BookRow {
    BookRow {
        ts_received: Ts(T0 + ms * 1_000_000),
        ts_exchange: None,
        message,
        bid,
        price: Decimal::parse(price).expect("price"),
        size: Decimal::parse(size).expect("size"),
    }
}

fn event(update: BookUpdate) -> BookEvent {
    BookEvent {
        exchange: Exchange::Okx,
        instrument: Instrument::new("BTC", "USDT"),
        update,
    }
}

fn rows(file: BookFile, rows: Vec<BookRow>) -> BookEvent {
    event(BookUpdate::Rows { file, rows })
}

/// A recorder under `root`: parts of 10 minutes, the best 25 levels every
/// `top_every_ns` (0: never), the stats every second.
fn recorder(root: &std::path::Path, top_every_ns: i64, live: LiveBooks) -> Recorder {
    Recorder::new(
        RecorderSettings {
            root: root.to_owned(),
            part_ns: 600_000_000_000,
            top_every_ns,
            top_depth: 25,
            stats_every_ns: 1_000_000_000,
        },
        live,
    )
}

/// The best bid's price of the archived book at `ms`, if known then.
fn best_bid(root: &std::path::Path, ms: i64) -> Option<String> {
    let i = Instrument::new("BTC", "USDT");
    archived_book_at(root, Exchange::Okx, &i, Ts(T0 + ms * 1_000_000))
        .expect("archive")
        .map(|(b, _)| {
            b.best(BookSide::Bid)
                .map(|l| l.price.text())
                .unwrap_or_default()
        })
}

#[test]
fn the_stats_series_is_the_book_at_each_second_it_was_known() {
    let dir = tempfile::tempdir().expect("dir");
    let mut r = recorder(dir.path(), 0, LiveBooks::default());
    let mut gaps = Vec::new();
    let script = [
        rows(
            BookFile::Snapshots,
            vec![
                row(500, 1, true, "100", "1"),
                row(500, 1, false, "101", "2"),
            ],
        ),
        rows(BookFile::Deltas, vec![row(1_200, 2, true, "100.5", "3")]),
        // Exactly on a second: in that second's row.
        rows(BookFile::Deltas, vec![row(3_000, 3, false, "100.75", "1")]),
        rows(BookFile::Deltas, vec![row(3_500, 4, true, "100.5", "0")]),
        event(BookUpdate::Incident {
            at: Ts(T0 + 5_200_000_000),
            kind: "sequence",
            cause: "a skipped diff".into(),
        }),
        rows(
            BookFile::Snapshots,
            vec![
                row(7_500, 1, true, "99", "4"),
                row(7_500, 1, false, "99.5", "1"),
            ],
        ),
        rows(BookFile::Deltas, vec![row(8_100, 2, false, "99.25", "1")]),
    ];
    for e in &script {
        r.handle(e, &mut gaps);
    }
    r.finish(&mut gaps);
    let i = Instrument::new("BTC", "USDT");
    let series = ck_archive::book_stats::book_stats_between(
        dir.path(),
        Exchange::Okx,
        &i,
        Ts(T0),
        Ts(T0 + 60_000_000_000),
    )
    .expect("series");
    let seconds: Vec<i64> = series
        .iter()
        .map(|r| (r.time.0 - T0) / 1_000_000_000)
        .collect();
    assert_eq!(seconds, [1, 2, 3, 4, 5, 8], "none while unknown (6, 7)");
    for row in &series {
        let (book, _) = archived_book_at(dir.path(), Exchange::Okx, &i, row.time)
            .expect("archive")
            .expect("known");
        let of = ck_book::stats::BookStats::of(&book).expect("both sides");
        assert_eq!(row.stats.normalized(), of.normalized(), "at {}", row.time);
    }
    assert_eq!(
        series[2].stats.best_ask.normalized().text(),
        "100.75",
        "the delta at 3 s"
    );
    assert_eq!(series[2].stats.best_bid.normalized().text(), "100.5");
    assert_eq!(
        series[3].stats.best_bid.normalized().text(),
        "100",
        "100.5 removed at 3.5 s"
    );
}

#[test]
fn parts_end_at_incidents_and_a_book_gap_spans_to_the_resync() {
    let dir = tempfile::tempdir().expect("dir");
    let live = LiveBooks::default();
    let mut r = recorder(dir.path(), 1_000_000_000, live.clone());
    let mut gaps = Vec::new();
    let script = [
        rows(
            BookFile::Snapshots,
            vec![row(0, 1, true, "100", "1"), row(0, 1, false, "101", "1")],
        ),
        rows(BookFile::Deltas, vec![row(10, 2, true, "100.5", "2")]),
        event(BookUpdate::Incident {
            at: Ts(T0 + 20_000_000),
            kind: "checksum",
            cause: "off by one".into(),
        }),
        rows(
            BookFile::Snapshots,
            vec![row(50, 1, true, "99", "3"), row(50, 1, false, "101", "1")],
        ),
        // An empty book, then a level.
        rows(BookFile::Snapshots, vec![]),
        rows(BookFile::Deltas, vec![row(70, 3, true, "98", "1")]),
    ];
    for e in &script {
        r.handle(e, &mut gaps);
    }
    r.finish(&mut gaps);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].from_ts, Ts(T0 + 20_000_000));
    assert_eq!(gaps[0].to_ts, Ts(T0 + 50_000_000));
    assert!(
        gaps[0].reason.starts_with("order book: checksum"),
        "{}",
        gaps[0].reason
    );
    let root = dir.path();
    assert_eq!(best_bid(root, 5).as_deref(), Some("100"));
    assert_eq!(best_bid(root, 15).as_deref(), Some("100.5"));
    assert_eq!(best_bid(root, 20), None, "unknown from the incident");
    assert_eq!(best_bid(root, 30), None, "until the resync");
    assert_eq!(best_bid(root, 50).as_deref(), Some("99"));
    assert_eq!(
        best_bid(root, 70).as_deref(),
        Some("98"),
        "a part begun after an empty book"
    );
    let i = Instrument::new("BTC", "USDT");
    let day = ck_archive::layout::day_of(Ts(T0));
    let parts = book_parts(root, Exchange::Okx, &i, day).expect("parts");
    // The first delta's price is finer than the first part's columns:
    // it began a second part, with the book as it stood.
    assert_eq!(parts.len(), 4, "{parts:?}");
    assert_eq!(parts[1].from, Ts(T0 + 10_000_000));
    assert_eq!(
        parts[1].to,
        Ts(T0 + 20_000_000 - 1),
        "known until the incident"
    );
    assert!(
        parts.iter().all(|p| p.top.is_some()),
        "each with its top file"
    );
    assert_eq!(r.stats().write_failures, 0);
    assert_eq!(
        live.read(Exchange::Okx, &i, |b| b
            .book
            .best(BookSide::Bid)
            .map(|l| l.price.text())),
        Some(Some("98".to_owned())),
        "the live book"
    );
}

#[test]
fn stats_that_cannot_be_written_leave_the_book_files_whole() {
    let dir = tempfile::tempdir().expect("dir");
    // A file where the stats folder would go: the stats cannot be written.
    std::fs::write(dir.path().join("book_stats"), b"in the way").expect("blocker");
    let mut r = recorder(dir.path(), 0, LiveBooks::default());
    let mut gaps = Vec::new();
    for e in [
        rows(
            BookFile::Snapshots,
            vec![row(0, 1, true, "100", "1"), row(0, 1, false, "101", "1")],
        ),
        rows(BookFile::Deltas, vec![row(2_500, 2, true, "100", "2")]),
    ] {
        r.handle(&e, &mut gaps);
    }
    r.finish(&mut gaps);
    let stats = r.stats();
    assert_eq!(stats.write_failures, 1, "{stats:?}");
    assert_eq!(stats.parts, 1, "the part itself is finished");
    assert_eq!(best_bid(dir.path(), 2_500).as_deref(), Some("100"));
    assert!(gaps.is_empty(), "no book gap: the book was known");
}
