//! Test helpers shared by every crate.
//!
//! - [`fixture`]: the path of a recorded real-traffic file in `../shared/fixtures`,
//!   failing loudly when it is missing.
//! - [`store_contract`]: the one test suite every [`ck_store::Store`] backend passes.
//! - [`bench_data`]: large realistic data sets made from the recorded trades.
//! - [`postgres_url`], [`postgres_client`], [`fresh_postgres_store`]: the PostgreSQL server on loopback.
//! - [`timescale_url`]: a TimescaleDB server on loopback, started on first use.
//! - [`kafka`]: a Kafka-compatible broker (tansu) on loopback.

#![warn(missing_docs)]

pub mod bench_data;
mod contract;
mod direct_contract;
pub mod kafka;
mod postgres;
mod tiered_contract;
mod timescale;

use std::path::PathBuf;

pub use contract::store_contract;
pub use direct_contract::direct_import_contract;
pub use postgres::{fresh_postgres_store, postgres_client, postgres_url};
pub use tiered_contract::tiered_contract;
pub use timescale::timescale_url;

/// The project root (the workspace folder).
#[must_use]
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
}

/// A Python that has DuckDB (from PyPI): see [`python_with`].
///
/// # Panics
/// Panics saying how to install it when that Python lacks DuckDB: the
/// outside-reader tests must not pass without it.
#[must_use]
pub fn python_with_duckdb() -> PathBuf {
    python_with(&["duckdb"], "reads the archive with DuckDB")
}

/// A Python that has `modules` (from PyPI): `CK_TEST_PYTHON`, else
/// `target/ci-venv/bin/python` (which `.ci/run` installs them into).
///
/// # Panics
/// Panics saying what the test does (`why`) and how to install them when
/// that Python lacks one: such a test must not pass without them.
#[must_use]
pub fn python_with(modules: &[&str], why: &str) -> PathBuf {
    if let Ok(p) = std::env::var("CK_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = project_root().join("target/ci-venv/bin/python");
    let has_them = std::process::Command::new(&venv)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_them,
        "this test {why}: `target/ci-venv/bin/pip install {}` (as .ci/run does), or \
         CK_TEST_PYTHON naming a Python that has them",
        modules.join(" ")
    );
    venv
}

/// The path of `relative` under `../shared/fixtures` (beside the project).
///
/// # Panics
/// Panics with a clear message when the file is missing: tests that need
/// recorded data must not pass without it.
#[must_use]
pub fn fixture(relative: &str) -> PathBuf {
    let path = project_root()
        .join("..")
        .join("shared")
        .join("fixtures")
        .join(relative);
    assert!(
        path.is_file(),
        "fixture {relative} is missing: expected it at {}. The recorded exchange traffic lives in ../shared/fixtures beside the project.",
        path.display()
    );
    path
}
