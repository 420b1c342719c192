//! The connector's watchdogs against the mock: a stalled connection (no data,
//! pings still flowing) is renewed, and a single stale stream is resubscribed
//! without dropping the connection.

use std::time::Duration;

use ck_app::pipeline::{PipelineReport, SourceReport};
use ck_mock::binance::{Faults, MockBinance, MockOptions};
use ck_model::Instrument;
use ck_sources::live::ConnectorSnapshot;
use ck_store::Store;
use std::sync::Arc;

use crate::support::{eventually, everything, settings};

async fn capture(
    mock: &MockBinance,
    instruments: Vec<Instrument>,
    stale_after: Duration,
    until: impl Fn(Arc<dyn Store>) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>,
) -> (bool, PipelineReport, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let source = crate::support::binance_source(mock, instruments, stale_after, false);
    let (token, pipeline) = crate::support::spawn_pipeline(&settings, &store, source);
    let done = eventually(Duration::from_secs(60), || until(store.clone())).await;
    token.cancel();
    let report = pipeline.await.expect("join").expect("pipeline");
    (done, report, store)
}

fn live(report: &PipelineReport) -> &ConnectorSnapshot {
    match &report.sources[0] {
        SourceReport::Live(s) => s,
        other => panic!("live report expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_is_renewed_and_nothing_is_lost() {
    let messages = ck_testkit::bench_data::repeated_binance_trade_messages(3_000, 1);
    let mock = MockBinance::start(
        &messages,
        MockOptions {
            ping_every: Duration::from_millis(50),
            faults: Faults {
                stall: Some((1_000, Duration::from_secs(30))),
                ..Faults::default()
            },
            ..MockOptions::default()
        },
    )
    .await
    .expect("mock");
    let btc = Instrument::new("BTC", "USDT");
    let (done, report, _) = capture(
        &mock,
        vec![btc.clone()],
        Duration::from_millis(300),
        |store| {
            Box::pin(async move {
                let q = everything(Instrument::new("BTC", "USDT"));
                store.trades(&q).await.map(|t| t.len()).unwrap_or(0) == 3_000
            })
        },
    )
    .await;
    assert!(done, "every trade arrived despite the stalls");
    let status = live(&report);
    assert!(status.reconnects >= 2, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("no data for")),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_stream_is_resubscribed_without_a_reconnect() {
    // Two instruments, trades alternating; S001's stream is withheld until
    // the client subscribes to it again. Paced, so the run outlasts the watchdog.
    let messages = ck_testkit::bench_data::repeated_binance_trade_messages(6_000, 2);
    let mock = MockBinance::start(
        &messages,
        MockOptions {
            speed: Some(400.0),
            faults: Faults {
                mute_until_resubscribed: Some("s001usdt@trade".into()),
                ..Faults::default()
            },
            ..MockOptions::default()
        },
    )
    .await
    .expect("mock");
    let (a, b) = (
        Instrument::new("S000", "USDT"),
        Instrument::new("S001", "USDT"),
    );
    let (done, report, store) = capture(
        &mock,
        vec![a.clone(), b.clone()],
        Duration::from_millis(400),
        |store| {
            Box::pin(async move {
                let q = everything(Instrument::new("S001", "USDT"));
                store
                    .trades(&q)
                    .await
                    .map(|t| !t.is_empty())
                    .unwrap_or(false)
            })
        },
    )
    .await;
    assert!(done, "the stale stream flows again after the resubscribe");
    let status = live(&report);
    assert!(status.resubscribes >= 1, "{status:?}");
    assert_eq!(
        status.reconnects, 0,
        "the connection itself stayed up: {status:?}"
    );
    assert_eq!(mock.connections(), 1);
    let flowing = store.trades(&everything(a)).await.expect("trades").len();
    assert!(flowing > 0);
}
