//! `candlekeep migrate`: copies a whole store into another (SQLite to
//! PostgreSQL, or back), through the [`Store`] contract, so any pair of
//! backends works.
//!
//! Everything is copied: listings, trades, quotes, candles of every interval
//! (ours and the exchange's), gaps with their states, ingest errors, job
//! positions, alert rules (with their ids) and firings. Rows are read in
//! pages by time and written in batches; the target deduplicates, so a copy
//! that stopped can simply run again.

use std::collections::HashSet;
use std::sync::Arc;

use ck_model::{Exchange, Instrument, Interval, Quote, Trade, Ts};
use ck_store::{CandleSource, RangeQuery, Store, WriteBatch, WriteSummary};

/// Rows read per page.
const PAGE: usize = 20_000;

/// What was copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Instruments.
    pub instruments: u64,
    /// Trades read from the source.
    pub trades: u64,
    /// Of those, trades the target did not hold yet.
    pub trades_inserted: u64,
    /// Quotes read.
    pub quotes: u64,
    /// Candles read (both sources, every interval).
    pub candles: u64,
    /// Gaps.
    pub gaps: u64,
    /// Ingest errors.
    pub errors: u64,
    /// Job positions.
    pub jobs: u64,
    /// Alert rules.
    pub rules: u64,
    /// Alert firings.
    pub firings: u64,
}

async fn write(to: &dyn Store, batch: WriteBatch) -> anyhow::Result<()> {
    write_counted(to, batch).await.map(|_| ())
}

/// Writes `batch`; what the target made of it.
async fn write_counted(to: &dyn Store, batch: WriteBatch) -> anyhow::Result<WriteSummary> {
    if batch.is_empty() {
        return Ok(WriteSummary::default());
    }
    Ok(to.write(Arc::new(batch)).await?)
}

fn range(exchange: Exchange, instrument: &Instrument, from: Ts, limit: usize) -> RangeQuery {
    RangeQuery {
        exchange,
        instrument: instrument.clone(),
        from,
        to: Ts(i64::MAX),
        limit,
    }
}

/// Copies everything in `from` into `to`; `progress` hears about each step.
pub async fn copy_store(
    from: &dyn Store,
    to: &dyn Store,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<MigrateReport> {
    let mut report = MigrateReport::default();
    let instruments = from.instruments().await?;
    write(
        to,
        WriteBatch {
            instruments: instruments
                .iter()
                .filter(|i| !i.info.native_symbol.is_empty() || i.info.status.is_some())
                .map(|i| i.info.clone())
                .collect(),
            ..WriteBatch::default()
        },
    )
    .await?;
    for stored in &instruments {
        let (e, i) = (stored.info.exchange, &stored.info.instrument);
        report.instruments += 1;
        let (trades, inserted) = copy_trades(from, to, e, i).await?;
        let quotes = copy_quotes(from, to, e, i).await?;
        let mut candles = 0;
        for interval in Interval::ALL {
            for source in [CandleSource::Ours, CandleSource::Exchange] {
                candles += copy_candles(from, to, e, i, interval, source).await?;
            }
        }
        progress(&format!(
            "{e} {i}: {trades} trades ({inserted} new, {} already there), {quotes} quotes, {candles} candles",
            trades - inserted
        ));
        report.trades += trades;
        report.trades_inserted += inserted;
        report.quotes += quotes;
        report.candles += candles;
    }
    let gaps = from.gaps(None, None, usize::MAX >> 1).await?;
    report.gaps = gaps.len() as u64;
    write(
        to,
        WriteBatch {
            gaps,
            ..WriteBatch::default()
        },
    )
    .await?;
    let mut errors = from.ingest_errors(usize::MAX >> 1).await?;
    errors.reverse(); // oldest first, as they were recorded
    report.errors = errors.len() as u64;
    for chunk in errors.chunks(PAGE) {
        write(
            to,
            WriteBatch {
                errors: chunk.to_vec(),
                ..WriteBatch::default()
            },
        )
        .await?;
    }
    let jobs = from.backfill_jobs().await?;
    report.jobs = jobs.len() as u64;
    write(
        to,
        WriteBatch {
            progress: jobs,
            ..WriteBatch::default()
        },
    )
    .await?;
    for rule in from.alert_rules().await? {
        to.restore_alert_rule(&rule).await?;
        report.rules += 1;
    }
    let mut firings = from.firings(usize::MAX >> 1).await?;
    firings.reverse();
    // Firings have no natural key: one already in the target (same rule,
    // time and content) is not copied again.
    let present: HashSet<(String, Ts, String)> = to
        .firings(usize::MAX >> 1)
        .await?
        .into_iter()
        .map(|f| (f.rule_id, f.fired_at, f.firing))
        .collect();
    for f in firings {
        if present.contains(&(f.rule_id.clone(), f.fired_at, f.firing.clone())) {
            continue;
        }
        let id = to.record_firing(&f.rule_id, f.fired_at, &f.firing).await?;
        if let Some(d) = &f.deliveries {
            to.set_firing_deliveries(id, d).await?;
        }
        report.firings += 1;
    }
    progress(&format!(
        "{} gaps, {} ingest errors, {} job positions, {} alert rules, {} firings",
        report.gaps, report.errors, report.jobs, report.rules, report.firings
    ));
    Ok(report)
}

/// Pages through time with `read(from, limit)` (rows in time order) and
/// hands each page to `write`. `key` tells rows at the page's last time
/// apart, so the next page (starting at that time) skips the ones already
/// copied; a page holding one time only is read again, larger.
async fn copy_by_time<T, K: Eq + std::hash::Hash>(
    read: impl AsyncFn(Ts, usize) -> anyhow::Result<Vec<T>>,
    write_page: impl AsyncFn(Vec<T>) -> anyhow::Result<()>,
    time: impl Fn(&T) -> Ts,
    key: impl Fn(&T) -> K,
) -> anyhow::Result<u64> {
    let mut cursor = Ts(i64::MIN);
    let mut seen: HashSet<K> = HashSet::new();
    let mut limit = PAGE;
    let mut copied = 0;
    loop {
        let page = read(cursor, limit).await?;
        let full = page.len() == limit;
        let fresh: Vec<T> = page
            .into_iter()
            .filter(|r| !(time(r) == cursor && seen.contains(&key(r))))
            .collect();
        let Some(last) = fresh.last().map(&time) else {
            if full {
                limit *= 2;
                continue;
            }
            return Ok(copied);
        };
        if last != cursor {
            seen.clear();
        }
        seen.extend(fresh.iter().filter(|r| time(r) == last).map(&key));
        cursor = last;
        copied += fresh.len() as u64;
        write_page(fresh).await?;
        if !full {
            return Ok(copied);
        }
    }
}

/// Copies one instrument's trades: how many were read, and how many of
/// them the target did not hold yet.
async fn copy_trades(
    from: &dyn Store,
    to: &dyn Store,
    e: Exchange,
    i: &Instrument,
) -> anyhow::Result<(u64, u64)> {
    let inserted = std::sync::atomic::AtomicU64::new(0);
    let read = copy_by_time(
        async |at, limit| Ok(from.trades(&range(e, i, at, limit)).await?),
        async |trades: Vec<Trade>| {
            let summary = write_counted(
                to,
                WriteBatch {
                    trades,
                    ..WriteBatch::default()
                },
            )
            .await?;
            inserted.fetch_add(
                summary.trades_inserted,
                std::sync::atomic::Ordering::Relaxed,
            );
            Ok(())
        },
        |t| t.ts_exchange,
        |t| t.trade_id.clone(),
    )
    .await?;
    Ok((read, inserted.into_inner()))
}

async fn copy_quotes(
    from: &dyn Store,
    to: &dyn Store,
    e: Exchange,
    i: &Instrument,
) -> anyhow::Result<u64> {
    copy_by_time(
        async |at, limit| Ok(from.quotes(&range(e, i, at, limit)).await?),
        async |quotes: Vec<Quote>| {
            write(
                to,
                WriteBatch {
                    quotes,
                    ..WriteBatch::default()
                },
            )
            .await
        },
        |q| q.ts_exchange,
        |q| q.ts_received.0,
    )
    .await
}

async fn copy_candles(
    from: &dyn Store,
    to: &dyn Store,
    e: Exchange,
    i: &Instrument,
    interval: Interval,
    source: CandleSource,
) -> anyhow::Result<u64> {
    let mut cursor = Ts(i64::MIN);
    let mut copied = 0;
    loop {
        // Open times are unique per series: the next page starts after the last.
        let page = from
            .candles(&range(e, i, cursor, PAGE), interval, source)
            .await?;
        let Some(last) = page.last().map(|c| c.open_time) else {
            return Ok(copied);
        };
        let full = page.len() == PAGE;
        copied += page.len() as u64;
        let batch = match source {
            CandleSource::Ours => WriteBatch {
                candles: page,
                ..WriteBatch::default()
            },
            CandleSource::Exchange => WriteBatch {
                exchange_candles: page,
                ..WriteBatch::default()
            },
        };
        write(to, batch).await?;
        if !full {
            return Ok(copied);
        }
        cursor = Ts(last.0 + 1);
    }
}
