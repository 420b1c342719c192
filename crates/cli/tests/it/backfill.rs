//! REST backfill from the mock: many pages, 429s on the way, interrupted
//! halfway and resumed, complete with no duplicates; then the exchange's
//! candles are fetched and `verify` finds ours equal.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ck_app::backfill::{BackfillJob, BackfillKind, JobMeter};
use ck_app::config::Settings;
use ck_app::pipeline::{PipelineReport, Source, SourceReport, run_pipeline};
use ck_mock::binance::{Faults, MockBinance, MockOptions};
use ck_model::{Exchange, Interval, TradeId, Ts};
use ck_sources::binance::BinanceRest;
use ck_sources::history::History;
use ck_sources::rest::{RestClient, RestSettings};
use ck_store::{CandleSource, Store};
use tokio_util::sync::CancellationToken;

use crate::support::{
    assert_candles_match, binance_messages, btc, eventually, everything, expected_candles,
    settings, to_trade,
};

fn history(mock: &MockBinance) -> Arc<dyn History> {
    let mut rest = RestSettings::new(mock.rest_url());
    rest.backoff.initial = Duration::from_millis(10);
    let client = RestClient::new(Exchange::Binance, rest).expect("client");
    Arc::new(BinanceRest::new(Arc::new(client)))
}

pub(crate) async fn run(
    settings: &Settings,
    store: Arc<dyn Store>,
    jobs: Vec<BackfillJob>,
    history: Arc<dyn History>,
    stop_after_pages: Option<u64>,
) -> PipelineReport {
    let meters: Vec<Arc<JobMeter>> = jobs.iter().map(|_| Arc::default()).collect();
    let token = CancellationToken::new();
    if let Some(pages) = stop_after_pages {
        let (meter, token) = (meters[0].clone(), token.clone());
        tokio::spawn(async move {
            eventually(Duration::from_secs(30), || {
                let m = meter.clone();
                async move { m.pages.load(Ordering::SeqCst) >= pages }
            })
            .await;
            token.cancel();
        });
    }
    let source = Source::Backfill {
        jobs,
        history,
        meters,
    };
    run_pipeline(settings, store, vec![source], None, token)
        .await
        .expect("pipeline")
}

pub(crate) fn job_reports(report: &PipelineReport) -> Vec<ck_app::backfill::JobReport> {
    report
        .sources
        .iter()
        .flat_map(|s| match s {
            SourceReport::Backfill(jobs) => jobs
                .iter()
                .map(|j| j.clone().expect("job succeeded"))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_is_interrupted_resumed_and_complete_without_duplicates() {
    let recording = binance_messages(usize::MAX);
    let mock = MockBinance::start(
        &recording,
        MockOptions {
            faults: Faults {
                rest_429_every: Some(6),
                ..Faults::default()
            },
            ..MockOptions::default()
        },
    )
    .await
    .expect("mock");
    let all = mock.trades("BTCUSDT");
    assert!(
        all.len() > 5_000,
        "enough for many 1000-trade pages: {}",
        all.len()
    );
    let from = Ts::from_millis(all[0].time_ms);
    let to = Ts::from_millis(all[all.len() - 1].time_ms + 1);
    let trades_job = BackfillJob {
        exchange: Exchange::Binance,
        instrument: btc(),
        from,
        to,
        kind: BackfillKind::Trades,
    };

    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let q = everything(btc());

    // First run: stopped after three pages.
    let first = run(
        &settings,
        store.clone(),
        vec![trades_job.clone()],
        history(&mock),
        Some(3),
    )
    .await;
    let first = &job_reports(&first)[0];
    assert!(!first.done, "interrupted: {first:?}");
    let partial = store.trades(&q).await.expect("trades").len();
    assert!(
        partial >= 3_000 && partial < all.len(),
        "{partial} of {}",
        all.len()
    );
    let progress = store
        .backfill_progress(&trades_job.key())
        .await
        .expect("progress")
        .expect("a position was committed");
    assert!(!progress.done);

    // Second run: continues from the stored position and finishes.
    let second = run(
        &settings,
        store.clone(),
        vec![trades_job.clone()],
        history(&mock),
        None,
    )
    .await;
    let second = &job_reports(&second)[0];
    assert!(second.done, "{second:?}");
    let pages = all.len().div_ceil(1_000) as u64;
    assert!(
        first.pages + second.pages <= pages + 1,
        "resumed, not restarted: {} + {} pages for {pages}",
        first.pages,
        second.pages
    );
    let stored = store.trades(&q).await.expect("trades");
    let mut ids: Vec<u64> = stored
        .iter()
        .map(|t| match t.trade_id {
            TradeId::Num(id) => id,
            TradeId::Str(_) => panic!("numeric ids"),
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(stored.len(), all.len(), "every trade once");
    assert_eq!(ids, all.iter().map(|t| t.id).collect::<Vec<_>>());

    // 429s were met, recorded with URL and status, and retried.
    let errors = store.ingest_errors(1_000).await.expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e.message.starts_with("HTTP 429")
                && e.origin.contains("/api/v3/historicalTrades")),
        "{errors:?}"
    );

    // Candles across the interruption equal those of the complete set.
    let trades: Vec<_> = all.iter().map(to_trade).collect();
    for interval in [Interval::S1, Interval::M1] {
        let expected = expected_candles(&settings, &trades, interval);
        assert_candles_match(store.as_ref(), &expected, interval).await;
    }

    // A third run has nothing left to do and asks the venue nothing.
    let before = mock.rest_requests();
    let third = run(
        &settings,
        store.clone(),
        vec![trades_job.clone()],
        history(&mock),
        None,
    )
    .await;
    assert!(job_reports(&third)[0].already_done);
    assert_eq!(mock.rest_requests(), before);

    // The exchange's own 1m candles, stored apart, verify against ours.
    let candles_job = BackfillJob {
        kind: BackfillKind::Candles(Interval::M1),
        ..trades_job
    };
    run(
        &settings,
        store.clone(),
        vec![candles_job],
        history(&mock),
        None,
    )
    .await;
    let range = ck_store::RangeQuery {
        from: Interval::M1.bucket_start(from),
        to,
        ..q
    };
    let theirs = store
        .candles(&range, Interval::M1, CandleSource::Exchange)
        .await
        .expect("exchange candles");
    assert!(theirs.len() >= 5, "{}", theirs.len());
    let ours = store
        .candles(&range, Interval::M1, CandleSource::Ours)
        .await
        .expect("our candles");
    let report = ck_app::verify::compare(&ours, &theirs, Exchange::Binance.candle_fields());
    assert_eq!(
        report.differences,
        Vec::new(),
        "our candles equal the exchange's"
    );
    assert_eq!(report.compared, theirs.len());
}

/// `candlekeep backfill --exchange coinbase-exchange` over the time span of
/// the recorded Coinbase Exchange trades, from the mock's REST trades: the
/// store ends with exactly the recorded trades of that product in the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_exchange_trades_backfill_from_the_command_line() {
    use ck_bus::Origin;
    let messages = crate::support::recording("cryptofeed/COINBASE_EXCHANGE.ws.28.0");
    let rest = ck_mock::coinbase_exchange::MockCoinbaseRest::start(&messages)
        .await
        .expect("rest mock");
    // The product with the most recorded trades, and their times.
    let mut by_product: std::collections::BTreeMap<String, Vec<(u64, Ts)>> = Default::default();
    for m in messages.iter().filter(|m| m.origin == Origin::Ws) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&m.data) else {
            continue;
        };
        if v["type"] == "match" || v["type"] == "last_match" {
            by_product
                .entry(v["product_id"].as_str().expect("product").to_owned())
                .or_default()
                .push((
                    v["trade_id"].as_u64().expect("id"),
                    Ts::parse(v["time"].as_str().expect("time")).expect("time"),
                ));
        }
    }
    let (product, recorded) = by_product
        .into_iter()
        .max_by_key(|(_, t)| t.len())
        .expect("a product");
    trades_backfill_from_the_command_line(Exchange::CoinbaseExchange, &product, recorded, &rest)
        .await;
}

/// `candlekeep backfill --exchange okx` over the time span of the recorded
/// OKX spot trades, from the mock's `history-trades`: the first trade by
/// time windows, then windows of ids; exactly the recorded trades, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okx_trades_backfill_from_the_command_line() {
    let messages = crate::support::recording("cryptofeed/OKX.jsonl.zst");
    let rest = ck_mock::okx::MockOkxRest::start(&messages, None)
        .await
        .expect("rest mock");
    let (instrument, trades) = crate::support::busiest_instrument(&messages);
    assert!(trades.len() >= 50, "{} trades", trades.len());
    let recorded = trades
        .iter()
        .map(|t| (t.trade_id.as_u64().expect("numeric id"), t.ts_exchange))
        .collect();
    trades_backfill_from_the_command_line(Exchange::Okx, &instrument.to_string(), recorded, &rest)
        .await;
}

/// OKX history as aggregates (as the `trades` channel pushes them since
/// 2023: `count` fills under the last fill's id) backfilled first, then
/// the same trades as single fills from another REST root: the fills
/// inside the stored aggregates are not counted again, so the store keeps
/// exactly the aggregates, every recorded fill counted once, and the
/// candles the second backfill builds equal the first's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okx_single_fills_after_aggregates_count_nothing_twice() {
    use ck_model::{Decimal, Interval};
    use ck_store::CandleSource;
    let messages = crate::support::recording("cryptofeed/OKX.jsonl.zst");
    let aggregating = ck_mock::okx::MockOkxRest::start_with(&messages, None, true)
        .await
        .expect("rest mock");
    let single = ck_mock::okx::MockOkxRest::start(&messages, None)
        .await
        .expect("rest mock");
    assert!(
        aggregating.trades() < single.trades(),
        "the recording has fills to aggregate: {} rows of {}",
        aggregating.trades(),
        single.trades()
    );
    let (instrument, trades) = crate::support::busiest_instrument(&messages);
    let volume = trades
        .iter()
        .try_fold(Decimal::ZERO, |sum, t| sum.checked_add(t.size))
        .expect("sum");
    let from = trades.first().expect("a trade").ts_exchange;
    let to = Ts(trades.last().expect("a trade").ts_exchange.0 + 1);
    let dir = tempfile::tempdir().expect("dir");
    let backfill = |from: Ts, url: String| {
        let (d, product) = (dir.path().to_owned(), instrument.to_string());
        tokio::task::spawn_blocking(move || {
            let (from, to) = (from.to_string(), to.to_string());
            let out = crate::support::candlekeep(
                &d,
                &[
                    "backfill",
                    "--exchange",
                    "okx",
                    "--instrument",
                    &product,
                    "--from",
                    &from,
                    "--to",
                    &to,
                    "--candles",
                    "1m",
                    "--trades",
                    "--rest-url",
                    &url,
                ],
            );
            assert!(
                out.status.success(),
                "{}",
                crate::support::text(&out.stderr)
            );
        })
    };
    let s = settings(dir.path());
    let read = || async {
        let store = ck_app::open_store(&s).await.expect("store");
        let all = ck_store::RangeQuery {
            exchange: Exchange::Okx,
            instrument: instrument.clone(),
            from: Ts(i64::MIN),
            to: Ts(i64::MAX),
            limit: usize::MAX >> 1,
        };
        let stored = store.trades(&all).await.expect("trades");
        let candles = store
            .candles(&all, Interval::M1, CandleSource::Ours)
            .await
            .expect("candles");
        (stored, candles)
    };
    backfill(from, aggregating.rest_url()).await.expect("join");
    let (aggregates, candles) = read().await;
    // A minute earlier: another job, not one already done.
    backfill(Ts(from.0 - 60 * ck_model::NANOS_PER_SEC), single.rest_url())
        .await
        .expect("join");
    let (stored, candles_after) = read().await;
    assert!(
        aggregates.len() < trades.len() && aggregates.iter().any(|t| t.fills > 1),
        "{} aggregates of {} fills stored",
        aggregates.len(),
        trades.len()
    );
    assert_eq!(
        stored, aggregates,
        "no single fill added inside an aggregate"
    );
    assert_eq!(
        stored.iter().map(|t| u64::from(t.fills)).sum::<u64>(),
        trades.len() as u64,
        "every recorded fill counted once"
    );
    let stored_volume = stored
        .iter()
        .try_fold(Decimal::ZERO, |sum, t| sum.checked_add(t.size))
        .expect("sum");
    assert_eq!(stored_volume, volume);
    assert!(!candles.is_empty());
    assert_eq!(
        candles_after, candles,
        "the candles of the second backfill are the first's"
    );
    let trades_in_candles: u64 = candles.iter().map(|c| c.trades).sum();
    assert_eq!(
        trades_in_candles,
        trades.len() as u64,
        "candles count fills"
    );
}

/// `candlekeep backfill` of `product`'s trades on `exchange` from `rest`
/// over the span of `recorded` (ids and times): the store ends with
/// exactly those trades, once each.
async fn trades_backfill_from_the_command_line(
    exchange: Exchange,
    product: &str,
    mut recorded: Vec<(u64, Ts)>,
    rest: &ck_mock::RestMock,
) {
    recorded.sort_unstable();
    recorded.dedup();
    let from = recorded.iter().map(|t| t.1).min().expect("first");
    let to = Ts(recorded.iter().map(|t| t.1).max().expect("last").0 + 1);
    let dir = tempfile::tempdir().expect("dir");
    let (d, args) = (
        dir.path().to_owned(),
        [
            "backfill".to_owned(),
            "--exchange".into(),
            exchange.to_string(),
            "--instrument".into(),
            product.to_owned(),
            "--from".into(),
            from.to_string(),
            "--to".into(),
            to.to_string(),
            "--rest-url".into(),
            rest.rest_url(),
        ],
    );
    let out = tokio::task::spawn_blocking(move || {
        crate::support::candlekeep(&d, &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        crate::support::text(&out.stderr)
    );
    let s = settings(dir.path());
    let store = ck_app::open_store(&s).await.expect("store");
    let instrument = ck_model::Instrument::parse(product).expect("instrument");
    let stored = store
        .trades(&ck_store::RangeQuery {
            exchange,
            instrument,
            from: Ts(i64::MIN),
            to: Ts(i64::MAX),
            limit: usize::MAX >> 1,
        })
        .await
        .expect("trades");
    let got: Vec<(u64, Ts)> = stored
        .iter()
        .map(|t| match t.trade_id {
            TradeId::Num(n) => (n, t.ts_exchange),
            TradeId::Str(_) => (0, t.ts_exchange),
        })
        .collect();
    assert_eq!(got, recorded, "every recorded trade of {product}, once");
}

/// Trades of a venue read by time (Bitfinex), backfilled from its REST mock
/// in pages of five: stopped after two pages, resumed, and complete with
/// exactly the recorded trades of the instrument in the range, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_read_by_time_backfill_is_resumed_and_complete() {
    let messages = crate::support::recording("cryptofeed/BITFINEX.jsonl.zst");
    let rest = ck_mock::bitfinex::MockBitfinexRest::start(&messages, None)
        .await
        .expect("rest mock");
    let (instrument, recorded) = crate::support::busiest_instrument(&messages);
    assert!(recorded.len() >= 20, "{} trades", recorded.len());
    let history: Arc<dyn History> = Arc::new(crate::support::PagedBy5(
        ck_sources::history::for_exchange(
            Exchange::Bitfinex,
            Arc::new(
                RestClient::new(Exchange::Bitfinex, RestSettings::new(rest.rest_url()))
                    .expect("client"),
            ),
        )
        .expect("history"),
    ));
    let job = BackfillJob {
        exchange: Exchange::Bitfinex,
        instrument: instrument.clone(),
        from: recorded[0].ts_exchange,
        to: Ts(recorded[recorded.len() - 1].ts_exchange.0 + 1),
        kind: BackfillKind::Trades,
    };
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(dir.path());
    let store = ck_app::open_store(&s).await.expect("store");
    let first = run(
        &s,
        store.clone(),
        vec![job.clone()],
        history.clone(),
        Some(2),
    )
    .await;
    let stopped = job_reports(&first);
    assert!(!stopped[0].done, "stopped halfway: {stopped:?}");
    let second = run(&s, store.clone(), vec![job], history, None).await;
    let resumed = job_reports(&second);
    assert!(resumed[0].done, "{resumed:?}");
    assert!(
        stopped[0].pages + resumed[0].pages >= recorded.len() as u64 / 5,
        "pages of five: {stopped:?} {resumed:?}"
    );
    let stored = store
        .trades(&ck_store::RangeQuery {
            exchange: Exchange::Bitfinex,
            ..everything(instrument)
        })
        .await
        .expect("trades");
    let key = |t: &ck_model::Trade| (t.trade_id.clone(), t.ts_exchange, t.price, t.size, t.side);
    let mut want: Vec<_> = recorded.iter().map(key).collect();
    want.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    want.dedup();
    let got: Vec<_> = stored.iter().map(key).collect();
    assert_eq!(got.len(), want.len(), "no duplicates, none missing");
    assert_eq!(got, want, "every recorded trade, once");
}
