//! Settled days written straight to the archive while an import runs.
//!
//! Without this, an import of history writes every trade to the store and
//! an archive pass then moves it to a file: twice the work, and the store
//! grows by the whole input before it shrinks. While an import runs
//! ([`crate::Store::begin_direct_archive`] to
//! [`crate::Store::end_direct_archive`]), the rows and candles of a
//! settled day that neither tier held before go straight into that day's
//! file, as long as they come in the order the file is written in:
//!
//! - trades by time with numeric ids rising (the store's key is the id,
//!   and rising ids are unique without a set of them), quotes by time
//!   then receive time; a row equal to the one before it is a duplicate;
//! - rows wait in memory, a row group ([`CHUNK`]) until the first write,
//!   which sets the file's columns, then [`LATER_CHUNK`] at a time, and go
//!   to a `.partial-` file, which becomes the day's file (fsync, rename,
//!   fsync of the folder) when the instrument's rows move on to another
//!   day or the import ends;
//! - candles of 1s to 1d wait in memory, the last version of each, and a
//!   day of them is written after the batch in which its 1d candle closed
//!   (the last of the day to close), when a third day of candles of the
//!   instrument begins (at most [`OPEN_CANDLE_DAYS`] days are held), or
//!   when the import ends; a candle of a day already written takes the
//!   store's path.
//!
//! Everything else takes the store's path, which stays exact. A row out of
//! order, or one that does not fit the columns its day's file began with,
//! ends that file with the rows before it; it and the day's later rows go
//! to the store, where they are checked against the file for duplicates
//! and merged into it by the next archive pass. So do all rows of a day
//! the archive or the store held before, of a day not settled, and trades
//! with string ids.
//!
//! The import holds the archive's lock from start to end, so no pass
//! (of this process or another) sweeps its partial files or writes its
//! days meanwhile. A crash before a day's file is installed loses it from
//! the archive only: nothing of it was in the store, and importing the
//! file again writes it (the installed days' rows are then duplicates).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use ck_archive::layout::{self, Kind};
use ck_model::{Candle, CandleState, Exchange, Instrument, Interval, Quote, Trade, Ts};

use super::TieredStore;
use super::candles::kind_of;
use super::files::{self, ArchiveLock};
use super::held::HeldDay;
use super::rows::{DayRow, Follows};
use super::thread::ArchiveThread;
use crate::{
    ArchiveReport, CandleSource, Error, RowKind, WriteBatch, WriteSummary, archived_interval,
};

/// Rows of a day kept before they are first written: a row group. The
/// first chunk of a day sets its file's columns (the decimal scales).
const CHUNK: usize = ck_archive::ROW_GROUP_ROWS;

/// Rows kept before they are written once the file's columns are set: at
/// most a writer's piece, so that a write that fails wrote none of them
/// (the rows go to the store, and must not be in the file too).
const LATER_CHUNK: usize = ck_archive::PIECE_ROWS;

/// Days of candles held per instrument and source.
const OPEN_CANDLE_DAYS: usize = 2;

/// One kind of one instrument's day.
type DayKey = (Kind, Exchange, Instrument, i64);

/// The state of an import writing straight to the archive.
pub(super) struct Direct {
    /// This process's archive passes wait meanwhile…
    _moving: tokio::sync::OwnedMutexGuard<()>,
    /// …and other processes' too.
    _lock: ArchiveLock,
    /// Where its work runs.
    thread: ArchiveThread,
    trades: Vec<OpenDay<Trade>>,
    quotes: Vec<OpenDay<Quote>>,
    candles: Vec<CandleDays>,
    /// Which days go where, and what was written.
    book: Days,
}

/// Whether an import is writing straight to the archive.
#[derive(Default)]
pub(super) enum DirectState {
    /// No: writes take the store's path.
    #[default]
    Off,
    /// Yes.
    On(Box<Direct>),
    /// It was, and failed (a file could not be written, the worker
    /// stopped): every write fails naming this until the import ends, so
    /// no row is taken that would not reach a file.
    Failed(String),
}

/// The day of one instrument being written.
struct OpenDay<R: DayRow> {
    exchange: Exchange,
    instrument: Instrument,
    day: i64,
    /// The last row written (the last row taken is the last pending
    /// one, if any).
    last: Option<R>,
    /// Rows taken, not yet written.
    pending: Vec<R>,
    file: Option<DayFile<R>>,
}

struct DayFile<R: DayRow> {
    writer: R::Writer,
    shape: R::Shape,
    partial: PathBuf,
    rows: u64,
}

/// One instrument's candles of one source, by day, then interval and
/// open time.
struct CandleDays {
    exchange: Exchange,
    instrument: Instrument,
    source: CandleSource,
    days: BTreeMap<i64, HeldDay>,
}

/// What a write took straight to the archive, and what it gave back to
/// the store: rows taken (and counted) before, now written to the store
/// after all (their day's file could not hold them), are subtracted from
/// the store's count ([`Staged::plus_stored`]), so each row is counted once.
#[derive(Debug, Default)]
pub(super) struct Staged {
    /// The rows taken, as the store would count them.
    pub(super) summary: WriteSummary,
    trades_recounted: u64,
    quotes_recounted: u64,
}

impl Staged {
    /// The whole write's counts: these and the store's for the rest.
    pub(super) fn plus_stored(&self, stored: WriteSummary) -> WriteSummary {
        let taken = self.summary;
        WriteSummary {
            trades_inserted: (stored.trades_inserted + taken.trades_inserted)
                .saturating_sub(self.trades_recounted),
            trades_duplicate: stored.trades_duplicate + taken.trades_duplicate,
            candles_upserted: stored.candles_upserted + taken.candles_upserted,
            quotes_inserted: (stored.quotes_inserted + taken.quotes_inserted)
                .saturating_sub(self.quotes_recounted),
        }
    }
}

/// Rows for the store.
#[derive(Default)]
struct Rest {
    trades: Vec<Trade>,
    quotes: Vec<Quote>,
    candles: Vec<Candle>,
    exchange_candles: Vec<Candle>,
}

impl TieredStore {
    /// Begins writing settled days straight to the archive (module docs):
    /// takes the archive's lock (waiting for a pass that holds it) and
    /// sweeps what a stopped process left half-written.
    pub(super) async fn begin_direct(&self, settled_before: Ts) -> Result<(), Error> {
        let mut direct = self.direct.lock().await;
        if matches!(*direct, DirectState::On(_)) {
            return Ok(());
        }
        let moving = self.moving.clone().lock_owned().await;
        let lock = self.blocking(ArchiveLock::take).await?;
        let swept = self.blocking(files::sweep_partials).await?;
        *direct = DirectState::On(Box::new(Direct {
            _moving: moving,
            _lock: lock,
            thread: ArchiveThread::start()?,
            trades: Vec::new(),
            quotes: Vec::new(),
            candles: Vec::new(),
            book: Days {
                root: self.root.clone(),
                settled_before,
                closed: HashSet::new(),
                clean: HashSet::new(),
                report: ArchiveReport {
                    swept,
                    ..ArchiveReport::default()
                },
            },
        }));
        Ok(())
    }

    /// Installs every day begun, writes what its file could not hold to
    /// the store, releases the lock; what was written.
    pub(super) async fn end_direct(&self) -> Result<ArchiveReport, Error> {
        let mut guard = self.direct.lock().await;
        let mut direct = match std::mem::take(&mut *guard) {
            DirectState::Off => return Ok(ArchiveReport::default()),
            DirectState::Failed(why) => return Err(Error::DirectArchive(why)),
            DirectState::On(direct) => direct,
        };
        let (direct, rest) = direct
            .thread
            .clone()
            .run(move || {
                let mut rest = Rest::default();
                let done = direct.finish_all(&mut rest);
                (direct, done.map(|()| rest))
            })
            .await
            .map_err(Error::DirectArchive)?;
        let rest = rest?;
        let report = direct.book.report;
        // The lock goes before the store's path runs (it never archives).
        drop(direct);
        drop(guard);
        if let Some(batch) = rest.into_batch(None) {
            self.write_through(Arc::new(batch)).await?;
        }
        Ok(report)
    }

    /// Takes what goes straight to the archive out of `batch`: the rest
    /// for the store (`None` when nothing is left for it) and the counts
    /// of what was taken. `batch` as it is when no import is writing.
    pub(super) async fn write_direct(
        &self,
        batch: Arc<WriteBatch>,
    ) -> Result<(Option<Arc<WriteBatch>>, Staged), Error> {
        let mut guard = self.direct.lock().await;
        let mut direct = match std::mem::take(&mut *guard) {
            DirectState::Off => return Ok((Some(batch), Staged::default())),
            DirectState::Failed(why) => {
                *guard = DirectState::Failed(why.clone());
                return Err(Error::DirectArchive(why));
            }
            DirectState::On(direct) => direct,
        };
        // Which days are new here is asked of the store first.
        for (kind, exchange, instrument, day) in direct.unknown_days(&batch) {
            let row_kind = match kind {
                Kind::Trades => RowKind::Trades,
                Kind::Quotes => RowKind::Quotes,
                Kind::Candles => RowKind::Candles(CandleSource::Ours),
                Kind::ExchangeCandles => RowKind::Candles(CandleSource::Exchange),
            };
            let (start, end) = files::day_span(day);
            let oldest = self
                .inner
                .oldest_time(row_kind, exchange, &instrument, start)
                .await;
            let oldest = match oldest {
                Ok(o) => o,
                Err(e) => {
                    // The store failed (the writer retries the batch).
                    *guard = DirectState::On(direct);
                    return Err(e);
                }
            };
            let key = (kind, exchange, instrument, day);
            if oldest.is_some_and(|t| t < end) {
                direct.book.closed.insert(key);
            } else {
                direct.book.clean.insert(key);
            }
        }
        let worked = direct
            .thread
            .clone()
            .run(move || {
                let mut rest = Rest::default();
                let mut staged = Staged::default();
                let done = direct.take(&batch, &mut rest, &mut staged);
                (direct, done.map(|()| (rest, staged, batch)))
            })
            .await;
        let (rest, staged, batch) = match worked {
            Ok((direct, Ok(done))) => {
                *guard = DirectState::On(direct);
                done
            }
            // What was taken before is in no file now: nothing more is.
            Ok((_, Err(e))) => {
                *guard = DirectState::Failed(ck_bus::error_chain(&e));
                return Err(e);
            }
            Err(why) => {
                *guard = DirectState::Failed(why.clone());
                return Err(Error::DirectArchive(why));
            }
        };
        drop(guard);
        Ok((rest.into_batch(Some(&batch)).map(Arc::new), staged))
    }
}

impl Rest {
    /// The batch for the store: these rows with `batch`'s other contents
    /// (listings, errors, gaps, positions); `None` when it is empty.
    fn into_batch(self, batch: Option<&WriteBatch>) -> Option<WriteBatch> {
        let mut out = WriteBatch {
            trades: self.trades,
            quotes: self.quotes,
            candles: self.candles,
            exchange_candles: self.exchange_candles,
            ..WriteBatch::default()
        };
        if let Some(b) = batch {
            out.instruments.clone_from(&b.instruments);
            out.errors.clone_from(&b.errors);
            out.gaps.clone_from(&b.gaps);
            out.progress.clone_from(&b.progress);
        }
        (!out.is_empty()).then_some(out)
    }
}

impl Direct {
    /// The settled days in `batch` not yet known to be new or not.
    fn unknown_days(&self, batch: &WriteBatch) -> Vec<DayKey> {
        let mut out: Vec<DayKey> = Vec::new();
        // Rows come in runs of one instrument and day: each run is
        // looked up once.
        let mut last: Option<DayKey> = None;
        let mut note = |kind: Kind, exchange: Exchange, instrument: &Instrument, at: Ts| {
            let day = layout::day_of(at);
            if last
                .as_ref()
                .is_some_and(|k| k.0 == kind && k.1 == exchange && k.3 == day && k.2 == *instrument)
            {
                return;
            }
            let key = (kind, exchange, instrument.clone(), day);
            if files::day_span(day).1 <= self.book.settled_before
                && !self.book.closed.contains(&key)
                && !self.book.clean.contains(&key)
                && !out.contains(&key)
            {
                out.push(key.clone());
            }
            last = Some(key);
        };
        for t in &batch.trades {
            note(Kind::Trades, t.exchange, &t.instrument, t.ts_exchange);
        }
        for q in &batch.quotes {
            note(Kind::Quotes, q.exchange, &q.instrument, q.ts_exchange);
        }
        for (kind, candles) in [
            (Kind::Candles, &batch.candles),
            (Kind::ExchangeCandles, &batch.exchange_candles),
        ] {
            for c in candles.iter().filter(|c| archived_interval(c.interval)) {
                note(kind, c.exchange, &c.instrument, c.open_time);
            }
        }
        out
    }

    /// Takes `batch`'s rows and candles of settled days into their files,
    /// the rest into `rest`.
    fn take(
        &mut self,
        batch: &WriteBatch,
        rest: &mut Rest,
        staged: &mut Staged,
    ) -> Result<(), Error> {
        let counts = &mut staged.summary;
        self.book.take_rows(
            &mut self.trades,
            &batch.trades,
            |t| (t.exchange, &t.instrument),
            &mut rest.trades,
            (
                &mut counts.trades_inserted,
                &mut counts.trades_duplicate,
                &mut staged.trades_recounted,
            ),
        )?;
        // A quote stored twice is not counted (the store does not either).
        let mut same = 0;
        self.book.take_rows(
            &mut self.quotes,
            &batch.quotes,
            |q| (q.exchange, &q.instrument),
            &mut rest.quotes,
            (
                &mut counts.quotes_inserted,
                &mut same,
                &mut staged.quotes_recounted,
            ),
        )?;
        for (source, candles, out) in [
            (CandleSource::Ours, &batch.candles, &mut rest.candles),
            (
                CandleSource::Exchange,
                &batch.exchange_candles,
                &mut rest.exchange_candles,
            ),
        ] {
            counts.candles_upserted +=
                self.book
                    .take_candles(&mut self.candles, source, candles, out)?;
        }
        Ok(())
    }

    /// Installs every open day (the import ended).
    fn finish_all(&mut self, rest: &mut Rest) -> Result<(), Error> {
        for open in std::mem::take(&mut self.trades) {
            self.book.end_day(open, &mut rest.trades, &mut 0)?;
        }
        for open in std::mem::take(&mut self.quotes) {
            self.book.end_day(open, &mut rest.quotes, &mut 0)?;
        }
        for mut held in std::mem::take(&mut self.candles) {
            while let Some((day, candles)) = held.days.pop_first() {
                let out = match held.source {
                    CandleSource::Ours => &mut rest.candles,
                    CandleSource::Exchange => &mut rest.exchange_candles,
                };
                self.book.write_candle_day(&held, day, candles, out)?;
            }
        }
        Ok(())
    }
}

/// Which days go where, and what was written (apart from the open days,
/// so that both can be borrowed at once).
struct Days {
    root: PathBuf,
    settled_before: Ts,
    /// Days whose rows take the store's path: written already, or held
    /// by a tier before.
    closed: HashSet<DayKey>,
    /// Days found in neither tier.
    clean: HashSet<DayKey>,
    report: ArchiveReport,
}

impl Days {
    /// Whether rows of `day` may go straight to its file: settled, new
    /// to both tiers, not written yet.
    fn open_to(
        &mut self,
        kind: Kind,
        exchange: Exchange,
        instrument: &Instrument,
        day: i64,
    ) -> bool {
        if files::day_span(day).1 > self.settled_before {
            return false;
        }
        let key = (kind, exchange, instrument.clone(), day);
        if self.closed.contains(&key) || !self.clean.contains(&key) {
            return false;
        }
        if layout::day_file(&self.root, kind, exchange, instrument, day).is_file() {
            self.closed.insert(key);
            return false;
        }
        true
    }

    /// Takes `rows` (trades or quotes) into their days' files; the rest
    /// into `out`. Counts: rows taken, duplicates, rows counted before and
    /// given back to the store.
    fn take_rows<R: DayRow>(
        &mut self,
        open: &mut Vec<OpenDay<R>>,
        rows: &[R],
        owner: impl Fn(&R) -> (Exchange, &Instrument),
        out: &mut Vec<R>,
        counts: (&mut u64, &mut u64, &mut u64),
    ) -> Result<(), Error> {
        let (taken, duplicates, recounted) = counts;
        let mut at: Option<usize> = None;
        // The buffer of a day that ended serves the next (a day's buffer
        // grows to a row group: not allocated again every day).
        let mut spare: Vec<Vec<R>> = Vec::new();
        for r in rows {
            let (exchange, instrument) = owner(r);
            let day = layout::day_of(r.time());
            // The instrument's open day (the last row's, most often).
            let found = at
                .filter(|&i| open[i].exchange == exchange && open[i].instrument == *instrument)
                .or_else(|| {
                    open.iter()
                        .position(|o| o.exchange == exchange && o.instrument == *instrument)
                });
            at = found;
            if let Some(i) = found
                && open[i].day != day
            {
                // The instrument moved on to another day: this one ends.
                let ended = open.swap_remove(i);
                at = None;
                spare.push(self.end_day(ended, out, recounted)?);
            }
            let i = match at {
                Some(i) => i,
                None => {
                    if !self.open_to(R::KIND, exchange, instrument, day) {
                        out.push(r.clone());
                        continue;
                    }
                    open.push(OpenDay {
                        exchange,
                        instrument: instrument.clone(),
                        day,
                        last: None,
                        pending: spare.pop().unwrap_or_default(),
                        file: None,
                    });
                    open.len() - 1
                }
            };
            at = Some(i);
            let o = &mut open[i];
            match r.follows(o.pending.last().or(o.last.as_ref())) {
                Follows::After => {
                    o.pending.push(r.clone());
                    *taken += 1;
                    // A whole chunk learns the file's columns; once they are
                    // set, rows go on in smaller pieces (less held at once).
                    let limit = if o.file.is_some() { LATER_CHUNK } else { CHUNK };
                    if o.pending.len() >= limit && !self.write_pending(o, out, recounted)? {
                        let ended = open.swap_remove(i);
                        at = None;
                        spare.push(self.end_day(ended, out, recounted)?);
                    }
                }
                Follows::Same => *duplicates += 1,
                Follows::Disorder => {
                    // The file ends here; the day's later rows go to the
                    // store.
                    let ended = open.swap_remove(i);
                    at = None;
                    spare.push(self.end_day(ended, out, recounted)?);
                    out.push(r.clone());
                }
            }
        }
        Ok(())
    }

    /// Writes an open day's pending rows to its file (creating it with the
    /// columns they need). `false` when the file cannot hold them: they
    /// went to `out` (to be counted by the store again, `recounted`) and
    /// the day must end.
    fn write_pending<R: DayRow>(
        &mut self,
        o: &mut OpenDay<R>,
        out: &mut Vec<R>,
        recounted: &mut u64,
    ) -> Result<bool, Error> {
        if o.pending.is_empty() {
            return Ok(true);
        }
        let mut shape = match &o.file {
            Some(f) => f.shape.clone(),
            None => R::shape(o.exchange, &o.instrument),
        };
        for r in &o.pending {
            R::observe(&mut shape, r);
        }
        let fits = match o.file.as_mut() {
            Some(f) => {
                R::same_columns(&f.shape, &shape) && fitted(R::write(&mut f.writer, &o.pending))?
            }
            None => {
                let file = layout::day_file(&self.root, R::KIND, o.exchange, &o.instrument, o.day);
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                let partial = files::partial_path(&file);
                match R::create(&partial, shape.clone()) {
                    Ok(writer) => {
                        let f = o.file.insert(DayFile {
                            writer,
                            shape,
                            partial,
                            rows: 0,
                        });
                        fitted(R::write(&mut f.writer, &o.pending))?
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&partial);
                        fitted(Err(e))?
                    }
                }
            }
        };
        if fits {
            if let Some(f) = o.file.as_mut() {
                f.rows += o.pending.len() as u64;
            }
            // What the next row must follow.
            o.last = o.pending.pop();
            o.pending.clear();
        } else {
            *recounted += o.pending.len() as u64;
            out.append(&mut o.pending);
        }
        Ok(fits)
    }

    /// Ends an open day: its pending rows written, its file installed
    /// (or, when nothing fits in one, removed); its later rows go to the
    /// store. Its emptied buffer, for another day.
    fn end_day<R: DayRow>(
        &mut self,
        mut o: OpenDay<R>,
        out: &mut Vec<R>,
        recounted: &mut u64,
    ) -> Result<Vec<R>, Error> {
        self.write_pending(&mut o, out, recounted)?;
        let buffer = std::mem::take(&mut o.pending);
        self.closed
            .insert((R::KIND, o.exchange, o.instrument.clone(), o.day));
        let Some(f) = o.file else {
            return Ok(buffer);
        };
        if f.rows == 0 {
            let _ = std::fs::remove_file(&f.partial);
            return Ok(buffer);
        }
        let file = layout::day_file(&self.root, R::KIND, o.exchange, &o.instrument, o.day);
        let written = R::finish(f.writer)
            .map_err(Error::Archive)
            .and_then(|w| files::install(&f.partial, &file).map(|()| w));
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&f.partial);
                return Err(e);
            }
        };
        self.report.days += 1;
        self.report.bytes += written.bytes;
        match R::KIND {
            Kind::Trades => self.report.trades += written.rows,
            _ => self.report.quotes += written.rows,
        }
        tracing::info!(
            kind = R::KIND.as_str(),
            exchange = %o.exchange,
            instrument = %o.instrument,
            date = %layout::date_text(o.day),
            rows = written.rows,
            bytes = written.bytes,
            "imported a day straight to the archive"
        );
        Ok(buffer)
    }

    /// Takes candles of settled days (1s to 1d) into the days held; the
    /// rest into `out`. How many were taken.
    fn take_candles(
        &mut self,
        held: &mut Vec<CandleDays>,
        source: CandleSource,
        candles: &[Candle],
        out: &mut Vec<Candle>,
    ) -> Result<u64, Error> {
        let kind = kind_of(source);
        let mut taken = 0;
        let mut closed_days: Vec<(usize, i64)> = Vec::new();
        for c in candles {
            if !archived_interval(c.interval) {
                out.push(c.clone());
                continue;
            }
            let day = layout::day_of(c.open_time);
            let found = held.iter().position(|h| {
                h.source == source && h.exchange == c.exchange && h.instrument == c.instrument
            });
            let i = match found {
                Some(i) if held[i].days.contains_key(&day) => i,
                _ => {
                    if !self.open_to(kind, c.exchange, &c.instrument, day) {
                        out.push(c.clone());
                        continue;
                    }
                    let i = found.unwrap_or_else(|| {
                        held.push(CandleDays {
                            exchange: c.exchange,
                            instrument: c.instrument.clone(),
                            source,
                            days: BTreeMap::new(),
                        });
                        held.len() - 1
                    });
                    held[i].days.insert(day, HeldDay::new());
                    i
                }
            };
            if let Some(day_candles) = held[i].days.get_mut(&day) {
                day_candles.put(c);
                taken += 1;
            }
            // A closed day candle is the last of its day to close (every
            // finer one closed before it): its day is written once this
            // batch is taken (a batch need not be in the order candles
            // closed). Else (no 1d candles built) the third day held
            // writes the first.
            if c.interval == Interval::D1 && c.state != CandleState::Provisional {
                closed_days.push((i, day));
            } else if held[i].days.len() > OPEN_CANDLE_DAYS
                && let Some((oldest, day_candles)) = held[i].days.pop_first()
            {
                self.write_candle_day(&held[i], oldest, day_candles, out)?;
            }
        }
        for (i, day) in closed_days {
            if let Some(day_candles) = held[i].days.remove(&day) {
                self.write_candle_day(&held[i], day, day_candles, out)?;
            }
        }
        Ok(taken)
    }

    /// Writes and installs one held day of candles; when the archive
    /// cannot hold them, they go to `out`.
    fn write_candle_day(
        &mut self,
        held: &CandleDays,
        day: i64,
        candles: HeldDay,
        out: &mut Vec<Candle>,
    ) -> Result<(), Error> {
        let kind = kind_of(held.source);
        self.closed
            .insert((kind, held.exchange, held.instrument.clone(), day));
        let file = layout::day_file(&self.root, kind, held.exchange, &held.instrument, day);
        // Made back into candles a piece at a time as they are written
        // (in the file's order already).
        let written = files::replace(&file, |partial| {
            let mut shape = ck_archive::candles::CandleShape::new(held.exchange, &held.instrument);
            for run in candles.runs(held.exchange, &held.instrument) {
                run.for_each(|c| shape.observe(&c));
            }
            ck_archive::candles::write_candle_runs(
                partial,
                shape,
                candles.runs(held.exchange, &held.instrument),
            )
        });
        match written {
            Ok(w) => {
                self.report.days += 1;
                self.report.candles += w.rows;
                self.report.bytes += w.bytes;
                Ok(())
            }
            Err(Error::Archive(ck_archive::Error::Unrepresentable { .. })) => {
                out.extend(candles.runs(held.exchange, &held.instrument).flatten());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether a write fitted: `false` for a value the file's columns cannot
/// hold exactly; other failures are errors.
fn fitted(written: Result<(), ck_archive::Error>) -> Result<bool, Error> {
    match written {
        Ok(()) => Ok(true),
        Err(ck_archive::Error::Unrepresentable { .. }) => Ok(false),
        Err(e) => Err(Error::Archive(e)),
    }
}
