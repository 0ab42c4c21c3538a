//! Versions and activation of mapping tables, as plain data (the gateway persists it as JSON).
//!
//! Each table (by name) has uploaded versions (immutable once uploaded) and a list of activations
//! `(version, from date)`. The version active at a date is the one of the latest activation whose
//! date is on or before it (ties: the later action). `rollback` undoes the latest activation.
//! Every change appends an [`AuditRecord`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::mapper::Mapper;
use crate::systems::Systems;
use crate::table::{MappingTable, TableDiff, diff};

/// One activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub version: String,
    /// `YYYY-MM-DD`: active from this date on.
    pub from: String,
    /// Order of the action (global, increasing).
    pub seq: u64,
}

/// History of one table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableHistory {
    pub versions: Vec<Arc<MappingTable>>,
    pub activations: Vec<Activation>,
}

/// One audited change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    /// RFC 3339 time of the change.
    pub at: String,
    pub actor: String,
    /// `upload`, `activate`, `rollback`.
    pub action: String,
    pub table: String,
    pub version: Option<String>,
    pub detail: String,
}

/// Registry errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown mapping table '{0}'")]
    UnknownTable(String),
    #[error("mapping table '{0}' has no version '{1}'")]
    UnknownVersion(String, String),
    #[error("mapping table '{0}' version '{1}' already exists with different content; upload it as a new version")]
    VersionExists(String, String),
    #[error("invalid date '{0}' (expected YYYY-MM-DD)")]
    InvalidDate(String),
    #[error("mapping table '{0}' has no activation to roll back")]
    NothingToRollBack(String),
    #[error("invalid registry data: {0}")]
    Data(String),
}

/// Result of an upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadOutcome {
    pub name: String,
    pub version: String,
    /// False when the same version with identical content was already there.
    pub new: bool,
    /// Version compared against (the currently active one, else the latest uploaded), if any.
    pub compared_with: Option<String>,
    pub diff: Option<TableDiff>,
}

/// The registry of mapping tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableRegistry {
    pub tables: BTreeMap<String, TableHistory>,
    pub audit: Vec<AuditRecord>,
    next_seq: u64,
}

fn check_date(d: &str) -> Result<(), RegistryError> {
    if d.len() == 10 && chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok() { Ok(()) } else { Err(RegistryError::InvalidDate(d.to_string())) }
}

/// Japan Standard Time is UTC+9 all year (no daylight saving). Effective and activation dates
/// are Japanese calendar dates: a table activated "from 2026-12-01" applies from midnight in Japan.
const JST_OFFSET_SECONDS: i64 = 9 * 3600;

/// Today's date in Japan, `YYYY-MM-DD`: the date activations are compared with.
pub fn today() -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(JST_OFFSET_SECONDS)).format("%Y-%m-%d").to_string()
}

/// Days since 1970-01-01 in Japan: changes exactly when [`today`] does.
pub fn day_number() -> i64 {
    (chrono::Utc::now().timestamp() + JST_OFFSET_SECONDS).div_euclid(86_400)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl TableRegistry {
    pub fn new() -> TableRegistry {
        TableRegistry::default()
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn audit(&mut self, actor: &str, action: &str, table: &str, version: Option<&str>, detail: String) {
        let seq = self.seq();
        self.audit.push(AuditRecord { seq, at: now(), actor: actor.to_string(), action: action.to_string(), table: table.to_string(), version: version.map(str::to_string), detail });
    }

    /// Add a checked table version (not active until [`activate`](Self::activate)d). Returns the
    /// difference from the current version (active today, else the latest uploaded).
    pub fn upload(&mut self, table: MappingTable, actor: &str) -> Result<UploadOutcome, RegistryError> {
        let name = table.meta.name.clone();
        let version = table.meta.version.clone();
        let current = self.version_active_at(&name, &today()).or_else(|| self.tables.get(&name).and_then(|h| h.versions.last().cloned()));
        if let Some(h) = self.tables.get(&name)
            && let Some(existing) = h.versions.iter().find(|v| v.meta.version == version) {
                if existing.meta == table.meta && existing.rows.iter().zip(&table.rows).all(|(a, b)| a.source_code == b.source_code && a.target_code == b.target_code && a.equivalence == b.equivalence && a.comment == b.comment && a.source_display == b.source_display && a.target_display == b.target_display) && existing.rows.len() == table.rows.len() {
                    return Ok(UploadOutcome { name, version, new: false, compared_with: None, diff: None });
                }
                return Err(RegistryError::VersionExists(name, version));
            }
        let d = current.as_ref().map(|c| diff(c, &table));
        let detail = match &d {
            Some(d) => format!("{} rows; vs {}: +{} -{} ~{}", table.rows.len(), current.as_ref().unwrap().meta.version, d.added.len(), d.removed.len(), d.changed.len()),
            None => format!("{} rows; first version", table.rows.len()),
        };
        self.tables.entry(name.clone()).or_default().versions.push(Arc::new(table));
        self.audit(actor, "upload", &name, Some(&version), detail);
        Ok(UploadOutcome { name, version, new: true, compared_with: current.map(|c| c.meta.version.clone()), diff: d })
    }

    /// Make `version` of `name` active from `date` (YYYY-MM-DD) on.
    pub fn activate(&mut self, name: &str, version: &str, date: &str, actor: &str) -> Result<(), RegistryError> {
        check_date(date)?;
        let h = self.tables.get(name).ok_or_else(|| RegistryError::UnknownTable(name.to_string()))?;
        if !h.versions.iter().any(|v| v.meta.version == version) {
            return Err(RegistryError::UnknownVersion(name.to_string(), version.to_string()));
        }
        let seq = self.seq();
        self.tables.get_mut(name).unwrap().activations.push(Activation { version: version.to_string(), from: date.to_string(), seq });
        self.audit(actor, "activate", name, Some(version), format!("active from {date}"));
        Ok(())
    }

    /// Undo the latest activation of `name`. Returns the version active today afterwards (if any).
    pub fn rollback(&mut self, name: &str, actor: &str) -> Result<Option<String>, RegistryError> {
        let h = self.tables.get_mut(name).ok_or_else(|| RegistryError::UnknownTable(name.to_string()))?;
        let Some(pos) = h.activations.iter().enumerate().max_by_key(|(_, a)| a.seq).map(|(i, _)| i) else {
            return Err(RegistryError::NothingToRollBack(name.to_string()));
        };
        let undone = h.activations.remove(pos);
        let now_active = self.version_active_at(name, &today()).map(|t| t.meta.version.clone());
        self.audit(actor, "rollback", name, Some(&undone.version), format!("undid activation of {} from {}; active today: {}", undone.version, undone.from, now_active.as_deref().unwrap_or("none")));
        Ok(now_active)
    }

    /// The version of `name` active at `date`.
    pub fn version_active_at(&self, name: &str, date: &str) -> Option<Arc<MappingTable>> {
        let h = self.tables.get(name)?;
        let a = h.activations.iter().filter(|a| a.from.as_str() <= date).max_by(|x, y| (x.from.as_str(), x.seq).cmp(&(y.from.as_str(), y.seq)))?;
        h.versions.iter().find(|v| v.meta.version == a.version).cloned()
    }

    /// Every table's version active at `date` (tables without one are left out). Institution-scoped
    /// tables first, so that they win where a global table maps the same system.
    pub fn active_at(&self, date: &str) -> Vec<Arc<MappingTable>> {
        let mut v: Vec<Arc<MappingTable>> = self.tables.keys().filter_map(|n| self.version_active_at(n, date)).collect();
        v.sort_by_key(|t| t.meta.institution.is_none());
        v
    }

    /// Every uploaded version of every table.
    pub fn all_versions(&self) -> Vec<Arc<MappingTable>> {
        self.tables.values().flat_map(|h| h.versions.iter().cloned()).collect()
    }

    /// A version of a table.
    pub fn get(&self, name: &str, version: &str) -> Option<Arc<MappingTable>> {
        self.tables.get(name)?.versions.iter().find(|v| v.meta.version == version).cloned()
    }

    /// Difference between the version active at `date` (else the latest other version) and `version`.
    pub fn diff_with_current(&self, name: &str, version: &str, date: &str) -> Result<Option<TableDiff>, RegistryError> {
        let new = self.get(name, version).ok_or_else(|| RegistryError::UnknownVersion(name.to_string(), version.to_string()))?;
        let cur = self.version_active_at(name, date).or_else(|| self.tables.get(name).and_then(|h| h.versions.iter().rev().find(|v| v.meta.version != version).cloned()));
        Ok(cur.map(|c| diff(&c, &new)))
    }

    /// The mapper for the tables active at `date`.
    pub fn mapper_at(&self, date: &str, systems: &Systems) -> Mapper {
        Mapper::new(&self.active_at(date), systems)
    }

    /// Rebuild a registry from persisted rows: the versions in upload order, the activations in
    /// force (with their sequence numbers) and the audit trail. Later actions are numbered after
    /// the highest sequence number seen.
    pub fn restore(versions: Vec<MappingTable>, activations: Vec<(String, Activation)>, audit: Vec<AuditRecord>) -> Result<TableRegistry, RegistryError> {
        let mut reg = TableRegistry::new();
        for t in versions {
            reg.tables.entry(t.meta.name.clone()).or_default().versions.push(Arc::new(t));
        }
        for (name, a) in activations {
            let h = reg.tables.get_mut(&name).ok_or_else(|| RegistryError::Data(format!("activation {} of unknown table '{name}'", a.seq)))?;
            if !h.versions.iter().any(|v| v.meta.version == a.version) {
                return Err(RegistryError::Data(format!("activation {} of unknown version '{}' of '{name}'", a.seq, a.version)));
            }
            reg.next_seq = reg.next_seq.max(a.seq);
            h.activations.push(a);
        }
        reg.next_seq = reg.next_seq.max(audit.iter().map(|a| a.seq).max().unwrap_or(0));
        reg.audit = audit;
        Ok(reg)
    }

    /// Serialize (tables, activations, audit) as JSON for persistence.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("registry serializes")
    }

    /// Restore from [`to_json`](Self::to_json).
    pub fn from_json(v: serde_json::Value) -> Result<TableRegistry, RegistryError> {
        serde_json::from_value(v).map_err(|e| RegistryError::Data(e.to_string()))
    }
}
