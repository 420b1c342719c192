//! Live capture against the mock Binance server on 127.0.0.1, replaying the
//! recorded real traffic: connect, survive a dropped connection, tape every
//! message, store every trade.

use std::path::PathBuf;
use std::time::Duration;

use ck_app::config::AppConfig;
use ck_app::pipeline::SourceReport;
use ck_mock::binance::{Faults, MockBinance, MockOptions};
use ck_model::{Exchange, Instrument, Ts};
use ck_sources::recordings::Recording;
use ck_store::RangeQuery;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_capture_survives_a_dropped_connection_and_tapes_everything() {
    let fixture = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let recording: Vec<_> = Recording::open(&fixture)
        .expect("open")
        .map(|r| r.expect("line"))
        .filter(|m| m.data.contains("@trade\"") || m.data.contains("@bookTicker\""))
        .take(3_000)
        .collect();
    let recorded_trades = recording
        .iter()
        .filter(|m| m.data.contains("@trade\""))
        .count();
    assert!(recorded_trades > 500, "{recorded_trades}");
    let mock = MockBinance::start(
        &recording,
        MockOptions {
            faults: Faults {
                drop_after: Some(1_000),
                ..Faults::default()
            },
            ..MockOptions::default()
        },
    )
    .await
    .expect("mock");

    let dir = tempfile::tempdir().expect("dir");
    let env = vec![(
        "CANDLEKEEP_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    )];
    let settings = AppConfig::load(None, env)
        .expect("config")
        .settings()
        .expect("settings");
    let store = ck_app::open_store(&settings).await.expect("store");
    let source = crate::support::binance_source(
        &mock,
        vec![Instrument::parse("BTC-USDT").expect("i")],
        Duration::from_secs(30),
        true,
    );
    let (token, pipeline) = crate::support::spawn_pipeline(&settings, &store, source);

    // Wait (bounded) until every recorded trade is stored, then stop.
    let q = RangeQuery {
        exchange: Exchange::Binance,
        instrument: Instrument::parse("BTC-USDT").expect("i"),
        from: Ts(i64::MIN),
        to: Ts(i64::MAX),
        limit: 1_000_000,
    };
    let mut stored = 0;
    for _ in 0..600 {
        stored = store.trades(&q).await.expect("trades").len();
        let filled = store
            .gaps(None, None, 10)
            .await
            .expect("gaps")
            .iter()
            .all(|g| g.state == ck_model::GapState::Filled);
        if stored == recorded_trades && mock.finished() && filled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel();
    let report = pipeline.await.expect("join").expect("pipeline");
    assert_eq!(stored, recorded_trades, "every recorded trade is stored");
    assert_eq!(
        mock.connections(),
        2,
        "the connector reconnected after the drop"
    );
    let SourceReport::Live(status) = &report.sources[0] else {
        panic!("live report")
    };
    assert_eq!(status.reconnects, 1);
    assert_eq!(status.messages as usize, recording.len());
    let capture = report.capture.expect("capture stage ran");
    assert_eq!(
        capture.taped as usize,
        recording.len() + 1,
        "every raw message taped: the stream, and the exchangeInfo response"
    );
    assert_eq!(capture.normalized.errors, 0);

    // The tape replays to exactly what the mock sent (time-shifted), in order.
    let tape_dir = dir.path().join("tapes").join("binance");
    let mut tapes: Vec<PathBuf> = std::fs::read_dir(&tape_dir)
        .expect("tapes")
        .map(|e| e.expect("entry").path())
        .collect();
    tapes.sort();
    let taped: Vec<_> = tapes
        .iter()
        .flat_map(|p| Recording::open(p).expect("tape").map(|r| r.expect("line")))
        .collect();
    assert_eq!(taped.len(), recording.len() + 1);
    assert!(
        matches!(&taped[0].origin, ck_bus::Origin::Rest { url } if url.ends_with("/api/v3/exchangeInfo")),
        "the instrument list is taped first: {:?}",
        taped[0].origin
    );
    let first_trade = taped
        .iter()
        .find(|m| m.data.contains("@trade\""))
        .expect("a trade");
    assert!(
        first_trade.data.contains("\"t\":3735683259"),
        "{}",
        first_trade.data
    );

    // The reconnect window is on record for the instrument, and was repaired
    // over REST (the ids show nothing was missing; the window was checked).
    let gaps = store
        .gaps(Some(Exchange::Binance), Some(&q.instrument), 10)
        .await
        .expect("gaps");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(
        gaps[0].reason.starts_with("reconnect"),
        "{}",
        gaps[0].reason
    );
    assert_eq!(gaps[0].state, ck_model::GapState::Filled, "{gaps:?}");
    assert!(gaps[0].from_ts <= gaps[0].to_ts);

    // Times were shifted to now, so the wall clock closed candles as it would live.
    let candles = store
        .candles(&q, ck_model::Interval::S1, ck_store::CandleSource::Ours)
        .await
        .expect("candles");
    assert!(
        candles
            .iter()
            .any(|c| c.state == ck_model::CandleState::Closed),
        "live candles close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_looped_mock_moves_ids_and_times_on_each_lap() {
    use futures_util::StreamExt;
    let recording = ck_testkit::bench_data::repeated_binance_trade_messages(100, 1);
    let mock = MockBinance::start(
        &recording,
        MockOptions {
            looped: true,
            ..MockOptions::default()
        },
    )
    .await
    .expect("mock");
    let url = format!("{}/stream?streams=btcusdt@trade", mock.ws_url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let mut seen: Vec<(u64, i64)> = Vec::new();
    while seen.len() < 250 {
        let Some(Ok(m)) = ws.next().await else {
            panic!("stream ended")
        };
        let Ok(text) = m.to_text() else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            continue;
        };
        seen.push((
            v["data"]["t"].as_u64().expect("id"),
            v["data"]["T"].as_i64().expect("time"),
        ));
    }
    assert!(!mock.finished(), "a looped mock never finishes");
    assert!(
        seen.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "ids continue contiguously across laps"
    );
    assert!(
        seen.windows(2).all(|w| w[1].1 >= w[0].1),
        "times never go back"
    );
}
