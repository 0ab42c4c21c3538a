//! Persistence of the mapping-table registry (versions, activations, audit trail) and of the
//! re-mapping jobs. These rows are not resources: they are written directly, each change in one
//! transaction of its own (on SQLite beside the resource writer, waiting on its lock).

use sqlx::Row;

use super::{StoreError, bind_all};
use crate::search::SqlArg;

/// One stored table version.
#[derive(Debug, Clone)]
pub struct TableVersionRow {
    pub name: String,
    pub version: String,
    pub seq: i64,
    pub content_csv: String,
    pub uploaded_at: String,
    pub uploaded_by: String,
}

/// One activation (`undone_seq` 0 while in force).
#[derive(Debug, Clone)]
pub struct ActivationRow {
    pub seq: i64,
    pub name: String,
    pub version: String,
    pub active_from: String,
    pub activated_by: String,
    pub activated_at: String,
    pub undone_seq: i64,
}

/// One audit record of the registry.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub recorded_at: String,
    pub actor: String,
    pub action: String,
    pub name: String,
    pub version: String,
    pub detail: String,
    pub event_stored: bool,
}

/// What one registry change stores, beside its audit rows.
#[derive(Debug, Clone)]
pub enum RegistryChange {
    Upload(TableVersionRow),
    Activate(ActivationRow),
    /// The activation `activation_seq` was undone by the action `undone_seq`.
    Rollback { activation_seq: i64, undone_seq: i64 },
}

/// Everything the registry holds, in action order.
#[derive(Debug, Default)]
pub struct RegistryRows {
    pub versions: Vec<TableVersionRow>,
    pub activations: Vec<ActivationRow>,
    pub audit: Vec<AuditRow>,
}

/// A re-mapping job as stored.
#[derive(Debug, Clone)]
pub struct RemapJobRow {
    pub id: String,
    pub state: String,
    pub table_name: String,
    pub requested_by: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub total: i64,
    pub processed: i64,
    pub changed: i64,
    pub skipped: i64,
    pub cursor: (String, String),
    pub error: String,
}

/// A stored resource a re-mapping job looks at: a current clinical item of a submission unit.
#[derive(Debug, Clone)]
pub struct RemapCandidate {
    pub res_type: String,
    pub id: String,
    pub version: i64,
    pub institution: String,
    pub body: String,
}

const REMAP_JOB_COLUMNS: &str = "id, state, table_name, requested_by, started_at, finished_at, total, processed, changed, skipped, cursor_type, cursor_id, error";

fn remap_job(r: &sqlx::any::AnyRow) -> RemapJobRow {
    RemapJobRow {
        id: r.get(0),
        state: r.get(1),
        table_name: r.get(2),
        requested_by: r.get(3),
        started_at: r.get(4),
        finished_at: r.get(5),
        total: r.get(6),
        processed: r.get(7),
        changed: r.get(8),
        skipped: r.get(9),
        cursor: (r.get(10), r.get(11)),
        error: r.get(12),
    }
}

/// The resources mapping applies to: the clinical items of current units (not the document as
/// sent, not the Provenance), optionally only those whose body mentions one of `systems`.
fn candidates_sql(systems: &[String], first_arg: usize) -> (String, Vec<SqlArg>) {
    let mut sql = String::from(
        "FROM unit_member m
         JOIN submission_unit u ON u.patient_key = m.patient_key AND u.bundle_system = m.bundle_system
                               AND u.bundle_value = m.bundle_value
         JOIN resource_current r ON r.res_type = m.res_type AND r.res_id = m.res_id
         WHERE r.deleted = 0 AND m.item_kind NOT IN ('document', 'provenance')",
    );
    let mut args = Vec::new();
    if !systems.is_empty() {
        let likes: Vec<String> = systems
            .iter()
            .map(|s| {
                args.push(SqlArg::Text(format!("%\"{s}\"%")));
                format!("r.body LIKE ${}", first_arg + args.len() - 1)
            })
            .collect();
        sql += &format!(" AND ({})", likes.join(" OR "));
    }
    (sql, args)
}

impl super::Store {
    /// The whole registry, in action order.
    pub async fn mapping_registry(&self) -> Result<RegistryRows, StoreError> {
        let pool = &self.inner.pool;
        let versions = sqlx::query(
            "SELECT name, version, seq, content_csv, uploaded_at, uploaded_by FROM mapping_table_version ORDER BY seq",
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| TableVersionRow {
            name: r.get(0),
            version: r.get(1),
            seq: r.get(2),
            content_csv: r.get(3),
            uploaded_at: r.get(4),
            uploaded_by: r.get(5),
        })
        .collect();
        let activations = sqlx::query(
            "SELECT seq, name, version, active_from, activated_by, activated_at, undone_seq
             FROM mapping_table_activation ORDER BY seq",
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| ActivationRow {
            seq: r.get(0),
            name: r.get(1),
            version: r.get(2),
            active_from: r.get(3),
            activated_by: r.get(4),
            activated_at: r.get(5),
            undone_seq: r.get(6),
        })
        .collect();
        let audit = sqlx::query(
            "SELECT seq, recorded_at, actor, action, name, version, detail, event_stored FROM mapping_table_audit ORDER BY seq",
        )
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| AuditRow {
            seq: r.get(0),
            recorded_at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            name: r.get(4),
            version: r.get(5),
            detail: r.get(6),
            event_stored: r.get::<i64, _>(7) != 0,
        })
        .collect();
        Ok(RegistryRows { versions, activations, audit })
    }

    /// Store one registry change and its audit rows in one transaction. A sequence number or
    /// version already taken (another process changed the registry) is a conflict.
    pub async fn record_mapping_change(&self, change: &RegistryChange, audit: &[AuditRow]) -> Result<(), StoreError> {
        let mut tx = self.inner.pool.begin().await?;
        let result = match change {
            RegistryChange::Upload(v) => sqlx::query(
                "INSERT INTO mapping_table_version (name, version, seq, content_csv, uploaded_at, uploaded_by)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&v.name)
            .bind(&v.version)
            .bind(v.seq)
            .bind(&v.content_csv)
            .bind(&v.uploaded_at)
            .bind(&v.uploaded_by)
            .execute(&mut *tx)
            .await
            .map(|_| ()),
            RegistryChange::Activate(a) => sqlx::query(
                "INSERT INTO mapping_table_activation (seq, name, version, active_from, activated_by, activated_at, undone_seq)
                 VALUES ($1, $2, $3, $4, $5, $6, 0)",
            )
            .bind(a.seq)
            .bind(&a.name)
            .bind(&a.version)
            .bind(&a.active_from)
            .bind(&a.activated_by)
            .bind(&a.activated_at)
            .execute(&mut *tx)
            .await
            .map(|_| ()),
            RegistryChange::Rollback { activation_seq, undone_seq } => {
                let done = sqlx::query("UPDATE mapping_table_activation SET undone_seq = $2 WHERE seq = $1 AND undone_seq = 0")
                    .bind(*activation_seq)
                    .bind(*undone_seq)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!(
                        "activation {activation_seq} is no longer in force in the database; the registry was changed elsewhere"
                    )));
                }
                Ok(())
            }
        };
        result.map_err(conflict_on_duplicate)?;
        for a in audit {
            sqlx::query(
                "INSERT INTO mapping_table_audit (seq, recorded_at, actor, action, name, version, detail, event_stored)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
            )
            .bind(a.seq)
            .bind(&a.recorded_at)
            .bind(&a.actor)
            .bind(&a.action)
            .bind(&a.name)
            .bind(&a.version)
            .bind(&a.detail)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_duplicate)?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Note that the AuditEvent resources of these audit rows are stored.
    pub async fn mark_audit_events_stored(&self, seqs: &[i64]) -> Result<(), StoreError> {
        for seq in seqs {
            sqlx::query("UPDATE mapping_table_audit SET event_stored = 1 WHERE seq = $1").bind(*seq).execute(&self.inner.pool).await?;
        }
        Ok(())
    }

    /// Save a re-mapping job (new or with its progress and state).
    pub async fn save_remap_job(&self, job: &RemapJobRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO remap_job ({REMAP_JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, finished_at = excluded.finished_at,
                 total = excluded.total, processed = excluded.processed, changed = excluded.changed,
                 skipped = excluded.skipped, cursor_type = excluded.cursor_type, cursor_id = excluded.cursor_id,
                 error = excluded.error"
        ))
        .bind(&job.id)
        .bind(&job.state)
        .bind(&job.table_name)
        .bind(&job.requested_by)
        .bind(job.started_at)
        .bind(job.finished_at)
        .bind(job.total)
        .bind(job.processed)
        .bind(job.changed)
        .bind(job.skipped)
        .bind(&job.cursor.0)
        .bind(&job.cursor.1)
        .bind(&job.error)
        .execute(&self.inner.pool)
        .await?;
        Ok(())
    }

    pub async fn remap_job(&self, id: &str) -> Result<Option<RemapJobRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {REMAP_JOB_COLUMNS} FROM remap_job WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?;
        Ok(row.as_ref().map(remap_job))
    }

    /// Jobs left running (by a process that stopped), oldest first.
    pub async fn running_remap_jobs(&self) -> Result<Vec<RemapJobRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {REMAP_JOB_COLUMNS} FROM remap_job WHERE state = 'running' ORDER BY started_at"))
            .fetch_all(&self.inner.pool)
            .await?;
        Ok(rows.iter().map(remap_job).collect())
    }

    /// How many resources a re-mapping job over `systems` (empty: every system) looks at.
    pub async fn count_remap_candidates(&self, systems: &[String]) -> Result<i64, StoreError> {
        let (from, args) = candidates_sql(systems, 1);
        let row = bind_all(sqlx::query(&format!("SELECT COUNT(*) {from}")), &args).fetch_one(&self.inner.pool).await?;
        Ok(row.try_get(0)?)
    }

    /// The next page of candidates after `cursor` (res_type, res_id), in that order.
    pub async fn remap_candidates(
        &self,
        systems: &[String],
        cursor: &(String, String),
        limit: i64,
    ) -> Result<Vec<RemapCandidate>, StoreError> {
        let (from, mut args) = candidates_sql(systems, 3);
        args.insert(0, SqlArg::Text(cursor.1.clone()));
        args.insert(0, SqlArg::Text(cursor.0.clone()));
        let sql = format!(
            "SELECT m.res_type, m.res_id, r.version, u.institution, r.body {from}
               AND (m.res_type > $1 OR (m.res_type = $1 AND m.res_id > $2))
             ORDER BY m.res_type, m.res_id LIMIT {limit}"
        );
        let rows = bind_all(sqlx::query(&sql), &args).fetch_all(&self.inner.pool).await?;
        Ok(rows
            .iter()
            .map(|r| RemapCandidate { res_type: r.get(0), id: r.get(1), version: r.get(2), institution: r.get(3), body: r.get(4) })
            .collect())
    }
}

fn conflict_on_duplicate(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("the mapping-table registry was changed elsewhere ({d}); restart to reload it"))
        }
        _ => StoreError::Db(e),
    }
}
