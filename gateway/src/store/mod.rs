//! Durable resource storage on SQLite or PostgreSQL, behind one type.
//!
//! All writes are expressed as a list of [`Op`]s applied atomically ([`Store::write`]).
//! SQLite allows one writer at a time, so its writes go through a single writer task that
//! commits many queued requests in one transaction (group commit, each request in its own
//! SAVEPOINT so one failing request does not affect the others): one fsync serves many
//! acknowledgements, and `synchronous=FULL` keeps every acknowledged write across a crash.
//! PostgreSQL takes concurrent transactions from a pool; plain creates, the most frequent
//! write, are also committed many at a time (`pg_creates`).

mod apply;
mod batched_wal;
mod conn;
mod mapping_registry;
mod pg_creates;
mod sqlite_writer;
mod units;

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use sqlx::{
    AnyPool, Row,
    any::{AnyConnectOptions, AnyPoolOptions},
};
use tokio::sync::{mpsc, oneshot};

use crate::search::{IndexRows, SearchIndex, SearchQuery, SqlArg};

pub use apply::{Op, Outcome, visit_references};
pub use mapping_registry::{
    ActivationRow, AuditRow, RegistryChange, RegistryRows, RemapCandidate, RemapJobRow, TableVersionRow,
};
pub use units::{Rejection, SharedItem, SubmissionHistory, Submitted};

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// One stored version of a resource, as read back from the database.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub res_type: String,
    pub id: String,
    pub version: i64,
    /// Microseconds since the Unix epoch.
    pub last_updated: i64,
    pub deleted: bool,
    /// The JSON body with `meta.versionId` and `meta.lastUpdated` (empty for a deletion).
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(String),
    /// A row with this key exists already (unique or primary key constraint).
    #[error("{0}")]
    Duplicate(String),
    #[error("the storage writer has stopped")]
    WriterGone,
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    pool: AnyPool,
    index: Arc<SearchIndex>,
    /// SQLite: every write. PostgreSQL: plain creates only.
    writer: mpsc::Sender<WriteJob>,
}

/// One request's writes, queued for a task that commits many requests together.
pub(crate) struct WriteJob {
    pub ops: Vec<Op>,
    pub prepared: Vec<apply::Prepared>,
    pub reply: oneshot::Sender<Result<Vec<Outcome>, StoreError>>,
}

/// (type, id, resource) of each new resource, and its index rows: what [`apply::create_many`] takes.
type PlainCreates = (Vec<(String, String, apply::NewBody)>, Vec<IndexRows>);

/// The resources and index rows of a batch in which every job is a plain create; `None` when
/// some job is not one.
pub(crate) fn plain_creates(batch: &[WriteJob]) -> Option<PlainCreates> {
    let mut resources = Vec::with_capacity(batch.len());
    let mut rows = Vec::with_capacity(batch.len());
    for job in batch {
        let (res_type, id, resource, index_rows) = apply::plain_create(&job.ops, &job.prepared)?;
        resources.push((res_type.to_string(), id.to_string(), apply::NewBody::Json(resource.clone())));
        rows.push(index_rows.clone());
    }
    Some((resources, rows))
}

static MIGRATIONS_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static MIGRATIONS_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Connect, create the SQLite file (and its directory) if needed, and run migrations.
    pub async fn open(url: &str, pool_size: u32, index: Arc<SearchIndex>) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") { Engine::Sqlite } else { Engine::Postgres };
        // The SQLite file's path, for the writer's own connection.
        let (url, sqlite_path) = match engine {
            Engine::Sqlite => sqlite_url(url)?,
            Engine::Postgres => (url.to_string(), String::new()),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(pool_size)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        for pragma in SQLITE_PRAGMAS {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        match engine {
            Engine::Sqlite => MIGRATIONS_SQLITE.run(&pool).await,
            Engine::Postgres => MIGRATIONS_POSTGRES.run(&pool).await,
        }
        .map_err(|e| StoreError::Db(e.into()))?;
        let writer = match engine {
            Engine::Sqlite => {
                // Checkpoints run beside the writer, not inside its commits.
                let restart_wanted = sqlite_writer::spawn_checkpointer(&sqlite_path)?;
                sqlite_writer::spawn(&sqlite_path, index.clone(), restart_wanted)?
            }
            Engine::Postgres => pg_creates::spawn(pool.clone(), index.clone()),
        };
        Ok(Store { inner: Arc::new(Inner { engine, pool, index, writer }) })
    }

    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    pub fn index(&self) -> &SearchIndex {
        &self.inner.index
    }

    /// Apply `ops` atomically: either every op takes effect or none does.
    pub async fn write(&self, ops: Vec<Op>) -> Result<Vec<Outcome>, StoreError> {
        let mut ops = ops;
        let prepared = apply::prepare(&self.inner.index, &mut ops);
        if self.inner.engine == Engine::Postgres && apply::plain_create(&ops, &prepared).is_none() {
            let mut tx = self.inner.pool.begin().await?;
            let outcomes = apply::apply(&mut *tx, &self.inner.index, ops, prepared).await?;
            tx.commit().await?;
            return Ok(outcomes);
        }
        let (reply, answer) = oneshot::channel();
        self.inner.writer.send(WriteJob { ops, prepared, reply }).await.map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// The current version of a resource (including a deletion tombstone).
    pub async fn read(&self, res_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        let row = sqlx::query(
            "SELECT version, last_updated, deleted, body FROM resource_current
             WHERE res_type = $1 AND res_id = $2",
        )
        .bind(res_type)
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.map(|row| stored(res_type, id, &row)))
    }

    /// One specific version of a resource.
    pub async fn vread(
        &self,
        res_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<StoredResource>, StoreError> {
        let row = sqlx::query(
            "SELECT version, last_updated, deleted, body FROM resource_current
             WHERE res_type = $1 AND res_id = $2 AND version = $3
             UNION ALL
             SELECT version, last_updated, deleted, body FROM resource_history
             WHERE res_type = $1 AND res_id = $2 AND version = $3",
        )
        .bind(res_type)
        .bind(id)
        .bind(version)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.map(|row| stored(res_type, id, &row)))
    }

    /// Versions, newest first, of one resource (`id`), one type, or everything.
    pub async fn history(
        &self,
        res_type: Option<&str>,
        id: Option<&str>,
        since: Option<i64>,
        count: i64,
        offset: i64,
    ) -> Result<(Vec<StoredResource>, i64), StoreError> {
        let mut filter = String::from("WHERE last_updated >= $1");
        let mut args = vec![SqlArg::Int(since.unwrap_or(i64::MIN))];
        if let Some(t) = res_type {
            args.push(SqlArg::Text(t.to_string()));
            filter += &format!(" AND res_type = ${}", args.len());
        }
        if let Some(i) = id {
            args.push(SqlArg::Text(i.to_string()));
            filter += &format!(" AND res_id = ${}", args.len());
        }
        let union = format!(
            "SELECT res_type, res_id, version, last_updated, deleted, body FROM resource_current {filter}
             UNION ALL
             SELECT res_type, res_id, version, last_updated, deleted, body FROM resource_history {filter}"
        );
        let total: i64 = bind_all(sqlx::query(&format!("SELECT COUNT(*) FROM ({union}) h")), &args)
            .fetch_one(&self.inner.pool)
            .await?
            .try_get(0)?;
        let page = format!(
            "SELECT * FROM ({union}) h ORDER BY last_updated DESC, version DESC LIMIT {count} OFFSET {offset}"
        );
        let rows = bind_all(sqlx::query(&page), &args).fetch_all(&self.inner.pool).await?;
        let versions = rows
            .iter()
            .map(|row| {
                let t: String = row.get(0);
                let i: String = row.get(1);
                stored_at(&t, &i, row, 2)
            })
            .collect();
        Ok((versions, total))
    }

    /// Run a search built by [`crate::search`]: the current, non-deleted resources matching its
    /// conditions, in its order, one page of `count` (0: none, only the total), plus the total.
    pub async fn search(&self, res_type: &str, query: &SearchQuery, count: i64) -> Result<(Vec<StoredResource>, i64), StoreError> {
        let (where_sql, args) = query.to_sql(2);
        let mut all_args = vec![SqlArg::Text(res_type.to_string())];
        all_args.extend(args);
        let filter = format!("WHERE r.res_type = $1 AND r.deleted = 0 {where_sql}");
        let total: i64 = bind_all(sqlx::query(&format!("SELECT COUNT(*) FROM resource_current r {filter}")), &all_args)
            .fetch_one(&self.inner.pool)
            .await?
            .try_get(0)?;
        let rows = if count > 0 {
            let sql = format!(
                "SELECT r.res_id, r.version, r.last_updated, r.deleted, r.body FROM resource_current r{} {filter}
                 ORDER BY {} LIMIT {count} OFFSET {}",
                query.sort_joins(),
                query.order_sql(),
                query.offset
            );
            bind_all(sqlx::query(&sql), &all_args).fetch_all(&self.inner.pool).await?
        } else {
            Vec::new()
        };
        let found = rows
            .iter()
            .map(|row| {
                let id: String = row.get(0);
                stored_at(res_type, &id, row, 1)
            })
            .collect();
        Ok((found, total))
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.inner.pool).await.is_ok()
    }
}

/// WAL lets readers run beside the writer; FULL makes each commit durable before it is
/// acknowledged (group commit in the writer keeps that affordable). A large page cache and
/// in-memory statement journals keep big batches from spilling to disk mid-transaction.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA cache_size = -65536",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA mmap_size = 268435456",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
    // When the WAL starts over it is cut back to this size, not to zero: its blocks stay
    // allocated, so the next frames overwrite them instead of growing the file again. A second of
    // submissions fills about 300 MB of WAL; at a 64 MB limit every restart cut that back and the
    // first commit after it took 75 ms (the truncation), the next ones regrew the file.
    "PRAGMA journal_size_limit = 1073741824",
];

/// Turn `sqlite://path` into a URL that creates the file, creating its directory too; with the
/// file's path. An in-memory database is refused: the writer and the readers could not share it.
fn sqlite_url(url: &str) -> Result<(String, String), StoreError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path == ":memory:" {
        return Err(StoreError::Invalid("an in-memory SQLite database cannot be shared by the writer and the readers: give a file".into()));
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Invalid(format!("cannot create database directory {}: {e}", dir.display()))
            })?;
        }
    }
    let mut query = query.to_string();
    if !query.contains("mode=") {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("mode=rwc");
    }
    Ok((format!("sqlite://{path}?{query}"), path.to_string()))
}

fn stored(res_type: &str, id: &str, row: &sqlx::any::AnyRow) -> StoredResource {
    stored_at(res_type, id, row, 0)
}

/// Decode (version, last_updated, deleted, body) starting at column `at`.
fn stored_at(res_type: &str, id: &str, row: &impl conn::Columns, at: usize) -> StoredResource {
    StoredResource {
        res_type: res_type.to_string(),
        id: id.to_string(),
        version: row.int(at),
        last_updated: row.int(at + 1),
        deleted: row.int(at + 2) != 0,
        body: row.text(at + 3),
    }
}

pub(crate) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &'q [SqlArg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for arg in args {
        query = match arg {
            SqlArg::Text(s) => query.bind(s.as_str()),
            SqlArg::Int(i) => query.bind(*i),
            SqlArg::Float(f) => query.bind(*f),
        };
    }
    query
}

/// A new server-assigned id. Time-ordered (UUID version 7): rows keyed by id then land at the
/// end of each B-tree instead of on a random page, so a commit rewrites a few pages rather than
/// one per row and index (random version-4 ids made the WAL 40 times the data written).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Strictly increasing wall-clock microseconds, so versions written in one process never share
/// a `lastUpdated` and history order is total.
pub fn now_micros() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let wall = chrono::Utc::now().timestamp_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = wall.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// FHIR `instant` text for microseconds since the epoch.
pub fn instant(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Set `meta.versionId` and `meta.lastUpdated` on a resource about to be stored.
pub(crate) fn stamp_meta(resource: &mut Value, version: i64, last_updated: i64) {
    stamp_meta_with(resource, version.to_string(), instant(last_updated));
}

fn stamp_meta_with(resource: &mut Value, version: String, last_updated: String) {
    if let Some(obj) = resource.as_object_mut() {
        let meta = obj.entry("meta").or_insert_with(|| Value::Object(Default::default()));
        if !meta.is_object() {
            *meta = Value::Object(Default::default());
        }
        let meta = meta.as_object_mut().expect("object");
        meta.insert("versionId".into(), Value::String(version));
        meta.insert("lastUpdated".into(), Value::String(last_updated));
    }
}
