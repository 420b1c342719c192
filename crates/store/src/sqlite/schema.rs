//! Versioned migrations. Each runs once, in order, inside a transaction, and is
//! recorded in `schema_migrations`. Never edit a shipped migration: add one.

use rusqlite::{Connection, params};

use crate::Error;

/// `(version, description, SQL)`, oldest first.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "instruments, trades, quotes, candles, gaps, ingest errors",
        r"
CREATE TABLE instruments (
    id            INTEGER PRIMARY KEY,
    exchange      TEXT NOT NULL,
    instrument    TEXT NOT NULL,
    native_symbol TEXT,
    status        TEXT,
    UNIQUE (exchange, instrument)
);

-- trade_id has BLOB affinity (no conversion): integer ids are stored as integers and
-- string ids as text, exactly as the exchange sent them.
CREATE TABLE trades (
    instrument_id INTEGER NOT NULL REFERENCES instruments(id),
    trade_id      BLOB NOT NULL,
    ts            INTEGER NOT NULL,   -- exchange time, ns since epoch
    price         TEXT NOT NULL,      -- exact decimal text
    size          TEXT NOT NULL,
    side          INTEGER NOT NULL,   -- 1 buy, 2 sell, 0 unknown (taker side)
    ts_received   INTEGER NOT NULL,
    fills         INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (instrument_id, trade_id)
) WITHOUT ROWID;
CREATE INDEX trades_by_time ON trades (instrument_id, ts);

CREATE TABLE quotes (
    instrument_id INTEGER NOT NULL REFERENCES instruments(id),
    ts            INTEGER NOT NULL,
    ts_received   INTEGER NOT NULL,
    bid           TEXT NOT NULL,
    bid_size      TEXT,
    ask           TEXT NOT NULL,
    ask_size      TEXT,
    last          TEXT,
    PRIMARY KEY (instrument_id, ts, ts_received)
) WITHOUT ROWID;

CREATE TABLE candles (
    instrument_id    INTEGER NOT NULL REFERENCES instruments(id),
    interval         TEXT NOT NULL,
    open_time        INTEGER NOT NULL,
    source           TEXT NOT NULL,   -- 'ours' or 'exchange'
    open             TEXT NOT NULL,
    high             TEXT NOT NULL,
    low              TEXT NOT NULL,
    close            TEXT NOT NULL,
    volume           TEXT NOT NULL,
    quote_volume     TEXT NOT NULL,
    vwap             TEXT NOT NULL,
    taker_buy_volume TEXT NOT NULL,
    trades           INTEGER NOT NULL,
    first_trade_id   BLOB,
    last_trade_id    BLOB,
    state            TEXT NOT NULL,
    PRIMARY KEY (instrument_id, interval, source, open_time)
) WITHOUT ROWID;

CREATE TABLE gaps (
    id            INTEGER PRIMARY KEY,
    instrument_id INTEGER NOT NULL REFERENCES instruments(id),
    from_ts       INTEGER NOT NULL,
    to_ts         INTEGER NOT NULL,
    from_trade_id BLOB,
    to_trade_id   BLOB,
    state         TEXT NOT NULL,      -- 'open', 'filled', 'unfillable'
    reason        TEXT,
    detected_at   INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX gaps_by_instrument ON gaps (instrument_id, from_ts);

CREATE TABLE ingest_errors (
    id       INTEGER PRIMARY KEY,
    ts       INTEGER NOT NULL,
    exchange TEXT,
    origin   TEXT NOT NULL,
    message  TEXT NOT NULL,
    excerpt  TEXT NOT NULL
);
",
    ),
    (
        2,
        "a gap is recorded once",
        r"
CREATE UNIQUE INDEX gaps_unique ON gaps (instrument_id, from_ts, to_ts, from_trade_id, to_trade_id);
",
    ),
    (
        3,
        "gaps without ids are unique too; backfill progress",
        r"
-- SQLite treats NULLs as distinct in a unique index: reconnect gaps (no ids)
-- need a key that compares them.
DELETE FROM gaps WHERE id NOT IN (
    SELECT MIN(id) FROM gaps
    GROUP BY instrument_id, from_ts, to_ts, coalesce(from_trade_id, ''), coalesce(to_trade_id, '')
);
DROP INDEX gaps_unique;
CREATE UNIQUE INDEX gaps_unique ON gaps
    (instrument_id, from_ts, to_ts, coalesce(from_trade_id, ''), coalesce(to_trade_id, ''));

CREATE TABLE backfill_progress (
    job        TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL,
    done       INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
",
    ),
    (
        4,
        "alert rules and their firings",
        r"
CREATE TABLE alert_rules (
    id         INTEGER PRIMARY KEY,
    rule       TEXT NOT NULL,    -- the rule as JSON
    updated_at INTEGER NOT NULL
);

CREATE TABLE alert_firings (
    id         INTEGER PRIMARY KEY,
    rule_id    TEXT NOT NULL,
    fired_at   INTEGER NOT NULL,
    firing     TEXT NOT NULL,    -- what fired, as JSON
    deliveries TEXT              -- the delivery results, as JSON, once known
);
CREATE INDEX alert_firings_by_time ON alert_firings (fired_at);
",
    ),
    (
        5,
        "packed days of candles",
        r"
-- One row per UTC day of a series (interval up to 1h): the day's candles as
-- JSON records, zstd-compressed, derived from the candles table (see
-- sqlite/candle_days.rs). records IS NULL: stale, to be packed again.
CREATE TABLE candle_days (
    instrument_id INTEGER NOT NULL REFERENCES instruments(id),
    interval      TEXT NOT NULL,
    source        TEXT NOT NULL,
    day           INTEGER NOT NULL,   -- floor(open_time / 86400 s)
    format        INTEGER,            -- record format of the pack
    count         INTEGER,            -- candles in the pack
    records_len   INTEGER,            -- bytes of JSON, uncompressed
    records       BLOB,               -- zstd of the JSON records, oldest first
    idx           BLOB,               -- zstd of open times (i64 LE), then record ends (u32 LE)
    PRIMARY KEY (instrument_id, interval, source, day)
);
CREATE INDEX candle_days_stale ON candle_days (day) WHERE records IS NULL;

-- Every day already stored is stale until packed.
INSERT INTO candle_days (instrument_id, interval, source, day)
SELECT DISTINCT instrument_id, interval, source,
       CASE WHEN open_time >= 0 THEN open_time / 86400000000000
            ELSE (open_time + 1) / 86400000000000 - 1 END
FROM candles WHERE interval IN ('1s', '1m', '3m', '5m', '15m', '30m', '1h');
",
    ),
    (
        6,
        "packed days of candles keep CSV rows too",
        r"
-- The day's candles as CSV rows too (record format 3), so that CSV answers
-- are as quick as JSON ones; idx then holds each record's end in both.
-- Packs of format 2 are ignored by readers and rebuilt by the next pack.
ALTER TABLE candle_days ADD COLUMN csv_len INTEGER;  -- bytes of CSV, uncompressed
ALTER TABLE candle_days ADD COLUMN csv BLOB;         -- zstd of the CSV rows, oldest first
",
    ),
    (
        7,
        "gaps say what they miss: trades or the order book",
        r"
ALTER TABLE gaps ADD COLUMN kind TEXT NOT NULL DEFAULT 'trades';  -- 'trades', 'book'
-- Book gaps were told apart by their reason until now.
UPDATE gaps SET kind = 'book' WHERE reason LIKE 'order book:%';
DROP INDEX gaps_unique;
CREATE UNIQUE INDEX gaps_unique ON gaps
    (instrument_id, kind, from_ts, to_ts, coalesce(from_trade_id, ''), coalesce(to_trade_id, ''));
",
    ),
];

/// Brings the database up to the newest schema.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let sql = |context| move |source| Error::Sqlite { context, source };
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version     INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            applied_at  INTEGER NOT NULL
        )",
    )
    .map_err(sql("creating schema_migrations"))?;
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(sql("reading schema version"))?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(Error::SchemaTooNew {
            found: current,
            supported: newest,
        });
    }
    for (version, description, body) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction().map_err(sql("starting migration"))?;
        tx.execute_batch(body).map_err(sql("applying migration"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            params![version, description, ck_model::Ts::now().0],
        )
        .map_err(sql("recording migration"))?;
        tx.commit().map_err(sql("committing migration"))?;
        tracing::info!(version, description, "applied store migration");
    }
    Ok(())
}
