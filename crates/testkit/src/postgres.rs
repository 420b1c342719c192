//! The PostgreSQL server the tests and benches use.

use ck_store::postgres::{PgOptions, PgStore};

/// `CK_TEST_POSTGRES_URL`, or the local server's `test` database.
#[must_use]
pub fn postgres_url() -> String {
    std::env::var("CK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A connection to the server at `url`, driven on a task of its own.
///
/// # Panics
/// Panics with how to start the server when it is unreachable.
pub async fn postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {url}: {e}. Start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                 (or set CK_TEST_POSTGRES_URL)"
            )
        });
    tokio::spawn(conn);
    client
}

/// A store in `schema` of [`postgres_url`], dropped and created afresh.
///
/// # Panics
/// Panics with how to start the server when it is unreachable, or when the
/// store does not open.
pub async fn fresh_postgres_store(schema: &str) -> PgStore {
    let url = postgres_url();
    postgres_client(&url)
        .await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .expect("drop the old schema");
    let mut options = PgOptions::new(&url);
    options.schema = Some(schema.to_owned());
    PgStore::open(options)
        .await
        .expect("open the PostgreSQL store")
}
