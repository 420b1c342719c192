//! ck-store integration tests.

mod sqlite;
