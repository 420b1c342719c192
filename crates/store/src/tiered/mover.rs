//! Moving settled days from the store to the archive, and retention in
//! the archive.

use ck_archive::layout::{self, DAY_NANOS};
use ck_model::{Exchange, Instrument, Quote, Trade, Ts};

use super::files::{self, ArchiveLock};
use super::rows::{self, DayRow};
use super::{DayId, TieredStore};
use crate::{ArchiveReport, CandleSource, Error, PrunePlan, RangeQuery, archived_interval};

/// What retention removed from the archive.
#[derive(Debug, Clone, Default)]
pub(super) struct ArchivePrune {
    pub(super) trades: u64,
    pub(super) quotes: u64,
    pub(super) candles: Vec<(ck_model::Interval, u64)>,
    pub(super) bytes_before: u64,
    pub(super) bytes_after: u64,
}

/// How much of a day is read from the store at once.
const WINDOW_NANOS: i64 = 3_600 * 1_000_000_000;

impl TieredStore {
    /// Moves every UTC day that ended at or before `settled_before` from
    /// the store to the archive: trades and quotes of every instrument.
    /// A day already archived that has rows in the store again (late
    /// trades, a repair) is rewritten with them. Days moved before an
    /// error stay moved.
    pub(super) async fn move_settled(&self, settled_before: Ts) -> Result<ArchiveReport, Error> {
        let _one = self.moving.lock().await;
        let _lock = self.blocking(ArchiveLock::take).await?;
        let mut report = ArchiveReport {
            swept: self.blocking(files::sweep_partials).await?,
            ..ArchiveReport::default()
        };
        for stored in self.inner.instruments().await? {
            let (exchange, instrument) = (stored.info.exchange, &stored.info.instrument);
            report.trades += self
                .archive_kind::<Trade>(exchange, instrument, settled_before, &mut report)
                .await?;
            report.quotes += self
                .archive_kind::<Quote>(exchange, instrument, settled_before, &mut report)
                .await?;
            for source in [CandleSource::Ours, CandleSource::Exchange] {
                for moved in self
                    .archive_candles(exchange, instrument, source, settled_before)
                    .await?
                {
                    report.days += 1;
                    report.candles += moved.candles;
                    report.bytes += moved.bytes;
                    report.deleted += moved.deleted;
                }
            }
        }
        // The rows that left the store give their space back (also those
        // of an earlier pass that stopped before doing so).
        self.inner.reclaim_space().await?;
        Ok(report)
    }

    /// Moves the settled days of one kind of one instrument; rows written.
    async fn archive_kind<R: DayRow>(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        settled_before: Ts,
        report: &mut ArchiveReport,
    ) -> Result<u64, Error> {
        let mut rows = 0;
        let mut from = Ts(i64::MIN);
        while let Some(oldest) = self
            .inner
            .oldest_time(R::ROW_KIND, exchange, instrument, from)
            .await?
        {
            let day = layout::day_of(oldest);
            let (_, end) = files::day_span(day);
            if end > settled_before {
                break;
            }
            let moved = match self.archive_day::<R>(exchange, instrument, day).await {
                Ok(moved) => moved,
                Err(Error::Archive(e)) => {
                    day_failed(R::KIND, exchange, instrument, day, &e);
                    from = end;
                    continue;
                }
                Err(e) => return Err(e),
            };
            report.days += 1;
            report.bytes += moved.bytes;
            report.deleted += moved.deleted;
            rows += moved.rows;
            from = end;
        }
        Ok(rows)
    }

    /// Moves one day (the caller holds the archive's lock).
    async fn archive_day<R: DayRow>(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        day: i64,
    ) -> Result<Moved, Error> {
        let file = layout::day_file(&self.root, R::KIND, exchange, instrument, day);
        let exists = file.is_file();
        let (written, keys) = if exists {
            self.rewrite_day::<R>(exchange, instrument, day).await?
        } else {
            self.write_new_day::<R>(exchange, instrument, day).await?
        };
        let day_id: DayId = (exchange, instrument.clone(), day);
        self.forget_seen(R::ROW_KIND, &day_id);
        let mut scratch = Vec::new();
        let deleted = self
            .inner
            .delete_archived(R::archived(exchange, instrument, &keys, &mut scratch))
            .await?;
        tracing::info!(
            kind = R::KIND.as_str(),
            %exchange,
            %instrument,
            date = %layout::date_text(day),
            rows = written.rows,
            bytes = written.bytes,
            deleted,
            rewritten = exists,
            "archived a day"
        );
        Ok(Moved {
            rows: keys.len() as u64,
            bytes: written.bytes,
            deleted,
        })
    }

    /// Writes a day the archive does not hold yet, reading the store a
    /// window at a time twice (once to learn the file's shape, once to
    /// write), so that memory stays bounded by a window whatever the
    /// day's size. The keys of the rows written.
    async fn write_new_day<R: DayRow>(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        day: i64,
    ) -> Result<(ck_archive::Written, Vec<(Ts, R::Key)>), Error> {
        let mut shape = R::shape(exchange, instrument);
        for q in windows(exchange, instrument, day) {
            for r in R::hot(self.inner.as_ref(), &q).await? {
                R::observe(&mut shape, &r);
            }
        }
        let file = layout::day_file(&self.root, R::KIND, exchange, instrument, day);
        let partial = files::partial_path(&file);
        let dir = file.parent().map(ToOwned::to_owned);
        let created = tokio::task::spawn_blocking({
            let partial = partial.clone();
            move || {
                if let Some(dir) = dir {
                    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                R::create(&partial, shape).map_err(Error::Archive)
            }
        })
        .await
        .map_err(Error::Worker)?;
        let mut writer = created?;
        let mut keys = Vec::new();
        for q in windows(exchange, instrument, day) {
            let rows = R::hot(self.inner.as_ref(), &q).await?;
            keys.extend(rows.iter().map(|r| (r.time(), r.key())));
            let (w, result) = tokio::task::spawn_blocking(move || {
                let result = R::write(&mut writer, &rows);
                (writer, result)
            })
            .await
            .map_err(Error::Worker)?;
            writer = w;
            if let Err(e) = result {
                let _ = std::fs::remove_file(&partial);
                return Err(Error::Archive(e));
            }
        }
        let written = tokio::task::spawn_blocking(move || {
            let written = R::finish(writer).map_err(Error::Archive);
            let installed = written.and_then(|w| files::install(&partial, &file).map(|()| w));
            if installed.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            installed
        })
        .await
        .map_err(Error::Worker)??;
        Ok((written, keys))
    }

    /// Rewrites an archived day with the store's rows of it (late rows,
    /// or rows left by a pass that stopped before deleting them). The
    /// keys of the store's rows.
    async fn rewrite_day<R: DayRow>(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        day: i64,
    ) -> Result<(ck_archive::Written, Vec<(Ts, R::Key)>), Error> {
        let mut hot = Vec::new();
        for q in windows(exchange, instrument, day) {
            hot.extend(R::hot(self.inner.as_ref(), &q).await?);
        }
        let keys: Vec<(Ts, R::Key)> = hot.iter().map(|r| (r.time(), r.key())).collect();
        let instrument = instrument.clone();
        let written = self
            .blocking(move |root| {
                let file = layout::day_file(root, R::KIND, exchange, &instrument, day);
                let (start, end) = files::day_span(day);
                let cold = R::read(&file, start, end).map_err(Error::Archive)?;
                let all = rows::merge(cold, hot, usize::MAX);
                files::replace(&file, |partial| {
                    rows::write_file(partial, exchange, &instrument, &all)
                })
            })
            .await?;
        Ok((written, keys))
    }

    /// Retention in the archive: days wholly before a cutoff are deleted,
    /// the day holding it is rewritten without the rows before it.
    pub(super) async fn prune_archive(&self, plan: &PrunePlan) -> Result<ArchivePrune, Error> {
        let candle_cuts: Vec<(ck_model::Interval, Ts)> = plan
            .candles_before
            .iter()
            .copied()
            .filter(|(i, _)| archived_interval(*i))
            .collect();
        if plan.trades_before.is_none() && plan.quotes_before.is_none() && candle_cuts.is_empty() {
            return Ok(ArchivePrune::default());
        }
        let _one = self.moving.lock().await;
        let (trades_cut, quotes_cut, dry_run) =
            (plan.trades_before, plan.quotes_before, plan.dry_run);
        self.blocking(move |root| {
            let _lock = ArchiveLock::take(root)?;
            let mut report = ArchivePrune {
                bytes_before: files::size(root)?,
                ..ArchivePrune::default()
            };
            if let Some(cut) = trades_cut {
                report.trades = prune_kind::<Trade>(root, cut, dry_run)?;
            }
            if let Some(cut) = quotes_cut {
                report.quotes = prune_kind::<Quote>(root, cut, dry_run)?;
            }
            for (interval, cut) in candle_cuts {
                let n = super::candles::prune_candles(root, interval, cut, dry_run)?;
                report.candles.push((interval, n));
            }
            report.bytes_after = files::size(root)?;
            Ok(report)
        })
        .await
    }
}

/// A day the archive cannot take (a value with no exact form in its
/// columns, an unreadable day file): logged and counted, left in the store,
/// and tried again by the next pass; the other days move on.
pub(super) fn day_failed(
    kind: ck_archive::layout::Kind,
    exchange: Exchange,
    instrument: &Instrument,
    day: i64,
    error: &ck_archive::Error,
) {
    ck_bus::metrics::counter("candlekeep_archive_days_failed_total").inc();
    tracing::warn!(
        kind = kind.as_str(),
        %exchange,
        %instrument,
        date = %layout::date_text(day),
        %error,
        "a settled day could not be archived; it stays in the store"
    );
}

/// What moving a day did.
struct Moved {
    rows: u64,
    bytes: u64,
    deleted: u64,
}

/// A day's hour windows, read without a limit.
fn windows(exchange: Exchange, instrument: &Instrument, day: i64) -> Vec<RangeQuery> {
    let (start, _) = files::day_span(day);
    (0..DAY_NANOS / WINDOW_NANOS)
        .map(|w| RangeQuery {
            exchange,
            instrument: instrument.clone(),
            from: Ts(start.0 + w * WINDOW_NANOS),
            to: Ts(start.0 + (w + 1) * WINDOW_NANOS),
            limit: usize::MAX,
        })
        .collect()
}

/// Deletes (or, in a dry run, counts) one kind's archived rows before `cut`.
fn prune_kind<R: DayRow>(root: &std::path::Path, cut: Ts, dry_run: bool) -> Result<u64, Error> {
    let mut removed = 0;
    for (exchange, instrument) in files::instruments(root, R::KIND)? {
        for day in files::all_days(root, R::KIND, exchange, &instrument)? {
            let (start, end) = files::day_span(day);
            if start >= cut {
                continue;
            }
            let file = layout::day_file(root, R::KIND, exchange, &instrument, day);
            if end <= cut {
                removed += ck_archive::footer(&file, "ts_exchange")
                    .map_err(Error::Archive)?
                    .0;
                if !dry_run {
                    files::remove_day(&file)?;
                }
                continue;
            }
            let all = R::read(&file, start, end).map_err(Error::Archive)?;
            let keep: Vec<R> = all.iter().filter(|r| r.time() >= cut).cloned().collect();
            removed += (all.len() - keep.len()) as u64;
            if dry_run || keep.len() == all.len() {
                continue;
            }
            if keep.is_empty() {
                files::remove_day(&file)?;
                continue;
            }
            files::replace(&file, |partial| {
                rows::write_file(partial, exchange, &instrument, &keep)
            })?;
        }
    }
    Ok(removed)
}
