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

/// OKX polled through its `market/ticker` (the REST mock serving the
/// recording's last `tickers` row): quotes with that bid and ask are
/// stored, and an unknown instrument, which OKX refuses in the body of an
/// HTTP 200 (code 51001), is refused by name and no longer polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okx_polled_tickers_become_quotes_and_refusals_in_the_body_stop_polling() {
    let recording = crate::support::recording("cryptofeed/OKX.jsonl.zst");
    let last: serde_json::Value = recording
        .iter()
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m.data).ok())
        .rfind(|v| v["arg"]["channel"] == "tickers" && v["arg"]["instId"] == "BTC-USDT")
        .map(|v| v["data"][0].clone())
        .expect("a BTC-USDT ticker");
    let rest = ck_mock::okx::MockOkxRest::start(&recording, None)
        .await
        .expect("rest mock");
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let instrument = Instrument::new("BTC", "USDT");
    let source = Source::Poll {
        exchange: Exchange::Okx,
        rest_url: rest.rest_url(),
        targets: vec![
            PollTarget {
                instrument: instrument.clone(),
                every: Duration::from_millis(20),
            },
            PollTarget {
                instrument: Instrument::new("NOPE", "USDT"),
                every: Duration::from_millis(20),
            },
        ],
    };
    let (token, pipeline) = crate::support::spawn_pipeline(&settings, &store, source);
    let stored = eventually(Duration::from_secs(30), || {
        let (store, instrument) = (store.clone(), instrument.clone());
        async move {
            store
                .quotes(&okx(instrument))
                .await
                .map(|q| !q.is_empty())
                .unwrap_or(false)
        }
    })
    .await;
    token.cancel();
    let report = pipeline.await.expect("join").expect("pipeline");
    assert!(stored, "polled quotes are stored");
    let quotes = store.quotes(&okx(instrument)).await.expect("quotes");
    assert_eq!(
        (quotes[0].bid.to_string(), quotes[0].ask.to_string()),
        (
            last["bidPx"].as_str().expect("bidPx").to_owned(),
            last["askPx"].as_str().expect("askPx").to_owned()
        )
    );
    let SourceReport::Poll(stats) = &report.sources[0] else {
        panic!("poll report")
    };
    assert_eq!(stats.refused.len(), 1, "{stats:?}");
    assert!(
        stats.refused[0].contains("NOPE-USDT") && stats.refused[0].contains("code 51001"),
        "{stats:?}"
    );
}

fn okx(instrument: Instrument) -> ck_store::RangeQuery {
    ck_store::RangeQuery {
        exchange: Exchange::Okx,
        ..everything(instrument)
    }
}
