//! candlekeep's application layer: the only library that knows every stage.
//!
//! - [`config::AppConfig`]: the TOML tree with environment overrides, validated
//!   into [`config::Settings`].
//! - [`pipeline::run_pipeline`]: wires sources, the candle stage and the store
//!   writer, and stops them in order.
//! - [`backfill`]: resumable REST history jobs (`candlekeep backfill`).
//! - [`verify`]: our candles against the exchange's own.
//! - [`cluster`]: scale-out roles over NATS JetStream.
//! - [`migrate`]: copying a whole store between backends.
//! - [`open_store`]: the configured store backend.

#![warn(missing_docs)]

pub mod archive;
pub mod backfill;
pub mod cluster;
pub mod config;
pub mod lease;
pub mod migrate;
pub mod pipeline;
pub mod retention;
pub mod runtime;
pub mod sources;
pub mod topology;
pub mod verify;

use std::sync::Arc;

use ck_store::Store;
use ck_store::postgres::{PgOptions, PgStore};
use ck_store::sqlite::SqliteStore;

/// Opens the configured store: SQLite, or PostgreSQL (schema created or
/// migrated, TimescaleDB detected and reported, its compression and
/// retention policies set from `[retention]`).
pub async fn open_store(settings: &config::Settings) -> anyhow::Result<Arc<dyn Store>> {
    let policy = settings.config.retention.policy()?;
    let policies = retention::timescale_policies(settings, &policy);
    let store = open_with(
        &settings.store,
        settings.durability,
        Some(policies),
        settings.config.store.sqlite_cache_mib,
    )
    .await?;
    Ok(with_archive(settings, store))
}

/// The store with its archive of settled days beside it: reads see both
/// tiers as one (the archive is read even when `[archive] enabled` is
/// off, which only stops moving days into it).
#[must_use]
pub fn with_archive(settings: &config::Settings, store: Arc<dyn Store>) -> Arc<dyn Store> {
    let root = settings.config.archive.root(&settings.data_dir);
    Arc::new(ck_store::tiered::TieredStore::new(store, &root))
}

/// Opens the configured store for reading only: a store that does not exist
/// yet (no SQLite file, or a PostgreSQL database without candlekeep's
/// tables) is an error naming it, and nothing is created.
pub async fn open_existing_store(settings: &config::Settings) -> anyhow::Result<Arc<dyn Store>> {
    let opened: Result<Arc<dyn Store>, ck_store::Error> = match &settings.store {
        config::StoreLocation::Sqlite(path) => {
            if !path.is_file() {
                anyhow::bail!(
                    "no store at {}: nothing has been captured there yet (`run`, `import`, `replay`, `backfill` or `migrate` create it); check --data-dir or --store",
                    path.display()
                );
            }
            SqliteStore::open(path, settings.durability).map(|s| Arc::new(s) as Arc<dyn Store>)
        }
        config::StoreLocation::Postgres(url) => PgStore::open(PgOptions {
            create: false,
            ..PgOptions::new(url)
        })
        .await
        .map(|s| Arc::new(s) as Arc<dyn Store>),
    };
    opened
        .map(|store| with_archive(settings, store))
        .map_err(|e| anyhow::anyhow!(e))
        .map_err(|e| e.context(format!("opening store {}", settings.store)))
}

/// Opens the store at `location`, leaving TimescaleDB's policies as the
/// server has them (as `migrate` opens its source and target).
pub async fn open_location(
    location: &config::StoreLocation,
    durability: ck_store::sqlite::Durability,
) -> anyhow::Result<Arc<dyn Store>> {
    open_with(
        location,
        durability,
        None,
        config::StoreConfig::default().sqlite_cache_mib,
    )
    .await
}

async fn open_with(
    location: &config::StoreLocation,
    durability: ck_store::sqlite::Durability,
    policies: Option<ck_store::postgres::TimescalePolicies>,
    cache_mib: u32,
) -> anyhow::Result<Arc<dyn Store>> {
    let opened: Result<Arc<dyn Store>, ck_store::Error> = match location {
        config::StoreLocation::Sqlite(path) => SqliteStore::open(path, durability)
            .and_then(|s| {
                s.set_cache_mib(cache_mib)?;
                Ok(s)
            })
            .map(|s| Arc::new(s) as Arc<dyn Store>),
        config::StoreLocation::Postgres(url) => PgStore::open(PgOptions {
            policies,
            ..PgOptions::new(url)
        })
        .await
        .map(|s| Arc::new(s) as Arc<dyn Store>),
    };
    opened
        .map_err(|e| anyhow::anyhow!(e))
        .map_err(|e| e.context(format!("opening store {location}")))
}
