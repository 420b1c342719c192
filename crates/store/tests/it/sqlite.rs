use ck_store::Store;
use ck_store::sqlite::{Durability, SqliteStore};

#[tokio::test]
async fn sqlite_passes_the_store_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("ck.sqlite"), Durability::Full).expect("open");
    ck_testkit::store_contract(&store).await;
}

#[tokio::test]
async fn sqlite_is_in_wal_mode_and_reopens_with_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ck.sqlite");
    {
        let store = SqliteStore::open(&path, Durability::Full).expect("open");
        ck_testkit::store_contract(&store).await;
    }
    let conn = rusqlite::Connection::open(&path).expect("open raw");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    let vacuum: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(vacuum, 2, "a new database is made for incremental vacuum");
    let versions: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .expect("migrations");
    assert_eq!(versions, 7);
    drop(conn);
    let store = SqliteStore::open(&path, Durability::Full).expect("reopen migrates nothing twice");
    assert_eq!(
        store.counts().await.expect("counts").trades,
        303,
        "the contract ends with a prune"
    );
}

#[tokio::test]
async fn book_gaps_recorded_before_gaps_had_a_kind_are_book_gaps_after_the_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ck.sqlite");
    drop(SqliteStore::open(&path, Durability::Full).expect("open"));
    // Back to version 6: no kind column, and two gaps as it wrote them.
    let conn = rusqlite::Connection::open(&path).expect("raw");
    conn.execute_batch(
        "DROP INDEX gaps_unique;
         ALTER TABLE gaps DROP COLUMN kind;
         CREATE UNIQUE INDEX gaps_unique ON gaps
             (instrument_id, from_ts, to_ts, coalesce(from_trade_id, ''), coalesce(to_trade_id, ''));
         DELETE FROM schema_migrations WHERE version = 7;
         INSERT INTO instruments (exchange, instrument) VALUES ('okx', 'BTC-USDT');
         INSERT INTO gaps (instrument_id, from_ts, to_ts, state, reason, detected_at, updated_at)
             SELECT id, 1, 2, 'unfillable', 'order book: checksum: off by one', 2, 2 FROM instruments;
         INSERT INTO gaps (instrument_id, from_ts, to_ts, state, reason, detected_at, updated_at)
             SELECT id, 3, 4, 'open', 'reconnect', 4, 4 FROM instruments;",
    )
    .expect("version 6");
    drop(conn);
    let store = SqliteStore::open(&path, Durability::Full).expect("migrates to 7");
    let mut kinds: Vec<(String, ck_model::GapKind)> = store
        .gaps(None, None, 10)
        .await
        .expect("gaps")
        .into_iter()
        .map(|g| (g.reason, g.kind))
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        kinds,
        [
            (
                "order book: checksum: off by one".to_owned(),
                ck_model::GapKind::Book
            ),
            ("reconnect".to_owned(), ck_model::GapKind::Trades),
        ]
    );
}

#[tokio::test]
async fn a_failed_batch_commits_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ck.sqlite");
    let store = SqliteStore::open(&path, Durability::Full).expect("open");
    // Make the candles table refuse writes, then send trades and a candle together.
    let conn = rusqlite::Connection::open(&path).expect("raw");
    conn.execute_batch("CREATE TRIGGER no_candles BEFORE INSERT ON candles BEGIN SELECT RAISE(ABORT, 'refused'); END;").expect("trigger");
    let t = ck_model::Trade {
        exchange: ck_model::Exchange::Binance,
        instrument: "BTC-USDT".parse().expect("i"),
        trade_id: ck_model::TradeId::Num(1),
        price: "1".parse().expect("d"),
        size: "1".parse().expect("d"),
        side: ck_model::Side::Buy,
        ts_exchange: ck_model::Ts(1),
        ts_received: ck_model::Ts(1),
        fills: 1,
    };
    let c = ck_model::Candle {
        exchange: t.exchange,
        instrument: t.instrument.clone(),
        interval: ck_model::Interval::M1,
        open_time: ck_model::Ts(0),
        open: t.price,
        high: t.price,
        low: t.price,
        close: t.price,
        volume: t.size,
        quote_volume: t.price,
        vwap: t.price,
        taker_buy_volume: t.size,
        trades: 1,
        first_trade_id: None,
        last_trade_id: None,
        state: ck_model::CandleState::Closed,
    };
    let batch = ck_store::WriteBatch {
        trades: vec![t],
        candles: vec![c],
        ..Default::default()
    };
    let err = store
        .write(std::sync::Arc::new(batch))
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("candle"), "{err}");
    assert_eq!(
        store.counts().await.expect("counts").trades,
        0,
        "the trade rolled back with the candle"
    );
}

/// A candle row whose decimal text was damaged outside candlekeep is
/// refused with the column named, by the JSON records as by the candles,
/// never copied into a response.
#[tokio::test]
async fn damaged_candle_text_is_refused_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ck.sqlite");
    let store = SqliteStore::open(&path, Durability::Full).expect("open");
    let p: ck_model::Decimal = "100.5".parse().expect("d");
    let c = ck_model::Candle {
        exchange: ck_model::Exchange::Binance,
        instrument: "BTC-USDT".parse().expect("i"),
        interval: ck_model::Interval::M1,
        open_time: ck_model::Ts(0),
        open: p,
        high: p,
        low: p,
        close: p,
        volume: p,
        quote_volume: p,
        vwap: p,
        taker_buy_volume: p,
        trades: 1,
        first_trade_id: None,
        last_trade_id: None,
        state: ck_model::CandleState::Closed,
    };
    let batch = ck_store::WriteBatch {
        candles: vec![c],
        ..Default::default()
    };
    store
        .write(std::sync::Arc::new(batch))
        .await
        .expect("write");
    let q = ck_store::RangeQuery {
        exchange: ck_model::Exchange::Binance,
        instrument: "BTC-USDT".parse().expect("i"),
        from: ck_model::Ts(0),
        to: ck_model::Ts(i64::MAX),
        limit: 10,
    };
    let (m1, ours) = (ck_model::Interval::M1, ck_store::CandleSource::Ours);
    let good = store
        .candle_records(&q, m1, ours, false, ck_store::RecordForm::Json)
        .await
        .expect("records");
    assert_eq!(good.len(), 1);
    let conn = rusqlite::Connection::open(&path).expect("raw");
    conn.execute("UPDATE candles SET high = '1\"}]'", [])
        .expect("damage");
    for form in [ck_store::RecordForm::Json, ck_store::RecordForm::Csv] {
        let err = store
            .candle_records(&q, m1, ours, false, form)
            .await
            .expect_err("damaged text");
        assert!(err.to_string().contains("high"), "{err}");
    }
    assert!(store.candles(&q, m1, ours).await.is_err());
}

/// Packed days answer exactly as their rows (see `crate::packed`).
#[tokio::test]
async fn packed_candle_days_read_exactly_as_their_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ck.sqlite");
    let store = SqliteStore::open(&path, Durability::Full).expect("open");
    let raw = crate::packed::Raw::Sqlite(rusqlite::Connection::open(&path).expect("raw"));
    crate::packed::packed_days_answer_as_their_rows(&store, &raw).await;
}

#[test]
fn the_writer_page_cache_is_64_mib_unless_set() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("ck.sqlite"), Durability::Full).expect("open");
    assert_eq!(store.cache_kib().expect("cache"), 64 * 1024);
    store.set_cache_mib(8).expect("set");
    assert_eq!(store.cache_kib().expect("cache"), 8 * 1024);
}

#[tokio::test]
async fn sqlite_with_an_archive_passes_the_tiered_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = SqliteStore::open(&dir.path().join("ck.sqlite"), Durability::Full).expect("open");
    ck_testkit::tiered_contract(std::sync::Arc::new(inner), &dir.path().join("archive")).await;
}

#[tokio::test]
async fn sqlite_with_an_archive_passes_the_direct_import_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = SqliteStore::open(&dir.path().join("ck.sqlite"), Durability::Full).expect("open");
    ck_testkit::direct_import_contract(std::sync::Arc::new(inner), &dir.path().join("archive"))
        .await;
}

#[tokio::test]
async fn sqlite_with_an_archive_passes_the_store_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = SqliteStore::open(&dir.path().join("ck.sqlite"), Durability::Full).expect("open");
    let store =
        ck_store::tiered::TieredStore::new(std::sync::Arc::new(inner), &dir.path().join("archive"));
    ck_testkit::store_contract(&store).await;
}
