//! candlekeep sinks: where events leave the pipeline.
//!
//! [`redis`] keeps hot state and pub/sub in Redis for outside apps.
//!
//! [`StoreWriter`] batches events into [`ck_store::WriteBatch`]es and commits
//! them. A batch is committed when it is full, or when its oldest event has
//! waited the flush interval, whichever is first: under load batches grow to
//! the row limit, and a trickle is committed within the interval. Repeated updates of one candle inside a batch
//! are coalesced to the newest. A failed commit is retried with backoff,
//! holding the batch: meanwhile the bounded input fills and the pipeline
//! waits, so nothing is dropped.

#![warn(missing_docs)]

pub mod kafka;
pub mod kafka_bus;
pub mod nats;
pub mod redis;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ck_bus::metrics::{self, Counter};
use ck_bus::{Event, Receiver};
use ck_model::{Exchange, Instrument, Interval, Ts};
use ck_store::{Store, WriteBatch, WriteSummary};

/// Settings of the store writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Commit once a batch holds this many rows.
    pub batch_rows: usize,
    /// Commit at most this long after the oldest uncommitted event arrived.
    pub flush_interval: Duration,
    /// First retry delay after a failed commit; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Attempts at one commit before giving up (finite runs: a full disk
    /// ends the run with its cause); `None` retries forever (live runs
    /// hold their queued work until the store takes it again).
    pub give_up_after: Option<u32>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            batch_rows: 20_000,
            flush_interval: Duration::from_millis(50),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            give_up_after: None,
        }
    }
}

/// What the writer committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Commits made.
    pub commits: u64,
    /// Commits that failed and were retried.
    pub failed_commits: u64,
    /// Sum of the commits' summaries.
    pub written: WriteSummary,
    /// Why the writer gave up (after `give_up_after` failed attempts at one
    /// commit), with the store's cause; what it committed before stays.
    pub gave_up: Option<String>,
}

type CandleKey = (Exchange, Instrument, Interval, Ts);

#[derive(Default)]
struct Pending {
    batch: WriteBatch,
    candle_index: HashMap<CandleKey, usize>,
}

impl Pending {
    fn push(&mut self, event: Event) {
        match event {
            Event::Trade(t) => self.batch.trades.push(t),
            Event::Quote(q) => self.batch.quotes.push(q),
            Event::Instrument(i) => self.batch.instruments.push(i),
            Event::IngestError(e) => self.batch.errors.push(e),
            Event::Gap(g) => self.batch.gaps.push(g),
            Event::ExchangeCandle(c) => self.batch.exchange_candles.push(*c),
            Event::Progress(p) => self.batch.progress.push(p),
            // The candle stage's business; nothing to store.
            Event::Release(_) => {}
            Event::Candle(c) => {
                let key = (c.exchange, c.instrument.clone(), c.interval, c.open_time);
                match self.candle_index.get(&key) {
                    Some(&i) => self.batch.candles[i] = *c,
                    None => {
                        self.candle_index.insert(key, self.batch.candles.len());
                        self.batch.candles.push(*c);
                    }
                }
            }
        }
    }

    fn take(&mut self) -> WriteBatch {
        self.candle_index.clear();
        std::mem::take(&mut self.batch)
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    if let Some(t) = deadline {
        tokio::time::sleep_until(t).await;
    }
}

/// Commits pipeline events to a [`Store`].
pub struct StoreWriter {
    store: Arc<dyn Store>,
    config: WriterConfig,
    stats: WriterStats,
    rows: Arc<Counter>,
    failures: Arc<Counter>,
    /// The name its problems are reported under (`ck_bus::health`).
    stage: &'static str,
}

impl StoreWriter {
    /// A writer into `store`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, config: WriterConfig) -> StoreWriter {
        StoreWriter {
            store,
            config,
            stats: WriterStats::default(),
            rows: metrics::counter("candlekeep_store_rows_written_total"),
            failures: metrics::counter("candlekeep_store_commit_failures_total"),
            stage: "store writer",
        }
    }

    /// The same writer, reporting its problems as `stage`.
    #[must_use]
    pub fn named(mut self, stage: &'static str) -> StoreWriter {
        self.stage = stage;
        self
    }

    /// Runs until `input` closes and everything received is committed.
    pub async fn run(mut self, mut input: Receiver<Event>) -> WriterStats {
        let mut pending = Pending::default();
        let mut buf = Vec::with_capacity(4096);
        // When the oldest uncommitted event arrived.
        let mut oldest: Option<tokio::time::Instant> = None;
        loop {
            let deadline = oldest.map(|t| t + self.config.flush_interval);
            tokio::select! {
                n = input.recv_many(&mut buf, 4096) => {
                    if n == 0 {
                        break;
                    }
                    oldest.get_or_insert_with(tokio::time::Instant::now);
                    for e in buf.drain(..) {
                        pending.push(e);
                    }
                    if pending.batch.len() >= self.config.batch_rows {
                        if !self.commit(pending.take()).await {
                            return self.stats;
                        }
                        oldest = None;
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    if !pending.batch.is_empty() && !self.commit(pending.take()).await {
                        return self.stats;
                    }
                    oldest = None;
                }
            }
        }
        if !pending.batch.is_empty() {
            self.commit(pending.take()).await;
        }
        self.stats
    }

    /// Commits one batch, retrying with backoff until it succeeds (true),
    /// or until `give_up_after` attempts failed (false: the run ends).
    /// While commits fail the writer reports itself in `ck_bus::health`,
    /// naming the store's cause (a full disk, a lost server).
    async fn commit(&mut self, batch: WriteBatch) -> bool {
        let rows = batch.len() as u64;
        let batch = Arc::new(batch);
        let mut delay = self.config.initial_backoff;
        let mut attempts = 0_u32;
        loop {
            attempts += 1;
            match self.store.write(batch.clone()).await {
                Ok(s) => {
                    if attempts > 1 {
                        tracing::info!(attempts, "store commit succeeded again");
                        ck_bus::health::clear(self.stage);
                    }
                    self.stats.commits += 1;
                    let w = &mut self.stats.written;
                    w.trades_inserted += s.trades_inserted;
                    w.trades_duplicate += s.trades_duplicate;
                    w.candles_upserted += s.candles_upserted;
                    w.quotes_inserted += s.quotes_inserted;
                    self.rows.inc_by(rows);
                    return true;
                }
                Err(e) => {
                    self.stats.failed_commits += 1;
                    self.failures.inc();
                    let cause = ck_bus::error_chain(&e);
                    if self.config.give_up_after.is_some_and(|n| attempts >= n) {
                        tracing::error!(error = %cause, rows, attempts, "store commit failed; giving up");
                        self.stats.gave_up = Some(format!(
                            "{attempts} attempts at a commit of {rows} rows failed: {cause}"
                        ));
                        return false;
                    }
                    tracing::error!(error = %cause, rows, retry_in = ?delay, "store commit failed; holding the batch and retrying");
                    ck_bus::health::report(
                        self.stage,
                        format!("commits fail and are retried, holding queued work: {cause}"),
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.max_backoff);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ck_bus::{Event, channel};
    use ck_model::{Candle, CandleState, Decimal, Exchange, Instrument, Interval, Ts};
    use ck_store::sqlite::{Durability, SqliteStore};
    use ck_store::{CandleSource, Error, RangeQuery, Store, StoreCounts, StoredInstrument};

    use super::*;

    /// The real SQLite store behind a switch that refuses the first commits,
    /// as a full disk or a locked database would.
    #[derive(Debug)]
    struct Flaky {
        inner: SqliteStore,
        refuse: AtomicUsize,
        batches: Mutex<Vec<usize>>,
    }

    impl Flaky {
        /// A SQLite store in `dir` that refuses its first `refuse` commits.
        fn over(dir: &std::path::Path, refuse: usize) -> Arc<Flaky> {
            Arc::new(Flaky {
                inner: SqliteStore::open(&dir.join("s.sqlite"), Durability::Normal).expect("open"),
                refuse: AtomicUsize::new(refuse),
                batches: Mutex::new(Vec::new()),
            })
        }
    }

    #[async_trait::async_trait]
    impl Store for Flaky {
        async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteSummary, Error> {
            if self.refuse.load(Ordering::SeqCst) > 0 {
                self.refuse.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::Io {
                    path: "test".into(),
                    source: std::io::Error::other("disk full"),
                });
            }
            self.batches.lock().expect("lock").push(batch.len());
            self.inner.write(batch).await
        }
        async fn candles(
            &self,
            q: &RangeQuery,
            i: Interval,
            s: CandleSource,
        ) -> Result<Vec<Candle>, Error> {
            self.inner.candles(q, i, s).await
        }
        async fn prune(&self, plan: &ck_store::PrunePlan) -> Result<ck_store::PruneReport, Error> {
            self.inner.prune(plan).await
        }
        async fn alert_rules(&self) -> Result<Vec<ck_store::StoredRule>, Error> {
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
        async fn firings(&self, limit: usize) -> Result<Vec<ck_store::StoredFiring>, Error> {
            self.inner.firings(limit).await
        }
        async fn candles_newest_first(
            &self,
            q: &RangeQuery,
            i: Interval,
            s: CandleSource,
        ) -> Result<Vec<Candle>, Error> {
            self.inner.candles_newest_first(q, i, s).await
        }
        async fn trades(&self, q: &RangeQuery) -> Result<Vec<ck_model::Trade>, Error> {
            self.inner.trades(q).await
        }
        async fn quotes(&self, q: &RangeQuery) -> Result<Vec<ck_model::Quote>, Error> {
            self.inner.quotes(q).await
        }
        async fn latest_candle(
            &self,
            e: Exchange,
            i: &Instrument,
            iv: Interval,
        ) -> Result<Option<Candle>, Error> {
            self.inner.latest_candle(e, i, iv).await
        }
        async fn latest_quote(
            &self,
            e: Exchange,
            i: &Instrument,
        ) -> Result<Option<ck_model::Quote>, Error> {
            self.inner.latest_quote(e, i).await
        }
        async fn last_trade(
            &self,
            e: Exchange,
            i: &Instrument,
        ) -> Result<Option<ck_model::Trade>, Error> {
            self.inner.last_trade(e, i).await
        }
        async fn backfill_progress(
            &self,
            job: &str,
        ) -> Result<Option<ck_model::BackfillProgress>, Error> {
            self.inner.backfill_progress(job).await
        }
        async fn instruments(&self) -> Result<Vec<StoredInstrument>, Error> {
            self.inner.instruments().await
        }
        async fn backfill_jobs(&self) -> Result<Vec<ck_model::BackfillProgress>, Error> {
            self.inner.backfill_jobs().await
        }
        async fn forget_jobs(&self, prefix: &str, before: Ts) -> Result<u64, Error> {
            self.inner.forget_jobs(prefix, before).await
        }
        async fn restore_alert_rule(&self, rule: &ck_store::StoredRule) -> Result<(), Error> {
            self.inner.restore_alert_rule(rule).await
        }
        async fn ingest_errors(&self, n: usize) -> Result<Vec<ck_bus::IngestError>, Error> {
            self.inner.ingest_errors(n).await
        }
        async fn gaps(
            &self,
            e: Option<Exchange>,
            i: Option<&Instrument>,
            n: usize,
        ) -> Result<Vec<ck_model::Gap>, Error> {
            self.inner.gaps(e, i, n).await
        }
        async fn counts(&self) -> Result<StoreCounts, Error> {
            self.inner.counts().await
        }
        async fn ping(&self) -> Result<(), Error> {
            self.inner.ping().await
        }
        async fn oldest_time(
            &self,
            kind: ck_store::RowKind,
            exchange: Exchange,
            instrument: &Instrument,
            from: Ts,
        ) -> Result<Option<Ts>, Error> {
            self.inner
                .oldest_time(kind, exchange, instrument, from)
                .await
        }
        async fn delete_archived(&self, rows: ck_store::ArchivedRows<'_>) -> Result<u64, Error> {
            self.inner.delete_archived(rows).await
        }
        async fn reclaim_space(&self) -> Result<(), Error> {
            self.inner.reclaim_space().await
        }

        fn backend(&self) -> String {
            self.inner.backend()
        }
    }

    fn candle(open_secs: i64, close: &str, state: CandleState) -> Candle {
        let d = |s: &str| Decimal::parse(s).expect("decimal");
        Candle {
            exchange: Exchange::Binance,
            instrument: Instrument::parse("BTC-USDT").expect("i"),
            interval: Interval::M1,
            open_time: Ts::from_secs(open_secs),
            open: d("1"),
            high: d("2"),
            low: d("1"),
            close: d(close),
            volume: d("1"),
            quote_volume: d("1"),
            vwap: d("1"),
            taker_buy_volume: d("0"),
            trades: 1,
            first_trade_id: None,
            last_trade_id: None,
            state,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_commits_are_retried_and_nothing_is_lost() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Flaky::over(dir.path(), 3);
        let (tx, rx) = channel::<Event>("writer-test", 64);
        let writer = tokio::spawn(StoreWriter::new(store.clone(), WriterConfig::default()).run(rx));
        // Three updates of one candle and one of another: coalesced to two rows.
        for (open, close, state) in [
            (0, "1.1", CandleState::Provisional),
            (0, "1.2", CandleState::Provisional),
            (0, "1.3", CandleState::Closed),
            (60, "9", CandleState::Provisional),
        ] {
            tx.send(Event::Candle(Box::new(candle(open, close, state))))
                .await
                .expect("send");
        }
        drop(tx);
        let stats = writer.await.expect("join");
        assert_eq!(
            stats.failed_commits, 3,
            "three refusals, each retried after backoff"
        );
        assert_eq!(stats.commits, 1);
        assert_eq!(
            *store.batches.lock().expect("lock"),
            vec![2],
            "repeated candle updates coalesce"
        );
        let q = RangeQuery {
            exchange: Exchange::Binance,
            instrument: Instrument::parse("BTC-USDT").expect("i"),
            from: Ts(0),
            to: Ts::from_secs(120),
            limit: 10,
        };
        let got = store
            .candles(&q, Interval::M1, CandleSource::Ours)
            .await
            .expect("query");
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].close.to_string(), got[0].state),
            ("1.3".to_owned(), CandleState::Closed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_finite_run_gives_up_naming_the_cause_and_keeps_what_it_committed() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Flaky::over(dir.path(), 0);
        let (tx, rx) = channel::<Event>("writer-give-up-test", 64);
        let config = WriterConfig {
            give_up_after: Some(4),
            ..WriterConfig::default()
        };
        let writer = tokio::spawn(
            StoreWriter::new(store.clone(), config)
                .named("test writer")
                .run(rx),
        );
        tx.send(Event::Candle(Box::new(candle(0, "1", CandleState::Closed))))
            .await
            .expect("send");
        // Let the first commit land, then the disk fills.
        tokio::time::sleep(Duration::from_secs(1)).await;
        store.refuse.store(usize::MAX, Ordering::SeqCst);
        tx.send(Event::Candle(Box::new(candle(
            60,
            "2",
            CandleState::Closed,
        ))))
        .await
        .expect("send");
        // While it retries, the writer is reported not ready, with the cause.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            ck_bus::health::problems()
                .iter()
                .any(|p| p.starts_with("test writer: commits fail") && p.contains("disk full")),
            "{:?}",
            ck_bus::health::problems()
        );
        let stats = writer.await.expect("join");
        let why = stats.gave_up.expect("gave up");
        assert!(
            why.contains("4 attempts") && why.contains("disk full"),
            "{why}"
        );
        assert_eq!((stats.commits, stats.failed_commits), (1, 4));
        let q = RangeQuery {
            exchange: Exchange::Binance,
            instrument: Instrument::parse("BTC-USDT").expect("i"),
            from: Ts(0),
            to: Ts::from_secs(120),
            limit: 10,
        };
        let got = store
            .inner
            .candles(&q, Interval::M1, CandleSource::Ours)
            .await
            .expect("query");
        assert_eq!(got.len(), 1, "the committed candle stays");
        ck_bus::health::clear("test writer");
    }
}
