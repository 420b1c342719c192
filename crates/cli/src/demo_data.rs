//! The recordings `candlekeep demo` replays, compiled into the binary
//! (`crates/cli/demo/`, with their provenance and licences), so the demo
//! runs from any folder with nothing beside it.

use std::path::{Path, PathBuf};

use std::time::Instant;

use ck_app::pipeline::Source;
use ck_app::topology::Topology;
use ck_model::{Exchange, Instrument, Ts};
use ck_sources::binance::BinanceLiveConfig;
use ck_sources::live::BackoffPolicy;
use tokio_util::sync::CancellationToken;

/// The Binance recording (hftbacktest).
pub(crate) const BINANCE: &str = "binance_spot_btcusdt_20240808.gz";

/// Every embedded recording: its file name and bytes.
const FILES: &[(&str, &[u8])] = &[
    (
        BINANCE,
        include_bytes!("../demo/binance_spot_btcusdt_20240808.gz"),
    ),
    (
        "COINBASE.jsonl.zst",
        include_bytes!("../demo/COINBASE.jsonl.zst"),
    ),
    (
        "COINBASE_EXCHANGE.ws.28.0.zst",
        include_bytes!("../demo/COINBASE_EXCHANGE.ws.28.0.zst"),
    ),
    (
        "BITFINEX.jsonl.zst",
        include_bytes!("../demo/BITFINEX.jsonl.zst"),
    ),
    (
        "KRAKEN.jsonl.zst",
        include_bytes!("../demo/KRAKEN.jsonl.zst"),
    ),
    (
        "BITSTAMP.jsonl.zst",
        include_bytes!("../demo/BITSTAMP.jsonl.zst"),
    ),
    ("OKX.jsonl.zst", include_bytes!("../demo/OKX.jsonl.zst")),
    ("BYBIT.jsonl.zst", include_bytes!("../demo/BYBIT.jsonl.zst")),
];

/// Where the recordings come from, and their licences.
pub(crate) const LICENSES: &str = concat!(
    include_str!("../demo/README.md"),
    "\n## LICENSE.hftbacktest\n\n",
    include_str!("../demo/LICENSE.hftbacktest"),
    "\n## LICENSE.cryptofeed\n\n",
    include_str!("../demo/LICENSE.cryptofeed"),
);

/// Writes the embedded recordings into `dir` (once; files already there
/// with the same size are kept) and returns `dir`.
pub(crate) fn extract(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    for (name, bytes) in FILES {
        let path = dir.join(name);
        let same = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !same {
            std::fs::write(&path, bytes)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        }
    }
    Ok(dir.to_owned())
}

/// The recording `file` of the demo's venues in `dir`: as named, or
/// compressed (the built-in copy of a text recording is `<file>.zst`).
pub(crate) fn recording_in(dir: &Path, file: &str) -> Option<PathBuf> {
    [dir.join(file), dir.join(format!("{file}.zst"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// The venues `demo` adds beside Binance: every venue mock with a built-in
/// recording ([`ck_mock::venues::MOCKS`]; the mock moves the recorded times
/// to now).
pub(crate) fn demo_venues() -> impl Iterator<Item = &'static ck_mock::venues::MockSpec> {
    ck_mock::venues::MOCKS
        .iter()
        .copied()
        .filter(|m| m.exchange != Exchange::Binance && m.demo.is_some())
}

/// The mock of `spec`'s venue replaying `path` (times moved to now, paced
/// at `speed`, looped), with its REST mock where it has one, and the live
/// source that captures it: every instrument the recording trades or quotes.
pub(crate) async fn demo_venue(
    spec: &ck_mock::venues::MockSpec,
    path: &std::path::Path,
    speed: f64,
) -> anyhow::Result<(ck_mock::venues::RunningMock, Source, String)> {
    let exchange = spec.exchange;
    let messages: Vec<ck_bus::RawMessage> =
        ck_sources::recordings::Recording::open_as(path, Some(exchange))?
            .filter_map(Result::ok)
            .collect();
    let recorded = recorded_at(&messages);
    let instruments = ck_sources::normalize::traded_instruments(&messages);
    let mock = spec
        .start(ck_mock::venues::MockStart {
            recording: &messages,
            listen: None,
            shift_to: Some(Ts::now()),
            speed: Some(speed),
            looped: true,
            faults: ck_mock::venues::StartFaults::default(),
        })
        .await?;
    let venue = ck_sources::venues::venue(exchange)
        .ok_or_else(|| anyhow::anyhow!("no live connector for {exchange}"))?;
    let (protocol, _) = (venue.live)(spec.demo.and_then(|d| d.api));
    // Order books where the venue sends them whole on its WebSocket. A
    // book built from a REST snapshot (Binance, Bitstamp) would not hold
    // across the looped recording's laps: the recorded snapshot belongs
    // to the first.
    let books = instruments
        .first()
        .is_some_and(|i| {
            protocol
                .book_snapshot_path(i, ck_sources::live::books::DEFAULT_DEPTH)
                .is_none()
        })
        .then(ck_sources::live::books::BookCapture::default);
    let source = Source::Live {
        protocol,
        config: ck_sources::live::connector::LiveConfig {
            ws_url: mock.ws_url.clone(),
            instruments,
            backoff: BackoffPolicy::default(),
            stale_after: std::time::Duration::from_secs(60),
            rest_url: mock.rest_url.clone(),
            books,
        },
    };
    Ok((mock, source, recorded))
}

/// `candlekeep demo`: a mock of every venue replaying its built-in (or the
/// named) recording, times moved to now and looped, and the whole live
/// pipeline with its API against them, until Ctrl-C.
pub(crate) async fn run(
    settings: &ck_app::config::Settings,
    recording: Option<PathBuf>,
    speed: f64,
    listen: std::net::SocketAddr,
    venues: Option<PathBuf>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        speed.is_finite() && speed > 0.0,
        "--speed must be a positive number, got {speed}"
    );
    // The built-in recordings, unless others are named.
    let built_in = if recording.is_none() || venues.is_none() {
        Some(extract(&settings.data_dir.join("demo-recordings"))?)
    } else {
        None
    };
    let mut notes = Vec::new();
    let recording = match (recording, &built_in) {
        (Some(r), _) => r,
        (None, Some(dir)) => dir.join(BINANCE),
        (None, None) => anyhow::bail!("no Binance recording"),
    };
    let venues = venues.or(built_in);
    let messages = crate::mock_exchange::read(Exchange::Binance, std::slice::from_ref(&recording))?;
    let recorded = recorded_at(&messages);
    // Every recording loops, ids and times moved on by a lap, so
    // that data keeps flowing for as long as the demo runs.
    let options = ck_mock::binance::MockOptions {
        speed: Some(speed),
        looped: true,
        ..Default::default()
    };
    let mock = ck_mock::binance::MockBinance::start(&messages, options).await?;
    eprintln!(
        "demo: mock Binance on {} replaying {} (recorded {recorded}); Ctrl-C to stop",
        mock.ws_url(),
        recording.display()
    );
    notes.push((Exchange::Binance, format!("recording of {recorded}")));
    let source = Source::live(
        Exchange::Binance,
        BinanceLiveConfig {
            ws_url: mock.ws_url(),
            instruments: vec![Instrument::new("BTC", "USDT")],
            backoff: BackoffPolicy::default(),
            stale_after: std::time::Duration::from_secs(60),
            rest_url: Some(mock.rest_url()),
            books: None,
        },
    )?;
    let mut sources = vec![source];
    // Kept alive for the run: each serves its venue's recording.
    let mut mocks = Vec::new();
    if let Some(venues) = venues.filter(|v| v.as_os_str() != "none") {
        for spec in demo_venues() {
            let (exchange, Some(demo)) = (spec.exchange, spec.demo) else {
                continue;
            };
            let Some(path) = recording_in(&venues, demo.file) else {
                tracing::warn!(%exchange, dir = %venues.display(), file = demo.file, "demo: no recording; venue left out");
                continue;
            };
            let (mock, source, recorded) = demo_venue(spec, &path, speed).await?;
            eprintln!(
                "demo: mock {exchange} on {}{} replaying {}{} (recorded {recorded})",
                mock.ws_url,
                mock.rest_url
                    .as_ref()
                    .map(|r| format!(" (REST {r})"))
                    .unwrap_or_default(),
                path.display(),
                demo.note.map(|n| format!(": {n}")).unwrap_or_default(),
            );
            notes.push((exchange, format!("recording of {recorded}")));
            sources.push(source);
            mocks.push(mock);
        }
    }
    let topology = Topology::with_sources(settings, sources, listen).await?;
    for (exchange, note) in notes {
        topology.runtime().connectors.annotate(exchange, note);
    }
    crate::output::announce_api(&topology);
    let token = CancellationToken::new();
    crate::stop::cancel_on_signal(token.clone(), "stopping the demo")?;
    let started = Instant::now();
    let report = topology.run(token).await;
    drop(mocks);
    if let Some(report) = report? {
        crate::output::print_report(&report, started);
    }
    Ok(())
}

/// When a recording was made: its first WebSocket message's receive time,
/// to the minute (`2021-04-17 16:39 UTC`).
pub(crate) fn recorded_at(messages: &[ck_bus::RawMessage]) -> String {
    messages
        .iter()
        .find(|m| m.origin == ck_bus::Origin::Ws)
        .map_or_else(
            || "at an unknown time".to_owned(),
            |m| {
                let t = m.ts_received.to_string();
                // RFC 3339: 2021-04-17T16:39:12.345Z
                format!(
                    "{} {} UTC",
                    &t[..10.min(t.len())],
                    t.get(11..16).unwrap_or("")
                )
            },
        )
}
