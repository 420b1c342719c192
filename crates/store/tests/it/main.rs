//! ck-store integration tests.

mod packed;
mod postgres;
mod sqlite;
mod timescale;
