//! `candlekeep backfill`: REST history for a range, resumable.
//!
//! A job is one exchange, instrument, kind (trades, or the exchange's candles
//! of one interval) and range. It pages forward through the venue's history
//! and sends what it gets into the pipeline like any source, followed by a
//! [`BackfillProgress`] event that the store commits after that data. A rerun
//! of the same job reads the position back and continues there; a finished job
//! is not fetched again.
//!
//! Trades are found by id: the first id at `from` (one cheap request), then
//! pages by id until a trade at or after `to`. Venues whose history is read
//! by time (Bitfinex, Kraken) page by time instead: each page starts at the
//! last page's last instant, and trades seen there are skipped. Venues that
//! keep only recent trades (Bybit, Bitstamp) cannot backfill a range and
//! are refused. On resume, the trades already
//! stored since the start of the coarsest open candle are fed through the
//! candle stage again first, so the candles that straddle the stop are built
//! from every trade, not only those after it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ck_bus::{Event, Sender};
use ck_model::{BackfillProgress, Exchange, Instrument, Interval, Trade, TradeId, Ts};
use ck_sources::history::{History, HistoryError};
use ck_store::{RangeQuery, Store};
use tokio_util::sync::CancellationToken;

/// What a job fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillKind {
    /// Trades (our candles are built from them on the way).
    Trades,
    /// The exchange's own candles of one interval, stored apart from ours.
    Candles(Interval),
}

/// One resumable unit of backfill.
#[derive(Debug, Clone)]
pub struct BackfillJob {
    /// The venue.
    pub exchange: Exchange,
    /// The instrument.
    pub instrument: Instrument,
    /// Inclusive start.
    pub from: Ts,
    /// Exclusive end.
    pub to: Ts,
    /// Trades or candles.
    pub kind: BackfillKind,
}

impl BackfillJob {
    /// The key its progress is stored under.
    #[must_use]
    pub fn key(&self) -> String {
        let kind = match self.kind {
            BackfillKind::Trades => "trades".to_owned(),
            BackfillKind::Candles(i) => format!("candles {i}"),
        };
        format!(
            "{} {} {kind} {}..{}",
            self.exchange, self.instrument, self.from, self.to
        )
    }
}

/// What `candlekeep backfill` was asked for.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    /// The venue.
    pub exchange: Exchange,
    /// Its instruments (fetched in parallel).
    pub instruments: Vec<Instrument>,
    /// Start, inclusive.
    pub from: Ts,
    /// End, exclusive.
    pub to: Ts,
    /// Trades (the default when no candles are asked for).
    pub trades: bool,
    /// The exchange's own candles of these intervals.
    pub candles: Vec<ck_model::Interval>,
    /// The REST root: the venue's public API, or the configured source's,
    /// when absent.
    pub rest_url: Option<String>,
}

impl BackfillRequest {
    /// The jobs, one per instrument and kind, and the venue's REST history
    /// they read.
    ///
    /// # Errors
    /// When the range is empty, the venue has no REST history, or it keeps
    /// only recent trades and trades were asked for.
    pub fn plan(
        self,
        settings: &crate::config::Settings,
    ) -> anyhow::Result<(Vec<BackfillJob>, Arc<dyn History>)> {
        let BackfillRequest {
            exchange,
            instruments,
            from,
            to,
            trades,
            candles,
            rest_url,
        } = self;
        anyhow::ensure!(from < to, "--from ({from}) must be before --to ({to})");
        let venue = ck_sources::venues::venue(exchange).ok_or_else(|| {
            anyhow::anyhow!(
                "backfill: no REST history for {exchange} yet (supported: {})",
                ck_sources::VENUES
                    .iter()
                    .map(|v| v.exchange.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let rest_url = rest_url
            .or_else(|| settings.config.rest_url_of(exchange))
            .unwrap_or_else(|| venue.rest_url.to_owned());
        let client = ck_sources::rest::RestClient::new(
            exchange,
            ck_sources::rest::RestSettings::new(rest_url),
        )?;
        let history = (venue.history)(Arc::new(client));
        let mut kinds = Vec::new();
        if trades || candles.is_empty() {
            if let Some(keeps) = history.keeps_only() {
                anyhow::bail!(
                    "backfill: {exchange} serves only {keeps}, so it cannot backfill trades \
                     over a range (live gaps are still repaired from it; its candles can be \
                     backfilled with --candles)"
                );
            }
            kinds.push(BackfillKind::Trades);
        }
        kinds.extend(candles.into_iter().map(BackfillKind::Candles));
        let jobs = instruments
            .iter()
            .flat_map(|i| {
                kinds.iter().map(move |&kind| BackfillJob {
                    exchange,
                    instrument: i.clone(),
                    from,
                    to,
                    kind,
                })
            })
            .collect();
        Ok((jobs, history))
    }
}

/// Live progress of one job, for a progress bar.
#[derive(Debug, Default)]
pub struct JobMeter {
    /// Thousandths of the range covered.
    pub permille: AtomicU64,
    /// Rows fetched in this run.
    pub rows: AtomicU64,
    /// REST pages fetched in this run.
    pub pages: AtomicU64,
}

/// What a job did in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// The job's key.
    pub job: String,
    /// Rows fetched now.
    pub rows: u64,
    /// Pages fetched now.
    pub pages: u64,
    /// Fills sent as the aggregated trade in the store that counts them
    /// already (OKX).
    pub covered: u64,
    /// True if it had finished in an earlier run.
    pub already_done: bool,
    /// True if the range is now complete.
    pub done: bool,
}

/// Why a job stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The venue's history failed.
    #[error("{job}: {source}")]
    History {
        /// The job.
        job: String,
        /// The cause.
        #[source]
        source: HistoryError,
    },
    /// The stored position could not be read.
    #[error("{job}: reading the stored position: {source}")]
    Store {
        /// The job.
        job: String,
        /// The cause.
        #[source]
        source: ck_store::Error,
    },
    /// The job's task failed.
    #[error("backfill task failed: {0}")]
    Panicked(String),
    /// The stored position is not one this job writes.
    #[error("{job}: stored position `{cursor}` is invalid")]
    BadCursor {
        /// The job.
        job: String,
        /// What was stored.
        cursor: String,
    },
}

/// Everything a job needs.
#[derive(Debug, Clone)]
pub struct BackfillContext {
    /// The venue's history.
    pub history: Arc<dyn History>,
    /// The store, for positions and warm-up.
    pub store: Arc<dyn Store>,
    /// The pipeline's ingest queue.
    pub out: Sender<Event>,
    /// The coarsest candle interval being built (for warm-up on resume).
    pub coarsest: Option<Interval>,
    /// Stops between pages, and a REST request under way (retries
    /// included) at once.
    pub stop: CancellationToken,
}

impl BackfillContext {
    /// `f`, unless the stop comes first (`None`).
    async fn or_stop<T>(&self, f: impl std::future::Future<Output = T>) -> Option<T> {
        crate::pipeline::until_stopped(&self.stop, f).await
    }
}

/// The aggregated trades the store holds over the single fills in `trades`
/// (one page of REST history), by fill id, on a venue whose aggregates
/// carry their last fill's id (OKX: live `trades` pushes of `count` fills,
/// REST fills one by one). Such a fill is counted by its aggregate
/// already: the backfill sends the aggregate in its place, once, so that
/// the candles it builds count what the store holds, and no fill twice.
///
/// # Errors
/// When the store cannot be read.
pub async fn stored_aggregates(
    store: &dyn Store,
    trades: &[Trade],
) -> Result<HashMap<u64, Arc<Trade>>, ck_store::Error> {
    let mut covering = HashMap::new();
    let Some(first) = trades.first() else {
        return Ok(covering);
    };
    if !first.exchange.ids_end_aggregates() || trades.iter().all(|t| t.fills > 1) {
        return Ok(covering);
    }
    let (from, to) = trades
        .iter()
        .fold((first.ts_exchange, first.ts_exchange), |(lo, hi), t| {
            (lo.min(t.ts_exchange), hi.max(t.ts_exchange))
        });
    let stored = store
        .trades(&RangeQuery {
            exchange: first.exchange,
            instrument: first.instrument.clone(),
            from,
            to: Ts(to.0.saturating_add(1)),
            limit: COVER_LOOKUP_ROWS,
        })
        .await?;
    let aggregates: BTreeMap<u64, (u64, Arc<Trade>)> = stored
        .into_iter()
        .filter(|t| t.fills > 1)
        .filter_map(|t| {
            let (a, b) = t.id_span()?;
            Some((b, (a, Arc::new(t))))
        })
        .collect();
    for t in trades {
        if let Some((a, b)) = t.id_span()
            && a == b
            && let Some((_, (start, aggregate))) = aggregates.range(b..).next()
            && *start <= b
        {
            covering.insert(b, aggregate.clone());
        }
    }
    Ok(covering)
}

/// Stored trades read to find the aggregates over one page of history.
const COVER_LOOKUP_ROWS: usize = 100_000;

fn fraction(from: Ts, to: Ts, at: Ts) -> u64 {
    let span = (to.0 - from.0).max(1) as f64;
    (((at.0 - from.0).max(0) as f64 / span).clamp(0.0, 1.0) * 1000.0) as u64
}

/// Runs one job to its end, or until `stop`; the position is committed as it goes.
pub async fn run_job(
    job: &BackfillJob,
    ctx: &BackfillContext,
    meter: &JobMeter,
) -> Result<JobReport, BackfillError> {
    let key = job.key();
    let stored =
        ctx.store
            .backfill_progress(&key)
            .await
            .map_err(|source| BackfillError::Store {
                job: key.clone(),
                source,
            })?;
    let mut report = JobReport {
        job: key.clone(),
        rows: 0,
        pages: 0,
        covered: 0,
        already_done: stored.as_ref().is_some_and(|p| p.done),
        done: false,
    };
    if report.already_done {
        meter.permille.store(1000, Ordering::Relaxed);
        report.done = true;
        return Ok(report);
    }
    let history = |source| BackfillError::History {
        job: key.clone(),
        source,
    };
    let bad_cursor = |cursor: &str| BackfillError::BadCursor {
        job: key.clone(),
        cursor: cursor.to_owned(),
    };
    let progress = |cursor: String, done: bool| {
        Event::Progress(BackfillProgress {
            job: key.clone(),
            cursor,
            done,
            updated_at: Ts::now(),
        })
    };
    let page = ctx.history.page_size();
    match job.kind {
        BackfillKind::Trades if ctx.history.by_time() => {
            if let Some(keeps) = ctx.history.keeps_only() {
                return Err(history(HistoryError::Unsupported(format!(
                    "{} serves only {keeps}: it cannot backfill a range",
                    job.exchange
                ))));
            }
            let mut at = match &stored {
                Some(p) => {
                    let at = p
                        .cursor
                        .strip_prefix("time@")
                        .and_then(|t| t.parse::<i64>().ok())
                        .ok_or_else(|| bad_cursor(&p.cursor))?;
                    warm_up(job, ctx, Ts(at)).await;
                    Ts(at)
                }
                None => job.from,
            };
            // Ids sent at the current page's last instant, which the next
            // page starts at again.
            let mut seen_at_last: std::collections::HashSet<TradeId> = Default::default();
            loop {
                if ctx.stop.is_cancelled() {
                    return Ok(report);
                }
                let Some(trades) = ctx
                    .or_stop(ctx.history.trades_from_time(&job.instrument, at, page))
                    .await
                else {
                    return Ok(report);
                };
                let trades = trades.map_err(history)?;
                report.pages += 1;
                meter.pages.fetch_add(1, Ordering::Relaxed);
                let full = trades.len() as u32 >= page;
                let mut reached_end = false;
                let mut fresh = 0;
                let mut last = at;
                for t in trades {
                    if t.ts_exchange >= job.to {
                        reached_end = true;
                        break;
                    }
                    if t.ts_exchange < at
                        || (t.ts_exchange == at && seen_at_last.contains(&t.trade_id))
                    {
                        continue;
                    }
                    if t.ts_exchange > last {
                        seen_at_last.clear();
                        last = t.ts_exchange;
                    }
                    seen_at_last.insert(t.trade_id.clone());
                    fresh += 1;
                    report.rows += 1;
                    meter.rows.fetch_add(1, Ordering::Relaxed);
                    if ctx.out.send(Event::Trade(t)).await.is_err() {
                        return Ok(report);
                    }
                }
                if full && fresh == 0 && !reached_end {
                    return Err(history(HistoryError::Unsupported(format!(
                        "more than {page} trades at {at}: the venue's pages cannot pass that instant"
                    ))));
                }
                let done = reached_end || !full;
                meter
                    .permille
                    .store(fraction(job.from, job.to, last), Ordering::Relaxed);
                if ctx
                    .out
                    .send(progress(format!("time@{}", last.0), done))
                    .await
                    .is_err()
                {
                    return Ok(report);
                }
                if done {
                    break;
                }
                at = last;
            }
        }
        BackfillKind::Trades => {
            let mut next = match &stored {
                Some(p) => {
                    let (id, at) = p
                        .cursor
                        .split_once('@')
                        .and_then(|(id, at)| {
                            Some((id.parse::<u64>().ok()?, at.parse::<i64>().ok()?))
                        })
                        .ok_or_else(|| bad_cursor(&p.cursor))?;
                    warm_up(job, ctx, Ts(at)).await;
                    Some(id)
                }
                None => match ctx
                    .or_stop(ctx.history.first_trade_id_at(&job.instrument, job.from))
                    .await
                {
                    Some(first) => first.map_err(history)?,
                    None => return Ok(report),
                },
            };
            let mut aggregates_sent = HashSet::new();
            while let Some(from_id) = next {
                if ctx.stop.is_cancelled() {
                    return Ok(report);
                }
                let Some(trades) = ctx
                    .or_stop(ctx.history.trades_from_id(&job.instrument, from_id, page))
                    .await
                else {
                    return Ok(report);
                };
                let trades = trades.map_err(history)?;
                let full = trades.len() as u32 >= page;
                let covering = stored_aggregates(ctx.store.as_ref(), &trades)
                    .await
                    .map_err(|source| BackfillError::Store {
                        job: key.clone(),
                        source,
                    })?;
                report.pages += 1;
                meter.pages.fetch_add(1, Ordering::Relaxed);
                let mut last: Option<(u64, Ts)> = None;
                let mut reached_end = false;
                for t in trades {
                    if t.ts_exchange >= job.to {
                        reached_end = true;
                        break;
                    }
                    if let TradeId::Num(id) = t.trade_id {
                        last = Some((id, t.ts_exchange));
                        if let Some(aggregate) = covering.get(&id) {
                            report.covered += 1;
                            if aggregates_sent.insert(aggregate.trade_id.clone())
                                && ctx
                                    .out
                                    .send(Event::Trade(Trade::clone(aggregate)))
                                    .await
                                    .is_err()
                            {
                                return Ok(report);
                            }
                            continue;
                        }
                    }
                    report.rows += 1;
                    meter.rows.fetch_add(1, Ordering::Relaxed);
                    if ctx.out.send(Event::Trade(t)).await.is_err() {
                        return Ok(report);
                    }
                }
                let done = reached_end || !full || last.is_none();
                let cursor = match last {
                    Some((id, at)) => {
                        meter
                            .permille
                            .store(fraction(job.from, job.to, at), Ordering::Relaxed);
                        format!("{}@{}", id + 1, at.0)
                    }
                    None => format!("{from_id}@{}", job.from.0),
                };
                if ctx.out.send(progress(cursor, done)).await.is_err() {
                    return Ok(report);
                }
                if done {
                    break;
                }
                next = last.map(|(id, _)| id + 1);
            }
        }
        BackfillKind::Candles(interval) => {
            let mut start = match &stored {
                Some(p) => Ts(p.cursor.parse::<i64>().map_err(|_| bad_cursor(&p.cursor))?),
                None => interval.bucket_start(job.from),
            };
            while start < job.to {
                if ctx.stop.is_cancelled() {
                    return Ok(report);
                }
                let Some(answer) = ctx
                    .or_stop(ctx.history.candles(&job.instrument, interval, start, page))
                    .await
                else {
                    return Ok(report);
                };
                let answer = answer.map_err(history)?;
                report.pages += 1;
                meter.pages.fetch_add(1, Ordering::Relaxed);
                for c in answer.candles {
                    if c.open_time < start {
                        continue;
                    }
                    if c.open_time >= job.to {
                        break;
                    }
                    report.rows += 1;
                    meter.rows.fetch_add(1, Ordering::Relaxed);
                    if ctx
                        .out
                        .send(Event::ExchangeCandle(Box::new(c)))
                        .await
                        .is_err()
                    {
                        return Ok(report);
                    }
                }
                let next = answer.next.min(job.to);
                let done = answer.at_end || next >= job.to || next <= start;
                meter
                    .permille
                    .store(fraction(job.from, job.to, next), Ordering::Relaxed);
                if ctx
                    .out
                    .send(progress(next.0.to_string(), done))
                    .await
                    .is_err()
                {
                    return Ok(report);
                }
                if done {
                    break;
                }
                start = next;
            }
        }
    }
    meter.permille.store(1000, Ordering::Relaxed);
    report.done = true;
    Ok(report)
}

/// Feeds the trades stored between the start of the coarsest candle open at
/// `at` (but not before the job's start) and `at` through the candle stage
/// again, an hour at a time.
async fn warm_up(job: &BackfillJob, ctx: &BackfillContext, at: Ts) {
    let Some(coarsest) = ctx.coarsest else {
        return;
    };
    let from = coarsest.bucket_start(at).max(job.from);
    if let Err(e) = replay_stored_trades(
        ctx.store.as_ref(),
        (job.exchange, &job.instrument),
        from,
        at,
        &ctx.out,
    )
    .await
    {
        tracing::error!(job = %job.key(), error = %e, "warm-up read failed; candles at the resume point may be partial");
    }
}

/// Sends the stored trades of one instrument with times in `[from, at]`
/// to `out`, oldest first, reading an hour at a time: a candle stage warmed
/// up this way builds the candles still open at `at` from every trade, not
/// only from those that arrive next.
///
/// # Errors
/// When the store cannot be read. A closed `out` just stops it.
pub async fn replay_stored_trades(
    store: &dyn ck_store::Store,
    (exchange, instrument): (Exchange, &Instrument),
    mut from: Ts,
    at: Ts,
    out: &Sender<Event>,
) -> Result<u64, ck_store::Error> {
    let hour = Interval::H1.fixed_nanos().unwrap_or(3_600_000_000_000);
    let mut sent = 0;
    while from <= at {
        let to = Ts(from.0.saturating_add(hour).min(at.0.saturating_add(1)));
        let q = RangeQuery {
            exchange,
            instrument: instrument.clone(),
            from,
            to,
            limit: usize::MAX,
        };
        for t in store.trades(&q).await? {
            if out.send(Event::Trade(t)).await.is_err() {
                return Ok(sent);
            }
            sent += 1;
        }
        from = to;
    }
    Ok(sent)
}

/// Runs jobs concurrently (one venue budget paces them all); returns each
/// job's report or error, in order.
pub async fn run_jobs(
    jobs: Vec<BackfillJob>,
    ctx: BackfillContext,
    meters: Vec<Arc<JobMeter>>,
) -> Vec<Result<JobReport, BackfillError>> {
    let mut tasks = Vec::new();
    for (job, meter) in jobs.into_iter().zip(meters) {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(
            async move { run_job(&job, &ctx, &meter).await },
        ));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(match t.await {
            Ok(r) => r,
            Err(e) => Err(BackfillError::Panicked(e.to_string())),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ck_model::{Decimal, Side};
    use ck_store::WriteBatch;

    fn okx(id: u64, fills: u32, ms: i64) -> Trade {
        Trade {
            exchange: Exchange::Okx,
            instrument: Instrument::new("BTC", "USDT"),
            trade_id: TradeId::Num(id),
            price: Decimal::from(30_000),
            size: Decimal::from(1),
            side: Side::Buy,
            ts_exchange: Ts::from_millis(ms),
            ts_received: Ts::from_millis(ms),
            fills,
        }
    }

    /// An OKX aggregate in the store (live `trades`: id 13 standing for
    /// fills 11..=13) covers REST's single fills 11, 12 and 13, not the
    /// fills around it; on other venues nothing is covered.
    #[tokio::test]
    async fn fills_inside_a_stored_okx_aggregate_are_covered() {
        let dir = tempfile::tempdir().expect("dir");
        let store = ck_store::sqlite::SqliteStore::open(
            &dir.path().join("s.db"),
            ck_store::sqlite::Durability::default(),
        )
        .expect("store");
        let batch = WriteBatch {
            trades: vec![okx(10, 1, 1_000), okx(13, 3, 1_001)],
            ..WriteBatch::default()
        };
        store.write(Arc::new(batch)).await.expect("write");
        let page: Vec<Trade> = (10..=14)
            .map(|id| okx(id, 1, 1_000 + (id > 10) as i64))
            .collect();
        let covering = stored_aggregates(&store, &page).await.expect("read");
        let mut ids: Vec<u64> = covering.keys().copied().collect();
        ids.sort_unstable();
        assert_eq!(ids, [11, 12, 13], "the fills of the aggregate 11..=13");
        assert!(
            covering
                .values()
                .all(|t| (t.trade_id.as_u64(), t.fills) == (Some(13), 3))
        );
        let mut binance = page.clone();
        for t in &mut binance {
            t.exchange = Exchange::Binance;
        }
        assert!(
            stored_aggregates(&store, &binance)
                .await
                .expect("read")
                .is_empty()
        );
    }
}
