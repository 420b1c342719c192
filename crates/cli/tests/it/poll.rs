//! The REST polling source against the mock: best bid/ask at a cadence per
//! instrument, through the tape and the parser; an unknown symbol is refused
//! by name and stops being polled.

use std::time::Duration;

use ck_app::pipeline::{Source, SourceReport};
use ck_mock::binance::{MockBinance, MockOptions};
use ck_model::{Exchange, Instrument};
use ck_sources::poll::PollTarget;

use crate::support::{binance_messages, btc, eventually, everything, settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_tickers_become_quotes_and_unknown_symbols_are_refused() {
    let recording = binance_messages(2_000);
    let first: serde_json::Value = recording
        .iter()
        .find(|m| m.data.contains("@bookTicker"))
        .map(|m| serde_json::from_str(&m.data).expect("json"))
        .expect("a bookTicker");
    let mock = MockBinance::start(&recording, MockOptions::default())
        .await
        .expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let source = Source::Poll {
        exchange: Exchange::Binance,
        rest_url: mock.rest_url(),
        targets: vec![
            PollTarget {
                instrument: btc(),
                every: Duration::from_millis(20),
            },
            PollTarget {
                instrument: Instrument::new("NOPE", "USDT"),
                every: Duration::from_millis(20),
            },
        ],
    };
    let (token, pipeline) = crate::support::spawn_pipeline(&settings, &store, source);
    let enough = eventually(Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            store
                .quotes(&everything(btc()))
                .await
                .map(|q| q.len())
                .unwrap_or(0)
                >= 5
        }
    })
    .await;
    token.cancel();
    let report = pipeline.await.expect("join").expect("pipeline");
    assert!(enough, "polled quotes are stored");
    let quotes = store.quotes(&everything(btc())).await.expect("quotes");
    let q = &quotes[0];
    assert_eq!(q.bid.to_string(), first["data"]["b"].as_str().expect("b"));
    assert_eq!(q.ask.to_string(), first["data"]["a"].as_str().expect("a"));
    let SourceReport::Poll(stats) = &report.sources[0] else {
        panic!("poll report")
    };
    assert!(stats.responses >= 5, "{stats:?}");
    assert_eq!(stats.refused.len(), 1, "{stats:?}");
    assert!(
        stats.refused[0].contains("NOPE-USDT") && stats.refused[0].contains("Invalid symbol"),
        "{stats:?}"
    );
    let errors = store.ingest_errors(100).await.expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e.origin.contains("symbol=NOPEUSDT") && e.message.contains("HTTP 400")),
        "the refusal is recorded with its URL and status: {errors:?}"
    );
}
