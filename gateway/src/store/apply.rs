//! The one place that changes stored resources: applies a list of [`Op`]s inside an open
//! database transaction, on either engine.

use std::collections::HashMap;

use serde_json::Value;

use super::{
    Engine, StoreError, StoredResource,
    conn::WriteConn,
    now_micros, stamp_meta, stamp_meta_with,
    units::{self, Rejection, Submitted},
};
use crate::{
    search::{IndexRows, SearchIndex, SearchQuery, SqlArg},
    submission::{Submission, UnitKey},
};

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
    /// Store a submission unit, replacing the one with the same key (see `units`).
    Submit(Box<Submission>),
    /// Delete a submission unit; `receipt` is logged with it.
    Withdraw { key: UnitKey, id: String, institution: String, receipt: String },
    /// Log a rejected submission for data-quality reporting.
    Reject(Box<Rejection>),
}

impl Op {
    /// Whether only a database failure can make this op fail: no condition, no version check,
    /// no reference to resolve, and (for creates) a fresh server-assigned id.
    pub(super) fn fails_only_in_the_database(&self) -> bool {
        match self {
            Op::Create { if_none_exist, full_url, .. } => if_none_exist.is_none() && full_url.is_none(),
            Op::Submit(_) | Op::Withdraw { .. } | Op::Reject(_) => true,
            Op::Update { .. } | Op::Delete { .. } => false,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Created(StoredResource),
    Updated(StoredResource),
    /// A conditional create found this existing resource and stored nothing.
    Existing(StoredResource),
    /// `Some(version)` of the deletion, `None` when there was nothing to delete.
    Deleted(Option<i64>),
    Submitted(Submitted),
    /// Whether there was a unit to withdraw.
    Withdrawn(bool),
    Rejected,
}

/// Search index rows computed before the write reaches the database, in the requester's task,
/// so that SQLite's single writer spends its time on SQL only.
#[derive(Debug)]
pub enum Prepared {
    Nothing,
    Rows(IndexRows),
    Submission(PreparedSubmission),
}

/// Everything of a submission's write that does not depend on the database: index rows, JSON
/// of the new resources and the receipt, rendered ahead (building, serializing and freeing JSON
/// was a tenth of the SQLite writer's time on submissions).
#[derive(Debug)]
pub struct PreparedSubmission {
    /// Rows and JSON per member, in order (`None`: serialized at write time).
    pub members: Vec<IndexRows>,
    pub bodies: Vec<Option<Rendered>>,
    /// The canonical Patient's rows, and its JSON should it be new.
    pub patient: IndexRows,
    pub patient_body: Option<Rendered>,
    /// The receipt with slots for the outcome and the time of the write.
    pub receipt: Option<Template>,
}

/// JSON text rendered ahead of the write, with slots the writer fills in: each placeholder
/// must occur exactly once in the text.
#[derive(Debug)]
pub struct Template {
    text: String,
    /// (offset, placeholder length, index of the value that fills it), by offset.
    slots: Vec<(usize, usize, usize)>,
}

impl Template {
    /// `None` when a placeholder is missing or occurs more than once (the data itself quotes
    /// it): the caller then renders at write time as usual.
    pub fn new(value: &Value, placeholders: &[&str]) -> Option<Template> {
        let text = serde_json::to_string(value).ok()?;
        let mut slots = Vec::with_capacity(placeholders.len());
        for (n, placeholder) in placeholders.iter().enumerate() {
            let at = text.find(placeholder)?;
            (text.rfind(placeholder) == Some(at)).then_some(())?;
            slots.push((at, placeholder.len(), n));
        }
        slots.sort_unstable();
        Some(Template { text, slots })
    }

    /// The text with every slot replaced by its value (in the order the placeholders were given).
    pub fn fill(self, values: &[&str]) -> String {
        let mut out = String::with_capacity(self.text.len() + values.iter().map(|v| v.len()).sum::<usize>());
        let mut from = 0;
        for &(at, len, n) in &self.slots {
            out.push_str(&self.text[from..at]);
            out.push_str(values[n]);
            from = at + len;
        }
        out.push_str(&self.text[from..]);
        out
    }
}

/// The JSON of a resource about to be stored as version 1, with a slot for `meta.lastUpdated`,
/// the time of the write.
#[derive(Debug)]
pub struct Rendered(Template);

/// As wide as every `instant` of our time.
pub(crate) const PLACEHOLDER_INSTANT: &str = "0000-00-00T00:00:00.000000Z";

impl Rendered {
    /// `None` when the resource itself contains the placeholder (it is then serialized at write
    /// time as usual).
    pub fn new(resource: &mut Value) -> Option<Rendered> {
        stamp_meta_with(resource, "1".into(), PLACEHOLDER_INSTANT.into());
        Template::new(resource, &[PLACEHOLDER_INSTANT]).map(Rendered)
    }

    fn stamped(self, now: i64) -> String {
        self.0.fill(&[&super::instant(now)])
    }
}

/// What [`create_many`] stores of a new resource: its JSON, rendered here or beforehand.
pub enum NewBody {
    Json(Value),
    Rendered(Rendered),
}

/// The resource and ready index rows of a request that is one plain create (server-assigned id,
/// no condition, no fullUrl): what the batching writers may write together with others.
pub(super) fn plain_create<'a>(ops: &'a [Op], prepared: &'a [Prepared]) -> Option<(&'a str, &'a str, &'a Value, &'a IndexRows)> {
    match (ops, prepared) {
        ([Op::Create { res_type, id, resource, if_none_exist: None, full_url: None }], [Prepared::Rows(rows)]) => {
            Some((res_type, id, resource, rows))
        }
        _ => None,
    }
}

/// Index rows for every op whose resource is final. Ops of a transaction with fullUrls may
/// have references rewritten inside the database transaction, so they are indexed there.
pub fn prepare(index: &SearchIndex, ops: &mut [Op]) -> Vec<Prepared> {
    let rewrites = ops.iter().any(|op| matches!(op, Op::Create { full_url: Some(_), .. } | Op::Update { full_url: Some(_), .. }));
    ops.iter_mut()
        .map(|op| match op {
            Op::Create { res_type, resource, .. } | Op::Update { res_type, resource, .. } if !rewrites => {
                let mut rows = index.index(res_type, resource);
                rows.render_keys();
                Prepared::Rows(rows)
            }
            Op::Submit(sub) => Prepared::Submission(units::prepare(index, sub)),
            _ => Prepared::Nothing,
        })
        .collect()
}

/// Apply all `ops` in order on `conn`, which is inside a transaction the caller commits.
pub async fn apply<C: WriteConn>(
    conn: &mut C,
    index: &SearchIndex,
    mut ops: Vec<Op>,
    prepared: Vec<Prepared>,
) -> Result<Vec<Outcome>, StoreError> {
    // Conditional creates first: their matches decide where references in the other entries point.
    let mut existing: HashMap<usize, StoredResource> = HashMap::new();
    for (n, op) in ops.iter().enumerate() {
        if let Op::Create { res_type, if_none_exist: Some(query), .. } = op {
            if let Some(found) = find_single(conn, res_type, query).await? {
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
    let mut prepared = prepared.into_iter();
    for (n, op) in ops.into_iter().enumerate() {
        let (rows, submission) = match prepared.next() {
            Some(Prepared::Rows(rows)) => (Some(rows), None),
            Some(Prepared::Submission(submission)) => (None, Some(submission)),
            _ => (None, None),
        };
        let outcome = match op {
            Op::Create { res_type, id, resource, .. } => match existing.remove(&n) {
                Some(found) => Outcome::Existing(found),
                None => Outcome::Created(create(conn, index, res_type, id, resource, rows, now).await?),
            },
            Op::Update { res_type, id, resource, if_match, .. } => {
                update(conn, index, res_type, id, resource, if_match, rows, now).await?
            }
            Op::Delete { res_type, id } => delete(conn, &res_type, &id, now).await?,
            Op::Submit(mut sub) => {
                let prepared = submission.unwrap_or_else(|| units::prepare(index, &mut sub));
                Outcome::Submitted(units::submit(conn, index, *sub, prepared, now).await?)
            }
            Op::Withdraw { key, id, institution, receipt } => {
                Outcome::Withdrawn(units::withdraw(conn, &key, &id, &institution, &receipt, now).await?)
            }
            Op::Reject(rejection) => {
                units::record_rejection(conn, &rejection, now).await?;
                Outcome::Rejected
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The one resource matching a conditional create's query, if any; several matches fail.
async fn find_single<C: WriteConn>(conn: &mut C, res_type: &str, query: &SearchQuery) -> Result<Option<StoredResource>, StoreError> {
    if conn.engine() == Engine::Postgres {
        // Serialize conditional creates with the same criteria; SQLite's single writer already does.
        let key = lock_key(&format!("{res_type}?{}", query.canonical()));
        conn.fetch("SELECT pg_advisory_xact_lock($1)", &[SqlArg::Int(key)]).await?;
    }
    let (where_sql, args) = query.to_sql(2);
    let mut all = vec![SqlArg::Text(res_type.to_string())];
    all.extend(args);
    let sql = format!(
        "SELECT r.res_id, r.version, r.last_updated, r.deleted, r.body FROM resource_current r
         WHERE r.res_type = $1 AND r.deleted = 0 {where_sql} LIMIT 2"
    );
    let rows = conn.fetch(&sql, &all).await?;
    match rows.as_slice() {
        [] => Ok(None),
        [row] => Ok(Some(super::stored_at(res_type, &row.text(0), row, 1))),
        _ => Err(StoreError::PreconditionFailed(format!(
            "conditional create: more than one {res_type} matches `{}`",
            query.canonical()
        ))),
    }
}

pub(super) fn lock_key(text: &str) -> i64 {
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
    visit_references(value, &mut |s| {
        if let Some(target) = map.get(s.as_str()) {
            *s = target.clone();
        } else if s.starts_with("urn:uuid:") || s.starts_with("urn:oid:") {
            return Err(format!("reference {s} does not name any entry of the transaction"));
        }
        Ok(())
    })
    .map_err(StoreError::Invalid)
}

/// Call `f` on every `reference` string (Reference.reference) in a resource, depth first.
pub fn visit_references(value: &mut Value, f: &mut dyn FnMut(&mut String) -> Result<(), String>) -> Result<(), String> {
    match value {
        Value::Object(obj) => {
            for (key, child) in obj.iter_mut() {
                match child {
                    Value::String(s) if key == "reference" => f(s)?,
                    _ => visit_references(child, f)?,
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                visit_references(item, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

pub(super) async fn create<C: WriteConn>(
    conn: &mut C,
    index: &SearchIndex,
    res_type: String,
    id: String,
    mut resource: Value,
    rows: Option<IndexRows>,
    now: i64,
) -> Result<StoredResource, StoreError> {
    let mut rows = rows.unwrap_or_else(|| index.index(&res_type, &resource));
    stamp_meta(&mut resource, 1, now);
    let body = serde_json::to_string(&resource).expect("JSON values serialize");
    let args = [SqlArg::Text(res_type), SqlArg::Text(id), SqlArg::Int(now), SqlArg::Text(body), SqlArg::Text(rows.take_keys_json())];
    let inserted = conn
        .execute(
            "INSERT INTO resource_current (res_type, res_id, version, last_updated, deleted, body, index_keys)
             VALUES ($1, $2, 1, $3, 0, $4, $5)",
            &args,
        )
        .await;
    let [SqlArg::Text(res_type), SqlArg::Text(id), _, SqlArg::Text(body), _] = args else { unreachable!("built above") };
    match inserted {
        Err(StoreError::Duplicate(_)) => return Err(StoreError::Conflict(format!("{res_type}/{id} already exists"))),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    insert_index_many(conn, &[(&res_type, &id, now, &rows)]).await?;
    Ok(StoredResource { res_type, id, version: 1, last_updated: now, deleted: false, body })
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn update<C: WriteConn>(
    conn: &mut C,
    index: &SearchIndex,
    res_type: String,
    id: String,
    mut resource: Value,
    if_match: Option<i64>,
    rows: Option<IndexRows>,
    now: i64,
) -> Result<Outcome, StoreError> {
    let current = current_version(conn, &res_type, &id).await?;
    if let Some(expected) = if_match {
        let actual = current.as_ref().map(|c| c.version);
        if actual != Some(expected) {
            return Err(StoreError::PreconditionFailed(format!(
                "If-Match expected version {expected} of {res_type}/{id}, but the current version is {}",
                actual.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
            )));
        }
    }
    let Some(current) = current else {
        return Ok(Outcome::Created(create(conn, index, res_type, id, resource, rows, now).await?));
    };
    let mut rows = rows.unwrap_or_else(|| index.index(&res_type, &resource));
    let version = current.version + 1;
    stamp_meta(&mut resource, version, now);
    let body = serde_json::to_string(&resource).expect("JSON values serialize");
    retire_current(conn, &res_type, &id, &current).await?;
    let args =
        [SqlArg::Text(res_type), SqlArg::Text(id), SqlArg::Int(version), SqlArg::Int(now), SqlArg::Text(body), SqlArg::Text(rows.take_keys_json())];
    conn.execute(
        "UPDATE resource_current SET version = $3, last_updated = $4, deleted = 0, body = $5, index_keys = $6
         WHERE res_type = $1 AND res_id = $2",
        &args,
    )
    .await?;
    let [SqlArg::Text(res_type), SqlArg::Text(id), _, _, SqlArg::Text(body), _] = args else { unreachable!("built above") };
    insert_index_many(conn, &[(&res_type, &id, now, &rows)]).await?;
    Ok(Outcome::Updated(StoredResource { res_type, id, version, last_updated: now, deleted: false, body }))
}

pub(super) async fn delete<C: WriteConn>(conn: &mut C, res_type: &str, id: &str, now: i64) -> Result<Outcome, StoreError> {
    match current_version(conn, res_type, id).await? {
        None => Ok(Outcome::Deleted(None)),
        Some(current) if current.deleted => Ok(Outcome::Deleted(None)),
        Some(current) => {
            retire_current(conn, res_type, id, &current).await?;
            let version = current.version;
            conn.execute(
                "UPDATE resource_current SET version = $3, last_updated = $4, deleted = 1, body = '', index_keys = ''
                 WHERE res_type = $1 AND res_id = $2",
                &[SqlArg::Text(res_type.into()), SqlArg::Text(id.into()), SqlArg::Int(version + 1), SqlArg::Int(now)],
            )
            .await?;
            Ok(Outcome::Deleted(Some(version + 1)))
        }
    }
}

/// What the write path needs of a resource's current version.
struct Current {
    version: i64,
    deleted: bool,
    last_updated: i64,
    /// With `last_updated`, the exact keys of its search index rows (see [`IndexRows::keys_json`]).
    index_keys: String,
}

/// The current version, locked against concurrent writers.
async fn current_version<C: WriteConn>(conn: &mut C, res_type: &str, id: &str) -> Result<Option<Current>, StoreError> {
    let sql = match conn.engine() {
        Engine::Postgres => {
            "SELECT version, deleted, last_updated, index_keys FROM resource_current WHERE res_type = $1 AND res_id = $2 FOR UPDATE"
        }
        Engine::Sqlite => "SELECT version, deleted, last_updated, index_keys FROM resource_current WHERE res_type = $1 AND res_id = $2",
    };
    let rows = conn.fetch(sql, &[SqlArg::Text(res_type.into()), SqlArg::Text(id.into())]).await?;
    Ok(rows.first().map(|r| Current { version: r.int(0), deleted: r.int(1) != 0, last_updated: r.int(2), index_keys: r.text(3) }))
}

/// Copy the current version into the history and drop its search index rows (their keys as
/// [`current_version`] read them).
async fn retire_current<C: WriteConn>(conn: &mut C, res_type: &str, id: &str, current: &Current) -> Result<(), StoreError> {
    let keys = current.index_keys.as_str();
    let key = [SqlArg::Text(res_type.into()), SqlArg::Text(id.into())];
    conn.execute(
        "INSERT INTO resource_history (res_type, res_id, version, last_updated, deleted, body)
         SELECT res_type, res_id, version, last_updated, deleted, body FROM resource_current
         WHERE res_type = $1 AND res_id = $2",
        &key,
    )
    .await?;
    if keys.is_empty() {
        // A deletion tombstone has no rows.
        return Ok(());
    }
    match IndexRows::from_keys_json(keys) {
        Some(rows) => {
            for (table, columns, width, args) in &index_table_rows(&[(res_type, id, current.last_updated, &rows)]) {
                conn.execute_rows(&format!("DELETE FROM {table} WHERE ({columns}) IN (VALUES "), ")", *width, args).await?;
            }
        }
        None => {
            // Only a damaged row gets here: find the rows the slow way (every table read whole).
            tracing::warn!(res_type, id, "unreadable index_keys; removing its index rows by a full scan");
            for table in INDEX_TABLES {
                conn.execute(&format!("DELETE FROM {table} WHERE res_type = $1 AND res_id = $2"), &key).await?;
            }
        }
    }
    Ok(())
}

const INDEX_TABLES: [&str; 5] = ["idx_token", "idx_string", "idx_date", "idx_reference", "idx_number"];

/// A resource whose index rows are written or removed: type, id, the last_updated of the
/// version the rows belong to, and the rows.
type Indexed<'a> = (&'a str, &'a str, i64, &'a IndexRows);

/// For each index table: its name, the columns of a row, how many, and the values of the given
/// resources' rows in that order.
fn index_table_rows(resources: &[Indexed]) -> [(&'static str, &'static str, usize, Vec<SqlArg>); 5] {
    let text = |s: &str| SqlArg::Text(s.to_string());
    let mut tables = [
        (INDEX_TABLES[0], "res_type, res_id, stored_at, param, system, code", 6, Vec::new()),
        (INDEX_TABLES[1], "res_type, res_id, stored_at, param, value", 5, Vec::new()),
        (INDEX_TABLES[2], "res_type, res_id, stored_at, param, lo, hi", 6, Vec::new()),
        (INDEX_TABLES[3], "res_type, res_id, stored_at, param, target", 5, Vec::new()),
        (INDEX_TABLES[4], "res_type, res_id, stored_at, param, value, system, code", 7, Vec::new()),
    ];
    for &(res_type, id, stored_at, rows) in resources {
        let key = || [text(res_type), text(id), SqlArg::Int(stored_at)];
        for t in &rows.tokens {
            tables[0].3.extend(key().into_iter().chain([text(&t.param), text(&t.system), text(&t.code)]));
        }
        for s in &rows.strings {
            tables[1].3.extend(key().into_iter().chain([text(&s.param), text(&s.value)]));
        }
        for d in &rows.dates {
            tables[2].3.extend(key().into_iter().chain([text(&d.param), SqlArg::Int(d.lo), SqlArg::Int(d.hi)]));
        }
        for r in &rows.references {
            tables[3].3.extend(key().into_iter().chain([text(&r.param), text(&r.target)]));
        }
        for n in &rows.numbers {
            tables[4].3.extend(key().into_iter().chain([text(&n.param), SqlArg::Float(n.value), text(&n.system), text(&n.code)]));
        }
    }
    tables
}

/// Insert the index rows of several resources, one multi-row INSERT per table (and chunk).
async fn insert_index_many<C: WriteConn>(conn: &mut C, resources: &[Indexed<'_>]) -> Result<(), StoreError> {
    for (table, columns, width, args) in &index_table_rows(resources) {
        // The same value twice in one resource (two identical codings) is one index row.
        conn.execute_rows(&format!("INSERT INTO {table} ({columns}) VALUES "), " ON CONFLICT DO NOTHING", *width, args).await?;
    }
    Ok(())
}

/// Create several new resources (ids assigned by the caller) with few statements: the bulk
/// path of a submission unit.
pub(crate) async fn create_many<C: WriteConn>(
    conn: &mut C,
    resources: Vec<(String, String, NewBody)>,
    mut rows: Vec<IndexRows>,
    now: i64,
) -> Result<Vec<StoredResource>, StoreError> {
    /// (res_type, res_id, version, last_updated, deleted, body, index_keys)
    const WIDTH: usize = 7;
    let mut args = Vec::with_capacity(resources.len() * WIDTH);
    for ((res_type, id, body), rows) in resources.into_iter().zip(&mut rows) {
        let body = match body {
            NewBody::Json(mut resource) => {
                stamp_meta(&mut resource, 1, now);
                serde_json::to_string(&resource).expect("JSON values serialize")
            }
            NewBody::Rendered(rendered) => rendered.stamped(now),
        };
        args.extend([
            SqlArg::Text(res_type),
            SqlArg::Text(id),
            SqlArg::Int(1),
            SqlArg::Int(now),
            SqlArg::Int(0),
            SqlArg::Text(body),
            SqlArg::Text(rows.take_keys_json()),
        ]);
    }
    let inserted = conn
        .execute_rows(
            "INSERT INTO resource_current (res_type, res_id, version, last_updated, deleted, body, index_keys) VALUES ",
            "",
            WIDTH,
            &args,
        )
        .await;
    if let Err(StoreError::Duplicate(_)) = inserted {
        return Err(StoreError::Conflict("a resource of the submission already exists".into()));
    }
    inserted?;
    let keys: Vec<Indexed> = args
        .chunks(WIDTH)
        .zip(&rows)
        .map(|(a, r)| match (&a[0], &a[1]) {
            (SqlArg::Text(t), SqlArg::Text(i)) => (t.as_str(), i.as_str(), now, r),
            _ => unreachable!("type and id are text"),
        })
        .collect();
    insert_index_many(conn, &keys).await?;
    // The statement's arguments become the stored resources (the bodies are moved, not copied).
    Ok(args
        .chunks_exact_mut(WIDTH)
        .map(|a| {
            let mut take = |i: usize| std::mem::replace(&mut a[i], SqlArg::Int(0));
            (take(0), take(1), take(5))
        })
        .map(|taken| match taken {
            (SqlArg::Text(res_type), SqlArg::Text(id), SqlArg::Text(body)) => {
                StoredResource { res_type, id, version: 1, last_updated: now, deleted: false, body }
            }
            _ => unreachable!("type, id and body are text"),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rendered_bodies_get_the_write_time_and_a_resource_quoting_the_placeholder_is_left_to_the_writer() {
        let mut obs = json!({"resourceType": "Observation", "meta": {"profile": ["p"]}, "status": "final"});
        let rendered = Rendered::new(&mut obs).expect("rendered");
        let now = 1_764_000_000_123_456;
        let stored: Value = serde_json::from_str(&rendered.stamped(now)).unwrap();
        assert_eq!(stored["meta"], json!({"profile": ["p"], "versionId": "1", "lastUpdated": super::super::instant(now)}));
        assert_eq!(stored["status"], "final");
        let mut quoting = json!({"resourceType": "Basic", "extension": [{"url": "x", "valueString": PLACEHOLDER_INSTANT}]});
        assert!(Rendered::new(&mut quoting).is_none());
    }

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
