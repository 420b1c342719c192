//! Retention on real replayed data: pruning trades and quotes changes no
//! candle and removes nothing newer than the policy; trades of candles that
//! may still be revised are kept whatever the policy says; candle and tape
//! policies remove only what is older; the space is given back.

use ck_app::retention::{self, Keep, Policy};
use ck_model::{Candle, Exchange, Interval, Trade, Ts};
use ck_store::{CandleSource, Store};

use crate::support::{btc, everything, settings};

const DAY: i64 = 86_400 * 1_000_000_000;

async fn candles(store: &dyn Store, intervals: &[Interval]) -> Vec<Vec<Candle>> {
    let mut out = Vec::new();
    for &i in intervals {
        out.push(
            store
                .candles(&everything(btc()), i, CandleSource::Ours)
                .await
                .expect("candles"),
        );
    }
    out
}

async fn trades(store: &dyn Store) -> Vec<Trade> {
    store.trades(&everything(btc())).await.expect("trades")
}

fn policy(trades: Keep, quotes: Keep) -> Policy {
    Policy {
        tapes: Keep::Forever,
        trades,
        quotes,
        candles: Vec::new(),
        batch_rows: 500,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_every_candle_and_every_trade_newer_than_the_policy() {
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(dir.path());
    let store = ck_app::open_store(&s).await.expect("store");
    crate::support::replay_binance_fixture(&s, &store).await;
    let intervals = s.aggregator.intervals.clone();
    let candles_before = candles(store.as_ref(), &intervals).await;
    let trades_before = trades(store.as_ref()).await;
    let quotes_before = store.quotes(&everything(btc())).await.expect("quotes");
    assert!(trades_before.len() > 5_000 && quotes_before.len() > 1_000);

    // "Now" is 30 days after the middle of the recording: a 30-day policy
    // cuts it in two.
    let (first, last) = (
        trades_before[0].ts_exchange,
        trades_before[trades_before.len() - 1].ts_exchange,
    );
    let cut = Ts(first.0 + (last.0 - first.0) / 2);
    let now = Ts(cut.0 + 30 * DAY);
    let keep = policy(Keep::For(30 * DAY), Keep::For(30 * DAY));
    let plan = retention::plan(&s, &keep, now, false);
    assert_eq!(
        plan.trades_before,
        Some(cut),
        "the policy's cutoff is safe here"
    );

    let dry = retention::prune(&s, store.as_ref(), &keep, now, true)
        .await
        .expect("dry run");
    let older = trades_before.iter().filter(|t| t.ts_exchange < cut).count() as u64;
    let older_quotes = quotes_before.iter().filter(|q| q.ts_exchange < cut).count() as u64;
    assert!(older > 1_000, "the cut falls inside the data: {older}");
    assert_eq!((dry.store.trades, dry.store.quotes), (older, older_quotes));
    assert_eq!(
        trades(store.as_ref()).await.len(),
        trades_before.len(),
        "a dry run deletes nothing"
    );

    let done = retention::prune(&s, store.as_ref(), &keep, now, false)
        .await
        .expect("prune");
    assert_eq!(
        (done.store.trades, done.store.quotes),
        (older, older_quotes)
    );
    // Every candle is unchanged.
    assert_eq!(candles(store.as_ref(), &intervals).await, candles_before);
    // No trade newer than the policy was removed, and none older is left.
    let newer: Vec<&Trade> = trades_before
        .iter()
        .filter(|t| t.ts_exchange >= cut)
        .collect();
    let left = trades(store.as_ref()).await;
    assert_eq!(left.iter().collect::<Vec<_>>(), newer);
    let quotes_left = store.quotes(&everything(btc())).await.expect("quotes");
    assert_eq!(
        quotes_left.len() as u64,
        quotes_before.len() as u64 - older_quotes
    );
    assert!(quotes_left.iter().all(|q| q.ts_exchange >= cut));
    assert!(
        done.store.bytes_after < done.store.bytes_before,
        "incremental vacuum gives the space back: {} -> {}",
        done.store.bytes_before,
        done.store.bytes_after
    );

    // A one-minute policy right after the recording: the trades of candles
    // still open or inside the lateness window stay.
    let eager = policy(Keep::For(60_000_000_000), Keep::Forever);
    let soon = Ts(last.0 + 60_000_000_000);
    let held = retention::plan(&s, &eager, soon, false);
    let safe = retention::safe_trade_cutoff(&s, soon);
    assert_eq!(held.trades_before, Some(safe));
    assert!(
        safe < Ts(soon.0 - 60_000_000_000),
        "held back from the policy's cutoff"
    );
    assert!(safe <= Interval::M1.bucket_start(Ts(soon.0 - 900_000_000_000)));
    let before = trades(store.as_ref()).await.len();
    let r = retention::prune(&s, store.as_ref(), &eager, soon, false)
        .await
        .expect("prune");
    assert_eq!(
        r.store.trades, 0,
        "every remaining trade is in a revisable candle"
    );
    assert_eq!(trades(store.as_ref()).await.len(), before);

    // Candle policies: 1s candles older than the cut go; the rest stay.
    let mut short = policy(Keep::Forever, Keep::Forever);
    short.candles = vec![(Interval::S1, Keep::For(30 * DAY))];
    let r = retention::prune(&s, store.as_ref(), &short, now, false)
        .await
        .expect("prune");
    let s1 = store
        .candles(&everything(btc()), Interval::S1, CandleSource::Ours)
        .await
        .expect("1s");
    let s1_before = &candles_before[intervals
        .iter()
        .position(|i| *i == Interval::S1)
        .expect("1s built")];
    let kept: Vec<&Candle> = s1_before.iter().filter(|c| c.open_time >= cut).collect();
    assert_eq!(s1.iter().collect::<Vec<_>>(), kept);
    assert_eq!(
        r.store.candles,
        vec![(Interval::S1, (s1_before.len() - kept.len()) as u64)]
    );
    let m1 = store
        .candles(&everything(btc()), Interval::M1, CandleSource::Ours)
        .await
        .expect("1m");
    assert_eq!(
        &m1,
        &candles_before[intervals
            .iter()
            .position(|i| *i == Interval::M1)
            .expect("1m built")]
    );
    assert_eq!(
        store
            .last_trade(Exchange::Binance, &btc())
            .await
            .expect("last")
            .map(|t| t.ts_exchange),
        Some(last)
    );

    // Tapes go by whole days.
    let tapes = dir.path().join("tapes").join("binance");
    std::fs::create_dir_all(&tapes).expect("tapes");
    for name in [
        "2024-07-01.tape.zst",
        "2024-07-01_r001.tape.zst",
        "2024-08-08.tape.zst",
        "notes.txt",
    ] {
        std::fs::write(tapes.join(name), b"x").expect("tape");
    }
    let mut old_tapes = policy(Keep::Forever, Keep::Forever);
    old_tapes.tapes = Keep::For(30 * DAY);
    let r = retention::prune(&s, store.as_ref(), &old_tapes, now, false)
        .await
        .expect("prune");
    let gone: Vec<String> = r
        .tapes
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert_eq!(gone, ["2024-07-01.tape.zst", "2024-07-01_r001.tape.zst"]);
    assert!(tapes.join("2024-08-08.tape.zst").exists() && tapes.join("notes.txt").exists());
}
