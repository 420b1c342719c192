//! Candles in two tiers: settled days of candles of a day or less (1s to
//! 1d, [`crate::archived_interval`]) move to `candles/` (ours) and
//! `exchange_candles/` (the exchange's), one file per instrument and day
//! with each interval in row groups of its own. For one open time the
//! store's row wins over the archive's: a candle revised after its day was
//! archived is read as revised at once, and the next pass rewrites the day.

use std::collections::BTreeMap;

use ck_archive::layout::{self, Kind};
use ck_model::{Candle, Exchange, Instrument, Interval, Ts};

use super::TieredStore;
use super::files;
use crate::{
    ArchivedRows, CandleRecords, CandleSource, Error, RangeQuery, RecordForm, RowKind,
    archived_interval,
};

/// The archive's folder of candles of `source`.
pub(super) const fn kind_of(source: CandleSource) -> Kind {
    match source {
        CandleSource::Ours => Kind::Candles,
        CandleSource::Exchange => Kind::ExchangeCandles,
    }
}

/// What moving one day of candles did.
pub(super) struct MovedCandles {
    pub(super) candles: u64,
    pub(super) bytes: u64,
    pub(super) deleted: u64,
}

impl TieredStore {
    /// The archived days of candles of `source` in `q`'s range (none for
    /// an interval the archive does not take).
    async fn candle_days(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
    ) -> Result<Vec<i64>, Error> {
        if !archived_interval(interval) {
            return Ok(Vec::new());
        }
        let (exchange, instrument, from, to) = (q.exchange, q.instrument.clone(), q.from, q.to);
        self.blocking(move |root| {
            files::days(root, kind_of(source), exchange, &instrument, from, to)
        })
        .await
    }

    /// Candles of one interval and source in `q`'s range from both tiers,
    /// oldest first or newest first, at most `q.limit`.
    pub(super) async fn candle_range(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
        newest_first: bool,
    ) -> Result<Vec<Candle>, Error> {
        let days = self.candle_days(q, interval, source).await?;
        let hot = if newest_first {
            self.inner.candles_newest_first(q, interval, source).await?
        } else {
            self.inner.candles(q, interval, source).await?
        };
        if days.is_empty() {
            return Ok(hot);
        }
        let want = q.limit.saturating_add(hot.len());
        let (exchange, instrument, from, to) = (q.exchange, q.instrument.clone(), q.from, q.to);
        let cold = self
            .blocking(move |root| {
                let mut cold = Vec::new();
                let ordered: Box<dyn Iterator<Item = i64>> = if newest_first {
                    Box::new(days.into_iter().rev())
                } else {
                    Box::new(days.into_iter())
                };
                for day in ordered {
                    let (start, end) = files::day_span(day);
                    let file = layout::day_file(root, kind_of(source), exchange, &instrument, day);
                    let read = ck_archive::candles::read_candles_of(
                        &file,
                        interval,
                        from.max(start),
                        to.min(end),
                    );
                    match read {
                        Ok(mut d) => {
                            if newest_first {
                                d.candles.reverse();
                            }
                            cold.extend(d.candles);
                        }
                        Err(ck_archive::Error::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::Archive(e)),
                    }
                    if cold.len() >= want {
                        break;
                    }
                }
                Ok(cold)
            })
            .await?;
        let mut by_open: BTreeMap<Ts, Candle> =
            cold.into_iter().map(|c| (c.open_time, c)).collect();
        for c in hot {
            by_open.insert(c.open_time, c);
        }
        let mut candles: Vec<Candle> = if newest_first {
            by_open.into_values().rev().collect()
        } else {
            by_open.into_values().collect()
        };
        candles.truncate(q.limit);
        Ok(candles)
    }

    /// [`crate::Store::candle_records`] over both tiers: the store's fast
    /// path where the range holds no archived day; else the store's
    /// records merged with the archived days' (from the records cache).
    pub(super) async fn candle_records_of(
        &self,
        q: &RangeQuery,
        interval: Interval,
        source: CandleSource,
        newest_first: bool,
        form: RecordForm,
    ) -> Result<CandleRecords, Error> {
        let mut days = self.candle_days(q, interval, source).await?;
        let hot = self
            .inner
            .candle_records(q, interval, source, newest_first, form)
            .await?;
        if days.is_empty() {
            return Ok(hot);
        }
        if newest_first {
            days.reverse();
        }
        let want = q.limit.saturating_add(hot.len());
        let (exchange, instrument, from, to, limit) =
            (q.exchange, q.instrument.clone(), q.from, q.to, q.limit);
        let cache = self.records.clone();
        self.blocking(move |root| {
            let mut read = Vec::new();
            let mut count = 0;
            for day in days {
                let owner = (kind_of(source), exchange, &instrument);
                if let Some(d) =
                    super::records::day_records(&cache, root, owner, (interval, form), day)?
                {
                    count += d.len();
                    read.push(d);
                }
                if count >= want {
                    break;
                }
            }
            super::records::merge(&read, &hot, (from, to), limit, newest_first)
        })
        .await
    }

    /// The newest candle of ours of one interval, from both tiers.
    pub(super) async fn newest_candle(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        interval: Interval,
    ) -> Result<Option<Candle>, Error> {
        let hot = self
            .inner
            .latest_candle(exchange, instrument, interval)
            .await?;
        if !archived_interval(interval) {
            return Ok(hot);
        }
        let instrument = instrument.clone();
        let cold = self
            .blocking(move |root| {
                let Some(day) = files::newest_day(root, Kind::Candles, exchange, &instrument)?
                else {
                    return Ok(None);
                };
                let (start, end) = files::day_span(day);
                let file = layout::day_file(root, Kind::Candles, exchange, &instrument, day);
                let d = ck_archive::candles::read_candles_of(&file, interval, start, end)
                    .map_err(Error::Archive)?;
                Ok(d.candles.into_iter().last())
            })
            .await?;
        Ok(match (hot, cold) {
            (Some(h), Some(c)) => Some(if c.open_time > h.open_time { c } else { h }),
            (h, c) => h.or(c),
        })
    }

    /// Moves the settled days of candles of one source of one instrument.
    pub(super) async fn archive_candles(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        source: CandleSource,
        settled_before: Ts,
    ) -> Result<Vec<MovedCandles>, Error> {
        let mut moved = Vec::new();
        let mut from = Ts(i64::MIN);
        while let Some(oldest) = self
            .inner
            .oldest_time(RowKind::Candles(source), exchange, instrument, from)
            .await?
        {
            let day = layout::day_of(oldest);
            let (_, end) = files::day_span(day);
            if end > settled_before {
                break;
            }
            match self
                .archive_candle_day(exchange, instrument, source, day)
                .await
            {
                Ok(m) => moved.push(m),
                Err(Error::Archive(e)) => {
                    super::mover::day_failed(kind_of(source), exchange, instrument, day, &e);
                }
                Err(e) => return Err(e),
            }
            from = end;
        }
        Ok(moved)
    }

    /// Moves one day of candles (the caller holds the archive's lock): the
    /// store's candles of the day over the archived ones, if any.
    async fn archive_candle_day(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        source: CandleSource,
        day: i64,
    ) -> Result<MovedCandles, Error> {
        let (start, end) = files::day_span(day);
        let mut hot = Vec::new();
        for interval in Interval::ALL.into_iter().filter(|i| archived_interval(*i)) {
            let q = RangeQuery {
                exchange,
                instrument: instrument.clone(),
                from: start,
                to: end,
                limit: usize::MAX,
            };
            hot.extend(self.inner.candles(&q, interval, source).await?);
        }
        let day_candles = hot.clone();
        let owner = instrument.clone();
        let written = self
            .blocking(move |root| {
                let file = layout::day_file(root, kind_of(source), exchange, &owner, day);
                let mut all: BTreeMap<(usize, Ts), Candle> = BTreeMap::new();
                if file.is_file() {
                    for c in ck_archive::candles::read_candles(&file)
                        .map_err(Error::Archive)?
                        .candles
                    {
                        all.insert((c.interval.index(), c.open_time), c);
                    }
                }
                for c in day_candles {
                    all.insert((c.interval.index(), c.open_time), c);
                }
                let all: Vec<Candle> = all.into_values().collect();
                files::replace(&file, |partial| {
                    ck_archive::candles::write_candles(partial, exchange, &owner, &all)
                })
            })
            .await?;
        let deleted = self
            .inner
            .delete_archived(ArchivedRows::Candles {
                exchange,
                instrument,
                source,
                candles: &hot,
            })
            .await?;
        tracing::info!(
            kind = kind_of(source).as_str(),
            %exchange,
            %instrument,
            date = %layout::date_text(day),
            candles = hot.len(),
            bytes = written.bytes,
            deleted,
            "archived a day"
        );
        Ok(MovedCandles {
            candles: hot.len() as u64,
            bytes: written.bytes,
            deleted,
        })
    }
}

/// Retention of candles in the archive: the candles of `interval` opening
/// before `cut`, in the files of both sources; how many (deleted unless
/// `dry_run`). The caller holds the archive's lock.
pub(super) fn prune_candles(
    root: &std::path::Path,
    interval: Interval,
    cut: Ts,
    dry_run: bool,
) -> Result<u64, Error> {
    let mut removed = 0;
    for kind in [Kind::Candles, Kind::ExchangeCandles] {
        for (exchange, instrument) in files::instruments(root, kind)? {
            for day in files::all_days(root, kind, exchange, &instrument)? {
                let (start, _) = files::day_span(day);
                if start >= cut {
                    continue;
                }
                let file = layout::day_file(root, kind, exchange, &instrument, day);
                let all = ck_archive::candles::read_candles(&file)
                    .map_err(Error::Archive)?
                    .candles;
                let keep: Vec<Candle> = all
                    .iter()
                    .filter(|c| !(c.interval == interval && c.open_time < cut))
                    .cloned()
                    .collect();
                let gone = all.len() - keep.len();
                removed += gone as u64;
                if dry_run || gone == 0 {
                    continue;
                }
                if keep.is_empty() {
                    files::remove_day(&file)?;
                    continue;
                }
                files::replace(&file, |partial| {
                    ck_archive::candles::write_candles(partial, exchange, &instrument, &keep)
                })?;
            }
        }
    }
    Ok(removed)
}
