//! What an import writing straight to the archive promises
//! ([`Store::begin_direct_archive`]): every row and candle read back
//! exactly once, from whichever tier took it, whatever the order of the
//! input; the store keeps only what the archive could not take in order.

use std::path::Path;
use std::sync::Arc;

use ck_archive::layout::{self, Kind};
use ck_model::{Candle, Exchange, Interval, Quote, Trade, TradeId, Ts};
use ck_store::tiered::TieredStore;
use ck_store::{CandleSource, RangeQuery, Store, WriteBatch, WriteSummary};

use crate::tiered_contract::{
    DAY, FIRST_DAY, MINUTE, all, candle, end_of, instrument, quote, trade, trades_file,
};

fn five_days() -> RangeQuery {
    RangeQuery {
        to: Ts((FIRST_DAY + 5) * DAY),
        ..all(100_000)
    }
}

/// 144 trades a day (one every 10 minutes, ids rising), day `day`.
fn day_of_trades(day: i64, first_id: u64) -> Vec<Trade> {
    (0..144)
        .map(|i| trade(day, i * 10, first_id + i as u64))
        .collect()
}

/// A day's 1m candles (its 1d candle closes later: [`day_candle`]).
fn day_of_candles(day: i64) -> Vec<Candle> {
    let start = (FIRST_DAY + day) * DAY;
    (0..1_440)
        .map(|m| {
            candle(
                Interval::M1,
                Ts(start + m * MINUTE),
                &format!("2500.{:02}", m % 100),
            )
        })
        .collect()
}

/// A day's closed 1d candle: the last of its day to close.
fn day_candle(day: i64) -> Candle {
    candle(Interval::D1, Ts((FIRST_DAY + day) * DAY), "2510")
}

/// The exchange's 1h candles of a day (no 1d among them).
fn their_day(day: i64) -> Vec<Candle> {
    (0..24)
        .map(|h| {
            candle(
                Interval::H1,
                Ts((FIRST_DAY + day) * DAY + h * 60 * MINUTE),
                "2502",
            )
        })
        .collect()
}

fn file_of(root: &Path, kind: Kind, day: i64) -> std::path::PathBuf {
    layout::day_file(
        root,
        kind,
        Exchange::Binance,
        &instrument(),
        FIRST_DAY + day,
    )
}

fn partials(root: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(".partial-") {
                found.push(path);
            }
        }
    }
    found
}

fn add(total: &mut WriteSummary, s: WriteSummary) {
    total.trades_inserted += s.trades_inserted;
    total.trades_duplicate += s.trades_duplicate;
    total.quotes_inserted += s.quotes_inserted;
    total.candles_upserted += s.candles_upserted;
}

/// Runs every check of an import writing straight to the archive against
/// `inner` (an empty store) with an empty archive at `root`.
///
/// # Panics
/// Panics on the first broken promise, naming it.
#[allow(clippy::too_many_lines)]
pub async fn direct_import_contract(inner: Arc<dyn Store>, root: &Path) {
    let store = TieredStore::new(inner.clone(), root);
    // Five days: 0 to 3 settled, 4 not.
    let day0 = day_of_trades(0, 1_000);
    let mut day1 = day_of_trades(1, 2_000);
    let day2 = day_of_trades(2, 3_000);
    let day3: Vec<Trade> = day_of_trades(3, 4_000)
        .into_iter()
        .map(|mut t| {
            t.trade_id = TradeId::from_text(&format!("t-{}", t.trade_id));
            t
        })
        .collect();
    let day4 = day_of_trades(4, 5_000);
    let mut expected: Vec<Trade> = [&day0, &day1, &day2, &day3, &day4]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    expected.sort_by(|a, b| (a.ts_exchange, &a.trade_id).cmp(&(b.ts_exchange, &b.trade_id)));

    // The store held a trade of day 2 before the import: that day is not
    // new, so its rows take the store's path.
    let before = store
        .write(Arc::new(WriteBatch {
            trades: vec![day2[0].clone()],
            ..WriteBatch::default()
        }))
        .await
        .expect("write before");
    assert_eq!(before.trades_inserted, 1);

    store.begin_direct_archive(end_of(3)).await.expect("begin");
    let mut total = WriteSummary::default();
    let batch = |trades: Vec<Trade>, quotes: Vec<Quote>, candles: Vec<Candle>| {
        Arc::new(WriteBatch {
            trades,
            quotes,
            candles,
            ..WriteBatch::default()
        })
    };

    // Day 0: in order, one trade twice in a row (a duplicate), quotes,
    // candles, the exchange's candles, and a week candle (never archived).
    let mut input0 = day0.clone();
    input0.insert(6, day0[5].clone());
    let quotes0: Vec<Quote> = (0..48).map(|i| quote(0, i * 30)).collect();
    let mut candles0 = day_of_candles(0);
    candles0.push(candle(Interval::W1, Ts(FIRST_DAY * DAY), "2520"));
    let mut first = (*batch(input0[..100].to_vec(), quotes0.clone(), candles0)).clone();
    first.exchange_candles = their_day(0);
    add(
        &mut total,
        store.write(Arc::new(first)).await.expect("day 0"),
    );
    add(
        &mut total,
        store
            .write(batch(input0[100..].to_vec(), Vec::new(), Vec::new()))
            .await
            .expect("day 0, the rest"),
    );
    // A revision of a day-0 candle while the day is held.
    let mut revised5 = candle(Interval::M1, Ts(FIRST_DAY * DAY + 5 * MINUTE), "2600.00");
    revised5.trades = 9;
    add(
        &mut total,
        store
            .write(batch(Vec::new(), Vec::new(), vec![revised5.clone()]))
            .await
            .expect("revision"),
    );

    // Day 1: out of order in the middle (two trades swapped): the file
    // ends before the first out of order, the rest goes to the store. Day
    // 0's 1d candle closes: its day of candles is written.
    day1.swap(70, 71);
    let mut candles1 = vec![day_candle(0)];
    candles1.extend(day_of_candles(1));
    let mut second = (*batch(day1.clone(), Vec::new(), candles1)).clone();
    second.exchange_candles = their_day(1);
    add(
        &mut total,
        store.write(Arc::new(second)).await.expect("day 1"),
    );
    assert!(
        file_of(root, Kind::Candles, 0).is_file(),
        "a closed 1d candle writes its day of candles"
    );
    assert!(!file_of(root, Kind::ExchangeCandles, 0).is_file());
    // Day 2 (the store held a row of it: that row is a duplicate): the
    // exchange's candles, with no 1d candle, are written when a third
    // day begins.
    // In one batch a candle of day 1 comes after day 1's closed 1d
    // candle (the writer keeps a candle updated within a batch at its
    // first place): it still goes into day 1's file.
    let mut revised1 = candle(
        Interval::M1,
        Ts((FIRST_DAY + 1) * DAY + 3 * MINUTE),
        "2650.00",
    );
    revised1.trades = 4;
    let mut candles2 = vec![day_candle(1), revised1.clone()];
    candles2.extend(day_of_candles(2));
    let mut third = (*batch(day2.clone(), Vec::new(), candles2)).clone();
    third.exchange_candles = their_day(2);
    add(
        &mut total,
        store.write(Arc::new(third)).await.expect("day 2"),
    );
    assert!(
        file_of(root, Kind::ExchangeCandles, 0).is_file(),
        "a third day held writes the first"
    );
    // String ids (day 3) and a day not settled (day 4) go to the store;
    // a revision of a day-0 candle after its file was written too.
    let mut revised6 = candle(Interval::M1, Ts(FIRST_DAY * DAY + 6 * MINUTE), "2700.00");
    revised6.trades = 11;
    let mut late = vec![day_candle(2)];
    late.extend(day_of_candles(3));
    late.push(revised6.clone());
    add(
        &mut total,
        store
            .write(batch(day3.clone(), Vec::new(), late))
            .await
            .expect("day 3"),
    );
    add(
        &mut total,
        store
            .write(batch(day4.clone(), Vec::new(), Vec::new()))
            .await
            .expect("day 4"),
    );
    let report = store.end_direct_archive().await.expect("end");

    // Counted once each: every trade but the one stored before, and the
    // two duplicates.
    assert_eq!(
        total.trades_inserted,
        expected.len() as u64 - 1,
        "{total:?}"
    );
    assert_eq!(total.trades_duplicate, 2, "{total:?}");
    assert_eq!(total.quotes_inserted, 48);
    assert_eq!(
        report.trades,
        144 + 71,
        "day 0 whole, day 1 up to the disorder: {report:?}"
    );
    assert_eq!(report.quotes, 48, "{report:?}");
    assert_eq!(
        report.days,
        2 + 1 + 4 + 3,
        "trades of days 0 and 1, quotes of day 0, candles of days 0 to 3, the exchange's of days 0 to 2: {report:?}"
    );
    assert!(partials(root).is_empty(), "{:?}", partials(root));
    for (kind, day, there) in [
        (Kind::Trades, 0, true),
        (Kind::Trades, 1, true),
        (Kind::Trades, 2, false),
        (Kind::Trades, 3, false),
        (Kind::Trades, 4, false),
        (Kind::Quotes, 0, true),
        (Kind::ExchangeCandles, 2, true),
        (Kind::Candles, 3, true),
        (Kind::Candles, 4, false),
    ] {
        assert_eq!(
            file_of(root, kind, day).is_file(),
            there,
            "{kind:?} of day {day}"
        );
    }
    assert_eq!(trades_file(root, 0), file_of(root, Kind::Trades, 0));

    // Every trade reads once, in order, from whichever tier holds it.
    let read = store.trades(&five_days()).await.expect("trades");
    assert_eq!(read.len(), expected.len());
    assert_eq!(read, expected);
    let hot = inner.trades(&five_days()).await.expect("store rows");
    assert_eq!(
        hot.len(),
        (144 - 71) + 144 + 144 + 144,
        "the store holds day 1 from the disorder on, and days 2, 3 and 4"
    );
    assert!(hot.iter().all(|t| t.ts_exchange >= day1[71].ts_exchange));
    assert_eq!(store.quotes(&five_days()).await.expect("quotes"), quotes0);

    // Candles: the revision held in memory is in the file; the one after
    // the file was written is in the store, and wins.
    let mut want: Vec<Candle> = (0..4).flat_map(day_of_candles).collect();
    want[5] = revised5;
    want[6] = revised6.clone();
    want[1_440 + 3] = revised1;
    let got = store
        .candles(&five_days(), Interval::M1, CandleSource::Ours)
        .await
        .expect("candles");
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert_eq!(
        inner
            .candles(&five_days(), Interval::M1, CandleSource::Ours)
            .await
            .expect("store candles"),
        vec![revised6],
        "the store holds only the late revision"
    );
    assert_eq!(
        inner
            .candles(&five_days(), Interval::W1, CandleSource::Ours)
            .await
            .expect("week")
            .len(),
        1,
        "a week candle stays in the store"
    );
    assert_eq!(
        store
            .candles(&five_days(), Interval::H1, CandleSource::Exchange)
            .await
            .expect("theirs"),
        (0..3).flat_map(their_day).collect::<Vec<_>>()
    );
    assert_eq!(
        store
            .candles(&five_days(), Interval::D1, CandleSource::Ours)
            .await
            .expect("days"),
        (0..3).map(day_candle).collect::<Vec<_>>()
    );

    // An archive pass afterwards takes the rest of the settled days:
    // nothing lost, nothing doubled.
    store.archive_settled(end_of(3)).await.expect("archive");
    assert_eq!(store.trades(&five_days()).await.expect("trades"), expected);
    let hot = inner.trades(&five_days()).await.expect("store rows");
    assert_eq!(hot, day4, "only the unsettled day is left in the store");

    // A second import of the same days finds them all.
    store.begin_direct_archive(end_of(3)).await.expect("again");
    let again = store
        .write(batch(expected[..144 * 2].to_vec(), Vec::new(), Vec::new()))
        .await
        .expect("again");
    store.end_direct_archive().await.expect("end again");
    assert_eq!(again.trades_inserted, 0, "{again:?}");
    assert_eq!(again.trades_duplicate, 288, "{again:?}");
    assert_eq!(store.trades(&five_days()).await.expect("trades"), expected);
}
