//! Scale-out benchmarks against the real servers on loopback (issue 6).
//!
//! - `ingest`: PostgreSQL ingest of 200,000 real (repeated) Binance trades in
//!   batches of 20,000, through `Store::write`, into a fresh schema; the
//!   baseline is the same into a fresh SQLite file (durability full), in the
//!   same process.
//! - `year`: one year of 1m candles (525,600 rows) for one instrument read
//!   back with one `Store::candles` query, PostgreSQL and SQLite.
//! - `nats`: end to end through NATS JetStream: trades published as a
//!   collector publishes them (batched per subject, message ids,
//!   acknowledged; baseline: one message per trade, as before batching),
//!   a processor pipeline (durable consumer, candle stage, store writer
//!   into SQLite) until every trade is committed: trades/s. Then a paced run at 2,000
//!   trades/s: latency from publish to the trade entering the processor's
//!   live feed, and to the first candle update carrying it.
//!
//! `cargo bench -p candlekeep --bench scaleout [-- ingest|year|nats]`;
//! `CK_BENCH_RUNS=N` (default 3) runs; the median is printed.
//! `CK_TEST_POSTGRES_URL` and `CK_TEST_NATS_URL` as for the tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ck_app::cluster::Cluster;
use ck_app::config::{AppConfig, NatsConfig};
use ck_app::pipeline::Source;
use ck_bus::Event;
use ck_model::{Candle, CandleState, Decimal, Exchange, Instrument, Interval, Ts};
use ck_store::sqlite::{Durability, SqliteStore};
use ck_store::{CandleSource, RangeQuery, Store, WriteBatch};
use tokio_util::sync::CancellationToken;

fn nats_url() -> String {
    std::env::var("CK_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn timed_ingest(store: &dyn Store, batches: &[Arc<WriteBatch>]) -> f64 {
    let start = Instant::now();
    for b in batches {
        let s = store.write(b.clone()).await.expect("write");
        assert_eq!(s.trades_inserted as usize, b.trades.len());
    }
    start.elapsed().as_secs_f64()
}

async fn ingest(runs: usize) {
    const TRADES: usize = 200_000;
    let trades = ck_testkit::bench_data::repeated_binance_trades(TRADES);
    let batches: Vec<Arc<WriteBatch>> = trades
        .chunks(20_000)
        .map(|c| {
            Arc::new(WriteBatch {
                trades: c.to_vec(),
                ..WriteBatch::default()
            })
        })
        .collect();
    let (mut pg, mut lite, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let store =
            ck_testkit::fresh_postgres_store(&format!("ck_bench_ingest_{}", std::process::id()))
                .await;
        let p = TRADES as f64 / timed_ingest(&store, &batches).await;
        let dir = tempfile::tempdir().expect("dir");
        let sqlite =
            SqliteStore::open(&dir.path().join("b.sqlite"), Durability::Full).expect("sqlite");
        let s = TRADES as f64 / timed_ingest(&sqlite, &batches).await;
        println!("ingest run {run}: PostgreSQL {p:.0} trades/s, SQLite {s:.0} trades/s");
        pg.push(p);
        lite.push(s);
        ratio.push(p / s);
    }
    println!(
        "ingest median: PostgreSQL {:.0} trades/s; baseline SQLite (full) {:.0} trades/s; ratio {:.2}",
        median(pg),
        median(lite),
        median(ratio)
    );
}

fn year_of_candles() -> Vec<Candle> {
    let d = |s: &str| Decimal::parse(s).expect("decimal");
    let start = Ts::from_secs(1_704_067_200); // 2024-01-01
    (0..525_600i64)
        .map(|n| Candle {
            exchange: Exchange::Binance,
            instrument: Instrument::new("BTC", "USDT"),
            interval: Interval::M1,
            open_time: Ts(start.0 + n * 60_000_000_000),
            open: d("61837.63"),
            high: d("61901.00"),
            low: d("61800.01"),
            close: d("61850.20"),
            volume: d("12.34567"),
            quote_volume: d("763512.123456"),
            vwap: d("61845.551234"),
            taker_buy_volume: d("6.1"),
            trades: 420,
            first_trade_id: Some(ck_model::TradeId::Num(3_735_683_259 + n as u64 * 420)),
            last_trade_id: Some(ck_model::TradeId::Num(3_735_683_678 + n as u64 * 420)),
            state: CandleState::Closed,
        })
        .collect()
}

async fn timed_year(store: &dyn Store) -> f64 {
    let q = RangeQuery {
        exchange: Exchange::Binance,
        instrument: Instrument::new("BTC", "USDT"),
        from: Ts(i64::MIN),
        to: Ts(i64::MAX),
        limit: 1_000_000,
    };
    let start = Instant::now();
    let got = store
        .candles(&q, Interval::M1, CandleSource::Ours)
        .await
        .expect("candles");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got.len(), 525_600);
    secs
}

async fn year(runs: usize) {
    let candles = year_of_candles();
    let fill = async |store: &dyn Store| {
        for chunk in candles.chunks(50_000) {
            store
                .write(Arc::new(WriteBatch {
                    candles: chunk.to_vec(),
                    ..WriteBatch::default()
                }))
                .await
                .expect("write candles");
        }
    };
    let pg =
        ck_testkit::fresh_postgres_store(&format!("ck_bench_year_{}", std::process::id())).await;
    fill(&pg).await;
    let dir = tempfile::tempdir().expect("dir");
    let sqlite =
        SqliteStore::open(&dir.path().join("y.sqlite"), Durability::Normal).expect("sqlite");
    fill(&sqlite).await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let p = timed_year(&pg).await;
        let s = timed_year(&sqlite).await;
        println!(
            "year run {run}: PostgreSQL {:.0} ms, SQLite {:.0} ms",
            p * 1e3,
            s * 1e3
        );
        a.push(p);
        b.push(s);
    }
    println!(
        "year median: PostgreSQL {:.0} ms; baseline SQLite {:.0} ms",
        median(a) * 1e3,
        median(b) * 1e3
    );
}

/// Real (repeated) trades moved so the first is now, as live trades are
/// (the processor closes candles by the wall clock, as in production).
fn now_trades(n: usize) -> Vec<ck_model::Trade> {
    let mut trades = ck_testkit::bench_data::repeated_binance_trades(n);
    let shift = Ts::now().0 - trades.first().map_or(0, |t| t.ts_exchange.0);
    for t in &mut trades {
        t.ts_exchange = Ts(t.ts_exchange.0 + shift);
        t.ts_received = Ts(t.ts_received.0 + shift);
    }
    trades
}

/// A processor pipeline on its own stream; the trades, published as a collector would.
struct NatsRun {
    cluster: Arc<Cluster>,
    store: Arc<dyn Store>,
    feed: ck_bus::LiveFeed,
    stop: CancellationToken,
    pipeline: tokio::task::JoinHandle<anyhow::Result<ck_app::pipeline::PipelineReport>>,
    _dir: tempfile::TempDir,
}

async fn nats_processor(tag: &str) -> NatsRun {
    let config = NatsConfig {
        url: nats_url(),
        stream: tag.to_uppercase(),
        subject_prefix: tag.to_owned(),
        ..NatsConfig::default()
    };
    let nats = async_nats::connect(nats_url()).await.expect("NATS");
    let _ = async_nats::jetstream::new(nats)
        .delete_stream(&config.stream)
        .await;
    let cluster = Cluster::connect(&config).await.expect("cluster");
    let dir = tempfile::tempdir().expect("dir");
    let env = vec![(
        "CANDLEKEEP_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    )];
    let settings = AppConfig::load(None, env)
        .expect("config")
        .settings()
        .expect("settings");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("p.sqlite"), Durability::Full).expect("sqlite"),
    );
    let runtime = ck_app::runtime::Runtime::new();
    let feed = runtime.feed.clone();
    let stop = CancellationToken::new();
    let pipeline = tokio::spawn({
        let (settings, store, cluster, stop) = (
            settings.clone(),
            store.clone(),
            cluster.clone(),
            stop.clone(),
        );
        async move {
            ck_app::pipeline::run_pipeline_with(
                &settings,
                &runtime,
                store,
                vec![Source::Nats(cluster)],
                None,
                stop,
            )
            .await
        }
    });
    NatsRun {
        cluster,
        store,
        feed,
        stop,
        pipeline,
        _dir: dir,
    }
}

/// Publishes each trade as a message of its own, with its message id, and
/// awaits every acknowledgement: how collectors published before batching.
async fn publish_one_per_message(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    trades: &[ck_model::Trade],
) {
    use async_nats::jetstream::message::PublishMessage;
    let mut acks = Vec::with_capacity(trades.len());
    for t in trades {
        let mut body = br#"{"type":"trade","data":"#.to_vec();
        serde_json::to_writer(&mut body, t).expect("encode");
        body.push(b'}');
        let msg = PublishMessage::build()
            .payload(body.into())
            .message_id(format!("t:{}:{}:{}", t.exchange, t.instrument, t.trade_id));
        let subject = format!("{prefix}.trades.{}.{}", t.exchange, t.instrument);
        acks.push(js.send_publish(subject, msg).await.expect("publish"));
    }
    for ack in acks {
        ack.await.expect("acknowledged");
    }
}

async fn nats(runs: usize) {
    const TRADES: usize = 100_000;
    let (mut rates, mut baseline_rates) = (Vec::new(), Vec::new());
    let (mut trade_p50, mut trade_p99, mut candle_p50, mut candle_p99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        // Throughput: publish everything, time until all is committed. The
        // baseline publishes one message per trade, as collectors did
        // before batching (the processor reads both).
        let mut rate = 0.0;
        for batched in [false, true] {
            let tag = format!("ckbench{}r{run}{batched}", std::process::id());
            let r = nats_processor(&tag).await;
            let trades = now_trades(TRADES);
            let js =
                async_nats::jetstream::new(async_nats::connect(nats_url()).await.expect("NATS"));
            let start = Instant::now();
            for chunk in trades.chunks(1_000) {
                if batched {
                    let events: Vec<Event> = chunk.iter().cloned().map(Event::Trade).collect();
                    r.cluster.publish(&events).await;
                } else {
                    publish_one_per_message(&js, &tag, chunk).await;
                }
            }
            loop {
                if r.store.counts().await.map(|c| c.trades).unwrap_or(0) >= TRADES as u64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let this = TRADES as f64 / start.elapsed().as_secs_f64();
            r.stop.cancel();
            let _ = r.pipeline.await;
            let _ = js.delete_stream(tag.to_uppercase()).await;
            if batched {
                rate = this;
            } else {
                baseline_rates.push(this);
            }
        }

        // Latency: 2,000 trades/s in batches of 20 every 10 ms, for 5 s.
        let tag = format!("ckbench{}l{run}", std::process::id());
        let r = nats_processor(&tag).await;
        let mut rx = r.feed.subscribe();
        let sent: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
        let watcher = tokio::spawn({
            let sent = sent.clone();
            async move {
                let (mut to_trade, mut to_candle) = (Vec::new(), Vec::new());
                let mut candle_seen: std::collections::HashSet<String> =
                    std::collections::HashSet::new();
                loop {
                    let e = match rx.recv().await {
                        Ok(e) => e,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    };
                    let now = Instant::now();
                    let id = match e.as_ref() {
                        Event::Trade(t) => {
                            if let Some(at) =
                                sent.lock().expect("lock").get(&t.trade_id.to_string())
                            {
                                to_trade.push(now.duration_since(*at).as_secs_f64());
                            }
                            continue;
                        }
                        Event::Candle(c) if c.interval == Interval::M1 => {
                            c.last_trade_id.as_ref().map(ToString::to_string)
                        }
                        _ => None,
                    };
                    if let Some(id) = id
                        && candle_seen.insert(id.clone())
                        && let Some(at) = sent.lock().expect("lock").get(&id)
                    {
                        to_candle.push(now.duration_since(*at).as_secs_f64());
                    }
                }
                (to_trade, to_candle)
            }
        });
        let paced = now_trades(10_000);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for chunk in paced.chunks(20) {
            tick.tick().await;
            let now = Instant::now();
            {
                let mut s = sent.lock().expect("lock");
                for t in chunk {
                    s.insert(t.trade_id.to_string(), now);
                }
            }
            let events: Vec<Event> = chunk.iter().cloned().map(Event::Trade).collect();
            r.cluster.publish(&events).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.stop.cancel();
        let _ = r.pipeline.await;
        drop(r.feed);
        let (mut a, mut b) = watcher.await.expect("watcher");
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let pct = |v: &[f64], p: f64| {
            v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
                * 1e3
        };
        println!(
            "nats run {run}: {rate:.0} trades/s end to end; publish to processor feed p50 {:.1} ms p99 {:.1} ms ({} trades); to the candle update p50 {:.1} ms p99 {:.1} ms ({} candles)",
            pct(&a, 0.5),
            pct(&a, 0.99),
            a.len(),
            pct(&b, 0.5),
            pct(&b, 0.99),
            b.len()
        );
        rates.push(rate);
        trade_p50.push(pct(&a, 0.5));
        trade_p99.push(pct(&a, 0.99));
        candle_p50.push(pct(&b, 0.5));
        candle_p99.push(pct(&b, 0.99));
        let nats = async_nats::connect(nats_url()).await.expect("NATS");
        let js = async_nats::jetstream::new(nats);
        let _ = js.delete_stream(tag.to_uppercase()).await;
        println!(
            "nats run {run}: one message per trade (baseline) {:.0} trades/s",
            baseline_rates[run]
        );
    }
    let (batched, baseline) = (median(rates), median(baseline_rates));
    println!(
        "nats median: one message per trade {baseline:.0} trades/s, batched {batched:.0} trades/s ({:.2}x)",
        batched / baseline
    );
    println!(
        "nats median: {:.0} trades/s; publish to feed p50 {:.1} ms p99 {:.1} ms; to candle update p50 {:.1} ms p99 {:.1} ms",
        batched,
        median(trade_p50),
        median(trade_p99),
        median(candle_p50),
        median(candle_p99)
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runs: usize = std::env::var("CK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let all = which.is_empty();
    rt.block_on(async {
        if all || which.iter().any(|w| w == "ingest") {
            ingest(runs).await;
        }
        if all || which.iter().any(|w| w == "year") {
            year(runs).await;
        }
        if all || which.iter().any(|w| w == "nats") {
            nats(runs).await;
        }
    });
}
