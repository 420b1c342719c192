//! candlekeep's application layer: the only library that knows every stage.
//!
//! - [`config::AppConfig`]: the TOML tree with environment overrides, validated
//!   into [`config::Settings`].
//! - [`pipeline::run_pipeline`]: wires sources, the candle stage and the store
//!   writer, and stops them in order.
//! - [`capture::run_capture`]: the live capture stage: tapes every raw message,
//!   then normalizes it.
//! - [`backfill`]: resumable REST history jobs (`candlekeep backfill`).
//! - [`repair`]: automatic gap repair from REST history.
//! - [`verify`]: our candles against the exchange's own.
//! - [`open_store`]: the configured store backend.

#![warn(missing_docs)]

pub mod backfill;
pub mod capture;
pub mod config;
pub mod pipeline;
pub mod repair;
pub mod retention;
pub mod verify;

use std::sync::Arc;

use ck_store::Store;
use ck_store::sqlite::SqliteStore;

/// Opens the configured store.
pub fn open_store(settings: &config::Settings) -> anyhow::Result<Arc<dyn Store>> {
    let store = SqliteStore::open(&settings.sqlite_path, settings.durability)
        .map_err(|e| anyhow::anyhow!(e))
        .map_err(|e| e.context(format!("opening store {}", settings.sqlite_path.display())))?;
    Ok(Arc::new(store))
}
