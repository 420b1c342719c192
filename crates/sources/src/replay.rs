//! Replay: recordings back through the same parsers and pipeline as live capture.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ck_bus::{Closed, Event, IngestError, Sender};
use ck_model::Ts;

use crate::live::books::BookEvent;
use crate::normalize::{NormalizeStats, Normalizer};
use crate::recordings::{OpenError, Recording};
use crate::replay_books::{ReplayBookStats, ReplayBooks};

/// How many bad records a replay warns of one by one.
const WARNINGS: u64 = 20;

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// `None`: as fast as possible. `Some(x)`: x times the recorded pace.
    pub speed: Option<f64>,
    /// The venue of files that do not say it (a text recording renamed);
    /// `None` reads it from each file.
    pub exchange: Option<ck_model::Exchange>,
    /// Rebuild the recordings' order books too ([`crate::replay_books`]).
    pub books: Option<ReplayBookOptions>,
}

/// How a replay rebuilds order books.
#[derive(Debug, Clone, Default)]
pub struct ReplayBookOptions {
    /// A whole-book snapshot is recorded every this long (ns) of receive
    /// time between the recording's own.
    pub snapshot_every_ns: i64,
    /// The book recorder's queue (the pipeline sets it).
    pub sink: Option<Sender<BookEvent>>,
}

/// What a replay read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Files read.
    pub files: u64,
    /// Raw messages read.
    pub records: u64,
    /// Lines that could not be read.
    pub bad_records: u64,
    /// What the parsers made of them.
    pub normalized: NormalizeStats,
    /// What rebuilding the order books did, when asked.
    pub books: Option<ReplayBookStats>,
}

/// Why a replay stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A file could not be opened or recognized.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The pipeline stopped taking events.
    #[error("the pipeline stopped before the replay finished")]
    Closed(#[from] Closed),
}

/// Replays `files` in order onto `tx`, from a blocking thread. One parser per
/// exchange lives across all files, so an instrument list read from one file
/// serves the next.
///
/// `stop` is polled between records; when it returns true the replay ends early
/// (a clean shutdown), keeping what was sent.
pub fn replay_blocking(
    files: &[PathBuf],
    options: ReplayOptions,
    tx: &Sender<Event>,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<ReplayStats, ReplayError> {
    let mut normalizer = Normalizer::new();
    let mut stats = ReplayStats::default();
    let mut out = Vec::with_capacity(64);
    let mut pace: Option<(Ts, Instant)> = None;
    let mut books = options.books.as_ref().and_then(|b| {
        b.sink
            .clone()
            .map(|sink| ReplayBooks::new(sink, b.snapshot_every_ns))
    });
    for path in files {
        let recording = Recording::open_as(path, options.exchange)?;
        stats.files += 1;
        if let Some(books) = books.as_mut() {
            // A first read: the instruments the book symbols stand for.
            let exchange = recording.exchange();
            let messages = Recording::open_as(path, options.exchange)?.filter_map(Result::ok);
            books.learn(exchange, &crate::normalize::traded_instruments(messages));
        }
        tracing::info!(file = %path.display(), exchange = %recording.exchange(), format = ?recording.format(), "replaying");
        for (i, record) in recording.enumerate() {
            if stop() {
                tracing::info!(file = %path.display(), "replay stopped early");
                stats.normalized = normalizer.stats();
                stats.books = books.as_ref().map(ReplayBooks::stats);
                return Ok(stats);
            }
            match record {
                Ok(msg) => {
                    stats.records += 1;
                    if let Some(speed) = options.speed.filter(|s| *s > 0.0) {
                        wait_for(&mut pace, msg.ts_received, speed, stop);
                    }
                    let origin = || format!("{}#{}", path.display(), i + 1);
                    normalizer.handle(&msg, &origin, &mut out);
                    for e in out.drain(..) {
                        tx.blocking_send(e)?;
                    }
                    if let Some(books) = books.as_mut() {
                        books.take(&msg, &origin, tx)?;
                    }
                }
                Err(e) => {
                    stats.bad_records += 1;
                    ck_bus::metrics::counter("candlekeep_bad_records_total").inc();
                    // The first few each get a warning; the rest are counted
                    // (a corrupted file can have a bad record per line).
                    if stats.bad_records <= WARNINGS {
                        tracing::warn!(file = %path.display(), line = e.line, error = %e.message, "skipped bad record");
                    } else if stats.bad_records == WARNINGS + 1 {
                        tracing::warn!(file = %path.display(), "more bad records: counting them without a warning each");
                    }
                    tx.blocking_send(Event::IngestError(IngestError::new(
                        None,
                        format!("{}:{}", display(path), e.line),
                        e.message,
                        &e.excerpt,
                    )))?;
                }
            }
        }
    }
    stats.normalized = normalizer.stats();
    if let Some(books) = books.as_mut() {
        books.finish()?;
    }
    stats.books = books.as_ref().map(ReplayBooks::stats);
    Ok(stats)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Sleeps so that messages leave at `speed` times their recorded pace, in
/// short slices so that a stop request is seen promptly.
fn wait_for(
    pace: &mut Option<(Ts, Instant)>,
    ts: Ts,
    speed: f64,
    stop: &(dyn Fn() -> bool + Sync),
) {
    let (first, started) = *pace.get_or_insert((ts, Instant::now()));
    let due = Duration::from_secs_f64(((ts.0 - first.0).max(0) as f64 / 1e9) / speed);
    loop {
        let elapsed = started.elapsed();
        if due <= elapsed || stop() {
            return;
        }
        std::thread::sleep((due - elapsed).min(Duration::from_millis(100)));
    }
}
