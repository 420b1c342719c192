//! An import writing straight to the archive, past one row group: a day
//! whose later rows need wider columns than its first ones.

use std::sync::Arc;

use ck_model::{Decimal, Exchange, Instrument, Side, Trade, TradeId, Ts};
use ck_store::sqlite::{Durability, SqliteStore};
use ck_store::tiered::TieredStore;
use ck_store::{RangeQuery, Store, WriteBatch, WriteSummary};

const DAY: i64 = 86_400 * 1_000_000_000;
/// 2024-10-04.
const FIRST_DAY: i64 = 20_000;

fn trade(i: usize, price: &str) -> Trade {
    let at = Ts(FIRST_DAY * DAY + i as i64 * 100_000_000);
    Trade {
        exchange: Exchange::Binance,
        instrument: Instrument::parse("BTC-USDT").expect("instrument"),
        trade_id: TradeId::Num(10_000 + i as u64),
        price: Decimal::parse(price).expect("price"),
        size: Decimal::parse("0.5").expect("size"),
        side: Side::Buy,
        ts_exchange: at,
        ts_received: Ts(at.0 + 7),
        fills: 1,
    }
}

/// A durable SQLite store under `dir`, the archive's root, and the two
/// as one tiered store.
/// The archive file of the first day's trades of `instrument`.
fn trades_file(root: &std::path::Path, instrument: &Instrument) -> std::path::PathBuf {
    ck_archive::layout::day_file(
        root,
        ck_archive::layout::Kind::Trades,
        Exchange::Binance,
        instrument,
        FIRST_DAY,
    )
}

fn tiered(dir: &std::path::Path) -> (Arc<dyn Store>, std::path::PathBuf, TieredStore) {
    let inner: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("ck.sqlite"), Durability::Full).expect("open"));
    let root = dir.join("archive");
    let store = TieredStore::new(inner.clone(), &root);
    (inner, root, store)
}

#[tokio::test]
async fn rows_that_need_other_columns_than_the_first_row_group_go_to_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inner, root, store) = tiered(dir.path());
    let chunk = ck_archive::ROW_GROUP_ROWS;
    // A row group of prices with two decimals, then prices with four.
    let trades: Vec<Trade> = (0..chunk + 100)
        .map(|i| {
            if i < chunk {
                trade(i, "60000.25")
            } else {
                trade(i, "60000.2575")
            }
        })
        .collect();
    store
        .begin_direct_archive(Ts((FIRST_DAY + 1) * DAY))
        .await
        .expect("begin");
    let mut total = WriteSummary::default();
    for batch in trades.chunks(20_000) {
        let s = store
            .write(Arc::new(WriteBatch {
                trades: batch.to_vec(),
                ..WriteBatch::default()
            }))
            .await
            .expect("write");
        total.trades_inserted += s.trades_inserted;
        total.trades_duplicate += s.trades_duplicate;
    }
    let report = store.end_direct_archive().await.expect("end");
    assert_eq!(
        total.trades_inserted,
        trades.len() as u64,
        "each counted once"
    );
    assert_eq!(total.trades_duplicate, 0);
    assert_eq!(
        report.trades, chunk as u64,
        "the first row group: {report:?}"
    );
    let file = trades_file(&root, &trades[0].instrument);
    let (rows, _) = ck_archive::footer(&file, "ts_exchange").expect("footer");
    assert_eq!(rows, chunk as u64);
    let all = RangeQuery {
        exchange: Exchange::Binance,
        instrument: trades[0].instrument.clone(),
        from: Ts(FIRST_DAY * DAY),
        to: Ts((FIRST_DAY + 1) * DAY),
        limit: usize::MAX,
    };
    assert_eq!(inner.trades(&all).await.expect("store").len(), 100);
    assert_eq!(store.trades(&all).await.expect("both"), trades);
    // The next pass rewrites the day with the wider column: exact.
    store
        .archive_settled(Ts((FIRST_DAY + 1) * DAY))
        .await
        .expect("archive");
    assert!(inner.trades(&all).await.expect("store").is_empty());
    assert_eq!(store.trades(&all).await.expect("both"), trades);
}

/// A day's file that cannot be written (here its folder's name is taken
/// by a file, which even root cannot write through) fails the import: the
/// write that met it, every write after it and the end all fail, naming
/// the cause, and nothing is taken by the store in its place. Once the way
/// is clear, the same import writes every row.
#[tokio::test]
async fn a_day_that_cannot_be_written_fails_the_import_and_the_next_one_writes_it_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inner, root, store) = tiered(dir.path());
    let chunk = ck_archive::ROW_GROUP_ROWS;
    let trades: Vec<Trade> = (0..chunk + 10).map(|i| trade(i, "60000.25")).collect();
    let file = trades_file(&root, &trades[0].instrument);
    let folder = file.parent().expect("the day's folder").to_owned();
    std::fs::create_dir_all(folder.parent().expect("parent")).expect("mkdir");
    std::fs::write(&folder, b"in the way").expect("blocker");
    let settled = Ts((FIRST_DAY + 1) * DAY);
    let write = |rows: &[Trade]| {
        store.write(Arc::new(WriteBatch {
            trades: rows.to_vec(),
            ..WriteBatch::default()
        }))
    };
    store.begin_direct_archive(settled).await.expect("begin");
    // A row group's worth is written to the day's file at once: it fails.
    let failed = write(&trades[..chunk])
        .await
        .expect_err("the folder is a file");
    let why = ck_bus::error_chain(&failed);
    assert!(why.contains("date="), "names the folder: {why}");
    // Every later write fails too, naming the first cause.
    let later = write(&trades[chunk..]).await.expect_err("failed state");
    assert!(
        matches!(&later, ck_store::Error::DirectArchive(w) if w.contains("date=")),
        "{later:?}"
    );
    let end = store
        .end_direct_archive()
        .await
        .expect_err("the import fails");
    assert!(matches!(end, ck_store::Error::DirectArchive(_)), "{end:?}");
    let all = RangeQuery {
        exchange: Exchange::Binance,
        instrument: trades[0].instrument.clone(),
        from: Ts(FIRST_DAY * DAY),
        to: settled,
        limit: usize::MAX,
    };
    assert!(
        store.trades(&all).await.expect("read").is_empty(),
        "nothing half-taken by either tier"
    );
    // Way cleared, the import run again writes every row to the file.
    std::fs::remove_file(&folder).expect("unblock");
    store
        .begin_direct_archive(settled)
        .await
        .expect("begin again");
    let mut inserted = 0;
    for batch in trades.chunks(50_000) {
        inserted += write(batch).await.expect("write").trades_inserted;
    }
    let report = store.end_direct_archive().await.expect("end");
    assert_eq!(inserted, trades.len() as u64);
    assert_eq!(report.trades, trades.len() as u64, "{report:?}");
    assert!(inner.trades(&all).await.expect("store").is_empty());
    assert_eq!(store.trades(&all).await.expect("both"), trades);
}
