//! Two tiers as one store: the embedded (or PostgreSQL) store keeps the
//! hot, mutable head, where deduplication, revisions and gap repair
//! happen; settled days of trades, quotes and candles (1s to 1d, see
//! [`candles`]) move to an archive of Parquet files ([`ck_archive`]) in a
//! Hive layout under `root`:
//!
//! ```text
//! <root>/trades/exchange=<e>/instrument=<i>/date=<YYYY-MM-DD>/data.parquet
//! <root>/quotes/...
//! <root>/candles/...   <root>/exchange_candles/...
//! ```
//!
//! [`TieredStore`] implements [`Store`] over both: every read of trades
//! and quotes merges the archived days of its range with the store's rows
//! (a row in both tiers is read once), and a trade written again into an
//! archived day is a duplicate, as it would be in the store.
//!
//! Moving a day ([`Store::archive_settled`]): read the store's rows
//! of the day (merged with the day's file when one exists: a late trade or
//! a repair reached it), write them to a `.partial-…` file, fsync, rename
//! it over the day's file, fsync the folder, then delete from the store
//! exactly the rows written, by key. A crash before the rename leaves a
//! partial file, swept on the next pass, and the rows in the store; after
//! it, the rows are in both tiers until the next pass deletes them, and
//! reads count them once. One process at a time moves or deletes days (a
//! lock file, `<root>/.lock`); readers need no lock.
//!
//! Gaps, errors, alerts and positions stay in the store.

mod candles;
mod direct;
mod files;
mod held;
mod mover;
mod records;
mod rows;
mod thread;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ck_bus::IngestError;
use ck_model::{
    BackfillProgress, Candle, Exchange, Gap, Instrument, Interval, Quote, Trade, TradeId, Ts,
};

use rows::DayRow;

use crate::{
    ArchiveReport, ArchivedRows, CandleRecords, CandleSource, Error, PackReport, PrunePlan,
    PruneReport, RangeQuery, RecordForm, RowKind, Store, StoreCounts, StoredFiring,
    StoredInstrument, StoredRule, WriteBatch, WriteSummary,
};

/// A store with an archive of settled days beside it (module docs).
pub struct TieredStore {
    inner: Arc<dyn Store>,
    root: PathBuf,
    /// Keys of archived days recently written into, for deduplication.
    seen: Mutex<SeenKeys>,
    /// One archive pass, archive prune or import writing straight to the
    /// archive at a time in this process.
    moving: Arc<tokio::sync::Mutex<()>>,
    /// An import writing settled days straight to the archive.
    direct: tokio::sync::Mutex<direct::DirectState>,
    /// Archived days of candles as JSON records (see [`records`]).
    records: Arc<Mutex<records::RecordsCache>>,
}

impl std::fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("inner", &self.inner)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

type DayId = (Exchange, Instrument, i64);

/// The sorted `(time, key)` of an archived day's rows.
type DayKeys<K> = Arc<Vec<(Ts, K)>>;

/// The keys of a few archived days.
#[derive(Default)]
struct SeenKeys {
    trades: HashMap<DayId, DayKeys<TradeId>>,
    quotes: HashMap<DayId, DayKeys<Ts>>,
}

/// Days whose keys are kept for deduplication, per kind.
const SEEN_DAYS: usize = 4;

trait Seen: DayRow {
    fn seen(keys: &mut SeenKeys) -> &mut HashMap<DayId, DayKeys<Self::Key>>;
}
impl Seen for Trade {
    fn seen(keys: &mut SeenKeys) -> &mut HashMap<DayId, DayKeys<TradeId>> {
        &mut keys.trades
    }
}
impl Seen for Quote {
    fn seen(keys: &mut SeenKeys) -> &mut HashMap<DayId, DayKeys<Ts>> {
        &mut keys.quotes
    }
}

impl TieredStore {
    /// `inner` with the archive at `root` (created when first written).
    #[must_use]
    pub fn new(inner: Arc<dyn Store>, root: &Path) -> TieredStore {
        TieredStore {
            inner,
            root: root.to_owned(),
            seen: Mutex::new(SeenKeys::default()),
            moving: Arc::new(tokio::sync::Mutex::new(())),
            direct: tokio::sync::Mutex::new(direct::DirectState::Off),
            records: Arc::new(Mutex::new(records::RecordsCache::default())),
        }
    }

    /// The archive's folder.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store under the archive.
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Runs blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(Error::Worker)?
    }

    /// Rows of `q`'s range from both tiers.
    async fn range<R: DayRow>(&self, q: &RangeQuery) -> Result<Vec<R>, Error> {
        let (exchange, instrument, from, to) = (q.exchange, q.instrument.clone(), q.from, q.to);
        let days = self
            .blocking(move |root| files::days(root, R::KIND, exchange, &instrument, from, to))
            .await?;
        if days.is_empty() {
            return R::hot(self.inner.as_ref(), q).await;
        }
        let hot = R::hot(self.inner.as_ref(), q).await?;
        // Enough archived rows that, after the rows in both tiers count
        // once, `limit` are left if there are that many.
        let want = q.limit.saturating_add(hot.len());
        let instrument = q.instrument.clone();
        let cold = self
            .blocking(move |root| {
                let mut rows = Vec::new();
                for day in days {
                    let (start, end) = files::day_span(day);
                    let file =
                        ck_archive::layout::day_file(root, R::KIND, exchange, &instrument, day);
                    match R::read(&file, from.max(start), to.min(end)) {
                        Ok(day_rows) => rows.extend(day_rows),
                        // Retention or another pass removed it since it was listed.
                        Err(ck_archive::Error::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::Archive(e)),
                    }
                    if rows.len() >= want {
                        break;
                    }
                }
                Ok(rows)
            })
            .await?;
        Ok(rows::merge(cold, hot, q.limit))
    }

    /// The newest row of one instrument in both tiers.
    async fn newest<R: DayRow>(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        hot: Option<R>,
    ) -> Result<Option<R>, Error> {
        let instrument = instrument.clone();
        let cold = self
            .blocking(move |root| {
                let Some(day) = files::newest_day(root, R::KIND, exchange, &instrument)? else {
                    return Ok(None);
                };
                let file = ck_archive::layout::day_file(root, R::KIND, exchange, &instrument, day);
                let (_, bounds) =
                    ck_archive::footer(&file, "ts_exchange").map_err(Error::Archive)?;
                let Some((_, max)) = bounds else {
                    return Ok(None);
                };
                let rows =
                    R::read(&file, Ts(max), Ts(max.saturating_add(1))).map_err(Error::Archive)?;
                Ok(rows.into_iter().max_by_key(|r| (r.time(), r.key())))
            })
            .await?;
        Ok(match (hot, cold) {
            (Some(h), Some(c)) => Some(if (c.time(), c.key()) > (h.time(), h.key()) {
                c
            } else {
                h
            }),
            (h, c) => h.or(c),
        })
    }

    /// `rows` without those an archived day already holds, and how many
    /// those were; `None` when there are none. Only days before today can
    /// be archived, so live rows cost nothing.
    async fn drop_archived<R: Seen>(
        &self,
        rows: &[R],
        owner: impl Fn(&R) -> (Exchange, &Instrument),
    ) -> Result<Option<(Vec<R>, u64)>, Error> {
        let today = ck_archive::layout::day_of(Ts::now());
        // The days before today the rows fall in, compared without copying
        // an instrument per row (an import of history passes here).
        let mut days: Vec<DayId> = Vec::new();
        for r in rows {
            let day = ck_archive::layout::day_of(r.time());
            let (e, i) = owner(r);
            if day < today && !days.iter().any(|d| d.0 == e && d.1 == *i && d.2 == day) {
                days.push((e, i.clone(), day));
            }
        }
        let mut keys: Vec<(DayId, DayKeys<R::Key>)> = Vec::new();
        for day in days {
            if let Some(k) = self.day_keys::<R>(&day).await? {
                keys.push((day, k));
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let kept: Vec<R> = rows
            .iter()
            .filter(|r| {
                let (e, i) = owner(r);
                let day = ck_archive::layout::day_of(r.time());
                keys.iter()
                    .find(|(d, _)| d.0 == e && d.1 == *i && d.2 == day)
                    .is_none_or(|(_, k)| k.binary_search(&(r.time(), r.key())).is_err())
            })
            .cloned()
            .collect();
        let dropped = (rows.len() - kept.len()) as u64;
        Ok((dropped > 0).then_some((kept, dropped)))
    }

    /// The sorted keys of an archived day, `None` when it is not archived.
    async fn day_keys<R: Seen>(&self, day: &DayId) -> Result<Option<DayKeys<R::Key>>, Error> {
        if let Some(k) = R::seen(&mut self.lock_seen()).get(day) {
            return Ok(Some(k.clone()));
        }
        let (exchange, instrument, n) = day.clone();
        let keys = self
            .blocking(move |root| {
                let file = ck_archive::layout::day_file(root, R::KIND, exchange, &instrument, n);
                if !file.is_file() {
                    return Ok(None);
                }
                let (start, end) = files::day_span(n);
                let rows = R::read(&file, start, end).map_err(Error::Archive)?;
                let mut keys: Vec<(Ts, R::Key)> =
                    rows.iter().map(|r| (r.time(), r.key())).collect();
                keys.sort_unstable();
                Ok(Some(Arc::new(keys)))
            })
            .await?;
        if let Some(k) = &keys {
            let mut seen = self.lock_seen();
            let map = R::seen(&mut seen);
            if map.len() >= SEEN_DAYS {
                map.clear();
            }
            map.insert(day.clone(), k.clone());
        }
        Ok(keys)
    }

    /// Writes `batch` to the store, without the rows an archived day
    /// already holds (counted as duplicates).
    async fn write_through(&self, batch: Arc<WriteBatch>) -> Result<WriteSummary, Error> {
        let trades = self
            .drop_archived(&batch.trades, |t: &Trade| (t.exchange, &t.instrument))
            .await?;
        let quotes = self
            .drop_archived(&batch.quotes, |q: &Quote| (q.exchange, &q.instrument))
            .await?;
        if trades.is_none() && quotes.is_none() {
            return self.inner.write(batch).await;
        }
        let mut rest = (*batch).clone();
        let mut dropped_trades = 0;
        if let Some((kept, dropped)) = trades {
            rest.trades = kept;
            dropped_trades = dropped;
        }
        if let Some((kept, _)) = quotes {
            rest.quotes = kept;
        }
        let mut summary = self.inner.write(Arc::new(rest)).await?;
        summary.trades_duplicate += dropped_trades;
        Ok(summary)
    }

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, SeenKeys> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the kept keys of a day whose file changed.
    fn forget_seen(&self, kind: RowKind, day: &DayId) {
        let mut seen = self.lock_seen();
        match kind {
            RowKind::Trades => {
                seen.trades.remove(day);
            }
            RowKind::Quotes => {
                seen.quotes.remove(day);
            }
            RowKind::Candles(_) => {}
        }
    }
}

#[async_trait::async_trait]
impl Store for TieredStore {
    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteSummary, Error> {
        let (rest, staged) = self.write_direct(batch).await?;
        let Some(rest) = rest else {
            return Ok(staged.summary);
        };
        let stored = self.write_through(rest).await?;
        Ok(staged.plus_stored(stored))
    }

    async fn begin_direct_archive(&self, settled_before: Ts) -> Result<(), Error> {
        self.begin_direct(settled_before).await
    }

    async fn end_direct_archive(&self) -> Result<ArchiveReport, Error> {
        self.end_direct().await
    }

    async fn candles(
        &self,
        query: &RangeQuery,
        interval: Interval,
        source: CandleSource,
    ) -> Result<Vec<Candle>, Error> {
        self.candle_range(query, interval, source, false).await
    }

    async fn candles_newest_first(
        &self,
        query: &RangeQuery,
        interval: Interval,
        source: CandleSource,
    ) -> Result<Vec<Candle>, Error> {
        self.candle_range(query, interval, source, true).await
    }

    async fn candle_records(
        &self,
        query: &RangeQuery,
        interval: Interval,
        source: CandleSource,
        newest_first: bool,
        form: RecordForm,
    ) -> Result<CandleRecords, Error> {
        self.candle_records_of(query, interval, source, newest_first, form)
            .await
    }

    async fn trades(&self, query: &RangeQuery) -> Result<Vec<Trade>, Error> {
        self.range(query).await
    }

    async fn quotes(&self, query: &RangeQuery) -> Result<Vec<Quote>, Error> {
        self.range(query).await
    }

    async fn latest_candle(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
        interval: Interval,
    ) -> Result<Option<Candle>, Error> {
        self.newest_candle(exchange, instrument, interval).await
    }

    async fn alert_rules(&self) -> Result<Vec<StoredRule>, Error> {
        self.inner.alert_rules().await
    }

    async fn put_alert_rule(&self, id: Option<i64>, rule: &str) -> Result<Option<i64>, Error> {
        self.inner.put_alert_rule(id, rule).await
    }

    async fn delete_alert_rule(&self, id: i64) -> Result<bool, Error> {
        self.inner.delete_alert_rule(id).await
    }

    async fn record_firing(&self, rule_id: &str, at: Ts, firing: &str) -> Result<i64, Error> {
        self.inner.record_firing(rule_id, at, firing).await
    }

    async fn set_firing_deliveries(&self, id: i64, deliveries: &str) -> Result<(), Error> {
        self.inner.set_firing_deliveries(id, deliveries).await
    }

    async fn firings(&self, limit: usize) -> Result<Vec<StoredFiring>, Error> {
        self.inner.firings(limit).await
    }

    async fn prune(&self, plan: &PrunePlan) -> Result<PruneReport, Error> {
        let mut report = self.inner.prune(plan).await?;
        let archived = self.prune_archive(plan).await?;
        report.trades += archived.trades;
        report.quotes += archived.quotes;
        for (interval, n) in archived.candles {
            match report.candles.iter_mut().find(|(i, _)| *i == interval) {
                Some((_, total)) => *total += n,
                None => report.candles.push((interval, n)),
            }
        }
        report.bytes_before += archived.bytes_before;
        report.bytes_after += archived.bytes_after;
        Ok(report)
    }

    async fn pack_candle_days(&self, settled_before: Ts) -> Result<PackReport, Error> {
        self.inner.pack_candle_days(settled_before).await
    }

    async fn archive_settled(&self, settled_before: Ts) -> Result<ArchiveReport, Error> {
        self.move_settled(settled_before).await
    }

    async fn last_trade(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
    ) -> Result<Option<Trade>, Error> {
        let hot = self.inner.last_trade(exchange, instrument).await?;
        self.newest(exchange, instrument, hot).await
    }

    async fn backfill_progress(&self, job: &str) -> Result<Option<BackfillProgress>, Error> {
        self.inner.backfill_progress(job).await
    }

    async fn backfill_jobs(&self) -> Result<Vec<BackfillProgress>, Error> {
        self.inner.backfill_jobs().await
    }

    async fn forget_jobs(&self, prefix: &str, updated_before: Ts) -> Result<u64, Error> {
        self.inner.forget_jobs(prefix, updated_before).await
    }

    async fn restore_alert_rule(&self, rule: &StoredRule) -> Result<(), Error> {
        self.inner.restore_alert_rule(rule).await
    }

    async fn latest_quote(
        &self,
        exchange: Exchange,
        instrument: &Instrument,
    ) -> Result<Option<Quote>, Error> {
        let hot = self.inner.latest_quote(exchange, instrument).await?;
        self.newest(exchange, instrument, hot).await
    }

    async fn instruments(&self) -> Result<Vec<StoredInstrument>, Error> {
        use ck_archive::layout::Kind;
        let stored = self.inner.instruments().await?;
        // One blocking task for the whole list (the API asks on every
        // request), reading only the instruments the archive holds, and a
        // footer only where the archive's newest day is newer than the
        // store's last trade.
        self.blocking(move |root| {
            let archived = files::instruments(root, Kind::Trades)?;
            let mut stored = stored;
            for s in &mut stored {
                let (exchange, instrument) = (s.info.exchange, &s.info.instrument);
                if !archived
                    .iter()
                    .any(|(e, i)| *e == exchange && i == instrument)
                {
                    continue;
                }
                let Some(day) = files::newest_day(root, Kind::Trades, exchange, instrument)? else {
                    continue;
                };
                if s.last_trade_time >= Some(files::day_span(day).1) {
                    continue;
                }
                let file =
                    ck_archive::layout::day_file(root, Kind::Trades, exchange, instrument, day);
                let (_, bounds) =
                    ck_archive::footer(&file, "ts_exchange").map_err(Error::Archive)?;
                s.last_trade_time = s.last_trade_time.max(bounds.map(|(_, max)| Ts(max)));
            }
            Ok(stored)
        })
        .await
    }

    async fn ingest_errors(&self, limit: usize) -> Result<Vec<IngestError>, Error> {
        self.inner.ingest_errors(limit).await
    }

    async fn gaps(
        &self,
        exchange: Option<Exchange>,
        instrument: Option<&Instrument>,
        limit: usize,
    ) -> Result<Vec<Gap>, Error> {
        self.inner.gaps(exchange, instrument, limit).await
    }

    async fn counts(&self) -> Result<StoreCounts, Error> {
        let mut counts = self.inner.counts().await?;
        let (trades, quotes, candles) = self
            .blocking(|root| {
                let mut rows = [0u64; 3];
                for (n, kind) in [
                    ck_archive::layout::Kind::Trades,
                    ck_archive::layout::Kind::Quotes,
                    ck_archive::layout::Kind::Candles,
                ]
                .into_iter()
                .enumerate()
                {
                    for (exchange, instrument) in files::instruments(root, kind)? {
                        for day in files::all_days(root, kind, exchange, &instrument)? {
                            let file = ck_archive::layout::day_file(
                                root,
                                kind,
                                exchange,
                                &instrument,
                                day,
                            );
                            rows[n] += ck_archive::footer(&file, "ts_exchange")
                                .map_err(Error::Archive)?
                                .0;
                        }
                    }
                }
                Ok((rows[0], rows[1], rows[2]))
            })
            .await?;
        counts.trades += trades;
        counts.quotes += quotes;
        counts.candles += candles;
        Ok(counts)
    }

    async fn ping(&self) -> Result<(), Error> {
        self.inner.ping().await
    }

    async fn oldest_time(
        &self,
        kind: RowKind,
        exchange: Exchange,
        instrument: &Instrument,
        from: Ts,
    ) -> Result<Option<Ts>, Error> {
        self.inner
            .oldest_time(kind, exchange, instrument, from)
            .await
    }

    async fn delete_archived(&self, rows: ArchivedRows<'_>) -> Result<u64, Error> {
        self.inner.delete_archived(rows).await
    }

    async fn reclaim_space(&self) -> Result<(), Error> {
        self.inner.reclaim_space().await
    }

    fn backend(&self) -> String {
        self.inner.backend()
    }
}
