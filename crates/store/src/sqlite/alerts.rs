//! Alert rules and firings in SQLite: small writes on the writer
//! connection, reads on the reader pool.

use ck_model::Ts;
use rusqlite::params;

use super::{SqliteStore, limit, sql, with_writer};
use crate::{Error, StoredFiring, StoredRule};

pub(super) async fn rules(store: &SqliteStore) -> Result<Vec<StoredRule>, Error> {
    store
        .read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT id, rule, updated_at FROM alert_rules ORDER BY id")
                .map_err(sql("preparing alert rule query"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(StoredRule {
                        id: r.get(0)?,
                        rule: r.get(1)?,
                        updated_at: Ts(r.get(2)?),
                    })
                })
                .map_err(sql("reading alert rules"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(sql("reading alert rules"))
        })
        .await
}

pub(super) async fn put_rule(
    store: &SqliteStore,
    id: Option<i64>,
    rule: &str,
) -> Result<Option<i64>, Error> {
    let rule = rule.to_owned();
    with_writer(store, move |c| {
        let now = Ts::now().0;
        match id {
            None => {
                c.execute(
                    "INSERT INTO alert_rules (rule, updated_at) VALUES (?1, ?2)",
                    params![rule, now],
                )
                .map_err(sql("storing alert rule"))?;
                Ok(Some(c.last_insert_rowid()))
            }
            Some(id) => {
                let n = c
                    .execute(
                        "UPDATE alert_rules SET rule = ?2, updated_at = ?3 WHERE id = ?1",
                        params![id, rule, now],
                    )
                    .map_err(sql("updating alert rule"))?;
                Ok((n == 1).then_some(id))
            }
        }
    })
    .await
}

pub(super) async fn restore_rule(store: &SqliteStore, rule: StoredRule) -> Result<(), Error> {
    with_writer(store, move |c| {
        c.execute(
            "INSERT INTO alert_rules (id, rule, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET rule = excluded.rule, updated_at = excluded.updated_at",
            params![rule.id, rule.rule, rule.updated_at.0],
        )
        .map(|_| ())
        .map_err(sql("restoring alert rule"))
    })
    .await
}

pub(super) async fn delete_rule(store: &SqliteStore, id: i64) -> Result<bool, Error> {
    with_writer(store, move |c| {
        c.execute("DELETE FROM alert_rules WHERE id = ?1", params![id])
            .map(|n| n == 1)
            .map_err(sql("deleting alert rule"))
    })
    .await
}

pub(super) async fn record_firing(
    store: &SqliteStore,
    rule_id: &str,
    at: Ts,
    firing: &str,
) -> Result<i64, Error> {
    let (rule_id, firing) = (rule_id.to_owned(), firing.to_owned());
    with_writer(store, move |c| {
        c.execute(
            "INSERT INTO alert_firings (rule_id, fired_at, firing) VALUES (?1, ?2, ?3)",
            params![rule_id, at.0, firing],
        )
        .map_err(sql("recording alert firing"))?;
        Ok(c.last_insert_rowid())
    })
    .await
}

pub(super) async fn set_deliveries(
    store: &SqliteStore,
    id: i64,
    deliveries: &str,
) -> Result<(), Error> {
    let deliveries = deliveries.to_owned();
    with_writer(store, move |c| {
        c.execute(
            "UPDATE alert_firings SET deliveries = ?2 WHERE id = ?1",
            params![id, deliveries],
        )
        .map(|_| ())
        .map_err(sql("recording alert deliveries"))
    })
    .await
}

pub(super) async fn firings(store: &SqliteStore, n: usize) -> Result<Vec<StoredFiring>, Error> {
    store
        .read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, rule_id, fired_at, firing, deliveries FROM alert_firings
                     ORDER BY fired_at DESC, id DESC LIMIT ?1",
                )
                .map_err(sql("preparing firing query"))?;
            let rows = stmt
                .query_map(params![limit(n)], |r| {
                    Ok(StoredFiring {
                        id: r.get(0)?,
                        rule_id: r.get(1)?,
                        fired_at: Ts(r.get(2)?),
                        firing: r.get(3)?,
                        deliveries: r.get(4)?,
                    })
                })
                .map_err(sql("reading firings"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(sql("reading firings"))
        })
        .await
}
