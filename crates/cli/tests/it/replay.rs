//! Replay through the whole pipeline into SQLite, on the real recordings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ck_app::config::{AppConfig, Settings};
use ck_app::pipeline::{PipelineReport, Source, SourceReport, run_pipeline};
use ck_model::{Candle, CandleState, Exchange, Instrument, Interval, Trade, Ts};
use ck_sources::recordings::Recording;
use ck_sources::replay::ReplayOptions;
use ck_sources::tape::TapeWriter;
use ck_store::sqlite::SqliteStore;
use ck_store::{CandleSource, RangeQuery, RecordForm, Store};
use tokio_util::sync::CancellationToken;

fn settings(dir: &Path) -> Settings {
    let env = vec![("CANDLEKEEP_DATA_DIR".to_owned(), dir.display().to_string())];
    AppConfig::load(None, env)
        .expect("config")
        .settings()
        .expect("settings")
}

async fn replay(dir: &Path, files: Vec<PathBuf>) -> (Arc<dyn Store>, PipelineReport) {
    let s = settings(dir);
    let store = ck_app::open_store(&s).await.expect("store");
    let source = Source::Replay {
        files,
        options: ReplayOptions::default(),
    };
    let report = run_pipeline(
        &s,
        store.clone(),
        vec![source],
        None,
        CancellationToken::new(),
    )
    .await
    .expect("pipeline");
    (store, report)
}

fn all(exchange: Exchange, instrument: &str) -> RangeQuery {
    RangeQuery {
        exchange,
        instrument: Instrument::parse(instrument).expect("i"),
        from: Ts(i64::MIN),
        to: Ts(i64::MAX),
        limit: usize::MAX >> 1,
    }
}

async fn snapshot(
    store: &dyn Store,
    exchange: Exchange,
    instrument: &str,
) -> (Vec<Trade>, Vec<Candle>) {
    let q = all(exchange, instrument);
    let trades = store.trades(&q).await.expect("trades");
    let mut candles = Vec::new();
    for iv in Interval::ALL {
        candles.extend(
            store
                .candles(&q, iv, CandleSource::Ours)
                .await
                .expect("candles"),
        );
    }
    (trades, candles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hftbacktest_replay_stores_every_trade_and_closed_candles() {
    let dir = tempfile::tempdir().expect("dir");
    let file = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let (store, report) = replay(dir.path(), vec![file.clone()]).await;
    let SourceReport::Replay(r) = &report.sources[0] else {
        panic!("replay report")
    };
    assert_eq!(r.records, 41_249, "every line of the recording is read");
    assert_eq!((r.bad_records, r.normalized.errors), (0, 0));
    let (trades, candles) = snapshot(store.as_ref(), Exchange::Binance, "BTC-USDT").await;
    assert_eq!(trades.len(), 9_757, "every recorded trade is stored");
    let ids: Vec<u64> = trades.iter().filter_map(|t| t.trade_id.as_u64()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ids contiguous, as recorded"
    );
    let m1: Vec<&Candle> = candles
        .iter()
        .filter(|c| c.interval == Interval::M1)
        .collect();
    assert_eq!(m1.len(), 7, "23:54 to 00:00");
    // The last trade is at 00:00:01.271 exchange time, so by exchange time
    // 23:59 and 00:00 are still open; but the replay is finite and its
    // candles ended long before the wall clock's lateness window: every one
    // is settled, up to the day, the week and the month.
    assert!(
        candles.iter().all(|c| c.state == CandleState::Closed),
        "{:?}",
        candles
            .iter()
            .filter(|c| c.state != CandleState::Closed)
            .map(|c| (c.interval, c.open_time, c.state))
            .collect::<Vec<_>>()
    );
    assert!(
        candles
            .iter()
            .any(|c| c.interval == Interval::D1
                && c.open_time == Ts::parse("2024-08-08").expect("ts")),
        "the 2024-08-08 1d candle"
    );
    assert_eq!(m1.iter().map(|c| c.trades).sum::<u64>(), 9_757);
    let counts = store.counts().await.expect("counts");
    assert!(
        counts.quotes > 10_000,
        "bookTicker quotes stored: {}",
        counts.quotes
    );

    // Replaying again changes nothing: trades deduplicate, candles upsert.
    let (store2, report2) = replay(dir.path(), vec![file]).await;
    assert_eq!(report2.writer.written.trades_inserted, 0);
    assert_eq!(report2.writer.written.trades_duplicate, 9_757);
    assert_eq!(
        snapshot(store2.as_ref(), Exchange::Binance, "BTC-USDT").await,
        (trades, candles)
    );
}

/// A finite run packs the days it settled (the recording crosses UTC
/// midnight: two days per interval up to 1h), and long reads of packed
/// days give exactly the records the rows give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_packs_its_settled_days_and_reads_them_as_the_rows() {
    let dir = tempfile::tempdir().expect("dir");
    let file = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let (store, report) = replay(dir.path(), vec![file]).await;
    let packable: Vec<Interval> = settings(dir.path())
        .aggregator
        .intervals
        .iter()
        .copied()
        .filter(|i| i.fixed_nanos().is_some_and(|n| n <= 3_600_000_000_000))
        .collect();
    assert!(packable.contains(&Interval::M1), "{packable:?}");
    assert_eq!(
        report.packed.days_packed,
        2 * packable.len() as u64,
        "{:?}",
        report.packed
    );
    let q = all(Exchange::Binance, "BTC-USDT");
    for interval in packable {
        for (newest_first, form) in [
            (false, RecordForm::Json),
            (true, RecordForm::Json),
            (false, RecordForm::Csv),
            (true, RecordForm::Csv),
        ] {
            let candles = if newest_first {
                store
                    .candles_newest_first(&q, interval, CandleSource::Ours)
                    .await
            } else {
                store.candles(&q, interval, CandleSource::Ours).await
            }
            .expect("candles");
            let mut rows = ck_store::CandleRecords::new(form, 0);
            for c in &candles {
                rows.push_candle(c);
            }
            let packed = store
                .candle_records(&q, interval, CandleSource::Ours, newest_first, form)
                .await
                .expect("records");
            assert!(!packed.is_empty(), "{interval}");
            assert!(
                packed == rows,
                "{interval} in {form:?}, newest first: {newest_first}"
            );
        }
    }
    // Nothing changed since: nothing to pack again.
    let again = store.pack_candle_days(Ts::now()).await.expect("pack");
    assert_eq!(again.days_packed, 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tape_replays_to_the_same_trades_and_candles_as_its_source() {
    let fixture = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    // Write the recording to tapes as live capture would, then replay both.
    let tapes = tempfile::tempdir().expect("dir");
    let mut writer = TapeWriter::new(tapes.path(), Exchange::Binance, 500);
    for msg in Recording::open(&fixture).expect("open") {
        writer.write(&msg.expect("line")).expect("tape write");
    }
    drop(writer);
    let mut tape_files: Vec<PathBuf> = std::fs::read_dir(tapes.path().join("binance"))
        .expect("tape dir")
        .map(|e| e.expect("entry").path())
        .collect();
    tape_files.sort();
    assert_eq!(
        tape_files.len(),
        1,
        "received before UTC midnight: one daily tape"
    );

    let a = tempfile::tempdir().expect("dir");
    let b = tempfile::tempdir().expect("dir");
    let (from_fixture, _) = replay(a.path(), vec![fixture]).await;
    let (from_tape, _) = replay(b.path(), tape_files).await;
    let left = snapshot(from_fixture.as_ref(), Exchange::Binance, "BTC-USDT").await;
    let right = snapshot(from_tape.as_ref(), Exchange::Binance, "BTC-USDT").await;
    assert_eq!(left.0.len(), 9_757);
    assert_eq!(left, right, "identical stored trades and candles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_exchange_v1_recording_uses_taker_side_and_skips_empty_minutes() {
    let dir = tempfile::tempdir().expect("dir");
    let files = vec![
        ck_testkit::fixture("cryptofeed/COINBASE_EXCHANGE.0"),
        ck_testkit::fixture("cryptofeed/COINBASE_EXCHANGE.ws.28.0"),
    ];
    let (store, report) = replay(dir.path(), files).await;
    let SourceReport::Replay(r) = &report.sources[0] else {
        panic!("replay report")
    };
    assert_eq!(r.normalized.errors, 0);
    assert_eq!(
        r.bad_records, 0,
        "the configuration line is metadata, not an error"
    );
    let listed = store.instruments().await.expect("instruments");
    assert!(
        listed.iter().any(|i| i.info.native_symbol == "SKL-USD"),
        "products listing stored"
    );
    let (trades, candles) = snapshot(store.as_ref(), Exchange::CoinbaseExchange, "SKL-USD").await;
    assert!(!trades.is_empty());
    // The first SKL-USD match in the recording: maker sold, so the taker bought.
    let first = trades
        .iter()
        .find(|t| t.trade_id.as_u64() == Some(1_568_268))
        .expect("recorded match");
    assert_eq!(first.side, ck_model::Side::Buy);
    assert!(
        candles.iter().all(|c| c.trades > 0),
        "Coinbase publishes no candle for an empty interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("candlekeep.sqlite");
    std::fs::write(&path, b"this is not a database").expect("write");
    let err = SqliteStore::open(&path, ck_store::sqlite::Durability::Full)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("sqlite"), "{err}");
}

/// `(instrument, trade id, side)` of each trade in one recorded message.
type TradeRows = Vec<(String, String, String)>;
/// Trade id to side, per instrument.
type TradesByInstrument =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// Distinct trades per instrument in a cryptofeed recording, read with a
/// generic JSON parser: the test's own count, independent of our parsers.
fn recorded_trades(
    path: &Path,
    pick: &dyn Fn(&serde_json::Value) -> TradeRows,
) -> TradesByInstrument {
    let mut by_instrument = TradesByInstrument::default();
    for msg in Recording::open(path).expect("open") {
        let msg = msg.expect("line");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&msg.data) else {
            continue;
        };
        for (instrument, id, side) in pick(&v) {
            by_instrument
                .entry(instrument)
                .or_default()
                .insert(id, side);
        }
    }
    by_instrument
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_advanced_recording_replays_every_trade_with_taker_sides() {
    let file = ck_testkit::fixture("cryptofeed/COINBASE.jsonl.zst");
    let expected = recorded_trades(&file, &|v| {
        if v["channel"] != "market_trades" {
            return vec![];
        }
        let mut out = vec![];
        for e in v["events"].as_array().into_iter().flatten() {
            for t in e["trades"].as_array().into_iter().flatten() {
                out.push((
                    t["product_id"].as_str().unwrap_or("").to_owned(),
                    t["trade_id"].as_str().unwrap_or("").to_owned(),
                    t["side"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        out
    });
    let dir = tempfile::tempdir().expect("dir");
    let (store, report) = replay(dir.path(), vec![file]).await;
    let SourceReport::Replay(r) = &report.sources[0] else {
        panic!("replay report")
    };
    assert_eq!((r.normalized.errors, r.bad_records), (0, 0));
    let btc = &expected["BTC-USD"];
    assert!(btc.len() > 20, "{}", btc.len());
    let (trades, candles) = snapshot(store.as_ref(), Exchange::Coinbase, "BTC-USD").await;
    assert_eq!(
        trades.len(),
        btc.len(),
        "every distinct recorded trade, once"
    );
    for t in &trades {
        let maker = &btc[&t.trade_id.to_string()];
        let taker = if maker == "SELL" {
            ck_model::Side::Buy
        } else {
            ck_model::Side::Sell
        };
        assert_eq!(t.side, taker, "trade {}", t.trade_id);
    }
    assert!(
        candles.iter().all(|c| c.trades > 0),
        "Coinbase publishes no candle for an empty interval"
    );
    assert!(
        store
            .latest_quote(
                Exchange::Coinbase,
                &Instrument::parse("BTC-USD").expect("i")
            )
            .await
            .expect("quote")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okx_recording_replays_spot_trades_and_ignores_derivatives() {
    let file = ck_testkit::fixture("cryptofeed/OKX.jsonl.zst");
    let expected = recorded_trades(&file, &|v| {
        if v["arg"]["channel"] != "trades" {
            return vec![];
        }
        v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["instId"].as_str().unwrap_or("").to_owned(),
                    t["tradeId"].as_str().unwrap_or("").to_owned(),
                    t["side"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    });
    let dir = tempfile::tempdir().expect("dir");
    let (store, report) = replay(dir.path(), vec![file]).await;
    let SourceReport::Replay(r) = &report.sources[0] else {
        panic!("replay report")
    };
    assert_eq!((r.normalized.errors, r.bad_records), (0, 0));
    let spot = &expected["BTC-USDT"];
    let (trades, _) = snapshot(store.as_ref(), Exchange::Okx, "BTC-USDT").await;
    assert_eq!(trades.len(), spot.len());
    assert!(
        trades
            .iter()
            .all(|t| spot[&t.trade_id.to_string()] == t.side.as_str()),
        "OKX side is the taker side"
    );
    let listed = store.instruments().await.expect("instruments");
    assert!(
        listed
            .iter()
            .all(|i| !i.info.native_symbol.ends_with("-SWAP")),
        "derivatives are not listed as spot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitstamp_recording_replays_every_trade() {
    let file = ck_testkit::fixture("cryptofeed/BITSTAMP.jsonl.zst");
    let expected = recorded_trades(&file, &|v| {
        if v["event"] != "trade" {
            return vec![];
        }
        let pair = v["channel"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("live_trades_")
            .to_owned();
        let side = if v["data"]["type"] == 0 {
            "buy"
        } else {
            "sell"
        };
        vec![(pair, v["data"]["id"].to_string(), side.to_owned())]
    });
    let dir = tempfile::tempdir().expect("dir");
    let (store, report) = replay(dir.path(), vec![file]).await;
    let SourceReport::Replay(r) = &report.sources[0] else {
        panic!("replay report")
    };
    assert_eq!((r.normalized.errors, r.bad_records), (0, 0));
    let eth = &expected["ethusd"];
    assert!(eth.len() >= 5, "{}", eth.len());
    let (trades, _) = snapshot(store.as_ref(), Exchange::Bitstamp, "ETH-USD").await;
    assert_eq!(trades.len(), eth.len());
    assert!(
        trades
            .iter()
            .all(|t| eth[&t.trade_id.to_string()] == t.side.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitfinex_recording_replays_snapshots_and_updates_once() {
    let file = ck_testkit::fixture("cryptofeed/BITFINEX.jsonl.zst");
    // The test's own reading: channel ids from `subscribed`, then every trade
    // row of a trades channel (snapshot rows and `te`), by id, with its sign.
    let mut channels = std::collections::HashMap::new();
    let mut expected: std::collections::BTreeMap<u64, bool> = Default::default();
    for msg in Recording::open(&file).expect("open") {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&msg.expect("line").data) else {
            continue;
        };
        if v["event"] == "subscribed" && v["channel"] == "trades" && v["symbol"] == "tBFTUSD" {
            channels.insert(v["chanId"].as_i64().expect("id"), ());
        }
        let Some(arr) = v.as_array() else { continue };
        if !arr
            .first()
            .and_then(serde_json::Value::as_i64)
            .is_some_and(|id| channels.contains_key(&id))
        {
            continue;
        }
        let rows: Vec<&serde_json::Value> = match (&arr[1], arr.get(2)) {
            (serde_json::Value::String(s), Some(row)) if s == "te" => vec![row],
            (serde_json::Value::Array(rows), _) => rows.iter().collect(),
            _ => vec![],
        };
        for r in rows {
            expected.insert(
                r[0].as_u64().expect("id"),
                r[2].as_f64().expect("amount") > 0.0,
            );
        }
    }
    assert!(expected.len() >= 10, "{}", expected.len());
    let dir = tempfile::tempdir().expect("dir");
    let (store, report) = replay(dir.path(), vec![file]).await;
    let SourceReport::Replay(r) = &report.sources[0] else {
        panic!("replay report")
    };
    assert_eq!((r.normalized.errors, r.bad_records), (0, 0));
    let (trades, candles) = snapshot(store.as_ref(), Exchange::Bitfinex, "BFT-USD").await;
    assert_eq!(trades.len(), expected.len(), "each trade once");
    for t in &trades {
        let buy = expected[&t.trade_id.as_u64().expect("numeric")];
        assert_eq!(t.side == ck_model::Side::Buy, buy, "trade {}", t.trade_id);
    }
    assert!(
        candles.iter().all(|c| c.trades > 0),
        "Bitfinex publishes no candle for an empty interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_v1_recording_replays_every_trade_and_ticker() {
    let file = ck_testkit::fixture("cryptofeed/KRAKEN.jsonl.zst");
    // The test's own reading: `[chan, [[price, volume, time, side, ..]..], "trade", pair]`.
    let expected = recorded_trades(&file, &|v| {
        let Some(arr) = v.as_array() else {
            return vec![];
        };
        if arr.len() != 4 || arr[2] != "trade" {
            return vec![];
        }
        let pair = arr[3]
            .as_str()
            .unwrap_or("")
            .replace("XBT", "BTC")
            .replace('/', "-");
        arr[1]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let f = |i: usize| r[i].as_str().unwrap_or("").to_owned();
                let id = format!("v1:{}:{}:{}:{}", f(2), f(0), f(1), f(3));
                let side = if f(3) == "b" { "buy" } else { "sell" };
                (pair.clone(), id, side.to_owned())
            })
            .collect()
    });
    let dir = tempfile::tempdir().expect("dir");
    let (store, report) = replay(dir.path(), vec![file]).await;
    let SourceReport::Replay(r) = &report.sources[0] else {
        panic!("replay report")
    };
    assert_eq!((r.normalized.errors, r.bad_records), (0, 0));
    let total: usize = expected.values().map(std::collections::BTreeMap::len).sum();
    assert_eq!(total, 10, "the recording holds ten trades");
    for (pair, recorded) in &expected {
        let (trades, _) = snapshot(store.as_ref(), Exchange::Kraken, pair).await;
        assert_eq!(trades.len(), recorded.len(), "{pair}");
        for t in &trades {
            assert_eq!(
                recorded[&t.trade_id.to_string()],
                t.side.as_str(),
                "{pair} {}",
                t.trade_id
            );
        }
    }
    assert!(
        store
            .latest_quote(Exchange::Kraken, &Instrument::parse("XMR-USD").expect("i"))
            .await
            .expect("quote")
            .is_some(),
        "v1 tickers become quotes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bybit_recording_replays_spot_trades_and_skips_derivatives() {
    let file = ck_testkit::fixture("cryptofeed/BYBIT.jsonl.zst");
    // The test's own reading of the spot connection (`BYBIT.ws.3`, /v5/public/spot).
    let mut expected: std::collections::BTreeMap<String, String> = Default::default();
    let text = {
        use std::io::Read as _;
        let mut s = String::new();
        zstd::stream::read::Decoder::new(std::fs::File::open(&file).expect("open"))
            .expect("zstd")
            .read_to_string(&mut s)
            .expect("read");
        s
    };
    let spot_conn = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["t"] == "connect" && v["addr"].as_str().is_some_and(|a| a.ends_with("/spot")))
        .and_then(|v| v["conn"].as_str().map(str::to_owned))
        .expect("a spot connection");
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["t"] != "recv" || v["conn"] != spot_conn.as_str() {
            continue;
        }
        let Ok(m) = serde_json::from_str::<serde_json::Value>(v["data"].as_str().unwrap_or(""))
        else {
            continue;
        };
        if m["topic"] != "publicTrade.BTCUSDT" {
            continue;
        }
        for t in m["data"].as_array().into_iter().flatten() {
            expected.insert(
                t["i"].as_str().unwrap_or("").to_owned(),
                t["S"].as_str().unwrap_or("").to_ascii_lowercase(),
            );
        }
    }
    assert!(expected.len() >= 10, "{}", expected.len());
    let dir = tempfile::tempdir().expect("dir");
    let (store, report) = replay(dir.path(), vec![file]).await;
    let SourceReport::Replay(r) = &report.sources[0] else {
        panic!("replay report")
    };
    assert_eq!((r.normalized.errors, r.bad_records), (0, 0));
    let (trades, _) = snapshot(store.as_ref(), Exchange::Bybit, "BTC-USDT").await;
    assert_eq!(trades.len(), expected.len(), "spot trades only, each once");
    for t in &trades {
        assert_eq!(expected[&t.trade_id.to_string()], t.side.as_str());
    }
}
