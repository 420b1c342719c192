//! ck-store integration tests.

mod postgres;
mod sqlite;
