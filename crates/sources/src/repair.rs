//! Automatic gap repair: every open gap is fetched from the venue's REST
//! history and fed through the normal path (trades into the candle stage, so
//! candles are revised), then recorded as filled, or as unfillable with the
//! reason.
//!
//! - A gap with trade ids (`first_missing_id..=last_missing_id`) is fetched
//!   by id; ids the venue no longer serves make it unfillable.
//! - A gap without ids (a reconnect window) is fetched by time: from the first
//!   trade at `from_ts` until a trade after `to_ts`.
//! - A venue whose history is read by time (Bitfinex) has every gap fetched
//!   by its time window: the trades between the two trades around an id gap,
//!   or a reconnect window widened by a margin.
//!
//! Duplicates are harmless: the store keeps one row per trade id, and the
//! aggregator drops ids it has seen.

use std::collections::HashMap;
use std::sync::Arc;

use crate::history::{History, HistoryError};
use ck_bus::metrics;
use ck_bus::{Closed, Event, Sender};
use ck_model::{Exchange, Gap, GapState, Trade, TradeId, Ts};
use tokio_util::sync::CancellationToken;

/// What the repairer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairStats {
    /// Gaps filled.
    pub filled: u64,
    /// Gaps found unfillable.
    pub unfillable: u64,
    /// Trades fetched and fed through the pipeline.
    pub trades: u64,
}

/// Venue histories by exchange.
pub type Histories = HashMap<Exchange, Arc<dyn History>>;

/// Repairs gaps from `gaps` until it closes or `stop` is cancelled (gaps not
/// reached stay open in the store and are retried at the next start).
pub async fn run_gap_repair(
    mut gaps: tokio::sync::mpsc::Receiver<Gap>,
    histories: Histories,
    out: Sender<Event>,
    stop: CancellationToken,
) -> RepairStats {
    let mut stats = RepairStats::default();
    let filled = metrics::counter("candlekeep_gaps_filled_total");
    let unfillable = metrics::counter("candlekeep_gaps_unfillable_total");
    loop {
        let gap = tokio::select! {
            () = stop.cancelled() => break,
            gap = gaps.recv() => match gap {
                Some(g) => g,
                None => break,
            },
        };
        if gap.state != GapState::Open {
            continue;
        }
        let result = tokio::select! {
            () = stop.cancelled() => break,
            r = repair_one(&gap, histories.get(&gap.exchange), &out) => r,
        };
        let (state, reason, fetched) = match result {
            Ok(Outcome::Filled(n)) => (
                GapState::Filled,
                format!("{}; filled: {n} trades fetched over REST", gap.reason),
                n,
            ),
            Ok(Outcome::Unfillable(why, n)) => (
                GapState::Unfillable,
                format!("{}; unfillable: {why}", gap.reason),
                n,
            ),
            Err(Failure::Closed) => break,
            Err(Failure::History(e)) => (
                GapState::Unfillable,
                format!("{}; unfillable: REST repair failed: {e}", gap.reason),
                0,
            ),
        };
        stats.trades += fetched;
        if state == GapState::Filled {
            stats.filled += 1;
            filled.inc();
            tracing::info!(exchange = %gap.exchange, instrument = %gap.instrument, fetched, "gap filled");
        } else {
            stats.unfillable += 1;
            unfillable.inc();
            tracing::warn!(exchange = %gap.exchange, instrument = %gap.instrument, %reason, "gap unfillable");
        }
        let update = Gap {
            state,
            reason,
            ..gap
        };
        if out.send(Event::Gap(update)).await.is_err() {
            break;
        }
    }
    stats
}

enum Outcome {
    Filled(u64),
    Unfillable(String, u64),
}

enum Failure {
    Closed,
    History(HistoryError),
}

impl From<Closed> for Failure {
    fn from(_: Closed) -> Self {
        Failure::Closed
    }
}

impl From<HistoryError> for Failure {
    fn from(e: HistoryError) -> Self {
        Failure::History(e)
    }
}

/// How far a reconnect window is widened on each side.
const RECONNECT_MARGIN: Ts = Ts::from_secs(5);

fn numeric_id(t: &Trade) -> Option<u64> {
    match t.trade_id {
        TradeId::Num(id) => Some(id),
        TradeId::Str(_) => None,
    }
}

async fn repair_one(
    gap: &Gap,
    history: Option<&Arc<dyn History>>,
    out: &Sender<Event>,
) -> Result<Outcome, Failure> {
    let Some(history) = history else {
        return Ok(Outcome::Unfillable(
            format!("no REST history for {}", gap.exchange),
            0,
        ));
    };
    let page = history.page_size();
    if history.by_time() {
        return repair_by_time(gap, history.as_ref(), out).await;
    }
    match (gap.first_missing_id, gap.last_missing_id) {
        (Some(first), Some(last)) if first <= last => {
            let mut next = first;
            let mut got = 0u64;
            while next <= last {
                let want = u32::try_from(last - next + 1).unwrap_or(page).min(page);
                let trades = history.trades_from_id(&gap.instrument, next, want).await?;
                let Some(end) = trades.last().and_then(numeric_id) else {
                    break;
                };
                for t in trades {
                    // The missing ids this trade accounts for (an aggregated
                    // OKX trade, several).
                    if let Some((a, b)) = t.id_span()
                        && b <= last
                    {
                        got += b - a.max(first) + 1;
                        out.send(Event::Trade(t)).await?;
                    }
                }
                next = end + 1;
            }
            let expected = last - first + 1;
            if got == expected {
                Ok(Outcome::Filled(got))
            } else {
                Ok(Outcome::Unfillable(
                    format!("the venue served {got} of the {expected} missing trades"),
                    got,
                ))
            }
        }
        _ => {
            // A reconnect window: everything from its start to its end. Its
            // bounds are receive times; widen them so that exchange times
            // a little earlier or later are covered too.
            let from = Ts(gap.from_ts.0.saturating_sub(RECONNECT_MARGIN.0));
            let to = Ts(gap.to_ts.0.saturating_add(RECONNECT_MARGIN.0));
            let Some(mut next) = history.first_trade_id_at(&gap.instrument, from).await? else {
                return Ok(Outcome::Filled(0));
            };
            let mut got = 0u64;
            loop {
                let trades = history.trades_from_id(&gap.instrument, next, page).await?;
                let full = trades.len() as u32 >= page;
                let Some(end) = trades.last().and_then(numeric_id) else {
                    break;
                };
                let mut past = false;
                for t in trades {
                    if t.ts_exchange > to {
                        past = true;
                        break;
                    }
                    got += 1;
                    out.send(Event::Trade(t)).await?;
                }
                if past || !full {
                    break;
                }
                next = end + 1;
            }
            Ok(Outcome::Filled(got))
        }
    }
}

/// Fetches a gap's time window from a venue read by time, page after page
/// from the window's start (each page starts at the last trade's instant;
/// trades seen there already are skipped), until a trade after the window.
async fn repair_by_time(
    gap: &Gap,
    history: &dyn History,
    out: &Sender<Event>,
) -> Result<Outcome, Failure> {
    let ids = gap.first_missing_id.zip(gap.last_missing_id);
    let (from, to) = if ids.is_some() {
        (gap.from_ts, gap.to_ts)
    } else {
        (
            Ts(gap.from_ts.0.saturating_sub(RECONNECT_MARGIN.0)),
            Ts(gap.to_ts.0.saturating_add(RECONNECT_MARGIN.0)),
        )
    };
    let page = history.page_size();
    let mut cursor = from;
    let mut seen: std::collections::HashSet<TradeId> = std::collections::HashSet::new();
    let (mut got, mut in_ids) = (0u64, 0u64);
    loop {
        let trades = history
            .trades_from_time(&gap.instrument, cursor, page)
            .await?;
        let full = trades.len() as u32 >= page;
        let first_time = trades.first().map(|t| t.ts_exchange);
        let Some(last) = trades.last().map(|t| t.ts_exchange) else {
            if history.keeps_only().is_some() {
                return Ok(Outcome::Unfillable(
                    format!(
                        "{} served no recent trades at or after {from}",
                        gap.exchange
                    ),
                    got,
                ));
            }
            break;
        };
        let mut fresh = 0;
        let mut past = false;
        for t in trades {
            if t.ts_exchange > to {
                past = true;
                break;
            }
            // (Venues that keep only recent trades send older ones too.)
            if t.ts_exchange < from {
                continue;
            }
            if !seen.insert(t.trade_id.clone()) {
                continue;
            }
            fresh += 1;
            if let (Some((first, last_id)), Some(id)) = (ids, numeric_id(&t))
                && (first..=last_id).contains(&id)
            {
                in_ids += 1;
            }
            got += 1;
            out.send(Event::Trade(t)).await?;
        }
        if let Some(keeps) = history.keeps_only() {
            // One page is all the venue has: does it reach back to the
            // gap (its margins aside)?
            return Ok(match first_time {
                Some(oldest) if oldest > gap.from_ts => Outcome::Unfillable(
                    format!(
                        "{} serves only {keeps}; the oldest was at {oldest}, after the gap's start {}",
                        gap.exchange, gap.from_ts
                    ),
                    got,
                ),
                _ => Outcome::Filled(got),
            });
        }
        if past || !full {
            break;
        }
        if fresh == 0 {
            return Ok(Outcome::Unfillable(
                format!(
                    "more than {page} trades at {last}: the venue's pages cannot pass that instant"
                ),
                got,
            ));
        }
        cursor = last;
    }
    match ids {
        Some((first, last)) if in_ids < last - first + 1 => Ok(Outcome::Unfillable(
            format!(
                "the venue served {in_ids} of the {} missing trades",
                last - first + 1
            ),
            got,
        )),
        _ => Ok(Outcome::Filled(got)),
    }
}

/// A gap from the last stored trade to the first live one, found at start
/// when ids are sequential (trades missed while candlekeep was down).
#[must_use]
pub fn startup_seed(last: &Trade) -> Option<(u64, Ts)> {
    numeric_id(last).map(|id| (id, last.ts_exchange))
}
