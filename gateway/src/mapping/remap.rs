//! Re-mapping stored data with the active tables, as a background job with progress.
//!
//! The job walks the current clinical items of every submission unit (what the ingestion mapper
//! maps: not the document as sent, the Patient or the Provenance) in `(type, id)` order, a page at
//! a time. For each it removes what earlier mappings added and maps again with today's mapper
//! (for the unit's institution); a resource that changed is written as a new version (history
//! kept, If-Match on the version read, so a concurrent resend wins and is counted as skipped).
//! The job row (state, counts, cursor) is saved after every page: progress is visible from the
//! database, and a job interrupted by a stop resumes from its cursor at the next start-up.
//! One job runs at a time.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::MappingTables;
use crate::store::{Op, RemapCandidate, RemapJobRow, StoreError, now_micros};

/// Resources read per page.
const PAGE: i64 = 200;

/// Which job is running.
#[derive(Default)]
pub struct Remapper {
    running: Mutex<Option<String>>,
}

/// Why a job was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("re-mapping job {0} is still running; only one runs at a time")]
    Running(String),
    #[error("unknown mapping table '{0}'")]
    UnknownTable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Start a job over every mappable resource, or (with `table`) over the resources that mention
/// one of that table's source systems (any alias).
pub async fn start(tables: &Arc<MappingTables>, table: Option<&str>, actor: &str) -> Result<RemapJobRow, StartError> {
    let systems = match table {
        Some(name) => source_systems(tables, name).ok_or_else(|| StartError::UnknownTable(name.to_string()))?,
        None => Vec::new(),
    };
    let id = uuid::Uuid::new_v4().to_string();
    {
        let mut running = tables.remapper().running.lock().expect("lock");
        if let Some(other) = running.as_ref() {
            return Err(StartError::Running(other.clone()));
        }
        *running = Some(id.clone());
    }
    let job = async {
        let total = tables.store().count_remap_candidates(&systems).await?;
        let job = RemapJobRow {
            id: id.clone(),
            state: "running".into(),
            table_name: table.unwrap_or_default().to_string(),
            requested_by: actor.to_string(),
            started_at: now_micros(),
            finished_at: 0,
            total,
            processed: 0,
            changed: 0,
            skipped: 0,
            cursor: (String::new(), String::new()),
            error: String::new(),
        };
        tables.store().save_remap_job(&job).await?;
        Ok::<_, StoreError>(job)
    }
    .await;
    match job {
        Ok(job) => {
            tokio::spawn(run(tables.clone(), job.clone(), systems));
            Ok(job)
        }
        Err(e) => {
            *tables.remapper().running.lock().expect("lock") = None;
            Err(e.into())
        }
    }
}

/// Resume the job a stopped process left running (the oldest; any other is marked failed).
pub async fn resume(tables: &Arc<MappingTables>) -> Result<(), StoreError> {
    let mut jobs = tables.store().running_remap_jobs().await?.into_iter();
    let Some(job) = jobs.next() else { return Ok(()) };
    for mut other in jobs {
        other.state = "failed".into();
        other.finished_at = now_micros();
        other.error = format!("interrupted; job {} was resumed instead", job.id);
        tables.store().save_remap_job(&other).await?;
    }
    let systems = if job.table_name.is_empty() { Vec::new() } else { source_systems(tables, &job.table_name).unwrap_or_default() };
    *tables.remapper().running.lock().expect("lock") = Some(job.id.clone());
    tracing::info!(job = %job.id, processed = job.processed, total = job.total, "resuming the re-mapping job");
    tokio::spawn(run(tables.clone(), job, systems));
    Ok(())
}

/// The source systems of every version of a table, with their aliases.
fn source_systems(tables: &MappingTables, name: &str) -> Option<Vec<String>> {
    let registry = tables.registry();
    let history = registry.tables.get(name)?;
    let snapshot = tables.terminology().snapshot();
    let mut systems: Vec<String> = Vec::new();
    for v in &history.versions {
        let canonical = snapshot.systems().canonical(&v.meta.source_system).to_string();
        systems.extend(snapshot.systems().aliases_of(&canonical));
        systems.push(canonical);
        systems.push(v.meta.source_system.clone());
    }
    systems.sort();
    systems.dedup();
    Some(systems)
}

async fn run(tables: Arc<MappingTables>, mut job: RemapJobRow, systems: Vec<String>) {
    let store = tables.store().clone();
    let outcome = async {
        loop {
            let page = store.remap_candidates(&systems, &job.cursor, PAGE).await?;
            let Some(last) = page.last() else { return Ok::<_, StoreError>(()) };
            job.cursor = (last.res_type.clone(), last.id.clone());
            let mapper = tables.mapper();
            let mut writes = Vec::new();
            for candidate in page {
                job.processed += 1;
                writes.extend(remapped(&mapper, candidate));
            }
            let (changed, skipped) = write_page(&store, writes).await?;
            job.changed += changed;
            job.skipped += skipped;
            job.total = job.total.max(job.processed);
            store.save_remap_job(&job).await?;
        }
    }
    .await;
    job.finished_at = now_micros();
    match outcome {
        Ok(()) => job.state = "done".into(),
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "re-mapping job failed");
            job.state = "failed".into();
            job.error = e.to_string();
        }
    }
    if let Err(e) = store.save_remap_job(&job).await {
        tracing::error!(job = %job.id, error = %e, "saving the end of the re-mapping job failed");
    }
    *tables.remapper().running.lock().expect("lock") = None;
    tracing::info!(job = %job.id, state = %job.state, processed = job.processed, changed = job.changed, "re-mapping job ended");
}

/// The update that re-maps one stored resource, when re-mapping changes it.
fn remapped(mapper: &terminology::Mapper, candidate: RemapCandidate) -> Option<Op> {
    let Ok(mut resource) = serde_json::from_str::<Value>(&candidate.body) else {
        tracing::warn!(res_type = %candidate.res_type, id = %candidate.id, "stored body is not JSON; not re-mapped");
        return None;
    };
    let before = resource.clone();
    mapper.remap_resource(&mut resource, &candidate.institution);
    (resource != before).then(|| Op::Update {
        res_type: candidate.res_type,
        id: candidate.id,
        resource,
        if_match: Some(candidate.version),
        full_url: None,
    })
}

/// Write a page's updates in one transaction; when one of them lost a race with a submission,
/// write them one by one and skip the losers. Returns (changed, skipped).
async fn write_page(store: &crate::store::Store, writes: Vec<Op>) -> Result<(i64, i64), StoreError> {
    if writes.is_empty() {
        return Ok((0, 0));
    }
    let n = writes.len() as i64;
    match store.write(writes.clone()).await {
        Ok(_) => Ok((n, 0)),
        Err(StoreError::PreconditionFailed(_)) => {
            let (mut changed, mut skipped) = (0, 0);
            for op in writes {
                match store.write(vec![op]).await {
                    Ok(_) => changed += 1,
                    Err(StoreError::PreconditionFailed(_)) => skipped += 1,
                    Err(e) => return Err(e),
                }
            }
            Ok((changed, skipped))
        }
        Err(e) => Err(e),
    }
}
