//! The tiered store's contract: what [`ck_store::tiered::TieredStore`]
//! promises over any backend, with its archive of Parquet days.

use std::path::Path;
use std::sync::Arc;

use ck_model::{
    Candle, CandleState, Decimal, Exchange, Instrument, Interval, Quote, Side, Trade, TradeId, Ts,
};
use ck_store::tiered::TieredStore;
use ck_store::{CandleSource, PrunePlan, RangeQuery, RecordForm, Store, WriteBatch};

pub(crate) const DAY: i64 = 86_400 * 1_000_000_000;
pub(crate) const MINUTE: i64 = 60 * 1_000_000_000;
/// 2024-10-04, a day long settled.
pub(crate) const FIRST_DAY: i64 = 20_000;

pub(crate) fn instrument() -> Instrument {
    Instrument::parse("ETH-USDT").expect("instrument")
}

/// A trade `minute` minutes into day `day` (of three: 0, 1, 2).
pub(crate) fn trade(day: i64, minute: i64, id: u64) -> Trade {
    let at = Ts((FIRST_DAY + day) * DAY + minute * MINUTE);
    Trade {
        exchange: Exchange::Binance,
        instrument: instrument(),
        trade_id: TradeId::Num(id),
        price: Decimal::parse(&format!("2500.{:02}", id % 100)).expect("price"),
        size: Decimal::parse("0.0125").expect("size"),
        side: if id.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        ts_exchange: at,
        ts_received: Ts(at.0 + 1_234),
        fills: 1,
    }
}

pub(crate) fn quote(day: i64, minute: i64) -> Quote {
    let at = Ts((FIRST_DAY + day) * DAY + minute * MINUTE);
    Quote {
        exchange: Exchange::Binance,
        instrument: instrument(),
        bid: Decimal::parse("2500.10").expect("bid"),
        bid_size: Some(Decimal::parse("1.5").expect("size")),
        ask: Decimal::parse("2500.20").expect("ask"),
        ask_size: None,
        last: None,
        ts_exchange: at,
        ts_received: Ts(at.0 + 99),
    }
}

pub(crate) fn all(limit: usize) -> RangeQuery {
    RangeQuery {
        exchange: Exchange::Binance,
        instrument: instrument(),
        from: Ts(FIRST_DAY * DAY),
        to: Ts((FIRST_DAY + 3) * DAY),
        limit,
    }
}

pub(crate) fn end_of(day: i64) -> Ts {
    Ts((FIRST_DAY + day + 1) * DAY)
}

/// Three days of trades (a trade every 10 minutes, ids in time order) and
/// quotes (every 30 minutes).
fn three_days() -> (Vec<Trade>, Vec<Quote>) {
    let mut trades = Vec::new();
    let mut quotes = Vec::new();
    let mut id = 1_000;
    for day in 0..3 {
        for minute in (0..1_440).step_by(10) {
            trades.push(trade(day, minute, id));
            id += 1;
        }
        for minute in (0..1_440).step_by(30) {
            quotes.push(quote(day, minute));
        }
    }
    (trades, quotes)
}

async fn write(
    store: &dyn Store,
    trades: Vec<Trade>,
    quotes: Vec<Quote>,
) -> ck_store::WriteSummary {
    store
        .write(Arc::new(WriteBatch {
            trades,
            quotes,
            ..WriteBatch::default()
        }))
        .await
        .expect("write")
}

pub(crate) fn trades_file(root: &Path, day: i64) -> std::path::PathBuf {
    ck_archive::layout::day_file(
        root,
        ck_archive::layout::Kind::Trades,
        Exchange::Binance,
        &instrument(),
        FIRST_DAY + day,
    )
}

/// Runs every tiered-store check against `inner` (an empty store) with an
/// empty archive at `root`.
///
/// # Panics
/// Panics on the first broken promise, naming it.
pub async fn tiered_contract(inner: Arc<dyn Store>, root: &Path) {
    let store = TieredStore::new(inner.clone(), root);
    let (trades, quotes) = three_days();
    let s = write(&store, trades.clone(), quotes.clone()).await;
    assert_eq!(s.trades_inserted, trades.len() as u64);

    // Days 0 and 1 are settled; day 2 is not.
    let report = store.archive_settled(end_of(1)).await.expect("archive");
    assert_eq!(
        report.days, 4,
        "two days of trades and two of quotes: {report:?}"
    );
    assert_eq!(report.trades, 288);
    assert_eq!(report.quotes, 96);
    assert_eq!(
        report.deleted,
        288 + 96,
        "the store gives up what the archive holds"
    );
    assert!(trades_file(root, 0).is_file() && trades_file(root, 1).is_file());
    assert!(
        !trades_file(root, 2).exists(),
        "an unsettled day stays in the store"
    );
    let hot = inner.trades(&all(10_000)).await.expect("store rows");
    assert_eq!(hot.len(), 144, "only day 2 is left in the store");

    a_day_the_archive_cannot_take_stays_in_the_store(&store, root).await;
    candles_move_and_read_as_one(&store, &inner, root).await;
    reads_span_both_tiers(&store, &trades, &quotes).await;
    duplicates_span_both_tiers(&store, &inner, &trades).await;
    late_rows_rewrite_their_day(&store, &inner, root, &trades).await;
    an_interrupted_move_loses_and_doubles_nothing(&store, &inner, root).await;
    newest_rows_and_counts_see_the_archive(&store).await;
    retention_deletes_archived_days(&store, root).await;
}

async fn reads_span_both_tiers(store: &TieredStore, trades: &[Trade], quotes: &[Quote]) {
    assert_eq!(store.trades(&all(10_000)).await.expect("trades"), trades);
    assert_eq!(store.quotes(&all(10_000)).await.expect("quotes"), quotes);
    // A limit reaching across the boundary, and a range inside one day.
    let first = store.trades(&all(200)).await.expect("limited");
    assert_eq!(first, trades[..200]);
    let inside = RangeQuery {
        from: trade(1, 100, 0).ts_exchange,
        to: trade(2, 20, 0).ts_exchange,
        ..all(10_000)
    };
    let want: Vec<&Trade> = trades
        .iter()
        .filter(|t| t.ts_exchange >= inside.from && t.ts_exchange < inside.to)
        .collect();
    let got = store.trades(&inside).await.expect("inside");
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    assert_eq!(
        got.len(),
        134 + 2,
        "the rest of day 1 and two trades of day 2"
    );
}

async fn duplicates_span_both_tiers(store: &TieredStore, inner: &Arc<dyn Store>, trades: &[Trade]) {
    let again = vec![trades[3].clone(), trades[150].clone(), trades[300].clone()];
    let s = write(store, again, vec![quote(0, 30)]).await;
    assert_eq!(
        s.trades_inserted, 0,
        "archived and stored trades are duplicates"
    );
    assert_eq!(s.trades_duplicate, 3);
    let hot = inner.trades(&all(10_000)).await.expect("store rows");
    assert_eq!(hot.len(), 144, "no archived trade came back into the store");
    assert_eq!(store.trades(&all(10_000)).await.expect("trades"), trades);
    assert_eq!(store.quotes(&all(10_000)).await.expect("quotes").len(), 144);
}

async fn late_rows_rewrite_their_day(
    store: &TieredStore,
    inner: &Arc<dyn Store>,
    root: &Path,
    trades: &[Trade],
) {
    // A late trade (a gap repair) inside archived day 0.
    let late = trade(0, 15, 99_999);
    let s = write(store, vec![late.clone()], Vec::new()).await;
    assert_eq!(s.trades_inserted, 1);
    let mut want = trades.to_vec();
    want.push(late.clone());
    want.sort_by_key(|t| (t.ts_exchange, t.trade_id.clone()));
    assert_eq!(
        store.trades(&all(10_000)).await.expect("before"),
        want,
        "read at once"
    );
    let report = store.archive_settled(end_of(1)).await.expect("archive");
    assert_eq!(report.days, 1, "only day 0 changed: {report:?}");
    assert_eq!(report.deleted, 1);
    let day0 = ck_archive::trades::read_trades(&trades_file(root, 0)).expect("day 0");
    assert_eq!(day0.trades.len(), 145);
    assert!(day0.trades.contains(&late));
    assert_eq!(inner.trades(&all(10_000)).await.expect("store").len(), 144);
    assert_eq!(store.trades(&all(10_000)).await.expect("after"), want);
}

async fn an_interrupted_move_loses_and_doubles_nothing(
    store: &TieredStore,
    inner: &Arc<dyn Store>,
    root: &Path,
) {
    let before = store.trades(&all(10_000)).await.expect("before");
    // Stopped between writing and renaming: a half-written file.
    let day2 = trades_file(root, 2);
    std::fs::create_dir_all(day2.parent().expect("folder")).expect("mkdir");
    let partial = day2.with_file_name("data.parquet.partial-1-0");
    std::fs::write(&partial, b"PAR1 cut short").expect("partial");
    assert_eq!(
        store.trades(&all(10_000)).await.expect("reads"),
        before,
        "a partial file is never read"
    );
    // Stopped between renaming and deleting: day 2 in both tiers.
    let day2_rows: Vec<Trade> = before
        .iter()
        .filter(|t| t.ts_exchange >= end_of(1))
        .cloned()
        .collect();
    ck_archive::trades::write_trades(&day2, Exchange::Binance, &instrument(), &day2_rows)
        .expect("write day 2");
    assert_eq!(inner.trades(&all(10_000)).await.expect("store").len(), 144);
    assert_eq!(
        store.trades(&all(10_000)).await.expect("both"),
        before,
        "each row once"
    );
    let report = store.archive_settled(end_of(2)).await.expect("archive");
    assert_eq!(report.swept, 1, "the partial file went: {report:?}");
    assert!(!partial.exists());
    assert_eq!(
        report.deleted,
        144 + 48 + 1_441 + 24,
        "day 2's trades, quotes and candles left the store"
    );
    let day2_file = ck_archive::trades::read_trades(&day2).expect("day 2");
    assert_eq!(day2_file.trades, day2_rows, "rewritten without doubles");
    assert!(inner.trades(&all(10_000)).await.expect("store").is_empty());
    assert_eq!(store.trades(&all(10_000)).await.expect("after"), before);
}

async fn newest_rows_and_counts_see_the_archive(store: &TieredStore) {
    let last = store
        .last_trade(Exchange::Binance, &instrument())
        .await
        .expect("last")
        .expect("a last trade from the archive");
    assert_eq!(last, trade(2, 1_430, 1_431));
    let latest = store
        .latest_quote(Exchange::Binance, &instrument())
        .await
        .expect("latest")
        .expect("a quote");
    assert_eq!(latest, quote(2, 1_410));
    let listed = store.instruments().await.expect("instruments");
    let eth = listed
        .iter()
        .find(|s| s.info.instrument == instrument())
        .expect("listed");
    assert_eq!(eth.last_trade_time, Some(last.ts_exchange));
    let counts = store.counts().await.expect("counts");
    assert_eq!(
        counts.trades,
        433 + 2,
        "with the two XRP trades the archive could not take"
    );
    assert_eq!(counts.quotes, 144);
    // Day 0's 1m candles were pruned above.
    assert_eq!(
        counts.candles,
        3 * 1_441 + 1 - 1_440,
        "every candle of ours, in either tier, once"
    );
}

async fn retention_deletes_archived_days(store: &TieredStore, root: &Path) {
    // Cut in the middle of day 1: day 0 goes, day 1 keeps its second half.
    let cut = Ts((FIRST_DAY + 1) * DAY + 720 * MINUTE);
    let plan = |dry_run| PrunePlan {
        trades_before: Some(cut),
        quotes_before: None,
        candles_before: Vec::new(),
        batch_rows: 100,
        dry_run,
    };
    let dry = store.prune(&plan(true)).await.expect("dry run");
    assert_eq!(
        dry.trades,
        145 + 72 + 2,
        "with the two XRP trades in the store"
    );
    assert!(trades_file(root, 0).is_file(), "a dry run deletes nothing");
    let done = store.prune(&plan(false)).await.expect("prune");
    assert_eq!(done.trades, 145 + 72 + 2);
    assert!(!trades_file(root, 0).exists());
    let left = store.trades(&all(10_000)).await.expect("left");
    assert_eq!(left.len(), 72 + 144);
    assert!(left.iter().all(|t| t.ts_exchange >= cut));
    assert_eq!(store.counts().await.expect("counts").trades, 216);
}

pub(crate) fn candle(interval: Interval, open: Ts, close: &str) -> Candle {
    let d = |s: &str| Decimal::parse(s).expect("decimal");
    Candle {
        exchange: Exchange::Binance,
        instrument: instrument(),
        interval,
        open_time: open,
        open: d("2500.00"),
        high: d("2501.50"),
        low: d("2499.25"),
        close: d(close),
        volume: d("1.2500"),
        quote_volume: d("3125.75"),
        vwap: d("2500.6"),
        taker_buy_volume: d("0.5"),
        trades: 7,
        first_trade_id: Some(TradeId::Num(1)),
        last_trade_id: Some(TradeId::Num(7)),
        state: CandleState::Closed,
    }
}

/// Every 1m candle of the three days (ours), a 1d candle a day, a 1w
/// candle (which stays in the store), and the exchange's 1h candles.
fn three_days_of_candles() -> (Vec<Candle>, Vec<Candle>) {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for day in 0..3 {
        let start = (FIRST_DAY + day) * DAY;
        for m in 0..1_440 {
            ours.push(candle(
                Interval::M1,
                Ts(start + m * MINUTE),
                &format!("2500.{:02}", m % 100),
            ));
        }
        ours.push(candle(Interval::D1, Ts(start), "2510"));
        for h in 0..24 {
            theirs.push(candle(Interval::H1, Ts(start + h * 60 * MINUTE), "2502"));
        }
    }
    ours.push(candle(Interval::W1, Ts(FIRST_DAY * DAY), "2520"));
    (ours, theirs)
}

fn candle_range(limit: usize) -> RangeQuery {
    all(limit)
}

async fn candles_move_and_read_as_one(store: &TieredStore, inner: &Arc<dyn Store>, root: &Path) {
    let (ours, theirs) = three_days_of_candles();
    store
        .write(Arc::new(WriteBatch {
            candles: ours.clone(),
            exchange_candles: theirs.clone(),
            ..WriteBatch::default()
        }))
        .await
        .expect("write candles");
    let report = store.archive_settled(end_of(1)).await.expect("archive");
    assert_eq!(
        report.candles,
        2 * 1_441 + 48,
        "1m and 1d of ours, 1h of theirs: {report:?}"
    );
    assert_eq!(report.days, 4, "two days of each source");
    let candles_file = |kind, day| {
        ck_archive::layout::day_file(
            root,
            kind,
            Exchange::Binance,
            &instrument(),
            FIRST_DAY + day,
        )
    };
    assert!(candles_file(ck_archive::layout::Kind::Candles, 1).is_file());
    assert!(candles_file(ck_archive::layout::Kind::ExchangeCandles, 0).is_file());
    let m1 = |c: &&Candle| c.interval == Interval::M1;
    let want_m1: Vec<Candle> = ours.iter().filter(m1).cloned().collect();
    let hot = inner
        .candles(&candle_range(100_000), Interval::M1, CandleSource::Ours)
        .await
        .expect("store");
    assert_eq!(hot.len(), 1_440, "day 2 stays in the store");
    let got = store
        .candles(&candle_range(100_000), Interval::M1, CandleSource::Ours)
        .await
        .expect("both");
    assert_eq!(got, want_m1);
    let newest = store
        .candles_newest_first(&candle_range(2_000), Interval::M1, CandleSource::Ours)
        .await
        .expect("newest first");
    let want_newest: Vec<Candle> = want_m1.iter().rev().take(2_000).cloned().collect();
    assert_eq!(newest, want_newest, "across the boundary, newest first");
    for form in [RecordForm::Json, RecordForm::Csv] {
        let records = store
            .candle_records(
                &candle_range(100_000),
                Interval::M1,
                CandleSource::Ours,
                false,
                form,
            )
            .await
            .expect("records");
        assert_eq!(records.len(), want_m1.len());
        assert_eq!(
            records,
            records_of(form, want_m1.iter()),
            "byte for byte, {form:?}"
        );
        let newest_records = store
            .candle_records(
                &candle_range(2_000),
                Interval::M1,
                CandleSource::Ours,
                true,
                form,
            )
            .await
            .expect("newest records");
        assert_eq!(newest_records, records_of(form, want_newest.iter()));
    }
    let weekly = store
        .candles(&candle_range(10), Interval::W1, CandleSource::Ours)
        .await
        .expect("1w");
    assert_eq!(weekly.len(), 1, "a week's candle stays in the store");
    let theirs_read = store
        .candles(&candle_range(1_000), Interval::H1, CandleSource::Exchange)
        .await
        .expect("theirs");
    assert_eq!(theirs_read, theirs);
    let daily = store
        .latest_candle(Exchange::Binance, &instrument(), Interval::D1)
        .await
        .expect("latest")
        .expect("some");
    assert_eq!(daily.open_time, Ts((FIRST_DAY + 2) * DAY));

    // A revision of an archived candle (a repair reached day 0): read at
    // once, archived by the next pass; the old row's delete spares it.
    let mut revised = ours[30].clone();
    revised.close = Decimal::parse("2600.00").expect("close");
    revised.trades = 9;
    revised.state = CandleState::Revised;
    store
        .write(Arc::new(WriteBatch {
            candles: vec![revised.clone()],
            ..WriteBatch::default()
        }))
        .await
        .expect("revise");
    let q = RangeQuery {
        from: revised.open_time,
        to: Ts(revised.open_time.0 + 1),
        ..candle_range(10)
    };
    let read = store
        .candles(&q, Interval::M1, CandleSource::Ours)
        .await
        .expect("read");
    assert_eq!(read, vec![revised.clone()], "the store's row wins");
    let first_day = RangeQuery {
        to: end_of(0),
        ..candle_range(100_000)
    };
    let mut want_day0: Vec<Candle> = ours
        .iter()
        .filter(|c| c.interval == Interval::M1 && c.open_time < end_of(0))
        .cloned()
        .collect();
    want_day0[30] = revised.clone();
    for form in [RecordForm::Json, RecordForm::Csv] {
        let records = store
            .candle_records(&first_day, Interval::M1, CandleSource::Ours, false, form)
            .await
            .expect("records");
        assert_eq!(
            records,
            records_of(form, want_day0.iter()),
            "the store's record wins, {form:?}"
        );
    }
    let report = store.archive_settled(end_of(1)).await.expect("archive");
    assert_eq!((report.days, report.candles), (1, 1), "{report:?}");
    let day0 =
        ck_archive::candles::read_candles(&candles_file(ck_archive::layout::Kind::Candles, 0))
            .expect("day 0");
    assert!(day0.candles.contains(&revised));
    assert_eq!(day0.candles.len(), 1_441);
    for form in [RecordForm::Json, RecordForm::Csv] {
        let records = store
            .candle_records(&first_day, Interval::M1, CandleSource::Ours, false, form)
            .await
            .expect("records after the rewrite");
        assert_eq!(
            records,
            records_of(form, want_day0.iter()),
            "the rewritten day is read again, {form:?}"
        );
    }
    let read = store
        .candles(&q, Interval::M1, CandleSource::Ours)
        .await
        .expect("read");
    assert_eq!(read, vec![revised]);

    // Retention of 1m candles before day 1: day 0's 1m go, its 1d stays.
    let plan = PrunePlan {
        candles_before: vec![(Interval::M1, Ts((FIRST_DAY + 1) * DAY))],
        batch_rows: 100,
        ..PrunePlan::default()
    };
    let pruned = store.prune(&plan).await.expect("prune");
    assert_eq!(pruned.candles, vec![(Interval::M1, 1_440)]);
    let left = store
        .candles(&candle_range(100_000), Interval::M1, CandleSource::Ours)
        .await
        .expect("left");
    assert_eq!(left.len(), 2 * 1_440);
    let records = store
        .candle_records(
            &first_day,
            Interval::M1,
            CandleSource::Ours,
            false,
            RecordForm::Csv,
        )
        .await
        .expect("records after retention");
    assert!(records.is_empty(), "the cache saw the day's file change");
    let daily = store
        .candles(&candle_range(10), Interval::D1, CandleSource::Ours)
        .await
        .expect("1d");
    assert_eq!(daily.len(), 3);
}

fn records_of<'a>(
    form: RecordForm,
    candles: impl Iterator<Item = &'a Candle>,
) -> ck_store::CandleRecords {
    let mut records = ck_store::CandleRecords::new(form, 0);
    for c in candles {
        records.push_candle(c);
    }
    records
}

async fn a_day_the_archive_cannot_take_stays_in_the_store(store: &TieredStore, root: &Path) {
    // 38 digits, and a day's other price with a decimal place: at the
    // day's scale, 39 digits, more than a Parquet decimal holds.
    let xrp = Instrument::parse("XRP-USDT").expect("instrument");
    let huge = Trade {
        instrument: xrp.clone(),
        price: Decimal::parse("12345678901234567890123456789012345678").expect("38 digits"),
        ..trade(0, 5, 77)
    };
    let small = Trade {
        instrument: xrp.clone(),
        price: Decimal::parse("0.5").expect("price"),
        ..trade(0, 6, 78)
    };
    write(store, vec![huge.clone(), small.clone()], Vec::new()).await;
    let report = store
        .archive_settled(end_of(1))
        .await
        .expect("the pass goes on");
    assert_eq!(report.trades, 0, "{report:?}");
    let file = ck_archive::layout::day_file(
        root,
        ck_archive::layout::Kind::Trades,
        Exchange::Binance,
        &xrp,
        FIRST_DAY,
    );
    assert!(!file.exists());
    let q = RangeQuery {
        instrument: xrp,
        ..all(10)
    };
    assert_eq!(
        store.trades(&q).await.expect("read"),
        vec![huge, small],
        "kept in the store"
    );
}
