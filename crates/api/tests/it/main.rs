//! Router tests: every endpoint through `oneshot`, on a store seeded by
//! replaying the real hftbacktest Binance recording and the cryptofeed
//! Coinbase one, with the bad inputs.

mod ws;

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ck_api::{ApiState, router};
use ck_app::pipeline::ReplayOptions;
use ck_app::pipeline::{Source, run_pipeline};
use ck_model::Ts;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The seeded store, shared by every test (replayed once).
fn state() -> ApiState {
    static STATE: OnceLock<(ApiState, tempfile::TempDir)> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("dir");
            let env = vec![(
                "CANDLEKEEP_DATA_DIR".to_owned(),
                dir.path().display().to_string(),
            )];
            let settings = ck_app::config::AppConfig::load(None, env)
                .expect("config")
                .settings()
                .expect("settings");
            // SQLite opens without a runtime (open_store is async).
            let store: std::sync::Arc<dyn ck_store::Store> = std::sync::Arc::new(
                ck_store::sqlite::SqliteStore::open(
                    &dir.path().join("candlekeep.sqlite"),
                    ck_store::sqlite::Durability::Normal,
                )
                .expect("store"),
            );
            let files = vec![
                ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz"),
                ck_testkit::fixture("cryptofeed/COINBASE.jsonl.zst"),
            ];
            // Replayed on a runtime of its own, in a thread of its own (the
            // first test to get here is already inside a runtime).
            let seeded = store.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(run_pipeline(
                    &settings,
                    seeded,
                    vec![Source::Replay {
                        files,
                        options: ReplayOptions::default(),
                    }],
                    None,
                    tokio_util::sync::CancellationToken::new(),
                ))
                .expect("replay");
            })
            .join()
            .expect("seeding thread");
            (
                ApiState::new(
                    store,
                    Arc::default(),
                    ck_bus::live_feed(16),
                    std::time::Duration::from_secs(15),
                ),
                dir,
            )
        })
        .0
        .clone()
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn get(uri: &str) -> Reply {
    get_from(router(state()), uri).await
}

async fn get_from(app: axum::Router, uri: &str) -> Reply {
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A 4xx with a JSON error whose message contains `needle`.
async fn refused(uri: &str, status: StatusCode, needle: &str) {
    let r = get(uri).await;
    assert_eq!(r.status, status, "{uri}: {}", r.body);
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains(needle), "{uri}: {message}");
}

const C: &str = "/api/v1/candles?exchange=binance&instrument=BTC-USDT";

#[tokio::test]
async fn instruments_and_exchanges_list_what_is_stored() {
    let r = get("/api/v1/instruments").await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.json();
    let btc = items
        .as_array()
        .expect("array")
        .iter()
        .find(|i| i["instrument"] == "BTC-USDT")
        .expect("BTC-USDT listed");
    assert_eq!(btc["exchange"], "binance");
    assert_eq!(btc["native_symbol"], "BTCUSDT");
    assert!(
        btc["last_trade_time"]
            .as_str()
            .expect("time")
            .starts_with("2024-08-09T00:0")
    );
    let ex = get("/api/v1/exchanges").await.json();
    let binance = ex
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["exchange"] == "binance")
        .expect("binance");
    assert_eq!(
        (binance["instruments"].as_u64(), binance["status"].as_str()),
        (Some(1), Some("idle"))
    );
    refused(
        "/api/v1/instruments?exchange=nasdaq",
        StatusCode::BAD_REQUEST,
        "unknown exchange `nasdaq`",
    )
    .await;
}

#[tokio::test]
async fn candles_page_with_a_cursor_and_answer_csv() {
    let all = get(&format!("{C}&interval=1m")).await;
    assert_eq!(all.status, StatusCode::OK);
    let all = all.json();
    let all = all.as_array().expect("array");
    assert!(all.len() >= 6, "{}", all.len());
    assert!(
        all.iter()
            .all(|c| c["open"].is_string() && c["state"].is_string())
    );
    // Two per page: the pages join up to the whole, in order.
    let mut got = Vec::new();
    let mut uri = format!("{C}&interval=1m&limit=2");
    loop {
        let page = get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        got.extend(page.json().as_array().expect("array").iter().cloned());
        match page.headers.get("x-next-cursor") {
            Some(c) => {
                let c = c.to_str().expect("ascii");
                assert!(page.headers.get("link").is_some());
                uri = format!("{C}&interval=1m&limit=2&cursor={}", c.replace(':', "%3A"));
            }
            None => break,
        }
    }
    assert_eq!(&got, all, "pages join up to the whole");
    let csv = get(&format!("{C}&interval=1m&format=csv&limit=3")).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(
        lines[0],
        "open_time,open,high,low,close,volume,quote_volume,vwap,taker_buy_volume,trades,first_trade_id,last_trade_id,state"
    );
    assert_eq!(lines.len(), 4);
    // CSV answers are the JSON answers' records, byte for byte as the `csv`
    // crate writes them, with the same next page: cut to a page, read
    // newest first, streamed as read (a limit of 20,000 or more that no
    // next page can follow), and empty.
    for query in [
        "&limit=3",
        "&limit=4&order=desc",
        "&limit=50000",
        "&limit=50000&order=desc",
        "&from=2020-01-01&to=2020-01-02",
    ] {
        let json = get(&format!("{C}&interval=1m{query}")).await;
        let csv = get(&format!("{C}&interval=1m&format=csv{query}")).await;
        assert_eq!((json.status, csv.status), (StatusCode::OK, StatusCode::OK));
        assert_eq!(
            csv.headers.get("x-next-cursor"),
            json.headers.get("x-next-cursor"),
            "{query}"
        );
        let records: Vec<ck_model::CandleRecord> =
            serde_json::from_str(&json.body).expect("records");
        let mut want = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        want.write_record(ck_model::CandleRecord::COLUMNS)
            .expect("header");
        for r in &records {
            want.serialize(r).expect("row");
        }
        let want = String::from_utf8(want.into_inner().expect("csv")).expect("utf8");
        assert_eq!(csv.body, want, "{query}");
        assert_eq!(csv.body.lines().count(), records.len() + 1, "{query}");
    }
}

#[tokio::test]
async fn latest_candle_and_lookup_by_time() {
    let latest =
        get("/api/v1/candles/latest?exchange=binance&instrument=BTC-USDT&interval=1m").await;
    assert_eq!(latest.status, StatusCode::OK, "{}", latest.body);
    let at = get("/api/v1/candles/latest?exchange=binance&instrument=BTC-USDT&interval=1m&time=2024-08-08T23:56:30.5Z").await;
    assert_eq!(at.status, StatusCode::OK, "{}", at.body);
    assert_eq!(at.json()["open_time"], "2024-08-08T23:56:00Z");
    refused(
        "/api/v1/candles/latest?exchange=binance&instrument=BTC-USDT&interval=1m&time=2020-01-01",
        StatusCode::NOT_FOUND,
        "no 1m candle",
    )
    .await;
}

#[tokio::test]
async fn trades_page_through_everything_once() {
    let mut seen = Vec::new();
    let mut uri = "/api/v1/trades?exchange=binance&instrument=BTC-USDT&limit=1000".to_owned();
    loop {
        let page = get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for t in page.json().as_array().expect("array") {
            seen.push(
                t["trade_id"]
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .expect("the id, as a string"),
            );
        }
        match page.headers.get("x-next-cursor") {
            Some(c) => {
                uri = format!(
                    "/api/v1/trades?exchange=binance&instrument=BTC-USDT&limit=1000&cursor={}",
                    c.to_str().expect("ascii").replace(':', "%3A")
                );
            }
            None => break,
        }
    }
    let mut distinct = seen.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(seen.len(), 9_757, "every trade of the recording");
    assert_eq!(distinct.len(), seen.len(), "none twice");
}

#[tokio::test]
async fn tickers_prices_and_completeness() {
    let t = get("/api/v1/tickers").await.json();
    let btc = &t.as_array().expect("array")[0];
    assert_eq!(btc["instrument"], "BTC-USDT");
    assert!(
        btc["price"].is_string() && btc["bid"].is_string() && btc["ask"].is_string(),
        "{btc}"
    );
    let p = get("/api/v1/prices?exchange=binance&instrument=BTC-USDT&from=2024-08-08T23:54:00Z&to=2024-08-09T00:01:00Z&points=10").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let series = p.json();
    let series = series.as_array().expect("array");
    assert!(!series.is_empty() && series.len() <= 20, "{}", series.len());
    let c = get("/api/v1/completeness?exchange=binance&instrument=BTC-USDT&interval=1m").await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    let c = c.json();
    assert_eq!(c["coverage_pct"].as_f64(), Some(100.0), "{c}");
    assert_eq!(c["open_gaps"].as_u64(), Some(0));
    assert!(c["last_message_time"].is_string());
}

/// Readiness follows what the process is meant to do: serving only, live
/// capture, or an API node of a cluster; liveness is always 200.
#[tokio::test]
async fn readiness_says_why_a_process_is_not_ready() {
    use ck_bus::connectors::{ConnectionState, ConnectorRegistry, ConnectorSnapshot};
    let shared = state();
    let board = Arc::new(ck_bus::health::Board::default());
    let with = |registry: &Arc<ConnectorRegistry>, capture: ck_api::Capture| {
        router(
            ApiState::new(
                shared.store.clone(),
                registry.clone(),
                ck_bus::live_feed(16),
                std::time::Duration::from_secs(15),
            )
            .with_capture(capture)
            .with_problems(board.clone()),
        )
    };
    let snapshot = |state: ConnectionState, last: Option<Ts>| ConnectorSnapshot {
        exchange: ck_model::Exchange::Binance,
        state,
        messages: u64::from(last.is_some()),
        reconnects: 0,
        resubscribes: 0,
        last_message: last,
        last_error: Some("connect: connection refused".into()),
        note: None,
        instruments: Vec::new(),
    };
    let ready = |r: &Reply| (r.status, r.json()["status"].as_str().map(str::to_owned));
    let reasons = |r: &Reply| r.json()["reasons"].to_string();

    // Serving only: ready while the store answers.
    let registry = Arc::new(ConnectorRegistry::default());
    let app = with(&registry, ck_api::Capture::Nothing);
    let r = get_from(app.clone(), "/health").await;
    assert_eq!(ready(&r), (StatusCode::OK, Some("ok".into())), "{}", r.body);
    assert_eq!(r.json()["capturing"], "not capturing");
    let live = get_from(app, "/health/live").await;
    assert_eq!(
        (live.status, live.json()["status"].as_str()),
        (StatusCode::OK, Some("live"))
    );

    // Live capture: nothing connected yet, then connecting, then connected.
    let live = ck_api::Capture::Live {
        stale_after: std::time::Duration::from_secs(60),
    };
    let app = with(&registry, live);
    let r = get_from(app.clone(), "/health").await;
    assert_eq!(
        ready(&r),
        (StatusCode::SERVICE_UNAVAILABLE, Some("degraded".into()))
    );
    assert!(reasons(&r).contains("no live connector"), "{}", r.body);
    registry.report("n1", snapshot(ConnectionState::Reconnecting, None));
    let r = get_from(app.clone(), "/health/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reasons(&r).contains("binance is reconnecting (last error: connect: connection refused)"),
        "{}",
        r.body
    );
    let stale = Ts(Ts::now().0 - 120_000_000_000);
    registry.report("n1", snapshot(ConnectionState::Connected, Some(stale)));
    let r = get_from(app.clone(), "/health").await;
    assert!(
        reasons(&r).contains("connected but silent since"),
        "{}",
        r.body
    );
    registry.report("n1", snapshot(ConnectionState::Connected, Some(Ts::now())));
    let r = get_from(app.clone(), "/health").await;
    assert_eq!(ready(&r), (StatusCode::OK, Some("ok".into())), "{}", r.body);
    assert_eq!(
        (
            r.json()["connected"].as_u64(),
            r.json()["capturing"].as_str()
        ),
        (Some(1), Some("live"))
    );

    // A stuck stage makes it degraded, with the stage's cause.
    board.report("ck-test stage", "database or disk is full".into());
    let r = get_from(app.clone(), "/health").await;
    board.clear("ck-test stage");
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reasons(&r).contains("ck-test stage: database or disk is full"),
        "{}",
        r.body
    );

    // An API node: degraded until a processor reports.
    let app = with(&registry, ck_api::Capture::Cluster);
    let r = get_from(app.clone(), "/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reasons(&r).contains("no processor has reported"),
        "{}",
        r.body
    );
    registry.report_processor("p1");
    let r = get_from(app, "/health").await;
    assert_eq!(ready(&r), (StatusCode::OK, Some("ok".into())), "{}", r.body);
    assert_eq!(r.json()["processors"].as_u64(), Some(1));
}

#[tokio::test]
async fn health_metrics_connectors_and_openapi() {
    let h = get("/health").await;
    assert_eq!(
        (
            h.status,
            h.json()["status"].as_str(),
            h.json()["store_backend"].as_str()
        ),
        (StatusCode::OK, Some("ok"), Some("sqlite"))
    );
    let m = get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.body.contains("candlekeep_queue_depth"), "{}", m.body);
    // Every family is named with the prefix and has its help before its type.
    let lines: Vec<&str> = m.body.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split(' ').next().unwrap_or_default();
            assert!(
                family.starts_with("candlekeep_") || family.starts_with("ck_test_"),
                "{family} lacks the candlekeep_ prefix"
            );
            let help = i.checked_sub(1).map(|j| lines[j]).unwrap_or_default();
            assert!(
                help.starts_with(&format!("# HELP {family} ")),
                "{family} has no # HELP line: {help:?}"
            );
        } else if !line.starts_with('#') {
            assert!(
                line.starts_with("candlekeep_") || line.starts_with("ck_test_"),
                "a sample without the prefix: {line}"
            );
        }
    }
    assert_eq!(
        get("/api/v1/connectors").await.json(),
        serde_json::json!([])
    );
    let doc = get("/api/openapi.json").await.json();
    for path in [
        "/api/v1/candles",
        "/api/v1/instruments",
        "/api/v1/trades",
        "/api/v1/tickers",
        "/health",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let page = get("/api/docs").await;
    assert!(page.status.is_success() && page.body.contains("/api/openapi.json"));
}

#[tokio::test]
async fn bad_inputs_get_clear_json_errors() {
    refused(
        C,
        StatusCode::BAD_REQUEST,
        "missing query parameter `interval`",
    )
    .await;
    // One wording, as the CLI and the WebSocket say it.
    refused(
        &format!("{C}&interval=7m"),
        StatusCode::BAD_REQUEST,
        "unknown interval `7m`; valid intervals: 1s, 1m, 3m",
    )
    .await;
    refused(
        "/api/v1/candles?exchange=binance&instrument=NOPE-USDT&interval=1m",
        StatusCode::NOT_FOUND,
        "no data for binance NOPE-USDT",
    )
    .await;
    refused(
        "/api/v1/candles?exchange=binance&instrument=BTCUSDT&interval=1m",
        StatusCode::BAD_REQUEST,
        "instrument",
    )
    .await;
    refused(
        &format!("{C}&interval=1m&from=2024-02-01&to=2024-01-01"),
        StatusCode::BAD_REQUEST,
        "must be before",
    )
    .await;
    refused(
        &format!("{C}&interval=1m&limit=99999999999"),
        StatusCode::BAD_REQUEST,
        "`limit`",
    )
    .await;
    refused(
        &format!("{C}&interval=1m&limit=-1"),
        StatusCode::BAD_REQUEST,
        "`limit`",
    )
    .await;
    refused(
        &format!("{C}&interval=1m&from=yesterday"),
        StatusCode::BAD_REQUEST,
        "not a time",
    )
    .await;
    refused(
        &format!("{C}&interval=1m&format=xml"),
        StatusCode::BAD_REQUEST,
        "valid: json, csv",
    )
    .await;
    refused(
        "/api/v1/trades?exchange=binance&instrument=BTC-USDT&cursor=garbage",
        StatusCode::BAD_REQUEST,
        "cursor",
    )
    .await;
    refused("/api/v1/nothing", StatusCode::NOT_FOUND, "no such endpoint").await;
    refused(
        &format!("{C}&interval=%ZZ"),
        StatusCode::BAD_REQUEST,
        "unknown interval",
    )
    .await;
    // A malformed JSON body, authenticated, on a read-only endpoint: a JSON 405.
    let r = router(state().with_token(Some("t".into())))
        .oneshot(
            Request::post("/api/v1/candles")
                .header("content-type", "application/json")
                .header("authorization", "Bearer t")
                .body(Body::from("{not json"))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body = r.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json error");
    assert!(v["error"]["message"].is_string());
}

#[tokio::test]
async fn state_changing_requests_need_the_bearer_token() {
    let post = |token: Option<&str>| {
        let mut r = Request::post("/api/v1/candles");
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.body(Body::empty()).expect("request")
    };
    // No token configured: refused, saying how to enable.
    let r = router(state())
        .oneshot(post(Some("x")))
        .await
        .expect("response");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let configured = state().with_token(Some("s3cret".into()));
    for (token, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong"), StatusCode::UNAUTHORIZED),
        // The right token passes authentication (no POST route exists yet).
        (Some("s3cret"), StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let r = router(configured.clone())
            .oneshot(post(token))
            .await
            .expect("response");
        assert_eq!(r.status(), status, "{token:?}");
        let body = r.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json error");
        assert!(v["error"]["message"].is_string());
    }
    // Reading needs no token.
    let r = router(configured)
        .oneshot(
            Request::get("/health")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(r.status(), StatusCode::OK);
}

/// The framework's own refusals come as the API's JSON error too.
#[tokio::test]
async fn every_error_body_is_the_json_error() {
    let configured = state().with_token(Some("s3cret".into()));
    let big = "x".repeat(100 * 1024);
    let (status, v) = call(
        configured.clone(),
        "POST",
        "/api/v1/alerts",
        Some("s3cret"),
        &big,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(v["error"]["status"], 413);
    // A WebSocket URL fetched without the upgrade.
    let r = get("/api/v1/ws").await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert!(r.json()["error"]["message"].is_string(), "{}", r.body);
    // A refusal of a request whose body was not read closes the connection,
    // and says so.
    let r = router(configured)
        .oneshot(
            Request::post("/api/v1/alerts")
                .header("content-length", "2")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["connection"], "close");
    // A config rule that does not exist is not found, whatever the method.
    for method in ["GET", "PUT", "DELETE"] {
        let (status, v) = call(
            state().with_token(Some("s3cret".into())),
            method,
            "/api/v1/alerts/config:99",
            Some("s3cret"),
            r#"{"kind":"stale_feed","exchange":"binance","instrument":"BTC-USDT","seconds":60}"#,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {v}");
    }
}

/// What the server answers to `request` sent as raw bytes: status and body.
async fn raw(addr: std::net::SocketAddr, request: Vec<u8>) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before reading it all.
    let _ = socket.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Request heads too big for the API, or for HTTP itself, are refused with
/// the JSON error too: a URI over 8 KiB (and over hyper's own 64 KiB), over
/// 100 headers, headers over 64 KiB (and over hyper's 1 MiB buffer), bytes
/// that are not HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_request_heads_get_the_json_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(ck_api::serve(
        listener,
        state(),
        stop.clone().cancelled_owned(),
    ));
    let request = |path: &str, headers: &str| {
        format!("GET {path} HTTP/1.1\r\nhost: x\r\n{headers}connection: close\r\n\r\n").into_bytes()
    };
    let (status, body) = raw(addr, request("/health/live", "")).await;
    assert_eq!(status, 200, "{body}");
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a 10 KiB URI",
            request(
                &format!("/api/v1/instruments?x={}", "a".repeat(10 * 1024)),
                "",
            ),
            414,
        ),
        (
            "a 100 KiB URI",
            request(
                &format!("/api/v1/instruments?x={}", "a".repeat(100 * 1024)),
                "",
            ),
            414,
        ),
        ("150 headers", request("/health/live", &many), 431),
        (
            "a 100 KiB header",
            request(
                "/health/live",
                &format!("x-big: {}\r\n", "b".repeat(100 * 1024)),
            ),
            431,
        ),
        (
            "a 2 MiB header",
            request(
                "/health/live",
                &format!("x-big: {}\r\n", "b".repeat(2 << 20)),
            ),
            431,
        ),
        (
            "bytes that are not HTTP",
            b"\x16\x03\x01 hello\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, bytes, want) in cases {
        let (status, body) = raw(addr, bytes).await;
        assert_eq!(status, want, "{what}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body:?}"));
        assert_eq!(v["error"]["status"], want, "{what}");
        assert!(v["error"]["message"].is_string(), "{what}");
    }
    // Still serving.
    let (status, _) = raw(addr, request("/health/live", "")).await;
    assert_eq!(status, 200);
    stop.cancel();
    server.await.expect("join").expect("served");
}

#[tokio::test]
async fn cors_is_off_by_default_and_configurable() {
    let preflight = || {
        Request::options("/api/v1/instruments")
            .header("origin", "http://dash.local")
            .header("access-control-request-method", "GET")
            .body(Body::empty())
            .expect("request")
    };
    let r = router(state())
        .oneshot(preflight())
        .await
        .expect("response");
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "no CORS unless configured"
    );
    let allowed = state().with_cors(vec!["http://dash.local".into()]);
    let r = router(allowed.clone())
        .oneshot(preflight())
        .await
        .expect("response");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://dash.local"
    );
    let other = Request::get("/api/v1/instruments")
        .header("origin", "http://evil.example")
        .body(Body::empty())
        .expect("request");
    let r = router(allowed).oneshot(other).await.expect("response");
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "other origins get nothing"
    );
}

#[tokio::test]
async fn candles_newest_first_page_back_through_the_same_candles() {
    let all = get(&format!("{C}&interval=1m")).await.json();
    let mut all = all.as_array().expect("array").clone();
    all.reverse();
    let mut got = Vec::new();
    let mut uri = format!("{C}&interval=1m&limit=3&order=desc");
    loop {
        let page = get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        got.extend(page.json().as_array().expect("array").iter().cloned());
        match page.headers.get("x-next-cursor") {
            Some(c) => {
                let c = c.to_str().expect("ascii").replace(':', "%3A");
                uri = format!("{C}&interval=1m&limit=3&order=desc&cursor={c}");
            }
            None => break,
        }
    }
    assert_eq!(got, all, "newest first, every candle once");
    refused(
        &format!("{C}&interval=1m&order=sideways"),
        StatusCode::BAD_REQUEST,
        "valid: asc, desc",
    )
    .await;
}

#[tokio::test]
async fn instruments_with_data_leaves_out_listed_only_ones() {
    let r = get("/api/v1/instruments?with_data=true").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.json();
    let items = items.as_array().expect("array");
    let mut names: Vec<String> = items
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["exchange"].as_str().unwrap_or(""),
                i["instrument"].as_str().unwrap_or("")
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["binance:BTC-USDT", "coinbase:BTC-USD", "coinbase:ETH-USD"]
    );
    assert!(items.iter().all(|i| i["last_trade_time"].is_string()));
    refused(
        "/api/v1/instruments?with_data=maybe",
        StatusCode::BAD_REQUEST,
        "with_data",
    )
    .await;
}

/// The sample standard deviation, written out.
fn stddev(xs: &[f64]) -> f64 {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

#[tokio::test]
async fn stats_agree_with_a_recomputation_from_the_candles() {
    let r = get("/api/v1/stats?window=1h").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.json();
    let items = items.as_array().expect("array");
    assert_eq!(items.len(), 3, "one per instrument with data: {items:?}");
    // Ranked by the standard deviation of log returns, highest first, when
    // the series has the data: some volume, at least five candles and a
    // tenth of the window's sixty minutes; the others follow, unranked.
    for item in items {
        let candles = item["candles"].as_u64().expect("candles");
        let volume: f64 = item["volume"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("volume");
        assert_eq!(
            item["ranked"].as_bool(),
            Some(candles >= 6 && volume > 0.0),
            "{item}"
        );
    }
    let ranked: Vec<&serde_json::Value> = items.iter().filter(|i| i["ranked"] == true).collect();
    assert!(
        !ranked.is_empty() && ranked.len() < items.len(),
        "both kinds: {items:?}"
    );
    let ranks: Vec<u64> = items.iter().filter_map(|i| i["rank"].as_u64()).collect();
    assert_eq!(ranks, (1..=ranked.len() as u64).collect::<Vec<_>>());
    assert!(
        items[ranked.len()..].iter().all(|i| i["rank"].is_null()),
        "unranked last"
    );
    let sds: Vec<f64> = ranked.iter().filter_map(|i| i["stddev"].as_f64()).collect();
    assert!(sds.windows(2).all(|w| w[0] >= w[1]), "{sds:?}");
    for item in items {
        let (ex, inst) = (
            item["exchange"].as_str().expect("ex"),
            item["instrument"].as_str().expect("inst"),
        );
        let (from, to) = (
            item["from"].as_str().expect("from"),
            item["to"].as_str().expect("to"),
        );
        let candles = get(&format!(
            "/api/v1/candles?exchange={ex}&instrument={inst}&interval=1m&from={from}&to={to}&limit=100000"
        ))
        .await
        .json();
        let candles = candles.as_array().expect("array");
        assert_eq!(item["candles"].as_u64(), Some(candles.len() as u64));
        let num =
            |v: &serde_json::Value| v.as_str().expect("decimal").parse::<f64>().expect("number");
        let closes: Vec<f64> = candles.iter().map(|c| num(&c["close"])).collect();
        let first_open = num(&candles[0]["open"]);
        let ret = closes[closes.len() - 1] / first_open - 1.0;
        let log_returns: Vec<f64> = closes.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 + 1e-9 * b.abs();
        assert!(
            close(item["return"].as_f64().expect("return"), ret),
            "{item}"
        );
        assert!(
            close(item["stddev"].as_f64().expect("sd"), stddev(&log_returns)),
            "{item}"
        );
        assert!(
            close(item["price_stddev"].as_f64().expect("psd"), stddev(&closes)),
            "{item}"
        );
        let span = (Ts::parse(to).expect("to").0 - Ts::parse(from).expect("from").0) as f64;
        let realized =
            (log_returns.iter().map(|r| r * r).sum::<f64>() * 365.0 * 86_400e9 / span).sqrt();
        assert!(
            close(item["realized_vol"].as_f64().expect("rv"), realized),
            "{item}"
        );
        let high = candles
            .iter()
            .map(|c| num(&c["high"]))
            .fold(f64::MIN, f64::max);
        assert_eq!(num(&item["high"]), high);
    }
    // Rankings by return and by quote volume, each a permutation of 1..=3.
    for key in ["return", "quote_volume"] {
        let rank_key = if key == "return" {
            "return_rank"
        } else {
            "volume_rank"
        };
        let by: Vec<(f64, u64)> = items
            .iter()
            .map(|i| {
                let v = i[key]
                    .as_f64()
                    .or_else(|| i[key].as_str().and_then(|s| s.parse().ok()));
                (v.expect("value"), i[rank_key].as_u64().expect("rank"))
            })
            .collect();
        let mut ranks: Vec<u64> = by.iter().map(|b| b.1).collect();
        ranks.sort_unstable();
        assert_eq!(ranks, [1, 2, 3], "{key}: a permutation");
        for a in &by {
            for b in &by {
                assert!(a.0 <= b.0 || a.1 < b.1, "{key}: higher ranks first: {by:?}");
            }
        }
    }
    // One instrument, a fixed range: the window ends where asked.
    let one = get("/api/v1/stats?instruments=binance:BTC-USDT&from=2024-08-08T23:50:00Z&to=2024-08-09T00:00:00Z").await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    let one = one.json();
    assert_eq!(one[0]["to"], "2024-08-09T00:00:00Z");
    let stored = get(&format!(
        "{C}&interval=1m&from=2024-08-08T23:50:00Z&to=2024-08-09T00:00:00Z"
    ))
    .await
    .json();
    assert_eq!(
        one[0]["candles"].as_u64(),
        Some(stored.as_array().expect("array").len() as u64)
    );
    assert_eq!(one[0]["rank"].as_u64(), Some(1));
}

#[tokio::test]
async fn stats_refuse_bad_windows_and_unknown_instruments() {
    refused(
        "/api/v1/stats?window=24",
        StatusCode::BAD_REQUEST,
        "`window` = `24`",
    )
    .await;
    refused(
        "/api/v1/stats?window=5y",
        StatusCode::BAD_REQUEST,
        "unit s, m, h, d or w",
    )
    .await;
    refused(
        "/api/v1/stats?instruments=BTC-USDT",
        StatusCode::BAD_REQUEST,
        "exchange:BASE-QUOTE",
    )
    .await;
    refused(
        "/api/v1/stats?instruments=mtgox:BTC-USD",
        StatusCode::BAD_REQUEST,
        "unknown exchange `mtgox`",
    )
    .await;
    refused(
        "/api/v1/stats?instruments=binance:DOGE-EUR",
        StatusCode::NOT_FOUND,
        "DOGE-EUR",
    )
    .await;
    refused(
        "/api/v1/stats?from=2024-08-09&to=2024-08-08",
        StatusCode::BAD_REQUEST,
        "must be before",
    )
    .await;
    refused(
        "/api/v1/stats?interval=7m",
        StatusCode::BAD_REQUEST,
        "unknown interval",
    )
    .await;
}

#[tokio::test]
async fn the_web_page_and_its_assets_are_served_from_the_binary() {
    let page = get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    assert!(
        page.body.contains("/ui/vendor/lightweight-charts.js"),
        "the page loads the vendored library"
    );
    assert!(
        !page.body.contains("https://cdn") && !page.body.contains("unpkg"),
        "no CDN"
    );
    let lib = get("/ui/vendor/lightweight-charts.js").await;
    assert_eq!(lib.status, StatusCode::OK);
    assert!(
        lib.body.contains("LightweightCharts"),
        "the standalone build"
    );
    for asset in ["/ui/app.js", "/ui/app.css"] {
        let r = get(asset).await;
        assert_eq!(r.status, StatusCode::OK, "{asset}");
        let etag = r.headers["etag"].to_str().expect("ascii").to_owned();
        let again = router(state())
            .oneshot(
                Request::get(asset)
                    .header("if-none-match", &etag)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(
            again.status(),
            StatusCode::NOT_MODIFIED,
            "{asset} revalidates"
        );
    }
    refused("/ui/secret.txt", StatusCode::NOT_FOUND, "no asset").await;
}

#[tokio::test]
async fn each_client_has_its_own_request_rate_limit() {
    use axum::extract::ConnectInfo;
    let limited = state().with_rate_limit(1, 2);
    let app = router(limited);
    let call = |ip: [u8; 4]| {
        let mut request = Request::get("/api/v1/exchanges")
            .body(Body::empty())
            .expect("request");
        request
            .extensions_mut()
            .insert(ConnectInfo(std::net::SocketAddr::from((ip, 40_000))));
        app.clone().oneshot(request)
    };
    let before = ck_bus::metrics::counter("candlekeep_api_requests_limited_total").get();
    for _ in 0..2 {
        assert_eq!(
            call([10, 0, 0, 1]).await.expect("response").status(),
            StatusCode::OK
        );
    }
    let refused = call([10, 0, 0, 1]).await.expect("response");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = refused
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too many requests from 10.0.0.1")),
        "{body}"
    );
    assert_eq!(
        call([10, 0, 0, 2]).await.expect("response").status(),
        StatusCode::OK,
        "another client is not limited"
    );
    assert!(ck_bus::metrics::counter("candlekeep_api_requests_limited_total").get() > before);
}

/// A request with an optional bearer token and JSON body; status and JSON.
async fn call(
    state: ApiState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut r = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    let response = router(state)
        .oneshot(r.body(Body::from(body.to_owned())).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn alert_rules_are_listed_created_replaced_and_deleted_with_the_token() {
    let config_rule = ck_alerts::Rule::from_json(
        r#"{"kind":"stale_feed","exchange":"binance","instrument":"BTC-USDT","seconds":60}"#,
    )
    .expect("rule");
    let handle = ck_alerts::AlertHandle::new(vec![config_rule], vec!["ops".into()]);
    let reload = handle.reload.clone();
    let s = state().with_token(Some("tok".into())).with_alerts(handle);
    let rule = r#"{"kind":"price_above","exchange":"binance","instrument":"BTC-USDT","level":"70000","notify":["ops"]}"#;

    // Without the token: 401, nothing stored.
    let (status, body) = call(s.clone(), "POST", "/api/v1/alerts", None, rule).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Bad rules: 400 with what is wrong.
    for (bad, needle) in [
        ("{not json", "not JSON"),
        (
            r#"{"kind":"price_above","exchange":"binance","instrument":"BTC-USDT","levl":"1"}"#,
            "unknown field `levl`",
        ),
        (
            r#"{"kind":"price_above","exchange":"binance","instrument":"BTC-USDT","level":"1","notify":["pager"]}"#,
            "no channel named `pager`",
        ),
    ] {
        let (status, body) = call(s.clone(), "POST", "/api/v1/alerts", Some("tok"), bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{body}"
        );
    }
    // A body that is not UTF-8: a JSON 400 too.
    let response = router(s.clone())
        .oneshot(
            Request::post("/api/v1/alerts")
                .header("authorization", "Bearer tok")
                .body(Body::from(vec![0xff, 0xfe]))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not UTF-8")),
        "{body}"
    );
    // Created, and the service is told.
    let (status, created) = call(s.clone(), "POST", "/api/v1/alerts", Some("tok"), rule).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["source"], "api");
    assert_eq!(created["rule"]["level"], "70000");
    assert_eq!(created["rule"]["cooldown_secs"], 300, "defaults filled in");
    tokio::time::timeout(std::time::Duration::from_secs(1), reload.notified())
        .await
        .expect("the service is asked to reload");
    let id = created["id"].as_str().expect("id").to_owned();
    // Listed after the config's rule; readable one by one.
    let (_, list) = call(s.clone(), "GET", "/api/v1/alerts", None, "").await;
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids.first(), Some(&"config:1"));
    assert!(ids.contains(&id.as_str()));
    let (status, one) = call(s.clone(), "GET", &format!("/api/v1/alerts/{id}"), None, "").await;
    assert_eq!(
        (status, one["rule"]["kind"].as_str()),
        (StatusCode::OK, Some("price_above"))
    );
    // Replaced.
    let raised = rule.replace("70000", "80000");
    let (status, put) = call(
        s.clone(),
        "PUT",
        &format!("/api/v1/alerts/{id}"),
        Some("tok"),
        &raised,
    )
    .await;
    assert_eq!(
        (status, put["rule"]["level"].as_str()),
        (StatusCode::OK, Some("80000"))
    );
    // The config's rules change only in the file.
    let (status, _) = call(
        s.clone(),
        "DELETE",
        "/api/v1/alerts/config:1",
        Some("tok"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Deleted, then gone.
    let (status, _) = call(
        s.clone(),
        "DELETE",
        &format!("/api/v1/alerts/{id}"),
        Some("tok"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (method, body) in [("GET", ""), ("DELETE", ""), ("PUT", rule)] {
        let (status, _) = call(
            s.clone(),
            method,
            &format!("/api/v1/alerts/{id}"),
            Some("tok"),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }
    // Firings: recorded by the service, listed newest first with deliveries.
    s.store
        .record_firing(
            "config:1",
            ck_model::Ts::from_secs(5),
            r#"{"message":"quiet"}"#,
        )
        .await
        .expect("record");
    let (status, firings) =
        call(s.clone(), "GET", "/api/v1/alerts/firings?limit=5", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(firings[0]["firing"]["message"], "quiet");
    assert_eq!(firings[0]["deliveries"], serde_json::Value::Null);
    let (status, _) = call(s, "GET", "/api/v1/alerts/firings?limit=0", None, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cross_exchange_composite_and_spread_agree_with_the_candles() {
    let r =
        get("/api/v1/stats/cross?instruments=binance:BTC-USDT,coinbase:BTC-USD&window=1000d").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let c = r.json();
    let venues = c["venues"].as_array().expect("venues");
    assert_eq!(venues.len(), 2);
    let (from, to) = (
        c["from"].as_str().expect("from"),
        c["to"].as_str().expect("to"),
    );
    let num = |v: &serde_json::Value| v.as_str().expect("decimal").parse::<f64>().expect("number");
    let mut weighted = 0.0;
    let mut weight = 0.0;
    let mut prices = Vec::new();
    for v in venues {
        let (ex, inst) = (
            v["exchange"].as_str().expect("ex"),
            v["instrument"].as_str().expect("inst"),
        );
        // 1000 days in at most 10,080 candles: 4h candles.
        let candles = get(&format!(
            "/api/v1/candles?exchange={ex}&instrument={inst}&interval=4h&from={from}&to={to}&limit=100000"
        ))
        .await
        .json();
        let candles = candles.as_array().expect("array");
        let last = candles.last().expect("a candle");
        assert_eq!(v["price"], last["close"], "{ex}");
        let volume: f64 = candles.iter().map(|c| num(&c["volume"])).sum();
        assert!((num(&v["volume"]) - volume).abs() < 1e-9, "{ex}: {volume}");
        weighted += num(&v["price"]) * num(&v["volume"]);
        weight += num(&v["volume"]);
        prices.push((num(&v["price"]), ex.to_owned()));
    }
    // The composite is an exact decimal string, four digits finer than
    // the prices; each deviation is taken from it.
    let expected = weighted / weight;
    let composite = num(&c["composite"]);
    assert!(
        (composite - expected).abs() < 1e-6,
        "{composite} vs {expected}"
    );
    for v in venues {
        let dev = num(&v["price"]) / composite - 1.0;
        assert!((v["deviation"].as_f64().expect("deviation") - dev).abs() < 1e-12);
    }
    prices.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(c["lowest"].as_str(), Some(prices[0].1.as_str()));
    assert_eq!(c["highest"].as_str(), Some(prices[1].1.as_str()));
    let spread = prices[1].0 / prices[0].0 - 1.0;
    assert!((c["spread"].as_f64().expect("spread") - spread).abs() < 1e-12);

    refused(
        "/api/v1/stats/cross?instrument=BTC-USD",
        StatusCode::NOT_FOUND,
        "needs two",
    )
    .await;
    refused(
        "/api/v1/stats/cross",
        StatusCode::BAD_REQUEST,
        "name `instrument`",
    )
    .await;
    refused(
        "/api/v1/stats/cross?instrument=BTCUSD",
        StatusCode::BAD_REQUEST,
        "instrument",
    )
    .await;
}

/// A closed 1m candle of binance BTC-USDT, minute `n` after 2024-01-01.
fn minute_candle(n: i64, close: i64) -> ck_model::Candle {
    let p = ck_model::Decimal::from(close);
    ck_model::Candle {
        exchange: ck_model::Exchange::Binance,
        instrument: ck_model::Instrument::new("BTC", "USDT"),
        interval: ck_model::Interval::M1,
        open_time: ck_model::Ts::from_secs(1_704_067_200 + n * 60),
        open: p,
        high: p,
        low: p,
        close: p,
        volume: ck_model::Decimal::from(1),
        quote_volume: p,
        vwap: p,
        taker_buy_volume: ck_model::Decimal::from(0),
        trades: 1,
        first_trade_id: None,
        last_trade_id: None,
        state: ck_model::CandleState::Closed,
    }
}

#[tokio::test]
async fn rolling_stats_read_only_the_tail_of_the_store_after_the_first_request() {
    use ck_store::{Store, WriteBatch};
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn Store> = Arc::new(
        ck_store::sqlite::SqliteStore::open(
            &dir.path().join("s.sqlite"),
            ck_store::sqlite::Durability::Normal,
        )
        .expect("store"),
    );
    // Two hours of minutes at 100, and the last trade in the last minute.
    let last = ck_model::Trade {
        exchange: ck_model::Exchange::Binance,
        instrument: ck_model::Instrument::new("BTC", "USDT"),
        trade_id: ck_model::TradeId::Num(1),
        price: ck_model::Decimal::from(100),
        size: ck_model::Decimal::from(1),
        side: ck_model::Side::Buy,
        ts_exchange: ck_model::Ts::from_secs(1_704_067_200 + 119 * 60 + 30),
        ts_received: ck_model::Ts::from_secs(1_704_067_200 + 119 * 60 + 30),
        fills: 1,
    };
    let write = |candles: Vec<ck_model::Candle>, trades: Vec<ck_model::Trade>| {
        let store = store.clone();
        async move {
            store
                .write(Arc::new(WriteBatch {
                    candles,
                    trades,
                    ..WriteBatch::default()
                }))
                .await
                .expect("write");
        }
    };
    write(
        (0..120).map(|n| minute_candle(n, 100)).collect(),
        vec![last],
    )
    .await;
    let s = ApiState::new(
        store.clone(),
        Arc::default(),
        ck_bus::live_feed(4),
        std::time::Duration::from_secs(15),
    );
    let stats = |s: ApiState| async move {
        let (status, body) = call(s, "GET", "/api/v1/stats?window=1h", None, "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body[0].clone()
    };
    let first = stats(s.clone()).await;
    assert_eq!(first["candles"], 60);
    assert_eq!(first["high"], "100");

    // A revision far back in the window (50 minutes ago) and one of the
    // newest minute: the next request reads only the tail of the store, so
    // it sees the second and not (yet) the first.
    let mut old = minute_candle(70, 500);
    old.state = ck_model::CandleState::Revised;
    let mut newest = minute_candle(119, 110);
    newest.state = ck_model::CandleState::Revised;
    write(vec![old, newest], Vec::new()).await;
    let second = stats(s.clone()).await;
    assert_eq!(second["close"], "110", "the tail is read again");
    assert_eq!(
        second["high"], "110",
        "the revision 50 minutes back is not: no full rescan"
    );
    // A fixed range reads the store afresh and sees both.
    let (_, fixed) = call(
        s,
        "GET",
        "/api/v1/stats?from=2024-01-01T01:00:00Z&to=2024-01-01T02:00:00Z",
        None,
        "",
    )
    .await;
    assert_eq!(fixed[0]["high"], "500");
}

/// Reads of 20,000 candles and more are split by time and read in
/// parallel: pages, in either order, still hold every candle once, with
/// the same JSON serde writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_candle_reads_are_split_in_parts_without_loss() {
    use ck_model::{Candle, CandleRecord, CandleState, Decimal, Exchange, Instrument, Interval};
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn ck_store::Store> = Arc::new(
        ck_store::sqlite::SqliteStore::open(
            &dir.path().join("large.sqlite"),
            ck_store::sqlite::Durability::Normal,
        )
        .expect("store"),
    );
    let start = Ts::from_secs(1_704_067_200);
    // Uneven spacing: a gap of a day in the middle, so parts differ in size.
    let candles: Vec<Candle> = (0..50_000i64)
        .map(|i| {
            let minute = if i < 30_000 { i } else { i + 1_440 };
            let p = Decimal::new(6_000_000 + i128::from(i % 977), 2);
            Candle {
                exchange: Exchange::Binance,
                instrument: Instrument::new("BTC", "USDT"),
                interval: Interval::M1,
                open_time: Ts(start.0 + minute * 60_000_000_000),
                open: p,
                high: p,
                low: p,
                close: p,
                volume: Decimal::new(12_345 + i128::from(i), 4),
                quote_volume: Decimal::new(74_070_000, 2),
                vwap: p,
                taker_buy_volume: Decimal::new(6_000, 4),
                trades: u64::try_from(i).expect("count"),
                first_trade_id: Some(ck_model::TradeId::Num(u64::try_from(i).expect("id"))),
                last_trade_id: None,
                state: CandleState::Closed,
            }
        })
        .collect();
    store
        .write(Arc::new(ck_store::WriteBatch {
            candles: candles.clone(),
            ..ck_store::WriteBatch::default()
        }))
        .await
        .expect("seed");
    let app = router(ApiState::new(
        store.clone(),
        Arc::default(),
        ck_bus::live_feed(16),
        std::time::Duration::from_secs(15),
    ));
    let fetch = |uri: String| {
        let app = app.clone();
        async move {
            let r = get_from(app, &uri).await;
            assert_eq!(r.status, StatusCode::OK, "{uri}");
            let next = r
                .headers
                .get("x-next-cursor")
                .map(|c| c.to_str().expect("ascii").replace(':', "%3A"));
            let length: Option<usize> = r
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            // Whole ranges are streamed as they are read (no length up
            // front); cut pages carry their length.
            match length {
                Some(n) => assert_eq!(n, r.body.len(), "the length sent is the body's"),
                None => assert!(next.is_none(), "{uri}: a streamed answer has no next page"),
            }
            (r.body, next, length.is_none())
        }
    };
    let records: Vec<CandleRecord> = candles.iter().map(CandleRecord::from).collect();
    let base = "/api/v1/candles?exchange=binance&instrument=BTC-USDT&interval=1m";
    // Twice: from the rows, then with the settled days packed.
    for packed in [false, true] {
        if packed {
            let report = store.pack_candle_days(Ts::now()).await.expect("pack");
            assert!(report.days_packed >= 30, "{report:?}");
        }
        // All at once, streamed: exactly what serde writes for the records.
        let (whole, next, streamed) = fetch(format!("{base}&limit=1000000")).await;
        assert_eq!(next, None);
        assert!(streamed, "no next page is possible: streamed");
        assert_eq!(
            whole,
            serde_json::to_string(&records).expect("json"),
            "packed: {packed}"
        );
        let (newest, _, _) = fetch(format!("{base}&limit=1000000&order=desc")).await;
        let mut reversed = records.clone();
        reversed.reverse();
        assert_eq!(
            newest,
            serde_json::to_string(&reversed).expect("json"),
            "packed: {packed}"
        );
        // Empty: still an array.
        let (none, _, _) = fetch(format!("{base}&limit=1000000&from=2030-01-01")).await;
        assert_eq!(none, "[]");
        for (order, expected) in [
            ("asc", records.clone()),
            ("desc", {
                let mut r = records.clone();
                r.reverse();
                r
            }),
        ] {
            let mut got: Vec<CandleRecord> = Vec::new();
            let mut uri = format!("{base}&limit=20000&order={order}");
            let mut pages = 0;
            loop {
                let (bytes, next, _) = fetch(uri).await;
                let page: Vec<CandleRecord> = serde_json::from_str(&bytes).expect("json");
                pages += 1;
                assert!(
                    page.len() == 20_000 || next.is_none(),
                    "{order}: full pages but the last"
                );
                got.extend(page);
                match next {
                    Some(c) => uri = format!("{base}&limit=20000&order={order}&cursor={c}"),
                    None => break,
                }
            }
            assert_eq!(pages, 3, "{order}");
            assert_eq!(got, expected, "{order}: every candle once, in order");
        }
    }
}

/// The stream-processor design's view: the latest closed candle of 1m, 1h
/// and 1d, equal to what `/api/v1/candles` serves.
#[tokio::test]
async fn stats1min_is_the_latest_closed_1m_candle() {
    let latest = |interval: &str| format!("{C}&interval={interval}&order=desc&limit=3");
    for (path, interval, seconds) in [
        ("/stats1min", "1m", 60),
        ("/stats1hour", "1h", 3_600),
        ("/stats1day", "1d", 86_400),
    ] {
        let stats = get(&format!("{path}/BTC-USDT?exchange=binance")).await;
        assert_eq!(stats.status, StatusCode::OK, "{path}: {}", stats.body);
        let stats = stats.json();
        let candles = get(&latest(interval)).await.json();
        let closed = candles
            .as_array()
            .expect("candles")
            .iter()
            .find(|c| c["state"] != "provisional")
            .cloned()
            .expect("a closed candle");
        assert_eq!(stats["exchange"], "binance");
        assert_eq!(stats["product"], "BTC-USDT");
        assert_eq!(stats["interval"], interval);
        assert_eq!(stats["start"], closed["open_time"], "{path}");
        for field in ["open", "high", "low", "close", "volume", "vwap", "trades"] {
            assert_eq!(stats[field], closed[field], "{path} {field}");
        }
        let start = Ts::parse(stats["start"].as_str().expect("start")).expect("time");
        let end = Ts::parse(stats["end"].as_str().expect("end")).expect("time");
        assert_eq!(end.0 - start.0, seconds * 1_000_000_000, "{path}");
    }
    // Stored on one venue only: the venue may go unnamed.
    let unnamed = get("/stats1min/BTC-USDT").await;
    assert_eq!(unnamed.status, StatusCode::OK, "{}", unnamed.body);
    assert_eq!(unnamed.json()["exchange"], "binance");
    refused("/stats1min/BTCUSDT", StatusCode::BAD_REQUEST, "BASE-QUOTE").await;
    refused("/stats1min/DOGE-EUR", StatusCode::NOT_FOUND, "not stored").await;
    refused(
        "/stats1min/BTC-USDT?exchange=kraken",
        StatusCode::NOT_FOUND,
        "no closed 1m candle for kraken BTC-USDT",
    )
    .await;
}

/// A product stored on two venues needs `?exchange=`: the 400 lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_on_several_venues_needs_its_exchange() {
    let dir = tempfile::tempdir().expect("dir");
    let env = vec![(
        "CANDLEKEEP_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    )];
    let settings = ck_app::config::AppConfig::load(None, env)
        .expect("config")
        .settings()
        .expect("settings");
    let store = ck_app::open_store(&settings).await.expect("store");
    // The Binance recording, once as Binance and once read as Binance.US.
    for exchange in [None, Some(ck_model::Exchange::BinanceUs)] {
        run_pipeline(
            &settings,
            store.clone(),
            vec![Source::Replay {
                files: vec![ck_testkit::fixture(
                    "hftbacktest/binance_spot_btcusdt_20240808.gz",
                )],
                options: ReplayOptions {
                    exchange,
                    ..ReplayOptions::default()
                },
            }],
            None,
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect("replay");
    }
    let app = || {
        router(ApiState::new(
            store.clone(),
            Arc::default(),
            ck_bus::live_feed(16),
            std::time::Duration::from_secs(15),
        ))
    };
    let both = get_from(app(), "/stats1hour/BTC-USDT").await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST, "{}", both.body);
    let message = both.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("several venues (binance, binance-us)") && message.contains("?exchange="),
        "{message}"
    );
    let us = get_from(app(), "/stats1hour/BTC-USDT?exchange=binance-us").await;
    assert_eq!(us.status, StatusCode::OK, "{}", us.body);
    let binance = get_from(app(), "/stats1hour/BTC-USDT?exchange=binance").await;
    assert_eq!(us.json()["exchange"], "binance-us");
    assert_eq!(
        us.json()["close"],
        binance.json()["close"],
        "the same recording"
    );
}
