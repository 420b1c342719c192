//! API benchmarks over loopback, on a store holding one year of 1m candles
//! (525,600 rows) for one instrument.
//!
//! - `latest_candle`: 64 keep-alive connections request
//!   `/api/v1/candles/latest` for 5 s; requests per second and latency
//!   percentiles. Baseline in the same process: `/health`, which does no store
//!   read beyond a count.
//! - `year_of_1m_candles`: `GET /api/v1/candles` for the whole year in one
//!   response (JSON), and the store query alone; median of five.
//!
//! - `day`: a day of 1m candles, JSON and CSV, 64 connections for 5 s each.
//!
//! `cargo bench -p ck-api --bench api [-- latest|day|year|store]` (all but
//! `store` by default; `store` runs only the store query, for profiling).
//! `CK_BENCH_STORE=postgres` runs them on a fresh schema of the PostgreSQL
//! server the tests use (`CK_TEST_POSTGRES_URL`) instead of SQLite.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ck_model::{Candle, CandleState, Decimal, Exchange, Instrument, Interval, Ts};
use ck_store::{CandleSource, RangeQuery, Store, WriteBatch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const YEAR_MINUTES: i64 = 525_600;
const START: Ts = Ts::from_secs(1_704_067_200); // 2024-01-01

fn candle(i: i64) -> Candle {
    let p = Decimal::new(6_000_000 + i128::from(i % 1_000), 2);
    Candle {
        exchange: Exchange::Binance,
        instrument: Instrument::new("BTC", "USDT"),
        interval: Interval::M1,
        open_time: Ts(START.0 + i * 60_000_000_000),
        open: p,
        high: p,
        low: p,
        close: p,
        volume: Decimal::new(12_345, 4),
        quote_volume: Decimal::new(74_070_000, 2),
        vwap: p,
        taker_buy_volume: Decimal::new(6_000, 4),
        trades: 42,
        first_trade_id: None,
        last_trade_id: None,
        state: CandleState::Closed,
    }
}

/// One keep-alive HTTP/1.1 GET into `buf` (head and body as received);
/// returns where the body's bytes are in `buf` (one range, or one per
/// chunk of a chunked body).
async fn get(
    stream: &mut tokio::net::TcpStream,
    path: &str,
    buf: &mut Vec<u8>,
) -> Vec<std::ops::Range<usize>> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    buf.clear();
    // Reads straight into the buffer, as a careful client does.
    async fn more(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, want: usize) {
        buf.reserve(
            want.saturating_sub(buf.len())
                .max(buf.capacity() / 2)
                .max(65_536),
        );
        while buf.len() < want {
            let n = stream.read_buf(buf).await.expect("read");
            assert!(n > 0, "connection closed");
        }
    }
    let end = loop {
        more(stream, buf, buf.len() + 1).await;
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let mut at = end + 4;
    if !head.contains("transfer-encoding: chunked") {
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().expect("length"));
        more(stream, buf, at + len).await;
        return std::iter::once(at..at + len).collect();
    }
    let mut chunks = Vec::new();
    loop {
        let line = loop {
            if let Some(i) = buf[at..].windows(2).position(|w| w == b"\r\n") {
                break at + i;
            }
            more(stream, buf, buf.len() + 1).await;
        };
        let size = usize::from_str_radix(
            std::str::from_utf8(&buf[at..line]).expect("size").trim(),
            16,
        )
        .expect("chunk size");
        at = line + 2;
        more(stream, buf, at + size + 2).await;
        if size == 0 {
            return chunks;
        }
        chunks.push(at..at + size);
        at += size + 2;
    }
}

async fn load(addr: std::net::SocketAddr, path: &'static str, secs: u64) -> (f64, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let mut buf = Vec::new();
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                get(&mut s, path, &mut buf).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

fn pct(l: &[Duration], p: f64) -> Duration {
    l[((l.len() as f64 * p) as usize).min(l.len() - 1)]
}

fn main() {
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn Store> = match std::env::var("CK_BENCH_STORE").as_deref() {
            Ok("postgres") => Arc::new(ck_testkit::fresh_postgres_store("ck_bench_api").await),
            Ok("sqlite") | Err(_) => Arc::new(
                ck_store::sqlite::SqliteStore::open(
                    &dir.path().join("bench.sqlite"),
                    ck_store::sqlite::Durability::Normal,
                )
                .expect("store"),
            ),
            Ok(other) => panic!("CK_BENCH_STORE={other}: valid: sqlite, postgres"),
        };
        for chunk in (0..YEAR_MINUTES).collect::<Vec<_>>().chunks(50_000) {
            let batch = WriteBatch {
                candles: chunk.iter().map(|&i| candle(i)).collect(),
                ..WriteBatch::default()
            };
            store.write(Arc::new(batch)).await.expect("seed");
        }
        let state = ck_api::ApiState::new(store.clone(), Arc::default(), ck_bus::live_feed(16), Duration::from_secs(15));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(ck_api::serve(listener, state.clone(), std::future::pending()));

        if run("latest") {
        let (rate, lat) = load(addr, "/api/v1/candles/latest?exchange=binance&instrument=BTC-USDT&interval=1m", 5).await;
        println!(
            "api/latest_candle: {rate:.0} req/s, p50 {:?}, p99 {:?} (64 connections, 5 s)",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        let (base, blat) = load(addr, "/health", 5).await;
        println!(
            "api/health baseline: {base:.0} req/s, p50 {:?}, p99 {:?}; latest candle at {:.2}x the baseline's rate",
            pct(&blat, 0.5),
            pct(&blat, 0.99),
            rate / base
        );
        // The same request on axum's own server (`axum::serve`), which
        // candlekeep's accept loop replaced in session 14: the cost of its
        // limits layer and its rewriting of hyper's refusals.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let plain_addr = plain.local_addr().expect("addr");
        let app = ck_api::router(state.clone())
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(plain, app).await });
        let (axum_rate, alat) = load(plain_addr, "/api/v1/candles/latest?exchange=binance&instrument=BTC-USDT&interval=1m", 5).await;
        println!(
            "api/latest_candle on axum::serve: {axum_rate:.0} req/s, p50 {:?}, p99 {:?}; candlekeep's server at {:.2}x its rate",
            pct(&alat, 0.5),
            pct(&alat, 0.99),
            rate / axum_rate
        );
        }
        if run("day") {
            // One day of 1m candles (settled and packed): JSON, and the same
            // request as CSV, which is made from the same records.
            store
                .pack_candle_days(Ts(START.0 + YEAR_MINUTES * 60_000_000_000))
                .await
                .expect("pack");
            const DAY: &str = "/api/v1/candles?exchange=binance&instrument=BTC-USDT&interval=1m&from=2024-06-01&to=2024-06-02&limit=1440";
            const DAY_CSV: &str = "/api/v1/candles?exchange=binance&instrument=BTC-USDT&interval=1m&from=2024-06-01&to=2024-06-02&limit=1440&format=csv";
            let mut sizes = [0; 2];
            for (size, path) in sizes.iter_mut().zip([DAY, DAY_CSV]) {
                let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let mut buf = Vec::new();
                *size = get(&mut stream, path, &mut buf).await.iter().map(|r| r.len()).sum::<usize>();
            }
            let (json, jlat) = load(addr, DAY, 5).await;
            let (csv, clat) = load(addr, DAY_CSV, 5).await;
            println!(
                "api/day_of_1m_candles: JSON {json:.0} req/s (p50 {:?}, {} KB), CSV {csv:.0} req/s (p50 {:?}, {} KB); CSV at {:.2}x JSON's rate (64 connections, 5 s each)",
                pct(&jlat, 0.5),
                sizes[0] / 1_000,
                pct(&clat, 0.5),
                sizes[1] / 1_000,
                csv / json
            );
        }
        if !run("year") && !run("store") {
            return;
        }

        let q = RangeQuery {
            exchange: Exchange::Binance,
            instrument: Instrument::new("BTC", "USDT"),
            from: START,
            to: Ts(START.0 + YEAR_MINUTES * 60_000_000_000),
            limit: 1_000_000,
        };
        if only.as_deref() == Some("store") {
            // For profiling: the store query alone, ten times.
            for _ in 0..10 {
                let t = Instant::now();
                let n = store.candles(&q, Interval::M1, CandleSource::Ours).await.expect("query").len();
                println!("api/store_query: {n} candles in {:?}", t.elapsed());
            }
            return;
        }
        // Five requests for the year: sorted times, and the last body.
        let year = |addr| async move {
            let mut times = Vec::new();
            let mut buf = Vec::new();
            let mut ranges = Vec::new();
            for _ in 0..5 {
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let t = Instant::now();
                ranges = get(
                    &mut s,
                    "/api/v1/candles?exchange=binance&instrument=BTC-USDT&interval=1m&from=2024-01-01&to=2025-01-01&limit=1000000",
                    &mut buf,
                )
                .await;
                times.push(t.elapsed());
            }
            times.sort();
            // The body, without the head (its Date changes) and chunk sizes.
            let body: Vec<u8> = ranges.into_iter().flat_map(|r| buf[r].to_vec()).collect();
            (times, body)
        };
        // Baseline: the rows, before any day is packed.
        let (row_times, row_body) = year(addr).await;
        let t = Instant::now();
        let report = store.pack_candle_days(Ts::now()).await.expect("pack");
        let pack_time = t.elapsed();
        assert_eq!(report.candles, YEAR_MINUTES as u64, "{report:?}");
        let (packed_times, packed_body) = year(addr).await;
        assert!(packed_body == row_body, "packed days answer exactly as the rows");
        let mut store_times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let n = store.candle_records(&q, Interval::M1, CandleSource::Ours, false, ck_store::RecordForm::Json).await.expect("query").len();
            store_times.push(t.elapsed());
            assert_eq!(n, YEAR_MINUTES as usize);
        }
        store_times.sort();
        println!(
            "api/year_of_1m_candles: HTTP JSON response median {:?} ({} MB) from packed days; from the rows (same process, before packing) median {:?}: {:.2}x faster; store read alone (packed, one thread) median {:?}; packing the year took {pack_time:?} ({} days, {} MB compressed)",
            packed_times[2],
            packed_body.len() / 1_000_000,
            row_times[2],
            row_times[2].as_secs_f64() / packed_times[2].as_secs_f64(),
            store_times[2],
            report.days_packed,
            report.bytes / 1_000_000,
        );
    });
}
