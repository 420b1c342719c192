//! Keeping one book true: each venue's sequence rule and checksum, checked
//! on every message. A failure never lets a wrong book live on: the book
//! is marked invalid, the failure comes back as an [`Incident`], and every
//! change is refused until a fresh snapshot arrives (the caller asks for
//! one: a REST snapshot, or a resubscription).
//!
//! The rules, by [`Sequence`]:
//! - [`Sequence::Range`] (Binance, Binance.US: `U` and `u` of each diff,
//!   `lastUpdateId` of the REST snapshot): diffs that come before the
//!   snapshot are held; once it comes, those with `u` at or below its id
//!   are dropped, the first kept must span the id after it (`U <= id + 1
//!   <= u`), and each later one must start where the last ended
//!   (`U == last u + 1`).
//! - [`Sequence::Chain`] (Bybit's `u`, OKX's `seqId` and `prevSeqId`): a
//!   delta must name the message before it, or be the number after it.
//! - [`Sequence::Connection`] (Coinbase Advanced's `sequence_num` and
//!   Bitfinex's `SEQ_ALL`, numbered across all of a connection's
//!   channels): the reader checks the connection's numbers and says
//!   whether one was skipped before this message.
//! - [`Sequence::Time`] (Bitstamp: `microtimestamp` of the diffs and of
//!   the REST snapshot): diffs at or before the snapshot's time are
//!   dropped, and diffs must not go back in time.
//! - [`Sequence::None`] (Kraken, whose checksum is the check; Coinbase
//!   Exchange's `level2`, which has nothing to check).
//!
//! Then the venue's [`Checksum`], when the message carries one, over the
//! book after the message (cut to the depth subscribed where the venue's
//! book is).

use crate::{Book, BookError, BookSide, Fixed, checksum};

/// One level's change: the size now at a price (zero removes the level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Bid or ask.
    pub side: BookSide,
    /// The price.
    pub price: Fixed,
    /// The size now.
    pub size: Fixed,
}

/// A snapshot (the whole book, replacing it) or a delta (changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// The whole book.
    Snapshot,
    /// Changes to the book.
    Delta,
}

/// What a message says about its place in the venue's sequence (module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// Nothing.
    None,
    /// The first and last update ids a diff covers; a snapshot's last id
    /// in both.
    Range {
        /// `U`.
        first: u64,
        /// `u`, or the snapshot's `lastUpdateId`.
        last: u64,
    },
    /// This message's number, and the number of the message before it
    /// when the venue says it (else it must be this one minus one).
    Chain {
        /// The number before, if given.
        prev: Option<i64>,
        /// This message's number.
        this: i64,
    },
    /// The connection's numbering, checked by the reader.
    Connection {
        /// True when a number was skipped before this message.
        skipped: bool,
    },
    /// The venue's time of the message, in its units.
    Time(i64),
}

/// A checksum a message carries, of the book after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// OKX's.
    Okx(i32),
    /// Bitfinex's.
    Bitfinex(i32),
    /// Kraken's, over prices and sizes as written (v1).
    Kraken(u32),
    /// Kraken's, with the pair's precisions (v2).
    KrakenPrecise {
        /// The value sent.
        value: u32,
        /// The pair's price decimals.
        price_decimals: u8,
        /// The pair's size decimals.
        qty_decimals: u8,
    },
}

/// One message of a book channel, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    /// Snapshot or delta.
    pub kind: MessageKind,
    /// Its place in the venue's sequence.
    pub sequence: Sequence,
    /// The levels it sets.
    pub changes: Vec<Change>,
    /// The checksum it carries, if any.
    pub checksum: Option<Checksum>,
    /// The venue's time of the message, in nanoseconds since the Unix
    /// epoch, where the venue sends one.
    pub time: Option<i64>,
}

/// Why a book was found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    /// A message is missing before this one.
    #[error("sequence gap: expected {expected}, got {got}")]
    Gap {
        /// What the rule expected.
        expected: String,
        /// What came.
        got: String,
    },
    /// The book after the message does not have the venue's checksum.
    #[error("checksum mismatch: the venue sent {sent}, the book gives {ours}")]
    Checksum {
        /// The venue's value.
        sent: i64,
        /// Ours.
        ours: i64,
    },
    /// A Kraken v2 number has more decimals than the pair's precision.
    #[error("a number has more decimals than the pair's precision")]
    Precision,
    /// A change the book cannot hold.
    #[error("{0}")]
    Book(#[from] BookError),
    /// Too many diffs held while waiting for a snapshot.
    #[error("{0} diffs held while waiting for a snapshot")]
    SnapshotLate(usize),
    /// A snapshot older than every diff held (Bitstamp's time rule): the
    /// diffs between it and the first held are unknown.
    #[error("the snapshot (time {snapshot}) is older than the first diff held (time {first})")]
    SnapshotStale {
        /// The snapshot's time.
        snapshot: i64,
        /// The first held diff's time.
        first: i64,
    },
}

impl Cause {
    /// A short name for metrics' labels: `gap`, `checksum`, `precision`,
    /// `book` or `snapshot_late`.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Cause::Gap { .. } => "gap",
            Cause::Checksum { .. } => "checksum",
            Cause::Precision => "precision",
            Cause::Book(_) => "book",
            Cause::SnapshotLate(_) => "snapshot_late",
            Cause::SnapshotStale { .. } => "snapshot_stale",
        }
    }
}

/// A book found wrong: it is invalid until the next snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("book invalid: {cause}")]
pub struct Incident {
    /// Why.
    pub cause: Cause,
}

/// What became of a message that did not find the book wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (and its checksum, if any, matched).
    Applied,
    /// Dropped: older than the snapshot.
    Stale,
    /// Held until a snapshot comes.
    Held,
    /// Ignored: the book is invalid until a snapshot.
    Ignored,
}

/// Diffs held at most while waiting for a snapshot.
pub const MAX_HELD: usize = 100_000;

/// Where a book stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No snapshot yet, or invalid since an incident: changes wait for
    /// (or are refused until) a snapshot.
    Waiting,
    /// Valid: changes apply.
    Valid,
}

/// One instrument's book and the rule that keeps it (module docs).
#[derive(Debug, Clone)]
pub struct BookSync {
    book: Book,
    state: State,
    /// The book is cut to this many levels a side after each message.
    depth: Option<usize>,
    /// The last sequence position applied.
    last: Option<i64>,
    /// True from a Range or Time snapshot until the first diff after it is
    /// applied.
    first_after_snapshot: bool,
    /// Diffs held while waiting for a snapshot (Range and Time rules).
    held: Vec<BookMessage>,
    /// Levels the last message's cut to depth dropped, for a recorder.
    dropped: Vec<(BookSide, crate::Level)>,
    /// Checksums checked, and messages applied, since the start.
    checksums: u64,
    applied: u64,
}

impl BookSync {
    /// A book waiting for its snapshot, cut to `depth` levels a side after
    /// each message when the venue's checksum needs it.
    #[must_use]
    pub fn new(depth: Option<usize>) -> BookSync {
        BookSync {
            book: Book::new(),
            state: State::Waiting,
            depth,
            last: None,
            first_after_snapshot: false,
            held: Vec::new(),
            dropped: Vec::new(),
            checksums: 0,
            applied: 0,
        }
    }

    /// The book (meaningful while [`BookSync::state`] is `Valid`).
    #[must_use]
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// Valid, or waiting for a snapshot.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// Checksums checked so far, all of which matched (a mismatch is an
    /// incident).
    #[must_use]
    pub fn checksums_checked(&self) -> u64 {
        self.checksums
    }

    /// The levels the cut to depth dropped after the last message applied
    /// (a recorder stores their removal with it).
    #[must_use]
    pub fn dropped(&self) -> &[(BookSide, crate::Level)] {
        &self.dropped
    }

    /// Messages applied so far.
    #[must_use]
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Takes one message. An `Err` is an incident: the book is now invalid
    /// and waits for a fresh snapshot.
    pub fn on_message(&mut self, msg: &BookMessage) -> Result<Outcome, Incident> {
        self.take(msg).map_err(|cause| {
            self.invalidate();
            Incident { cause }
        })
    }

    fn invalidate(&mut self) {
        self.state = State::Waiting;
        self.book.clear();
        self.last = None;
        self.held.clear();
    }

    fn take(&mut self, msg: &BookMessage) -> Result<Outcome, Cause> {
        if msg.kind == MessageKind::Snapshot {
            // By time, a snapshot must be from after the stream began: some
            // diff held is at or before it.
            if let (Sequence::Time(snapshot), Some(Sequence::Time(first))) =
                (msg.sequence, self.held.first().map(|h| h.sequence))
                && first > snapshot
            {
                return Err(Cause::SnapshotStale { snapshot, first });
            }
            self.book
                .load(msg.changes.iter().map(|c| (c.side, c.price, c.size)))?;
            self.apply(&[], msg.checksum)?;
            self.state = State::Valid;
            self.last = position(msg.sequence);
            self.first_after_snapshot =
                matches!(msg.sequence, Sequence::Range { .. } | Sequence::Time(_));
            // Diffs held before it, in order, under the same rules.
            for held in std::mem::take(&mut self.held) {
                self.take(&held)?;
            }
            return Ok(Outcome::Applied);
        }
        if self.state == State::Waiting {
            // Range and Time venues send diffs before their REST snapshot
            // answers: they are held, and applied after it by the same
            // rules.
            if matches!(msg.sequence, Sequence::Range { .. } | Sequence::Time(_)) {
                if self.held.len() >= MAX_HELD {
                    return Err(Cause::SnapshotLate(self.held.len()));
                }
                self.held.push(msg.clone());
                return Ok(Outcome::Held);
            }
            return Ok(Outcome::Ignored);
        }
        match self.check_sequence(msg.sequence)? {
            Outcome::Applied => {}
            other => return Ok(other),
        }
        self.apply(&msg.changes, msg.checksum)?;
        Ok(Outcome::Applied)
    }

    /// The rule of `sequence` against the last position applied; moves it on.
    fn check_sequence(&mut self, sequence: Sequence) -> Result<Outcome, Cause> {
        let gap = |expected: String, got: String| Err(Cause::Gap { expected, got });
        match sequence {
            Sequence::None => {}
            Sequence::Connection { skipped } => {
                if skipped {
                    return gap("the connection's next number".into(), "a later one".into());
                }
            }
            Sequence::Range { first, last } => {
                let (first, last) = (as_i64(first), as_i64(last));
                let id = self.last.unwrap_or(i64::MIN);
                if last <= id {
                    return Ok(Outcome::Stale);
                }
                if self.first_after_snapshot {
                    if first > id.saturating_add(1) {
                        return gap(
                            format!("a diff spanning {}", id + 1),
                            format!("{first}..={last}"),
                        );
                    }
                    self.first_after_snapshot = false;
                } else if first != id.saturating_add(1) {
                    return gap(format!("U = {}", id + 1), format!("U = {first}"));
                }
                self.last = Some(last);
            }
            Sequence::Chain { prev, this } => {
                if let Some(last) = self.last {
                    let follows = match prev {
                        Some(p) => p == last,
                        None => this == last.saturating_add(1),
                    };
                    if !follows {
                        return gap(
                            format!("after {last}"),
                            format!(
                                "{this} (after {})",
                                prev.map_or("?".into(), |p| p.to_string())
                            ),
                        );
                    }
                }
                self.last = Some(this);
            }
            Sequence::Time(t) => {
                if let Some(last) = self.last {
                    if t <= last && self.first_after_snapshot {
                        return Ok(Outcome::Stale);
                    }
                    if t < last {
                        return gap(format!("a time at or after {last}"), t.to_string());
                    }
                }
                self.last = Some(t);
                self.first_after_snapshot = false;
            }
        }
        Ok(Outcome::Applied)
    }

    /// Applies the changes, cuts to depth and checks the checksum.
    fn apply(&mut self, changes: &[Change], checksum: Option<Checksum>) -> Result<(), Cause> {
        for c in changes {
            self.book.apply(c.side, c.price, c.size)?;
        }
        self.dropped.clear();
        if let Some(depth) = self.depth {
            self.book.truncate_into(depth, &mut self.dropped);
        }
        if let Some(sum) = checksum {
            let (sent, ours) = match sum {
                Checksum::Okx(v) => (i64::from(v), i64::from(checksum::okx(&self.book))),
                Checksum::Bitfinex(v) => (i64::from(v), i64::from(checksum::bitfinex(&self.book))),
                Checksum::Kraken(v) => (i64::from(v), i64::from(checksum::kraken(&self.book))),
                Checksum::KrakenPrecise {
                    value,
                    price_decimals,
                    qty_decimals,
                } => (
                    i64::from(value),
                    i64::from(
                        checksum::kraken_with_precision(&self.book, price_decimals, qty_decimals)
                            .ok_or(Cause::Precision)?,
                    ),
                ),
            };
            if sent != ours {
                return Err(Cause::Checksum { sent, ours });
            }
            self.checksums += 1;
        }
        self.applied += 1;
        Ok(())
    }
}

/// The sequence position a snapshot sets.
fn position(sequence: Sequence) -> Option<i64> {
    match sequence {
        Sequence::Range { last, .. } => Some(as_i64(last)),
        Sequence::Chain { this, .. } => Some(this),
        Sequence::Time(t) => Some(t),
        Sequence::None | Sequence::Connection { .. } => None,
    }
}

fn as_i64(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(side: BookSide, price: &str, size: &str) -> Change {
        Change {
            side,
            price: Fixed::parse(price.as_bytes()).expect("price"),
            size: Fixed::parse(size.as_bytes()).expect("size"),
        }
    }

    fn msg(kind: MessageKind, sequence: Sequence, changes: Vec<Change>) -> BookMessage {
        BookMessage {
            kind,
            sequence,
            changes,
            checksum: None,
            time: None,
        }
    }

    fn range(first: u64, last: u64, price: &str) -> BookMessage {
        msg(
            MessageKind::Delta,
            Sequence::Range { first, last },
            vec![change(BookSide::Bid, price, "1")],
        )
    }

    fn snapshot(sequence: Sequence) -> BookMessage {
        msg(
            MessageKind::Snapshot,
            sequence,
            vec![
                change(BookSide::Bid, "10", "1"),
                change(BookSide::Ask, "11", "1"),
            ],
        )
    }

    #[test]
    fn range_diffs_wait_for_the_snapshot_then_follow_on() {
        let mut s = BookSync::new(None);
        // Diffs before the snapshot are held; those it covers are dropped.
        assert_eq!(s.on_message(&range(95, 99, "1")), Ok(Outcome::Held));
        assert_eq!(s.on_message(&range(100, 103, "2")), Ok(Outcome::Held));
        assert_eq!(
            s.on_message(&snapshot(Sequence::Range {
                first: 101,
                last: 101
            })),
            Ok(Outcome::Applied)
        );
        assert_eq!(
            s.book().len(BookSide::Bid),
            2,
            "10, and 2 from the held 100..=103"
        );

        assert_eq!(s.on_message(&range(104, 104, "3")), Ok(Outcome::Applied));
        assert_eq!(s.on_message(&range(90, 104, "4")), Ok(Outcome::Stale));
        // A skipped diff: the book is invalid until a snapshot.
        let err = s.on_message(&range(106, 107, "5")).expect_err("gap");
        assert!(matches!(err.cause, Cause::Gap { .. }), "{err}");
        assert_eq!(s.state(), State::Waiting);
        assert!(s.book().is_empty());
        assert_eq!(s.on_message(&range(108, 108, "6")), Ok(Outcome::Held));
        assert_eq!(
            s.on_message(&snapshot(Sequence::Range {
                first: 110,
                last: 110
            })),
            Ok(Outcome::Applied),
            "the held diff is older than the new snapshot"
        );
        // The first diff after a snapshot must reach the id after it.
        let err = s.on_message(&range(112, 113, "7")).expect_err("too new");
        assert!(err.to_string().contains("spanning 111"), "{err}");
    }

    #[test]
    fn chains_follow_the_number_before() {
        let mut s = BookSync::new(None);
        let delta = |prev, this| {
            msg(
                MessageKind::Delta,
                Sequence::Chain { prev, this },
                vec![change(BookSide::Ask, "12", "1")],
            )
        };
        assert_eq!(s.on_message(&delta(None, 5)), Ok(Outcome::Ignored));
        s.on_message(&snapshot(Sequence::Chain {
            prev: None,
            this: 5,
        }))
        .expect("snapshot");
        assert_eq!(s.on_message(&delta(None, 6)), Ok(Outcome::Applied));
        assert_eq!(s.on_message(&delta(Some(6), 9)), Ok(Outcome::Applied));
        assert!(s.on_message(&delta(None, 11)).is_err(), "10 is missing");
        assert_eq!(s.on_message(&delta(None, 12)), Ok(Outcome::Ignored));
    }

    #[test]
    fn times_drop_what_the_snapshot_covers_and_must_not_go_back() {
        let mut s = BookSync::new(None);
        s.on_message(&snapshot(Sequence::Time(1_000)))
            .expect("snapshot");
        let at = |t| msg(MessageKind::Delta, Sequence::Time(t), vec![]);
        assert_eq!(s.on_message(&at(999)), Ok(Outcome::Stale));
        assert_eq!(s.on_message(&at(1_000)), Ok(Outcome::Stale));
        assert_eq!(s.on_message(&at(1_001)), Ok(Outcome::Applied));
        assert_eq!(s.on_message(&at(1_001)), Ok(Outcome::Applied));
        assert!(s.on_message(&at(1_000)).is_err());
    }

    #[test]
    fn a_snapshot_older_than_every_diff_held_is_stale() {
        let at = |t| msg(MessageKind::Delta, Sequence::Time(t), vec![]);
        let mut s = BookSync::new(None);
        assert_eq!(s.on_message(&at(1_001)), Ok(Outcome::Held));
        assert_eq!(s.on_message(&at(1_002)), Ok(Outcome::Held));
        let err = s
            .on_message(&snapshot(Sequence::Time(1_000)))
            .expect_err("older than the stream");
        assert_eq!(
            err.cause,
            Cause::SnapshotStale {
                snapshot: 1_000,
                first: 1_001
            }
        );
        assert_eq!(err.cause.kind(), "snapshot_stale");
        assert_eq!(s.state(), State::Waiting);
        // A snapshot from after the stream began is taken, with the diffs
        // held after it.
        assert_eq!(s.on_message(&at(1_003)), Ok(Outcome::Held));
        assert_eq!(s.on_message(&at(1_005)), Ok(Outcome::Held));
        assert_eq!(
            s.on_message(&snapshot(Sequence::Time(1_004))),
            Ok(Outcome::Applied)
        );
        assert_eq!(s.state(), State::Valid);
        assert_eq!(s.applied(), 2, "the snapshot and the diff after it");
    }

    #[test]
    fn a_wrong_checksum_invalidates_the_book() {
        let mut s = BookSync::new(Some(25));
        let mut snap = snapshot(Sequence::None);
        snap.checksum = Some(Checksum::Okx(0));
        let mut book = Book::new();
        for c in &snap.changes {
            book.apply(c.side, c.price, c.size).expect("level");
        }
        let err = s.on_message(&snap.clone()).expect_err("wrong checksum");
        assert_eq!(
            err.cause,
            Cause::Checksum {
                sent: 0,
                ours: i64::from(checksum::okx(&book))
            }
        );
        snap.checksum = Some(Checksum::Okx(checksum::okx(&book)));
        assert_eq!(s.on_message(&snap), Ok(Outcome::Applied));
        assert_eq!(s.checksums_checked(), 1);
        let err = s
            .on_message(&msg(
                MessageKind::Delta,
                Sequence::Connection { skipped: true },
                vec![],
            ))
            .expect_err("a skipped number");
        assert!(matches!(err.cause, Cause::Gap { .. }));
    }
}
