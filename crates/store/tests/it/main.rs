//! ck-store integration tests.

mod direct;
mod packed;
mod postgres;
mod sqlite;
mod timescale;
