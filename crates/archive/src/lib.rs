//! candlekeep's columnar archive: settled history as Parquet files in a
//! Hive layout that DuckDB, polars and pyarrow read as they are:
//!
//! ```text
//! <data_dir>/archive/<kind>/exchange=<e>/instrument=<i>/date=<YYYY-MM-DD>/<file>.parquet
//! ```
//!
//! This crate knows the files: their paths ([`layout`]), and for each kind
//! the exact schema, the writer and the reader ([`trades`]). It does no IO
//! beyond the file it is given; which days are settled, and reading both
//! tiers as one, is the store's business.
//!
//! Columns are typed and exact: prices and sizes are `INT64` with the
//! Parquet `DECIMAL(18, scale)` logical type (the scale is the day's
//! largest, so every value is exact), times are `TIMESTAMP(NANOS, UTC)`,
//! numeric trade ids `INT64` (strings where any id is not a number). Rows
//! are sorted by time, then id. Files are zstd-compressed (level 9), times,
//! ids and prices delta-encoded, sizes and sides dictionary-encoded: 7.2
//! bytes a trade on the recorded Binance trades, receive times included.

#![warn(missing_docs)]

pub mod book_stats;
pub mod books;
pub mod candles;
mod columns;
pub use columns::{DecimalShape, PIECE_ROWS, ROW_GROUP_ROWS, Written, footer};
pub mod layout;
pub mod quotes;
pub mod trades;

/// Why a file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The Parquet library refused the data or the file.
    #[error("{path}: parquet: {source}")]
    Parquet {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: parquet::errors::ParquetError,
    },
    /// A value has no exact representation in the archive's columns (a
    /// decimal with more than 18 digits at the day's scale).
    #[error("{path}: {what} cannot be archived exactly")]
    Unrepresentable {
        /// The file.
        path: std::path::PathBuf,
        /// The value, and where.
        what: String,
    },
    /// The file is not a candlekeep archive file of this kind, or is
    /// damaged.
    #[error("{path}: not a candlekeep {kind} file: {why}")]
    NotArchive {
        /// The file.
        path: std::path::PathBuf,
        /// The kind it was read as.
        kind: &'static str,
        /// What is wrong.
        why: String,
    },
}
