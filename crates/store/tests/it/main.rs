//! ck-store integration tests.

mod postgres;
mod sqlite;
mod timescale;
