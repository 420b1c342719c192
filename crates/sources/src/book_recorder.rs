//! The book recorder: every live connection's [`BookEvent`]s in, each
//! book kept live ([`LiveBooks`], which the API reads) and written to the
//! archive's book files ([`ck_archive::books`]) in parts.
//!
//! - **Parts.** A book's files are written a part at a time
//!   (`part-<from>-<to>.parquet` in `book_snapshots` and `book_deltas`,
//!   in the folder of the day the part began). A part begins with a
//!   snapshot and ends at the first snapshot at least `part_ns` after its
//!   start or in another UTC day (the next part begins with that
//!   snapshot), at an incident, when the connection ends, and when the
//!   recorder stops. While written it is `part-<from>.parquet.partial`: a
//!   crash loses at most the open part of the book files, and the tape
//!   still holds every message.
//! - **Shapes.** A part's decimal columns are shaped by its first
//!   snapshot. A later row they cannot hold (a finer price, a wider size)
//!   ends the part; the next begins with the book as it stands, written
//!   from the recorder's own copy.
//! - **Book gaps.** From an incident or a lost connection until the next
//!   snapshot the book is unknown: no part covers that time, and the span
//!   is recorded as a gap of the instrument (state `unfillable`, reason
//!   `order book: …`), so `candlekeep gaps` lists it. Gap repair never
//!   takes it: only open gaps are repaired.
//! - **Failures.** A part that cannot be written (a full disk) is counted
//!   in `candlekeep_book_write_failures_total`, logged, and its book is
//!   unknown from then: a book gap, as after an incident.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ck_archive::book_stats::{BookStatsRow, book_stats_day_dir, write_book_stats};
use ck_archive::books::{
    BookDeltaWriter, BookFile, BookRow, BookShape, BookSnapshotWriter, BookTopWriter, book_day_dir,
    open_part_name, part_name,
};
use ck_archive::layout::day_of;
use ck_bus::books::{LiveBooks, RecentRow};
use ck_bus::{Closed, Event, Receiver, Sender, metrics};
use ck_model::{Exchange, Gap, GapState, Instrument, Ts};

use crate::live::books::{BookEvent, BookUpdate};

/// Where and how books are recorded.
#[derive(Debug, Clone)]
pub struct RecorderSettings {
    /// The archive's folder.
    pub root: PathBuf,
    /// A part ends at the first snapshot this long (ns) after its start.
    pub part_ns: i64,
    /// The best `top_depth` levels a side are recorded apart
    /// ([`BookFile::Top`]) every `top_every_ns` of receive time (at the
    /// first message at or after it); 0: never.
    pub top_every_ns: i64,
    /// Levels a side of those.
    pub top_depth: usize,
    /// The book's statistics are sampled at every multiple of this (ns)
    /// since the epoch, into `book_stats` files; 0: never.
    pub stats_every_ns: i64,
}

/// What the recorder did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Delta messages taken (one venue message each).
    pub deltas: u64,
    /// Snapshots taken (the venue's, and those recorded at the cadence).
    pub snapshots: u64,
    /// Rows written to book files.
    pub rows: u64,
    /// Parts finished.
    pub parts: u64,
    /// Book gaps recorded.
    pub gaps: u64,
    /// Parts that could not be written.
    pub write_failures: u64,
}

/// Why the recorder stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// The pipeline downstream stopped.
    #[error(transparent)]
    Closed(#[from] Closed),
    /// The blocking task failed.
    #[error("book recorder task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Runs until `input` closes: records every book event, sends book gaps
/// to `events`.
pub async fn run_book_recorder(
    mut input: Receiver<BookEvent>,
    events: Sender<Event>,
    live: LiveBooks,
    settings: RecorderSettings,
) -> Result<RecorderStats, RecorderError> {
    let mut recorder = Recorder::new(settings, live);
    let mut batch = Vec::with_capacity(256);
    loop {
        if input.recv_many(&mut batch, 256).await == 0 {
            break;
        }
        let taken = std::mem::take(&mut batch);
        let (back, gaps, mut taken) = tokio::task::spawn_blocking(move || {
            let mut gaps = Vec::new();
            for e in &taken {
                recorder.handle(e, &mut gaps);
            }
            (recorder, gaps, taken)
        })
        .await?;
        recorder = back;
        for g in gaps {
            events.send(Event::Gap(g)).await?;
        }
        taken.clear();
        batch = taken;
    }
    let (recorder, gaps) = tokio::task::spawn_blocking(move || {
        let mut gaps = Vec::new();
        recorder.finish(&mut gaps);
        (recorder, gaps)
    })
    .await?;
    for g in gaps {
        events.send(Event::Gap(g)).await?;
    }
    Ok(recorder.stats)
}

/// The part being written.
struct Part {
    from: Ts,
    last: Ts,
    snapshots: BookSnapshotWriter,
    deltas: BookDeltaWriter,
    top: BookTopWriter,
    /// When the best levels were last recorded.
    last_top: Option<Ts>,
    /// The open files' paths (snapshots, deltas, top).
    paths: [PathBuf; 3],
    /// The book's statistics at each sample so far, written when the
    /// part ends, after its book files (`write_series`).
    series: Vec<BookStatsRow>,
    /// The next instant to sample (ns), a multiple of the cadence;
    /// `i64::MAX`: never.
    next_sample: i64,
}

/// One book as recorded.
#[derive(Default)]
struct Recorded {
    part: Option<Part>,
    /// Since when, and why, the book is unknown (after having been known).
    unknown: Option<Unknown>,
}

/// A book unknown since `from`.
struct Unknown {
    from: Ts,
    why: String,
    /// Found wrong (an incident, a failure), not only left by its
    /// connection: still a gap when the recorder stops.
    wrong: bool,
}

/// Every book's recording (module docs).
pub struct Recorder {
    settings: RecorderSettings,
    live: LiveBooks,
    books: HashMap<(Exchange, Instrument), Recorded>,
    stats: RecorderStats,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("books", &self.books.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder writing under `settings.root`, keeping `live` current.
    #[must_use]
    pub fn new(settings: RecorderSettings, live: LiveBooks) -> Recorder {
        Recorder {
            settings,
            live,
            books: HashMap::new(),
            stats: RecorderStats::default(),
        }
    }

    /// What it did so far.
    #[must_use]
    pub fn stats(&self) -> RecorderStats {
        self.stats
    }

    /// Takes one event; book gaps it closes go to `gaps`.
    pub fn handle(&mut self, event: &BookEvent, gaps: &mut Vec<Gap>) {
        let key = (event.exchange, event.instrument.clone());
        let mut recorded = self.books.remove(&key).unwrap_or_default();
        match &event.update {
            BookUpdate::Rows {
                file: BookFile::Snapshots,
                rows,
            } => {
                self.stats.snapshots += 1;
                self.snapshot(&key, &mut recorded, rows, gaps);
            }
            BookUpdate::Rows {
                file: BookFile::Deltas,
                rows,
            } => {
                self.stats.deltas += 1;
                self.delta(&key, &mut recorded, rows);
            }
            // Connections send no top: the recorder makes it.
            BookUpdate::Rows {
                file: BookFile::Top,
                ..
            } => {}
            BookUpdate::Incident { at, kind, cause } => {
                self.unknown(&key, &mut recorded, *at, format!("{kind}: {cause}"), true);
            }
            BookUpdate::Ended { at } => {
                self.unknown(
                    &key,
                    &mut recorded,
                    *at,
                    "the connection ended".into(),
                    false,
                );
            }
        }
        self.live.notify(key.0, &key.1);
        self.books.insert(key, recorded);
    }

    /// Ends every part; a book still unknown is a gap until now.
    pub fn finish(&mut self, gaps: &mut Vec<Gap>) {
        let books = std::mem::take(&mut self.books);
        for (key, mut recorded) in books {
            let end = recorded.part.as_ref().map(|p| p.last);
            if let Some(end) = end {
                self.sample(&key, &mut recorded, Ts(end.0.saturating_add(1)));
            }
            if let (Some(part), Some(end)) = (recorded.part.take(), end) {
                self.end_part(&key, part, end);
            }
            // A book whose connection ended with the stop was not wrong.
            if let Some(u) = recorded.unknown.take().filter(|u| u.wrong) {
                let now = Ts::now().max(u.from);
                gaps.push(self.gap(
                    &key,
                    u.from,
                    now,
                    &format!("{}; not resynchronised before the stop", u.why),
                ));
            }
        }
    }

    fn snapshot(
        &mut self,
        key: &(Exchange, Instrument),
        recorded: &mut Recorded,
        rows: &[BookRow],
        gaps: &mut Vec<Gap>,
    ) {
        let Some(first) = rows
            .first()
            .map(|r| (r.ts_received, r.ts_exchange, r.message))
        else {
            // An empty book: nothing to write, but it is known now.
            self.empty_snapshot(key, recorded, gaps);
            return;
        };
        let (at, _, message) = first;
        self.sample(key, recorded, at);
        if let Err(e) = self.live.update(key.0, &key.1, |b| {
            b.book.load(
                rows.iter()
                    .map(BookRow::level)
                    .collect::<Result<Vec<_>, _>>()?,
            )?;
            b.valid = true;
            b.time = Some(at);
            b.message = message;
            Ok::<(), ck_book::BookError>(())
        }) {
            self.fail(
                key,
                recorded,
                at,
                &format!("a snapshot the book cannot hold: {e}"),
            );
            return;
        }
        if let Some(u) = recorded.unknown.take() {
            gaps.push(self.gap(key, u.from, at, &u.why));
        }
        let rotate = recorded.part.as_ref().is_none_or(|p| {
            at.0.saturating_sub(p.from.0) >= self.settings.part_ns || day_of(at) != day_of(p.from)
        });
        if rotate {
            if let Some(part) = recorded.part.take() {
                self.end_part(key, part, at);
            }
            self.begin_part(key, recorded, at, rows);
        } else if let Some(part) = recorded.part.as_mut() {
            match part.snapshots.write(rows) {
                Ok(()) => {
                    part.last = part.last.max(at);
                    self.count_rows(key, BookFile::Snapshots, rows.len());
                    self.live.update(key.0, &key.1, |b| {
                        b.recent.extend(recent_rows(rows, true));
                    });
                    self.top(key, recorded, &rows[0]);
                }
                Err(ck_archive::Error::Unrepresentable { .. }) => {
                    // Finer than the part's columns: a new part, from it.
                    if let Some(part) = recorded.part.take() {
                        self.end_part(key, part, at);
                    }
                    self.begin_part(key, recorded, at, rows);
                }
                Err(e) => self.fail(key, recorded, at, &e.to_string()),
            }
        }
    }

    fn empty_snapshot(
        &mut self,
        key: &(Exchange, Instrument),
        recorded: &mut Recorded,
        gaps: &mut Vec<Gap>,
    ) {
        // An empty snapshot has no row to say when it came: the book's
        // last time stands for it.
        let at = self
            .live
            .read(key.0, &key.1, |b| b.time)
            .flatten()
            .unwrap_or_else(Ts::now);
        self.sample(key, recorded, at);
        self.live.update(key.0, &key.1, |b| {
            b.book.clear();
            b.recent.clear();
            b.series.clear();
            b.valid = true;
            b.time = Some(at);
        });
        // The part so far holds the book before it; the next delta begins
        // a new one from the (empty) book.
        if let Some(part) = recorded.part.take() {
            self.end_part(key, part, Ts(at.0.saturating_sub(1)));
        }
        if let Some(u) = recorded.unknown.take() {
            gaps.push(self.gap(key, u.from, at, &u.why));
        }
    }

    fn delta(&mut self, key: &(Exchange, Instrument), recorded: &mut Recorded, rows: &[BookRow]) {
        let Some(first) = rows.first() else {
            return;
        };
        let (at, message) = (first.ts_received, first.message);
        self.sample(key, recorded, at);
        let applied = self.live.update(key.0, &key.1, |b| {
            for r in rows {
                let (side, price, size) = r.level()?;
                b.book.apply(side, price, size)?;
            }
            b.time = Some(at);
            b.message = message;
            Ok::<(), ck_book::BookError>(())
        });
        if let Err(e) = applied {
            self.fail(
                key,
                recorded,
                at,
                &format!("a delta the book cannot hold: {e}"),
            );
            return;
        }
        let Some(part) = recorded.part.as_mut() else {
            // No part after an empty snapshot (nothing to shape it by): one
            // begins here, with the book as it stands. After a failure the
            // book is unknown, and waits for its next snapshot.
            if self.live.read(key.0, &key.1, |b| b.valid).unwrap_or(false) {
                self.restart_part(key, recorded, at, message, rows);
            }
            return;
        };
        match part.deltas.write(rows) {
            Ok(()) => {
                part.last = part.last.max(at);
                self.count_rows(key, BookFile::Deltas, rows.len());
                self.live.update(key.0, &key.1, |b| {
                    b.recent.extend(recent_rows(rows, false));
                });
                self.top(key, recorded, first);
            }
            Err(ck_archive::Error::Unrepresentable { .. }) => {
                // A new part, shaped for it, from the book after it.
                let Some(part) = recorded.part.take() else {
                    return;
                };
                self.end_part(key, part, at);
                self.restart_part(key, recorded, at, message, rows);
            }
            Err(e) => self.fail(key, recorded, at, &e.to_string()),
        }
    }

    /// A new part at `at` from the live book as it stands, the delta
    /// `rows` of message `message` applied already: its snapshot, numbered
    /// with the delta, holds them.
    fn restart_part(
        &mut self,
        key: &(Exchange, Instrument),
        recorded: &mut Recorded,
        at: Ts,
        message: i64,
        rows: &[BookRow],
    ) {
        let snapshot = self
            .live
            .read(key.0, &key.1, |b| {
                crate::book_keeper::book_rows(
                    &b.book,
                    usize::MAX,
                    message,
                    at,
                    rows[0].ts_exchange.map(|t| t.0),
                )
            })
            .unwrap_or_default();
        self.begin_part(key, recorded, at, &snapshot);
    }

    /// Opens a part at `at` beginning with the snapshot `rows`.
    fn begin_part(
        &mut self,
        key: &(Exchange, Instrument),
        recorded: &mut Recorded,
        at: Ts,
        rows: &[BookRow],
    ) {
        let mut shape = BookShape::new(key.0, &key.1);
        for r in rows {
            shape.observe(r);
        }
        let opened = (|| {
            let day = day_of(at);
            let name = open_part_name(at);
            let mut paths = [BookFile::Snapshots, BookFile::Deltas, BookFile::Top].map(|file| {
                book_day_dir(&self.settings.root, file, key.0, &key.1, day).join(&name)
            });
            for p in &mut paths {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir).map_err(|source| ck_archive::Error::Io {
                        path: dir.to_owned(),
                        source,
                    })?;
                }
            }
            let mut snapshots = BookSnapshotWriter::create(&paths[0], shape.clone())?;
            let deltas = BookDeltaWriter::create(&paths[1], shape.clone())?;
            let top = BookTopWriter::create(&paths[2], shape)?;
            snapshots.write(rows)?;
            Ok::<Part, ck_archive::Error>(Part {
                from: at,
                last: at,
                snapshots,
                deltas,
                top,
                last_top: None,
                paths,
                series: Vec::new(),
                next_sample: first_sample(at, self.settings.stats_every_ns),
            })
        })();
        match opened {
            Ok(part) => {
                self.count_rows(key, BookFile::Snapshots, rows.len());
                recorded.part = Some(part);
                self.live.update(key.0, &key.1, |b| {
                    b.recent = recent_rows(rows, true);
                    b.series.clear();
                });
                if let Some(first) = rows.first() {
                    self.top(key, recorded, first);
                }
            }
            Err(e) => self.fail(key, recorded, at, &e.to_string()),
        }
    }

    /// Finishes `part`, the book known until `to`, under its final name.
    fn end_part(&mut self, key: &(Exchange, Instrument), part: Part, to: Ts) {
        let to = to.max(part.last);
        let name = part_name(part.from, to);
        let finished = (|| {
            part.snapshots.finish()?;
            part.deltas.finish()?;
            part.top.finish()?;
            for p in &part.paths {
                let done = p.with_file_name(&name);
                std::fs::rename(p, &done).map_err(|source| ck_archive::Error::Io {
                    path: p.clone(),
                    source,
                })?;
            }
            if let Some(dir) = part.paths[1].parent() {
                sync_dir(dir);
            }
            Ok::<(), ck_archive::Error>(())
        })();
        match finished {
            Ok(()) => {
                self.stats.parts += 1;
                metrics::counter(&format!(
                    "candlekeep_book_parts_total{{exchange=\"{}\"}}",
                    key.0
                ))
                .inc();
                if !part.series.is_empty() {
                    self.write_series(key, part.from, &name, &part.series);
                }
            }
            Err(e) => {
                self.stats.write_failures += 1;
                metrics::counter(&format!(
                    "candlekeep_book_write_failures_total{{exchange=\"{}\"}}",
                    key.0
                ))
                .inc();
                tracing::error!(exchange = %key.0, instrument = %key.1, error = %e, "a part of the book files could not be finished; the tape keeps its messages");
                for p in &part.paths {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }

    /// Writes a finished part's stats samples as `book_stats/…/<name>`. A
    /// failure is counted and logged; the part's book files stay whole.
    fn write_series(
        &mut self,
        key: &(Exchange, Instrument),
        from: Ts,
        name: &str,
        series: &[BookStatsRow],
    ) {
        let dir = book_stats_day_dir(&self.settings.root, key.0, &key.1, day_of(from));
        let open = dir.join(open_part_name(from));
        let written = (|| {
            std::fs::create_dir_all(&dir).map_err(|source| ck_archive::Error::Io {
                path: dir.clone(),
                source,
            })?;
            write_book_stats(&open, (key.0, &key.1), series)?;
            std::fs::rename(&open, dir.join(name)).map_err(|source| ck_archive::Error::Io {
                path: open.clone(),
                source,
            })?;
            sync_dir(&dir);
            Ok::<(), ck_archive::Error>(())
        })();
        if let Err(e) = written {
            self.stats.write_failures += 1;
            metrics::counter(&format!(
                "candlekeep_book_write_failures_total{{exchange=\"{}\"}}",
                key.0
            ))
            .inc();
            tracing::error!(exchange = %key.0, instrument = %key.1, error = %e, "a part's book stats could not be written; its book files are whole");
            let _ = std::fs::remove_file(&open);
        }
    }

    /// Records the book's best levels if they are due (`row`: the first row
    /// of the message just recorded, for its times and number).
    fn top(&mut self, key: &(Exchange, Instrument), recorded: &mut Recorded, row: &BookRow) {
        let every = self.settings.top_every_ns;
        let Some(part) = recorded.part.as_mut().filter(|_| every > 0) else {
            return;
        };
        let at = row.ts_received;
        if part
            .last_top
            .is_some_and(|last| at.0.saturating_sub(last.0) < every)
        {
            return;
        }
        let depth = self.settings.top_depth.max(1);
        let rows = self
            .live
            .read(key.0, &key.1, |b| {
                crate::book_keeper::book_rows(
                    &b.book,
                    depth,
                    row.message,
                    at,
                    row.ts_exchange.map(|t| t.0),
                )
            })
            .unwrap_or_default();
        match part.top.write(&rows) {
            Ok(()) => {
                part.last_top = Some(at);
                self.count_rows(key, BookFile::Top, rows.len());
            }
            Err(e) => self.fail(key, recorded, at, &e.to_string()),
        }
    }

    /// Samples the book's statistics at every instant of the cadence in
    /// the open part before `until` not sampled yet: the book as it stands
    /// holds every message received before `until`. An instant at which a
    /// side is empty has no row.
    fn sample(&mut self, key: &(Exchange, Instrument), recorded: &mut Recorded, until: Ts) {
        let Some(part) = recorded.part.as_mut() else {
            return;
        };
        if part.next_sample >= until.0 {
            return;
        }
        let stats = self
            .live
            .read(key.0, &key.1, |b| {
                b.valid
                    .then(|| ck_book::stats::BookStats::of(&b.book))
                    .flatten()
            })
            .flatten();
        let first = part.series.len();
        let every = self.settings.stats_every_ns;
        while part.next_sample < until.0 {
            if let Some(s) = &stats {
                part.series.push(BookStatsRow {
                    time: Ts(part.next_sample),
                    stats: s.clone(),
                });
            }
            part.next_sample = part.next_sample.saturating_add(every);
        }
        let added = &part.series[first..];
        if !added.is_empty() {
            self.live.update(key.0, &key.1, |b| {
                b.series
                    .extend(added.iter().map(|r| (r.time, r.stats.clone())));
            });
        }
    }

    /// The book is unknown from `at` on: a gap from then until its next
    /// snapshot, if it was known or is `wrong`.
    fn unknown(
        &mut self,
        key: &(Exchange, Instrument),
        recorded: &mut Recorded,
        at: Ts,
        why: String,
        wrong: bool,
    ) {
        self.sample(key, recorded, at);
        let was_known = self.live.update(key.0, &key.1, |b| {
            b.book.clear();
            b.recent = Vec::new();
            b.series = Vec::new();
            b.time = Some(b.time.map_or(at, |t| t.max(at)));
            std::mem::replace(&mut b.valid, false)
        });
        // Known until just before the message that found it wrong (or the
        // end of its connection).
        if let Some(part) = recorded.part.take() {
            self.end_part(key, part, Ts(at.0.saturating_sub(1)));
        }
        match &mut recorded.unknown {
            Some(u) => u.wrong |= wrong,
            None if was_known || wrong => {
                recorded.unknown = Some(Unknown {
                    from: at,
                    why,
                    wrong,
                });
            }
            None => {}
        }
    }

    /// A part could not be written: the book is unknown from `at`.
    fn fail(&mut self, key: &(Exchange, Instrument), recorded: &mut Recorded, at: Ts, why: &str) {
        self.stats.write_failures += 1;
        metrics::counter(&format!(
            "candlekeep_book_write_failures_total{{exchange=\"{}\"}}",
            key.0
        ))
        .inc();
        tracing::error!(exchange = %key.0, instrument = %key.1, error = %why, "book not recorded; unknown until its next snapshot");
        self.unknown(key, recorded, at, format!("not recorded: {why}"), true);
    }

    fn count_rows(&mut self, key: &(Exchange, Instrument), file: BookFile, n: usize) {
        self.stats.rows += n as u64;
        metrics::counter(&format!(
            "candlekeep_book_rows_total{{exchange=\"{}\",kind=\"{}\"}}",
            key.0,
            file.kind()
        ))
        .inc_by(n as u64);
    }

    fn gap(&mut self, key: &(Exchange, Instrument), from: Ts, to: Ts, why: &str) -> Gap {
        self.stats.gaps += 1;
        metrics::counter(&format!(
            "candlekeep_book_gaps_total{{exchange=\"{}\"}}",
            key.0
        ))
        .inc();
        Gap {
            exchange: key.0,
            instrument: key.1.clone(),
            from_ts: from,
            to_ts: to,
            first_missing_id: None,
            last_missing_id: None,
            state: GapState::Unfillable,
            reason: format!("{BOOK_GAP}: {why}; the book is unknown until its snapshot at {to}"),
            detected_at: to,
            kind: ck_model::GapKind::Book,
        }
    }
}

/// Rows as the live book's rows of the part being written (rows the
/// book could not hold were refused before they got here).
fn recent_rows(rows: &[BookRow], snapshot: bool) -> Vec<RecentRow> {
    rows.iter()
        .filter_map(|r| {
            let (side, price, size) = r.level().ok()?;
            Some(RecentRow {
                at: r.ts_received,
                snapshot,
                message: r.message,
                side,
                price,
                size,
            })
        })
        .collect()
}

/// The first multiple of `every` at or after `at`; `i64::MAX` for none.
fn first_sample(at: Ts, every: i64) -> i64 {
    if every <= 0 {
        return i64::MAX;
    }
    let floor = at.0.div_euclid(every).saturating_mul(every);
    if floor < at.0 {
        floor.saturating_add(every)
    } else {
        floor
    }
}

/// How a book gap's reason begins.
pub const BOOK_GAP: &str = "order book";

/// Makes a rename in `dir` durable (best effort: not every platform can).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests;
