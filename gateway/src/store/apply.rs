//! The one place that changes stored resources: applies a list of [`Op`]s inside an open
//! database transaction, on either engine.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{Engine, StoreError, StoredResource, bind_all, now_micros, stamp_meta};
use crate::search::{IndexRows, SearchIndex, SearchQuery, SqlArg};

/// One change to the stored resources.
#[derive(Debug, Clone)]
pub enum Op {
    /// Store a new resource under `id` (assigned by the caller). With `if_none_exist`, store it
    /// only when no current resource matches the query; with exactly one match, that resource is
    /// the outcome; with several, the whole write fails (412).
    Create {
        res_type: String,
        id: String,
        resource: Value,
        if_none_exist: Option<SearchQuery>,
        full_url: Option<String>,
    },
    /// Store a new version (or the first one, when the id is new). `if_match` is the version the
    /// client last saw (optimistic locking).
    Update { res_type: String, id: String, resource: Value, if_match: Option<i64>, full_url: Option<String> },
    /// Mark the resource deleted (a new, empty version).
    Delete { res_type: String, id: String },
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Created(StoredResource),
    Updated(StoredResource),
    /// A conditional create found this existing resource and stored nothing.
    Existing(StoredResource),
    /// `Some(version)` of the deletion, `None` when there was nothing to delete.
    Deleted(Option<i64>),
}

/// Apply all `ops` in order on `conn`, which is inside a transaction the caller commits.
pub async fn apply(
    conn: &mut AnyConnection,
    engine: Engine,
    index: &SearchIndex,
    mut ops: Vec<Op>,
) -> Result<Vec<Outcome>, StoreError> {
    // Conditional creates first: their matches decide where references in the other entries point.
    let mut existing: HashMap<usize, StoredResource> = HashMap::new();
    for (n, op) in ops.iter().enumerate() {
        if let Op::Create { res_type, if_none_exist: Some(query), .. } = op {
            if let Some(found) = find_single(conn, engine, res_type, query).await? {
                existing.insert(n, found);
            }
        }
    }
    let references = reference_map(&ops, &existing);
    if !references.is_empty() {
        for op in &mut ops {
            if let Op::Create { resource, .. } | Op::Update { resource, .. } = op {
                rewrite_references(resource, &references)?;
            }
        }
    }
    let now = now_micros();
    let mut outcomes = Vec::with_capacity(ops.len());
    for (n, op) in ops.into_iter().enumerate() {
        let outcome = match op {
            Op::Create { res_type, id, resource, .. } => match existing.remove(&n) {
                Some(found) => Outcome::Existing(found),
                None => Outcome::Created(create(conn, index, res_type, id, resource, now).await?),
            },
            Op::Update { res_type, id, resource, if_match, .. } => {
                update(conn, engine, index, res_type, id, resource, if_match, now).await?
            }
            Op::Delete { res_type, id } => delete(conn, engine, &res_type, &id, now).await?,
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The one resource matching a conditional create's query, if any; several matches fail.
async fn find_single(
    conn: &mut AnyConnection,
    engine: Engine,
    res_type: &str,
    query: &SearchQuery,
) -> Result<Option<StoredResource>, StoreError> {
    if engine == Engine::Postgres {
        // Serialize conditional creates with the same criteria; SQLite's single writer already does.
        let key = lock_key(&format!("{res_type}?{}", query.canonical()));
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(&mut *conn).await?;
    }
    let (where_sql, args) = query.to_sql(2);
    let mut all = vec![SqlArg::Text(res_type.to_string())];
    all.extend(args);
    let sql = format!(
        "SELECT r.res_id, r.version, r.last_updated, r.deleted, r.body FROM resource_current r
         WHERE r.res_type = $1 AND r.deleted = 0 {where_sql} LIMIT 2"
    );
    let rows = bind_all(sqlx::query(&sql), &all).fetch_all(&mut *conn).await?;
    match rows.len() {
        0 => Ok(None),
        1 => {
            let id: String = rows[0].get(0);
            Ok(Some(super::stored_at(res_type, &id, &rows[0], 1)))
        }
        _ => Err(StoreError::PreconditionFailed(format!(
            "conditional create: more than one {res_type} matches `{}`",
            query.canonical()
        ))),
    }
}

fn lock_key(text: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// fullUrl -> `Type/id` for every entry of a transaction that has a fullUrl.
fn reference_map(ops: &[Op], existing: &HashMap<usize, StoredResource>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Create { res_type, id, full_url: Some(url), .. } => {
                let id = existing.get(&n).map(|e| e.id.as_str()).unwrap_or(id);
                map.insert(url.clone(), format!("{res_type}/{id}"));
            }
            Op::Update { res_type, id, full_url: Some(url), .. } => {
                map.insert(url.clone(), format!("{res_type}/{id}"));
            }
            _ => {}
        }
    }
    map
}

/// Point every `reference` that names a transaction entry's fullUrl at the stored resource.
/// A `urn:uuid:`/`urn:oid:` reference that names no entry cannot be stored meaningfully.
fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) -> Result<(), StoreError> {
    match value {
        Value::Object(obj) => {
            for (key, child) in obj.iter_mut() {
                if key == "reference" {
                    if let Value::String(s) = child {
                        if let Some(target) = map.get(s.as_str()) {
                            *s = target.clone();
                        } else if s.starts_with("urn:uuid:") || s.starts_with("urn:oid:") {
                            return Err(StoreError::Invalid(format!(
                                "reference {s} does not name any entry of the transaction"
                            )));
                        }
                        continue;
                    }
                }
                rewrite_references(child, map)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, map)?;
            }
        }
        _ => {}
    }
    Ok(())
}

async fn create(
    conn: &mut AnyConnection,
    index: &SearchIndex,
    res_type: String,
    id: String,
    mut resource: Value,
    now: i64,
) -> Result<StoredResource, StoreError> {
    let rows = index.index(&res_type, &resource);
    stamp_meta(&mut resource, 1, now);
    let body = serde_json::to_string(&resource).expect("JSON values serialize");
    let inserted = sqlx::query(
        "INSERT INTO resource_current (res_type, res_id, version, last_updated, deleted, body)
         VALUES ($1, $2, 1, $3, 0, $4)",
    )
    .bind(&res_type)
    .bind(&id)
    .bind(now)
    .bind(&body)
    .execute(&mut *conn)
    .await;
    if let Err(e) = inserted {
        if is_unique_violation(&e) {
            return Err(StoreError::Conflict(format!("{res_type}/{id} already exists")));
        }
        return Err(e.into());
    }
    insert_index(conn, &res_type, &id, &rows).await?;
    Ok(StoredResource { res_type, id, version: 1, last_updated: now, deleted: false, body })
}

#[allow(clippy::too_many_arguments)]
async fn update(
    conn: &mut AnyConnection,
    engine: Engine,
    index: &SearchIndex,
    res_type: String,
    id: String,
    mut resource: Value,
    if_match: Option<i64>,
    now: i64,
) -> Result<Outcome, StoreError> {
    let current = current_version(conn, engine, &res_type, &id).await?;
    if let Some(expected) = if_match {
        let actual = current.map(|(v, _)| v);
        if actual != Some(expected) {
            return Err(StoreError::PreconditionFailed(format!(
                "If-Match expected version {expected} of {res_type}/{id}, but the current version is {}",
                actual.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
            )));
        }
    }
    let Some((version, _)) = current else {
        return Ok(Outcome::Created(create(conn, index, res_type, id, resource, now).await?));
    };
    let rows = index.index(&res_type, &resource);
    let version = version + 1;
    stamp_meta(&mut resource, version, now);
    let body = serde_json::to_string(&resource).expect("JSON values serialize");
    retire_current(conn, &res_type, &id).await?;
    sqlx::query(
        "UPDATE resource_current SET version = $3, last_updated = $4, deleted = 0, body = $5
         WHERE res_type = $1 AND res_id = $2",
    )
    .bind(&res_type)
    .bind(&id)
    .bind(version)
    .bind(now)
    .bind(&body)
    .execute(&mut *conn)
    .await?;
    insert_index(conn, &res_type, &id, &rows).await?;
    Ok(Outcome::Updated(StoredResource { res_type, id, version, last_updated: now, deleted: false, body }))
}

async fn delete(
    conn: &mut AnyConnection,
    engine: Engine,
    res_type: &str,
    id: &str,
    now: i64,
) -> Result<Outcome, StoreError> {
    match current_version(conn, engine, res_type, id).await? {
        None | Some((_, true)) => Ok(Outcome::Deleted(None)),
        Some((version, false)) => {
            retire_current(conn, res_type, id).await?;
            sqlx::query(
                "UPDATE resource_current SET version = $3, last_updated = $4, deleted = 1, body = ''
                 WHERE res_type = $1 AND res_id = $2",
            )
            .bind(res_type)
            .bind(id)
            .bind(version + 1)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(Outcome::Deleted(Some(version + 1)))
        }
    }
}

/// (version, deleted) of the current version, locked against concurrent writers.
async fn current_version(
    conn: &mut AnyConnection,
    engine: Engine,
    res_type: &str,
    id: &str,
) -> Result<Option<(i64, bool)>, StoreError> {
    let lock = if engine == Engine::Postgres { " FOR UPDATE" } else { "" };
    let row = sqlx::query(&format!(
        "SELECT version, deleted FROM resource_current WHERE res_type = $1 AND res_id = $2{lock}"
    ))
    .bind(res_type)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1) != 0)))
}

/// Copy the current version into the history and drop its search index rows.
async fn retire_current(conn: &mut AnyConnection, res_type: &str, id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO resource_history (res_type, res_id, version, last_updated, deleted, body)
         SELECT res_type, res_id, version, last_updated, deleted, body FROM resource_current
         WHERE res_type = $1 AND res_id = $2",
    )
    .bind(res_type)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    for table in ["idx_token", "idx_string", "idx_date", "idx_reference", "idx_number"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE res_type = $1 AND res_id = $2"))
            .bind(res_type)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn insert_index(
    conn: &mut AnyConnection,
    res_type: &str,
    id: &str,
    rows: &IndexRows,
) -> Result<(), StoreError> {
    let mut tables: Vec<(&str, usize, Vec<SqlArg>)> = Vec::new();
    let text = |s: &str| SqlArg::Text(s.to_string());
    if !rows.tokens.is_empty() {
        let args = rows.tokens.iter().flat_map(|t| [text(&t.param), text(&t.system), text(&t.code)]);
        tables.push(("idx_token (res_type, res_id, param, system, code)", 3, args.collect()));
    }
    if !rows.strings.is_empty() {
        let args = rows.strings.iter().flat_map(|s| [text(&s.param), text(&s.value)]);
        tables.push(("idx_string (res_type, res_id, param, value)", 2, args.collect()));
    }
    if !rows.dates.is_empty() {
        let args = rows.dates.iter().flat_map(|d| [text(&d.param), SqlArg::Int(d.lo), SqlArg::Int(d.hi)]);
        tables.push(("idx_date (res_type, res_id, param, lo, hi)", 3, args.collect()));
    }
    if !rows.references.is_empty() {
        let args = rows.references.iter().flat_map(|r| [text(&r.param), text(&r.target)]);
        tables.push(("idx_reference (res_type, res_id, param, target)", 2, args.collect()));
    }
    if !rows.numbers.is_empty() {
        let args = rows.numbers.iter().flat_map(|n| {
            [text(&n.param), SqlArg::Float(n.value), text(&n.system), text(&n.code)]
        });
        tables.push(("idx_number (res_type, res_id, param, value, system, code)", 4, args.collect()));
    }
    for (table, width, args) in tables {
        let count = args.len() / width;
        let mut sql = format!("INSERT INTO {table} VALUES ");
        let mut n = 3;
        for row in 0..count {
            if row > 0 {
                sql.push(',');
            }
            sql.push_str("($1, $2");
            for _ in 0..width {
                sql.push_str(&format!(", ${n}"));
                n += 1;
            }
            sql.push(')');
        }
        let mut all = vec![text(res_type), text(id)];
        all.extend(args);
        bind_all(sqlx::query(&sql), &all).execute(&mut *conn).await?;
    }
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transaction_references_are_rewritten_and_unknown_urns_refused() {
        let map = HashMap::from([("urn:uuid:1".to_string(), "Patient/abc".to_string())]);
        let mut obs = json!({"subject": {"reference": "urn:uuid:1"}, "x": [{"reference": "Patient/other"}]});
        rewrite_references(&mut obs, &map).unwrap();
        assert_eq!(obs["subject"]["reference"], "Patient/abc");
        assert_eq!(obs["x"][0]["reference"], "Patient/other");
        let mut bad = json!({"subject": {"reference": "urn:uuid:2"}});
        assert!(rewrite_references(&mut bad, &map).is_err());
    }
}
