//! Mapping tables: the registry of versions and activations (persisted in the database), the
//! mapper for today applied to every accepted submission, the maintainers' changes with their
//! audit trail, and the re-mapping of stored data ([`remap`]).
//!
//! The database is the record; the in-memory [`TableRegistry`] is rebuilt from it at start-up and
//! changed copy-on-write: a change is applied to a copy, stored (registry rows and audit rows in
//! one transaction), and only then published, so memory never runs ahead of the database.

mod audit;
pub mod remap;

use std::{
    path::Path,
    sync::{Arc, RwLock},
};

use anyhow::Context as _;
use axum::http::StatusCode;
use terminology::{
    AuditRecord, CheckOptions, Mapper, MappingTable, RegistryError, TableRegistry, TableReport, TerminologyService,
    UploadOutcome, registry::Activation,
};

use crate::{
    api::ApiError,
    store::{ActivationRow, AuditRow, RegistryChange, Store, StoreError, TableVersionRow},
};

/// The actor of the changes made at start-up from the `mapping_tables` directory.
pub const STARTUP_ACTOR: &str = "gateway start-up (mapping_tables directory)";

use terminology::registry::day_number;
pub use terminology::registry::today;

/// What submissions are mapped with: the registry and its mapper for one day.
struct Live {
    day: i64,
    registry: Arc<TableRegistry>,
    mapper: Arc<Mapper>,
}

/// The mapping tables of a running gateway.
pub struct MappingTables {
    terminology: Arc<TerminologyService>,
    store: Store,
    /// Serialises changes (one maintainer change at a time).
    changes: tokio::sync::Mutex<()>,
    live: RwLock<Arc<Live>>,
    remap: remap::Remapper,
}

/// A refused registry change.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> ApiError {
        match e {
            ChangeError::Store(e) => e.into(),
            ChangeError::Registry(e) => {
                let (status, code, at) = match &e {
                    RegistryError::UnknownTable(_) => (StatusCode::NOT_FOUND, "not-found", "name"),
                    RegistryError::UnknownVersion(..) => (StatusCode::NOT_FOUND, "not-found", "version"),
                    RegistryError::VersionExists(..) => (StatusCode::CONFLICT, "duplicate", "version"),
                    RegistryError::InvalidDate(_) => (StatusCode::BAD_REQUEST, "invalid", "date"),
                    RegistryError::NothingToRollBack(_) => (StatusCode::CONFLICT, "conflict", "name"),
                    RegistryError::Data(_) => (StatusCode::INTERNAL_SERVER_ERROR, "exception", "name"),
                };
                ApiError::new(status, code, e.to_string()).at(at)
            }
        }
    }
}

impl MappingTables {
    /// Rebuild the registry from the database, then bring in the tables of `dir`: each version is
    /// uploaded (a no-op when the same version with the same content is stored) and activated at
    /// its effective date unless that version was ever activated (so a maintainer's rollback
    /// survives restarts). A bad table, or a stored version with different content, stops start-up.
    pub async fn start(dir: &Path, terminology: Arc<TerminologyService>, store: Store) -> anyhow::Result<Arc<MappingTables>> {
        let tables = {
            let snapshot = terminology.snapshot();
            let known = |system: &str| snapshot.knows_system(system);
            terminology::load_tables_dir(dir, &CheckOptions { known_system: Some(&known), ..Default::default() }).map_err(|bad| {
                let reports: Vec<String> =
                    bad.iter().map(|(path, report)| format!("{}: {}", path.display(), report.to_operation_outcome())).collect();
                anyhow::anyhow!("mapping tables refused:\n{}", reports.join("\n"))
            })?
        };
        let rows = store.mapping_registry().await.context("reading the mapping-table registry")?;
        let registry = restore(&rows).context("rebuilding the mapping-table registry from the database")?;
        let this = Arc::new(MappingTables {
            live: RwLock::new(Arc::new(Live { day: 0, registry: Arc::new(TableRegistry::new()), mapper: Arc::new(Mapper::new(&[], terminology.snapshot().systems())) })),
            terminology,
            store,
            changes: tokio::sync::Mutex::new(()),
            remap: remap::Remapper::default(),
        });
        this.publish(Arc::new(registry));
        for table in tables {
            let (name, version, date) = (table.meta.name.clone(), table.meta.version.clone(), table.meta.effective_date.clone());
            this.upload(table, STARTUP_ACTOR).await.with_context(|| format!("mapping table {name} version {version} from {}", dir.display()))?;
            if !rows.activations.iter().any(|a| a.name == name && a.version == version) {
                this.activate(&name, &version, &date, STARTUP_ACTOR).await.with_context(|| format!("activating mapping table {name}"))?;
            }
        }
        // AuditEvents a stopped process did not get to store.
        let pending: Vec<AuditRecord> = rows.audit.iter().filter(|a| !a.event_stored).map(audit_record).collect();
        this.store_audit_events(&pending).await;
        Ok(this)
    }

    /// The mapper for today. When the date has changed since it was built, it is rebuilt first,
    /// so an activation dated in the future takes effect on its date without a restart.
    pub fn mapper(&self) -> Arc<Mapper> {
        self.today().mapper.clone()
    }

    /// Make sure `$translate` answers with today's versions (as [`mapper`](Self::mapper) does).
    pub fn refresh(&self) {
        self.today();
    }

    fn today(&self) -> Arc<Live> {
        let live = self.live.read().expect("lock").clone();
        if live.day == day_number() {
            return live;
        }
        let mut guard = self.live.write().expect("lock");
        if guard.day != day_number() {
            *guard = Arc::new(self.build(guard.registry.clone()));
        }
        guard.clone()
    }

    /// The registry as published.
    pub fn registry(&self) -> Arc<TableRegistry> {
        self.live.read().expect("lock").registry.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn terminology(&self) -> &TerminologyService {
        &self.terminology
    }

    /// Parse and check an uploaded CSV table (systems must be known to the terminology service).
    pub fn parse_csv(&self, text: &str) -> Result<MappingTable, TableReport> {
        let snapshot = self.terminology.snapshot();
        let known = |system: &str| snapshot.knows_system(system);
        MappingTable::parse_csv(text, &CheckOptions { known_system: Some(&known), ..Default::default() })
    }

    /// Read and check an uploaded ConceptMap.
    pub fn parse_concept_map(&self, resource: &serde_json::Value) -> Result<MappingTable, TableReport> {
        let snapshot = self.terminology.snapshot();
        let known = |system: &str| snapshot.knows_system(system);
        MappingTable::from_concept_map(resource, &CheckOptions { known_system: Some(&known), ..Default::default() })
    }

    /// Store a new version (not active until activated).
    pub async fn upload(&self, table: MappingTable, actor: &str) -> Result<UploadOutcome, ChangeError> {
        self.change(|r| r.upload(table, actor)).await
    }

    /// Make `version` of `name` active from `date` on.
    pub async fn activate(&self, name: &str, version: &str, date: &str, actor: &str) -> Result<(), ChangeError> {
        self.change(|r| r.activate(name, version, date, actor)).await
    }

    /// Undo the latest activation of `name`; returns the version active today afterwards.
    pub async fn rollback(&self, name: &str, actor: &str) -> Result<Option<String>, ChangeError> {
        self.change(|r| r.rollback(name, actor)).await
    }

    /// Apply `f` to a copy of the registry; store what it changed with its audit record, then
    /// publish the copy and store the AuditEvent.
    async fn change<R>(&self, f: impl FnOnce(&mut TableRegistry) -> Result<R, RegistryError>) -> Result<R, ChangeError> {
        let _one_at_a_time = self.changes.lock().await;
        let before = self.registry();
        let mut next = (*before).clone();
        let result = f(&mut next)?;
        let new_records: Vec<AuditRecord> = next.audit[before.audit.len()..].to_vec();
        let Some(record) = new_records.last() else {
            return Ok(result); // nothing changed (an identical re-upload)
        };
        let change = registry_change(&before, &next, record)?;
        let rows: Vec<AuditRow> = new_records.iter().map(audit_row).collect();
        self.store.record_mapping_change(&change, &rows).await?;
        self.publish(Arc::new(next));
        self.store_audit_events(&new_records).await;
        self.prune_unmapped_queue().await;
        Ok(result)
    }

    /// Codes the tables in force map now leave the unmapped-code queue. A failure is logged: the
    /// change itself is stored, and the next change prunes again.
    async fn prune_unmapped_queue(&self) {
        let mapper = self.mapper();
        let mapped = |institution: &str, system: &str, code: &str| matches!(mapper.lookup(system, code, institution), Some(Some(_)));
        match self.store.prune_unmapped(mapped).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(codes = n, "mapped codes left the unmapped-code queue"),
            Err(e) => tracing::warn!(error = %e, "pruning the unmapped-code queue failed"),
        }
    }

    /// Make `registry` the one submissions are mapped with and `$translate` answers from (built
    /// under the lock, so that a rebuild for a new day cannot interleave with it).
    fn publish(&self, registry: Arc<TableRegistry>) {
        let mut live = self.live.write().expect("lock");
        *live = Arc::new(self.build(registry));
    }

    fn build(&self, registry: Arc<TableRegistry>) -> Live {
        let (day, date) = (day_number(), today());
        let active = registry.active_at(&date);
        self.terminology.install_tables(&registry.all_versions(), &active);
        let mapper = Arc::new(Mapper::new(&active, self.terminology.snapshot().systems()));
        Live { day, registry, mapper }
    }

    /// Store the AuditEvent resources of audit records. A failure is logged: the audit rows are
    /// already stored, and the next start-up stores the events still missing.
    async fn store_audit_events(&self, records: &[AuditRecord]) {
        if records.is_empty() {
            return;
        }
        let registry = self.registry();
        let ops = records.iter().map(|r| audit::event_op(r, &registry)).collect();
        let stored = match self.store.write(ops).await {
            Ok(_) => self.store.mark_audit_events_stored(&records.iter().map(|r| r.seq as i64).collect::<Vec<_>>()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, "storing the AuditEvents of mapping-table changes failed; retried at the next start-up");
        }
    }

    pub(crate) fn remapper(&self) -> &remap::Remapper {
        &self.remap
    }
}

/// The rows a registry action adds, from the registry before and after it and its audit record.
fn registry_change(before: &TableRegistry, next: &TableRegistry, record: &AuditRecord) -> Result<RegistryChange, RegistryError> {
    let data = |m: &str| RegistryError::Data(format!("{m} for audit record {} ({})", record.seq, record.action));
    let version = record.version.clone().unwrap_or_default();
    match record.action.as_str() {
        "upload" => {
            let table = next.get(&record.table, &version).ok_or_else(|| data("no uploaded version"))?;
            Ok(RegistryChange::Upload(TableVersionRow {
                name: record.table.clone(),
                version,
                seq: record.seq as i64,
                content_csv: table.to_csv(),
                uploaded_at: record.at.clone(),
                uploaded_by: record.actor.clone(),
            }))
        }
        "activate" => {
            let a = next.tables.get(&record.table).and_then(|h| h.activations.last()).ok_or_else(|| data("no activation"))?;
            Ok(RegistryChange::Activate(ActivationRow {
                seq: a.seq as i64,
                name: record.table.clone(),
                version: a.version.clone(),
                active_from: a.from.clone(),
                activated_by: record.actor.clone(),
                activated_at: record.at.clone(),
                undone_seq: 0,
            }))
        }
        "rollback" => {
            let kept = &next.tables.get(&record.table).ok_or_else(|| data("no table"))?.activations;
            let undone = before
                .tables
                .get(&record.table)
                .and_then(|h| h.activations.iter().find(|a| !kept.contains(a)))
                .ok_or_else(|| data("no undone activation"))?;
            Ok(RegistryChange::Rollback { activation_seq: undone.seq as i64, undone_seq: record.seq as i64 })
        }
        other => Err(data(&format!("unknown action {other}"))),
    }
}

/// The registry from its stored rows (versions in upload order, activations still in force).
fn restore(rows: &crate::store::RegistryRows) -> anyhow::Result<TableRegistry> {
    let mut versions = Vec::with_capacity(rows.versions.len());
    for v in &rows.versions {
        let table = MappingTable::parse_csv(&v.content_csv, &CheckOptions::default())
            .map_err(|report| anyhow::anyhow!("stored mapping table {} version {} is unreadable: {report}", v.name, v.version))?;
        versions.push(table);
    }
    let activations = rows
        .activations
        .iter()
        .filter(|a| a.undone_seq == 0)
        .map(|a| (a.name.clone(), Activation { version: a.version.clone(), from: a.active_from.clone(), seq: a.seq as u64 }))
        .collect();
    let audit = rows.audit.iter().map(audit_record).collect();
    Ok(TableRegistry::restore(versions, activations, audit)?)
}

fn audit_record(a: &AuditRow) -> AuditRecord {
    AuditRecord {
        seq: a.seq as u64,
        at: a.recorded_at.clone(),
        actor: a.actor.clone(),
        action: a.action.clone(),
        table: a.name.clone(),
        version: Some(a.version.clone()).filter(|v| !v.is_empty()),
        detail: a.detail.clone(),
    }
}

fn audit_row(r: &AuditRecord) -> AuditRow {
    AuditRow {
        seq: r.seq as i64,
        recorded_at: r.at.clone(),
        actor: r.actor.clone(),
        action: r.action.clone(),
        name: r.table.clone(),
        version: r.version.clone().unwrap_or_default(),
        detail: r.detail.clone(),
        event_stored: false,
    }
}
