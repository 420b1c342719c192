//! Gap-free capture under faults: the mock drops connections, withholds
//! trades and sends malformed frames; REST repair must bring the store to
//! exactly the mock's trade set, with every incident in the gap log.

use std::collections::BTreeSet;
use std::time::Duration;

use ck_mock::binance::{Faults, MockBinance, MockOptions};
use ck_model::{Exchange, GapState, Interval, TradeId};

use crate::support::{
    assert_candles_match, binance_messages, btc, eventually, everything, expected_candles,
    settings, to_trade,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_repaired_from_rest_to_the_exact_trade_set() {
    let recording = binance_messages(8_000);
    let mock = MockBinance::start(
        &recording,
        MockOptions {
            faults: Faults {
                drop_every: Some(2_500),
                skip_every: Some(97),
                malformed_every: Some(700),
                rest_429_every: Some(5),
                ..Faults::default()
            },
            ..MockOptions::default()
        },
    )
    .await
    .expect("mock");
    let all = mock.trades("BTCUSDT");
    assert!(all.len() > 1_000, "{}", all.len());
    let all_ids: BTreeSet<u64> = all.iter().map(|t| t.id).collect();

    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let source = crate::support::binance_source(&mock, vec![btc()], Duration::from_secs(30), true);
    let (token, pipeline) = crate::support::spawn_pipeline(&settings, &store, source);

    let q = everything(btc());
    let expected_len = all_ids.len();
    let complete = eventually(Duration::from_secs(60), || {
        let store = store.clone();
        let (q, mock) = (q.clone(), &mock);
        async move {
            let stored = store.trades(&q).await.expect("trades").len();
            let open = store
                .gaps(None, None, 10_000)
                .await
                .expect("gaps")
                .iter()
                .filter(|g| g.state == GapState::Open)
                .count();
            mock.finished() && stored == expected_len && open == 0
        }
    })
    .await;
    token.cancel();
    let report = pipeline.await.expect("join").expect("pipeline");
    assert!(
        complete,
        "the store reached the complete trade set with no open gap"
    );

    // Exactly the mock's trades: same ids, each once.
    let stored = store.trades(&q).await.expect("trades");
    let stored_ids: BTreeSet<u64> = stored
        .iter()
        .map(|t| match t.trade_id {
            TradeId::Num(id) => id,
            TradeId::Str(_) => panic!("binance ids are numbers"),
        })
        .collect();
    assert_eq!(stored.len(), stored_ids.len(), "no duplicates");
    assert_eq!(
        stored_ids, all_ids,
        "every trade the mock served, nothing else"
    );

    // The faults happened, and every incident is in the gap log, filled.
    assert!(mock.skipped() >= 10, "skipped {}", mock.skipped());
    assert!(
        mock.connections() >= 4,
        "connections {}",
        mock.connections()
    );
    let gaps = store
        .gaps(Some(Exchange::Binance), None, 10_000)
        .await
        .expect("gaps");
    let reconnects = gaps
        .iter()
        .filter(|g| g.reason.starts_with("reconnect"))
        .count();
    assert_eq!(
        reconnects,
        mock.connections() - 1,
        "one gap per reconnect: {gaps:#?}"
    );
    assert!(
        gaps.iter().all(|g| g.state == GapState::Filled),
        "{gaps:#?}"
    );
    let repair = report.repair.expect("repair ran");
    assert_eq!(repair.filled as usize, gaps.len(), "{repair:?}");
    assert_eq!(repair.unfillable, 0, "{repair:?}");
    assert!(repair.trades >= mock.skipped() as u64, "{repair:?}");
    // Every withheld trade lies inside a recorded id gap.
    let id_gap_ids: u64 = gaps
        .iter()
        .filter_map(|g| Some(g.last_missing_id? - g.first_missing_id? + 1))
        .sum();
    assert!(
        id_gap_ids >= mock.skipped() as u64,
        "id gaps cover the {} withheld trades, got {id_gap_ids}",
        mock.skipped()
    );

    // Malformed frames were counted and stored as errors, never dropped silently.
    let capture = report.capture.expect("capture");
    assert!(capture.normalized.errors >= 5, "{capture:?}");
    let errors = store.ingest_errors(10_000).await.expect("errors");
    assert!(
        errors.iter().any(|e| e.message.contains("malformed")),
        "{errors:?}"
    );
    // 429s were recorded with their URL and status, and retried.
    assert!(
        errors
            .iter()
            .any(|e| e.message.starts_with("HTTP 429") && e.origin.contains("/api/v3/")),
        "{errors:?}"
    );

    // Candles equal those of the complete trade set.
    let mut trades: Vec<_> = all.iter().map(to_trade).collect();
    trades.sort_by_key(|t| t.ts_exchange);
    for interval in [Interval::S1, Interval::M1] {
        let expected = expected_candles(&settings, &trades, interval);
        assert_candles_match(store.as_ref(), &expected, interval).await;
    }
}
