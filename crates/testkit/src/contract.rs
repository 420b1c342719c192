//! The store contract suite.

use ck_bus::IngestError;
use ck_model::{
    Candle, CandleState, Decimal, Exchange, Instrument, InstrumentInfo, Interval, Quote, Side,
    Trade, TradeId, Ts,
};
use ck_store::{CandleSource, RangeQuery, RecordForm, Store, WriteBatch};

fn d(s: &str) -> Decimal {
    Decimal::parse(s).expect("decimal")
}

fn inst(s: &str) -> Instrument {
    Instrument::parse(s).expect("instrument")
}

fn trade(id: TradeId, secs: i64, price: &str) -> Trade {
    Trade {
        exchange: Exchange::Binance,
        instrument: inst("BTC-USDT"),
        trade_id: id,
        price: d(price),
        size: d("0.00100000"),
        side: Side::Sell,
        ts_exchange: Ts::from_secs(secs),
        ts_received: Ts::from_secs(secs),
        fills: 2,
    }
}

fn candle(open_secs: i64, close: &str, state: CandleState) -> Candle {
    Candle {
        exchange: Exchange::Binance,
        instrument: inst("BTC-USDT"),
        interval: Interval::M1,
        open_time: Ts::from_secs(open_secs),
        open: d("100.10"),
        high: d("101.00"),
        low: d("99.50"),
        close: d(close),
        volume: d("2.5"),
        quote_volume: d("250.25"),
        vwap: d("100.1000"),
        taker_buy_volume: d("1.0"),
        trades: 7,
        first_trade_id: Some(TradeId::Num(1)),
        last_trade_id: Some(TradeId::Str("z-9".into())),
        state,
    }
}

fn range(from: i64, to: i64) -> RangeQuery {
    RangeQuery {
        exchange: Exchange::Binance,
        instrument: inst("BTC-USDT"),
        from: Ts::from_secs(from),
        to: Ts::from_secs(to),
        limit: 1000,
    }
}

/// Runs every contract check against an empty store.
///
/// # Panics
/// Panics on the first broken promise, naming it.
pub async fn store_contract(store: &dyn Store) {
    store.ping().await.expect("a fresh store answers a ping");
    trades_are_exact_and_deduplicated(store).await;
    large_batches_deduplicate(store).await;
    candles_upsert_by_state(store).await;
    quotes_and_latest(store).await;
    instruments_and_errors(store).await;
    gaps_are_recorded_once(store).await;
    gap_states_move_forward(store).await;
    last_trade_and_backfill_progress(store).await;
    alert_rules_and_firings(store).await;
    prune_removes_only_older_rows(store).await;
}

async fn prune_removes_only_older_rows(store: &dyn Store) {
    let plan = ck_store::PrunePlan {
        trades_before: Some(Ts::from_secs(15)),
        quotes_before: Some(Ts::from_secs(6)),
        candles_before: vec![
            (Interval::M1, Ts::from_secs(60)),
            (Interval::H1, Ts::from_secs(60)),
        ],
        batch_rows: 1,
        dry_run: true,
    };
    let dry = store.prune(&plan).await.expect("dry run");
    assert_eq!(
        (dry.trades, dry.quotes, dry.candles.clone()),
        (1, 1, vec![(Interval::M1, 2), (Interval::H1, 0)]),
        "a dry run counts the trade at 10 s, the quote at 5 s and both sources' candle at 0 s"
    );
    assert_eq!(
        store.counts().await.expect("counts").trades,
        304,
        "and deletes nothing"
    );
    let done = store
        .prune(&ck_store::PrunePlan {
            dry_run: false,
            ..plan
        })
        .await
        .expect("prune");
    assert_eq!(
        (done.trades, done.quotes, done.candles),
        (dry.trades, dry.quotes, dry.candles),
        "the prune removes what the dry run counted"
    );
    let trades = store.trades(&range(0, 100)).await.expect("trades");
    assert_eq!(
        trades.first().map(|t| t.ts_exchange),
        Some(Ts::from_secs(20)),
        "the older trade is gone, the rest stay"
    );
    assert_eq!(store.counts().await.expect("counts").trades, 303);
    let candles = store
        .candles(&range(0, 120), Interval::M1, CandleSource::Ours)
        .await
        .expect("candles");
    assert_eq!(
        candles.iter().map(|c| c.open_time).collect::<Vec<_>>(),
        [Ts::from_secs(60)]
    );
}

async fn alert_rules_and_firings(store: &dyn Store) {
    assert!(store.alert_rules().await.expect("rules").is_empty());
    let a = store
        .put_alert_rule(None, r#"{"kind":"gap_unfillable"}"#)
        .await
        .expect("insert")
        .expect("an id");
    let b = store
        .put_alert_rule(None, r#"{"kind":"stale_feed"}"#)
        .await
        .expect("insert")
        .expect("an id");
    assert_ne!(a, b);
    assert_eq!(
        store
            .put_alert_rule(Some(b), r#"{"kind":"x"}"#)
            .await
            .expect("update"),
        Some(b)
    );
    assert_eq!(
        store
            .put_alert_rule(Some(b + 100), "{}")
            .await
            .expect("update"),
        None,
        "updating a rule that does not exist says so"
    );
    let rules = store.alert_rules().await.expect("rules");
    assert_eq!(
        rules
            .iter()
            .map(|r| (r.id, r.rule.as_str()))
            .collect::<Vec<_>>(),
        [(a, r#"{"kind":"gap_unfillable"}"#), (b, r#"{"kind":"x"}"#)]
    );
    assert!(store.delete_alert_rule(a).await.expect("delete"));
    assert!(
        !store.delete_alert_rule(a).await.expect("delete"),
        "gone already"
    );

    let first = store
        .record_firing("1", Ts::from_secs(10), r#"{"n":1}"#)
        .await
        .expect("record");
    let second = store
        .record_firing("config:1", Ts::from_secs(20), r#"{"n":2}"#)
        .await
        .expect("record");
    store
        .set_firing_deliveries(first, r#"[{"ok":true}]"#)
        .await
        .expect("deliveries");
    let firings = store.firings(10).await.expect("firings");
    assert_eq!(
        firings.iter().map(|f| f.id).collect::<Vec<_>>(),
        [second, first],
        "newest first"
    );
    assert_eq!(firings[0].rule_id, "config:1");
    assert_eq!(firings[0].deliveries, None, "not delivered yet");
    assert_eq!(firings[1].deliveries.as_deref(), Some(r#"[{"ok":true}]"#));
    assert_eq!(firings[1].fired_at, Ts::from_secs(10));
    assert_eq!(store.firings(1).await.expect("firings").len(), 1);

    // Copying a store keeps rule ids; later rules get new ones.
    let restored = ck_store::StoredRule {
        id: 40,
        rule: r#"{"kind":"restored"}"#.into(),
        updated_at: Ts::from_secs(5),
    };
    store.restore_alert_rule(&restored).await.expect("restore");
    let rules = store.alert_rules().await.expect("rules");
    assert_eq!(rules.last(), Some(&restored), "kept with its id and time");
    let next = store
        .put_alert_rule(None, "{}")
        .await
        .expect("insert")
        .expect("an id");
    assert!(
        next > 40,
        "a new rule after a restored one gets a new id: {next}"
    );
}

async fn gap_states_move_forward(store: &dyn Store) {
    // A reconnect gap has no ids: it must still be recorded once.
    let open = ck_model::Gap {
        exchange: Exchange::Binance,
        instrument: inst("ETH-USDT"),
        from_ts: Ts::from_secs(50),
        to_ts: Ts::from_secs(60),
        first_missing_id: None,
        last_missing_id: None,
        state: ck_model::GapState::Open,
        reason: "reconnect".into(),
        detected_at: Ts::from_secs(61),
        kind: ck_model::GapKind::Trades,
    };
    let filled = ck_model::Gap {
        state: ck_model::GapState::Filled,
        reason: "filled: 3 trades over REST".into(),
        ..open.clone()
    };
    for gaps in [
        vec![open.clone(), open.clone()],
        vec![filled.clone()],
        vec![open.clone()],
    ] {
        store
            .write(std::sync::Arc::new(WriteBatch {
                gaps,
                ..WriteBatch::default()
            }))
            .await
            .expect("write gap");
    }
    assert_eq!(
        store
            .gaps(Some(Exchange::Binance), Some(&inst("ETH-USDT")), 10)
            .await
            .expect("gaps"),
        vec![filled],
        "one row, filled, and a repeated open does not reopen it"
    );
}

async fn last_trade_and_backfill_progress(store: &dyn Store) {
    let last = store
        .last_trade(Exchange::Binance, &inst("BTC-USDT"))
        .await
        .expect("last trade")
        .expect("some");
    assert_eq!(last.ts_exchange, Ts::from_secs(40), "{last:?}");
    assert!(
        store
            .last_trade(Exchange::Kraken, &inst("BTC-USDT"))
            .await
            .expect("last trade")
            .is_none()
    );
    let job = "binance BTC-USDT trades test";
    assert!(
        store
            .backfill_progress(job)
            .await
            .expect("progress")
            .is_none()
    );
    for (cursor, done) in [("100", false), ("2001", true)] {
        let p = ck_model::BackfillProgress {
            job: job.into(),
            cursor: cursor.into(),
            done,
            updated_at: Ts::from_secs(1),
        };
        store
            .write(std::sync::Arc::new(WriteBatch {
                progress: vec![p.clone()],
                ..WriteBatch::default()
            }))
            .await
            .expect("write progress");
        assert_eq!(
            store.backfill_progress(job).await.expect("progress"),
            Some(p.clone())
        );
        assert_eq!(store.backfill_jobs().await.expect("jobs"), vec![p]);
    }

    // Forgetting positions: by name prefix, and only those older than a time.
    let position = |job: &str, secs| ck_model::BackfillProgress {
        job: job.into(),
        cursor: "7".into(),
        done: false,
        updated_at: Ts::from_secs(secs),
    };
    let (old, fresh, other, tricky) = (
        position("nats S C 1-100", 1),
        position("nats S C 2-200", 5),
        position("nats S Cx 3-300", 1),
        position("nats S_C 4-400", 1),
    );
    store
        .write(std::sync::Arc::new(WriteBatch {
            progress: vec![old, fresh.clone(), other.clone(), tricky.clone()],
            ..WriteBatch::default()
        }))
        .await
        .expect("write positions");
    let forgotten = store
        .forget_jobs("nats S C ", Ts::from_secs(3))
        .await
        .expect("forget");
    assert_eq!(forgotten, 1, "only the old position of that prefix");
    let mut names: Vec<String> = store
        .backfill_jobs()
        .await
        .expect("jobs")
        .into_iter()
        .map(|p| p.job)
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![job, &fresh.job, &other.job, &tricky.job],
        "a prefix is literal (`_` matches only itself)"
    );
    assert_eq!(
        store
            .forget_jobs(&fresh.job, Ts(i64::MAX))
            .await
            .expect("forget"),
        1
    );
    assert_eq!(
        store.backfill_progress(&fresh.job).await.expect("progress"),
        None
    );
}

async fn gaps_are_recorded_once(store: &dyn Store) {
    let gap = ck_model::Gap {
        exchange: Exchange::Binance,
        instrument: inst("BTC-USDT"),
        from_ts: Ts::from_secs(10),
        to_ts: Ts::from_secs(20),
        first_missing_id: Some(101),
        last_missing_id: Some(105),
        state: ck_model::GapState::Open,
        reason: "trade ids jumped from 100 to 106".into(),
        detected_at: Ts::from_secs(21),
        kind: ck_model::GapKind::Trades,
    };
    let batch = std::sync::Arc::new(WriteBatch {
        gaps: vec![gap.clone(), gap.clone()],
        ..WriteBatch::default()
    });
    store.write(batch.clone()).await.expect("write");
    store.write(batch).await.expect("write again");
    assert_eq!(
        store.gaps(None, None, 10).await.expect("gaps"),
        vec![gap.clone()],
        "recorded once"
    );
    assert_eq!(
        store
            .gaps(Some(Exchange::Binance), Some(&inst("BTC-USDT")), 10)
            .await
            .expect("gaps"),
        vec![gap.clone()]
    );
    assert!(
        store
            .gaps(Some(Exchange::Kraken), None, 10)
            .await
            .expect("gaps")
            .is_empty()
    );
    // A book gap over the same span is another gap, read back as one.
    let book = ck_model::Gap {
        first_missing_id: None,
        last_missing_id: None,
        state: ck_model::GapState::Unfillable,
        reason: "order book: gap: a skipped diff".into(),
        kind: ck_model::GapKind::Book,
        ..gap.clone()
    };
    let batch = std::sync::Arc::new(WriteBatch {
        gaps: vec![book.clone(), book.clone()],
        ..WriteBatch::default()
    });
    store.write(batch).await.expect("write a book gap");
    let mut both = store.gaps(None, None, 10).await.expect("gaps");
    both.sort_by_key(|g| g.kind.as_str());
    assert_eq!(
        both,
        vec![book, gap],
        "a trades gap and a book gap of one span"
    );
}

async fn trades_are_exact_and_deduplicated(store: &dyn Store) {
    let big = TradeId::Num(u64::MAX - 1);
    let batch = WriteBatch {
        trades: vec![
            trade(TradeId::Num(3), 30, "61837.63000000"),
            trade(TradeId::Num(1), 10, "0.00000638"),
            trade(TradeId::Str("995098700".into()), 20, "1e-8"),
            trade(big.clone(), 40, "5"),
            trade(TradeId::Num(1), 10, "0.00000638"),
        ],
        ..WriteBatch::default()
    };
    let s = store
        .write(std::sync::Arc::new(batch))
        .await
        .expect("write trades");
    assert_eq!(
        (s.trades_inserted, s.trades_duplicate),
        (4, 1),
        "a repeated trade id in one batch is stored once"
    );
    let again = store
        .write(std::sync::Arc::new(WriteBatch {
            trades: vec![trade(TradeId::Num(3), 30, "61837.63000000")],
            ..WriteBatch::default()
        }))
        .await
        .expect("write");
    assert_eq!(
        (again.trades_inserted, again.trades_duplicate),
        (0, 1),
        "a trade stored before is not stored again"
    );

    let got = store.trades(&range(10, 40)).await.expect("query trades");
    let ids: Vec<_> = got.iter().map(|t| t.trade_id.clone()).collect();
    assert_eq!(
        ids,
        vec![
            TradeId::Num(1),
            TradeId::Str("995098700".into()),
            TradeId::Num(3)
        ],
        "[from, to) in time order"
    );
    assert_eq!(
        got[2].price.to_string(),
        "61837.63000000",
        "decimal text kept exactly"
    );
    assert_eq!(got[0].size.to_string(), "0.00100000");
    assert_eq!((got[0].side, got[0].fills), (Side::Sell, 2));
    assert!(
        matches!(got[1].trade_id, TradeId::Str(_)),
        "string ids stay strings even when numeric-looking"
    );
    let all = store.trades(&range(0, 100)).await.expect("query");
    assert_eq!(
        all.last().map(|t| t.trade_id.clone()),
        Some(big),
        "u64 ids beyond i64 round-trip"
    );
    let limited = store
        .trades(&RangeQuery {
            limit: 2,
            ..range(0, 100)
        })
        .await
        .expect("query");
    assert_eq!(limited.len(), 2, "limit applies");
    let other = RangeQuery {
        instrument: inst("ETH-USDT"),
        ..range(0, 100)
    };
    assert!(
        store.trades(&other).await.expect("query").is_empty(),
        "instruments are separate"
    );
}

async fn large_batches_deduplicate(store: &dyn Store) {
    // Enough rows for any multi-row insert path, with repeats inside the batch.
    let mk = |id: u64| Trade {
        instrument: inst("ETH-BTC"),
        ..trade(TradeId::Num(id), 1_000 + id as i64, "0.05")
    };
    let mut trades: Vec<Trade> = (0..300).map(mk).collect();
    trades.extend((100..200).map(mk));
    let s = store
        .write(std::sync::Arc::new(WriteBatch {
            trades,
            ..WriteBatch::default()
        }))
        .await
        .expect("write");
    assert_eq!((s.trades_inserted, s.trades_duplicate), (300, 100));
    let q = RangeQuery {
        instrument: inst("ETH-BTC"),
        ..range(0, 10_000)
    };
    let got = store.trades(&q).await.expect("query");
    assert_eq!(got.len(), 300);
    assert!(got.windows(2).all(|w| w[0].ts_exchange < w[1].ts_exchange));
}

async fn candles_upsert_by_state(store: &dyn Store) {
    let write = |c: Vec<Candle>| WriteBatch {
        candles: c,
        ..WriteBatch::default()
    };
    store
        .write(std::sync::Arc::new(write(vec![candle(
            0,
            "100.50",
            CandleState::Provisional,
        )])))
        .await
        .expect("write");
    store
        .write(std::sync::Arc::new(write(vec![
            candle(0, "100.70", CandleState::Closed),
            candle(60, "100.80", CandleState::Provisional),
        ])))
        .await
        .expect("write");
    store
        .write(std::sync::Arc::new(write(vec![candle(
            0,
            "999",
            CandleState::Provisional,
        )])))
        .await
        .expect("write");
    let got = store
        .candles(&range(0, 120), Interval::M1, CandleSource::Ours)
        .await
        .expect("query");
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].close, got[0].state),
        (d("100.70"), CandleState::Closed),
        "a provisional never replaces a closed candle"
    );
    assert_eq!(
        got[0],
        candle(0, "100.70", CandleState::Closed),
        "every field round-trips"
    );
    store
        .write(std::sync::Arc::new(write(vec![candle(
            0,
            "100.90",
            CandleState::Revised,
        )])))
        .await
        .expect("write");
    let got = store
        .candles(&range(0, 60), Interval::M1, CandleSource::Ours)
        .await
        .expect("query");
    assert_eq!(
        (got[0].close, got[0].state),
        (d("100.90"), CandleState::Revised),
        "a revision replaces it"
    );
    let newest = store
        .candles_newest_first(
            &RangeQuery {
                limit: 1,
                ..range(0, 120)
            },
            Interval::M1,
            CandleSource::Ours,
        )
        .await
        .expect("query");
    assert_eq!(
        newest.iter().map(|c| c.open_time).collect::<Vec<_>>(),
        [Ts::from_secs(60)],
        "newest first, limited"
    );
    let newest = store
        .candles_newest_first(&range(0, 120), Interval::M1, CandleSource::Ours)
        .await
        .expect("query");
    assert_eq!(
        newest.iter().map(|c| c.open_time).collect::<Vec<_>>(),
        [Ts::from_secs(60), Ts::from_secs(0)],
        "every candle in range, newest first"
    );
    // The records, JSON and CSV, are those of the candles read, in either
    // order.
    for (newest_first, limit, form) in [
        (false, 1000, RecordForm::Json),
        (true, 1000, RecordForm::Json),
        (false, 1, RecordForm::Json),
        (false, 1000, RecordForm::Csv),
        (true, 1000, RecordForm::Csv),
        (true, 1, RecordForm::Csv),
    ] {
        let q = RangeQuery {
            limit,
            ..range(0, 120)
        };
        let candles = if newest_first {
            store
                .candles_newest_first(&q, Interval::M1, CandleSource::Ours)
                .await
        } else {
            store.candles(&q, Interval::M1, CandleSource::Ours).await
        }
        .expect("candles");
        let records = store
            .candle_records(&q, Interval::M1, CandleSource::Ours, newest_first, form)
            .await
            .expect("records");
        let mut want = Vec::new();
        for c in &candles {
            match form {
                RecordForm::Json => {
                    want.push(b',');
                    c.append_record_json(&mut want);
                }
                RecordForm::Csv => c.append_record_csv(&mut want),
            }
        }
        assert_eq!(records.form, form);
        assert_eq!(
            String::from_utf8_lossy(&records.bytes),
            String::from_utf8_lossy(&want),
            "records in {form:?}, newest first: {newest_first}, limit {limit}"
        );
        assert_eq!(
            records.open_times,
            candles.iter().map(|c| c.open_time).collect::<Vec<_>>()
        );
        assert_eq!(records.ends.last().copied(), Some(want.len()));
    }
    let latest = store
        .latest_candle(Exchange::Binance, &inst("BTC-USDT"), Interval::M1)
        .await
        .expect("latest");
    assert_eq!(latest.map(|c| c.open_time), Some(Ts::from_secs(60)));
    assert!(
        store
            .latest_candle(Exchange::Binance, &inst("BTC-USDT"), Interval::H1)
            .await
            .expect("latest")
            .is_none()
    );

    let theirs = WriteBatch {
        exchange_candles: vec![candle(0, "1.00", CandleState::Closed)],
        ..WriteBatch::default()
    };
    store
        .write(std::sync::Arc::new(theirs))
        .await
        .expect("write");
    let ex = store
        .candles(&range(0, 120), Interval::M1, CandleSource::Exchange)
        .await
        .expect("query");
    assert_eq!(ex.len(), 1, "exchange candles are kept apart");
    let ours = store
        .candles(&range(0, 60), Interval::M1, CandleSource::Ours)
        .await
        .expect("query");
    assert_eq!(ours[0].close, d("100.90"), "and do not touch ours");
}

async fn quotes_and_latest(store: &dyn Store) {
    let q = |secs: i64, bid: &str| Quote {
        exchange: Exchange::Binance,
        instrument: inst("BTC-USDT"),
        bid: d(bid),
        bid_size: Some(d("1.5")),
        ask: d("101"),
        ask_size: None,
        last: Some(d("100.5")),
        ts_exchange: Ts::from_secs(secs),
        ts_received: Ts::from_secs(secs),
    };
    let s = store
        .write(std::sync::Arc::new(WriteBatch {
            quotes: vec![q(5, "100.00"), q(9, "100.10"), q(7, "99")],
            ..WriteBatch::default()
        }))
        .await
        .expect("write");
    assert_eq!(s.quotes_inserted, 3);
    let got = store.quotes(&range(0, 9)).await.expect("query");
    assert_eq!(
        got.iter()
            .map(|q| q.ts_exchange.as_secs())
            .collect::<Vec<_>>(),
        vec![5, 7]
    );
    let latest = store
        .latest_quote(Exchange::Binance, &inst("BTC-USDT"))
        .await
        .expect("latest")
        .expect("some");
    assert_eq!(latest, q(9, "100.10"));
    assert!(
        store
            .latest_quote(Exchange::Kraken, &inst("BTC-USDT"))
            .await
            .expect("latest")
            .is_none()
    );
}

async fn instruments_and_errors(store: &dyn Store) {
    let info = InstrumentInfo {
        exchange: Exchange::Binance,
        instrument: inst("BTC-USDT"),
        native_symbol: "BTCUSDT".into(),
        status: Some("TRADING".into()),
    };
    let err = IngestError::new(Some(Exchange::Binance), "file.csv:3", "bad price", "x,y,z");
    store
        .write(std::sync::Arc::new(WriteBatch {
            instruments: vec![info.clone()],
            errors: vec![err.clone()],
            ..WriteBatch::default()
        }))
        .await
        .expect("write");
    let all = store.instruments().await.expect("instruments");
    let btc = all
        .iter()
        .find(|i| i.info.instrument == inst("BTC-USDT"))
        .expect("listed");
    assert_eq!(btc.info, info);
    assert_eq!(btc.last_trade_time, Some(Ts::from_secs(40)));
    let errors = store.ingest_errors(10).await.expect("errors");
    assert_eq!(errors, vec![err]);
    let counts = store.counts().await.expect("counts");
    assert_eq!(
        (counts.trades, counts.quotes, counts.candles, counts.errors),
        (304, 3, 2, 1)
    );
}
