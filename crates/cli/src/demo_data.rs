//! The recordings `candlekeep demo` replays, compiled into the binary
//! (`crates/cli/demo/`, with their provenance and licences), so the demo
//! runs from any folder with nothing beside it.

use std::path::{Path, PathBuf};

use ck_app::pipeline::Source;
use ck_model::{Exchange, Instrument, Ts};
use ck_sources::live::BackoffPolicy;

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

/// The venues `demo` adds from the cryptofeed recordings (the mock moves
/// their recorded times to now), and whether the recording is Kraken's v1 API.
pub(crate) const DEMO_VENUES: &[(Exchange, &str, bool)] = &[
    (Exchange::Coinbase, "COINBASE.jsonl.zst", false),
    (
        Exchange::CoinbaseExchange,
        "COINBASE_EXCHANGE.ws.28.0",
        false,
    ),
    (Exchange::Bitfinex, "BITFINEX.jsonl.zst", false),
    (Exchange::Kraken, "KRAKEN.jsonl.zst", true),
    (Exchange::Bitstamp, "BITSTAMP.jsonl.zst", false),
    (Exchange::Okx, "OKX.jsonl.zst", false),
    (Exchange::Bybit, "BYBIT.jsonl.zst", false),
];

/// A mock of `exchange` replaying `path` (times moved to now, paced at
/// `speed`), its REST mock where candlekeep reads that venue's history (so
/// gaps are repaired from it), and the live source that captures it: every
/// instrument the recording trades or quotes.
pub(crate) async fn demo_venue(
    exchange: Exchange,
    path: &std::path::Path,
    kraken_v1: bool,
    speed: f64,
) -> anyhow::Result<(
    ck_mock::venue::MockVenue,
    Option<ck_mock::RestMock>,
    Source,
    String,
)> {
    let messages: Vec<ck_bus::RawMessage> = ck_sources::recordings::Recording::open(path)?
        .filter_map(Result::ok)
        .collect();
    let recorded = recorded_at(&messages);
    let mut normalizer = ck_sources::normalize::Normalizer::new();
    let mut events = Vec::new();
    for m in messages.iter().filter(|m| m.origin == ck_bus::Origin::Ws) {
        normalizer.handle(m, &|| "demo".to_owned(), &mut events);
    }
    let mut instruments: Vec<Instrument> = events
        .iter()
        .filter_map(|e| match e {
            ck_bus::Event::Trade(t) => Some(t.instrument.clone()),
            ck_bus::Event::Quote(q) => Some(q.instrument.clone()),
            _ => None,
        })
        .collect();
    instruments.sort();
    instruments.dedup();
    let now = Some(Ts::now());
    let rest = ck_mock::RestMock::for_venue(exchange, &messages, now).await?;
    let mock = ck_mock::venue::MockVenue::start(
        exchange,
        &messages,
        ck_mock::venue::VenueOptions {
            shift_to: now,
            speed: Some(speed),
            laps: u64::MAX,
            ..Default::default()
        },
    )
    .await?;
    let (protocol, _) = ck_sources::live::protocol_for(exchange, kraken_v1)
        .ok_or_else(|| anyhow::anyhow!("no live connector for {exchange}"))?;
    let source = Source::Live {
        protocol,
        config: ck_sources::live::connector::LiveConfig {
            ws_url: mock.ws_url(),
            instruments,
            backoff: BackoffPolicy::default(),
            stale_after: std::time::Duration::from_secs(60),
            rest_url: rest.as_ref().map(ck_mock::RestMock::rest_url),
        },
    };
    Ok((mock, rest, source, recorded))
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
