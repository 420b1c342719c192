//! The recordings `candlekeep demo` replays, compiled into the binary
//! (`crates/cli/demo/`, with their provenance and licences), so the demo
//! runs from any folder with nothing beside it.

use std::path::{Path, PathBuf};

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
