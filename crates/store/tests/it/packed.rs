//! Packed days of candles, for each backend: whatever is packed, stale,
//! damaged or pruned, `Store::candle_records` answers exactly as the rows.

use ck_store::{RecordForm, Store};

/// Statements behind the store's back, to damage or age what it keeps.
pub(crate) enum Raw {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl Raw {
    pub(crate) async fn exec(&self, sql: &str) {
        match self {
            Raw::Sqlite(c) => {
                c.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Raw::Postgres(c) => {
                c.batch_execute(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    pub(crate) async fn count(&self, sql: &str) -> i64 {
        match self {
            Raw::Sqlite(c) => c
                .query_row(sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Raw::Postgres(c) => c
                .query_one(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get(0),
        }
    }
}

const MIN: i64 = 60_000_000_000;
const DAY: i64 = 1_440 * MIN;

pub(crate) fn candle(interval: ck_model::Interval, open_time: i64, n: i64) -> ck_model::Candle {
    let p = ck_model::Decimal::new(6_000_000 + i128::from(n % 997), 2);
    ck_model::Candle {
        exchange: ck_model::Exchange::Coinbase,
        instrument: "BTC-USD".parse().expect("i"),
        interval,
        open_time: ck_model::Ts(open_time),
        open: p,
        high: ck_model::Decimal::new(6_100_000 + i128::from(n % 13), 2),
        low: ck_model::Decimal::new(5_900_000, 2),
        close: p,
        volume: ck_model::Decimal::new(i128::from(n) * 7 + 1, 5),
        quote_volume: ck_model::Decimal::new(i128::from(n) * 4_200 + 3, 3),
        vwap: p,
        taker_buy_volume: ck_model::Decimal::new(i128::from(n % 50), 1),
        trades: u64::try_from(n % 40).expect("n"),
        // String ids that need escaping, so packs carry every byte as the rows write it.
        first_trade_id: (n % 5 == 0).then(|| ck_model::TradeId::Str(format!("a\"b\\{n}").into())),
        last_trade_id: (n % 3 == 0).then_some(ck_model::TradeId::Num(n.unsigned_abs())),
        state: if n % 11 == 0 {
            ck_model::CandleState::Revised
        } else {
            ck_model::CandleState::Closed
        },
    }
}

/// The records as the rows give them, through `candles` (never packed).
async fn records_from_rows(
    store: &dyn Store,
    q: &ck_store::RangeQuery,
    interval: ck_model::Interval,
    source: ck_store::CandleSource,
    newest_first: bool,
    form: RecordForm,
) -> ck_store::CandleRecords {
    let candles = if newest_first {
        store.candles_newest_first(q, interval, source).await
    } else {
        store.candles(q, interval, source).await
    }
    .expect("candles");
    let mut out = ck_store::CandleRecords::new(form, 0);
    for c in &candles {
        out.push_candle(c);
    }
    out
}

/// Packed days answer exactly as their rows, in both orders, for ranges
/// that start and end inside days and limits that cut inside a pack; a
/// revision, a damaged pack, an old record format and retention each leave
/// the answer equal to the rows.
pub(crate) async fn packed_days_answer_as_their_rows(store: &dyn Store, raw: &Raw) {
    use ck_model::{Interval, Ts};
    use ck_store::CandleSource;
    // 19,000 days after 1970: from 12:00 on day 0 to 08:00 on day 3, every
    // minute but each 7th; 5m and 1d candles too, and the exchange's 1m.
    let base = 19_000 * DAY;
    let mut batch = ck_store::WriteBatch::default();
    let mut n = 0;
    let mut t = base + DAY / 2;
    while t < base + 3 * DAY + 8 * 60 * MIN {
        n += 1;
        if n % 7 != 0 {
            batch.candles.push(candle(Interval::M1, t, n));
            batch.exchange_candles.push(candle(Interval::M1, t, n + 1));
        }
        if (t - base) % (5 * MIN) == 0 {
            batch.candles.push(candle(Interval::M5, t, n));
        }
        if (t - base) % DAY == 0 {
            batch.candles.push(candle(Interval::D1, t, n));
        }
        t += MIN;
    }
    store
        .write(std::sync::Arc::new(batch))
        .await
        .expect("write");
    let q = |from: i64, to: i64, limit: usize| ck_store::RangeQuery {
        exchange: ck_model::Exchange::Coinbase,
        instrument: "BTC-USD".parse().expect("i"),
        from: Ts(from),
        to: Ts(to),
        limit,
    };
    let queries = [
        q(base, base + 4 * DAY, 100_000),
        q(
            base + DAY + 6 * 60 * MIN,
            base + 3 * DAY + 60 * MIN,
            100_000,
        ),
        q(base + DAY, base + 3 * DAY, 100_000),
        q(base, base + 4 * DAY, 1_500),
        q(base + DAY, base + 4 * DAY, 2_000),
        q(base + 2 * DAY + 1, base + 3 * DAY - 1, 17),
    ];
    let series = [
        (Interval::M1, CandleSource::Ours),
        (Interval::M1, CandleSource::Exchange),
        (Interval::M5, CandleSource::Ours),
        (Interval::D1, CandleSource::Ours),
    ];
    let check = |what: &'static str| {
        let queries = queries.clone();
        async move {
            for q in &queries {
                for (interval, source) in series {
                    for (newest_first, form) in [
                        (false, RecordForm::Json),
                        (true, RecordForm::Json),
                        (false, RecordForm::Csv),
                        (true, RecordForm::Csv),
                    ] {
                        let want =
                            records_from_rows(store, q, interval, source, newest_first, form).await;
                        let got = store
                            .candle_records(q, interval, source, newest_first, form)
                            .await
                            .expect("records");
                        assert!(
                            got == want,
                            "{what}: {interval:?} {source:?} {form:?} newest_first={newest_first} from {} to {} limit {}: {} records, the rows give {}",
                            q.from,
                            q.to,
                            q.limit,
                            got.len(),
                            want.len()
                        );
                    }
                }
            }
        }
    };
    check("before packing").await;

    // Days 0 to 2 have settled by the start of day 3; 1m ours and the
    // exchange's and 5m are packed (1d is not: one candle a day).
    let report = store
        .pack_candle_days(Ts(base + 3 * DAY))
        .await
        .expect("pack");
    assert_eq!(report.days_packed, 9, "{report:?}");
    assert_eq!(report.days_dropped, 0, "{report:?}");
    assert!(report.bytes > 0 && report.candles > 3_000, "{report:?}");
    let again = store
        .pack_candle_days(Ts(base + 3 * DAY))
        .await
        .expect("pack");
    assert_eq!(again.days_packed, 0, "nothing changed: {again:?}");
    check("packed").await;

    // The packs are what answers: with the rows of day 1 damaged, a read of
    // whole days still succeeds, and equals the rows as they were.
    // The packs are what answers: with the rows of day 1 gone behind the
    // store's back, a read of whole days still equals the rows as they were.
    let whole = q(base + DAY, base + 2 * DAY, 100_000);
    let read_whole =
        |form| store.candle_records(&whole, Interval::M1, CandleSource::Ours, false, form);
    let rows_whole =
        |form| records_from_rows(store, &whole, Interval::M1, CandleSource::Ours, false, form);
    let before = rows_whole(RecordForm::Json).await;
    let before_csv = rows_whole(RecordForm::Csv).await;
    raw.exec(&format!(
        "DELETE FROM candles WHERE interval = '1m' AND source = 'ours' AND open_time >= {} AND open_time < {}",
        base + DAY,
        base + 2 * DAY
    ))
    .await;
    let from_pack = read_whole(RecordForm::Json)
        .await
        .expect("read from the pack");
    assert_eq!(from_pack, before);
    let csv_from_pack = read_whole(RecordForm::Csv)
        .await
        .expect("read from the pack");
    assert_eq!(csv_from_pack, before_csv);
    assert!(
        store
            .candles(&whole, Interval::M1, CandleSource::Ours)
            .await
            .expect("rows")
            .is_empty()
    );

    // A revision (the candle writer's upsert) makes its day stale at once.
    let mut fixed = ck_store::WriteBatch::default();
    let mut n = 0;
    for t in (base + DAY..base + 2 * DAY).step_by(usize::try_from(MIN).expect("min")) {
        n += 1;
        let mut c = candle(Interval::M1, t, 10_000 + n);
        c.state = ck_model::CandleState::Revised;
        fixed.candles.push(c);
    }
    store
        .write(std::sync::Arc::new(fixed))
        .await
        .expect("revise");
    let revised = read_whole(RecordForm::Json).await.expect("records");
    assert_eq!(revised.len(), 1_440, "every minute now");
    assert_ne!(revised, before);
    check("revised, before packing again").await;
    let report = store
        .pack_candle_days(Ts(base + 3 * DAY))
        .await
        .expect("pack");
    assert_eq!(report.days_packed, 1, "only the revised day: {report:?}");
    check("revised and packed").await;

    // A damaged pack is read from the rows (each form's records damaged
    // apart: JSON on day 2, CSV on day 1); an old record format is
    // ignored, then packed again.
    raw.exec("UPDATE candle_days SET records = substr(records, 1, 3) WHERE day = 19002")
        .await;
    raw.exec("UPDATE candle_days SET csv = substr(csv, 1, 3) WHERE day = 19001")
        .await;
    raw.exec("UPDATE candle_days SET format = 0 WHERE day = 19000")
        .await;
    let damaged = ck_bus::metrics::counter("candlekeep_damaged_candle_days_total").get();
    let day1 = read_whole(RecordForm::Csv)
        .await
        .expect("day 1 from its rows");
    assert!(
        ck_bus::metrics::counter("candlekeep_damaged_candle_days_total").get() > damaged,
        "a damaged CSV pack is counted"
    );
    assert_eq!(day1, rows_whole(RecordForm::Csv).await);
    let damaged = ck_bus::metrics::counter("candlekeep_damaged_candle_days_total").get();
    check("damaged pack and old format").await;
    assert!(
        ck_bus::metrics::counter("candlekeep_damaged_candle_days_total").get() > damaged,
        "a damaged pack is counted"
    );
    raw.exec("UPDATE candle_days SET records = NULL WHERE day = 19002")
        .await;
    let report = store
        .pack_candle_days(Ts(base + 3 * DAY))
        .await
        .expect("pack");
    assert_eq!(
        report.days_packed, 6,
        "day 0 (old format) and day 2 (stale), three series each: {report:?}"
    );
    check("packed again").await;

    // Retention: 1m candles before 06:00 on day 2 go; the packs of days 0
    // and 1 with them, and day 2 is packed again from what is left.
    let plan = ck_store::PrunePlan {
        trades_before: None,
        quotes_before: None,
        candles_before: vec![(Interval::M1, Ts(base + 2 * DAY + 6 * 60 * MIN))],
        batch_rows: 500,
        dry_run: false,
    };
    store.prune(&plan).await.expect("prune");
    check("pruned").await;
    let left = raw
        .count("SELECT count(*) FROM candle_days WHERE interval = '1m' AND day < 19002")
        .await;
    assert_eq!(left, 0, "the pruned days' packs are gone");
    let report = store
        .pack_candle_days(Ts(base + 3 * DAY))
        .await
        .expect("pack");
    assert_eq!(report.days_packed, 2, "day 2 of both 1m series: {report:?}");
    check("pruned and packed").await;
}
