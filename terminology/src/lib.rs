//! Terminology service and mapping tables for the JP-CLINS gateway.
//!
//! * [`TerminologyService`]: CodeSystems, ValueSets and ConceptMaps from FHIR packages (through
//!   [`fhir_profiles::PackageStore`] and the package files), from resource directories such as
//!   `shared/terminology/`, and from the database ([`TerminologyService::add_resource`]); an
//!   immutable [`Snapshot`] swapped as a whole. Operations `$lookup`, `$validate-code`, `$expand`,
//!   `$translate` return FHIR JSON ([`ops`]). It implements [`fhir_profiles::Terminology`] so the
//!   profile validator's binding checks use it.
//! * [`table`]: the mapping-table CSV format (metadata header + rows), its strict checker,
//!   ConceptMap conversion and diff.
//! * [`Mapper`]: adds international codings beside the originals on ingestion and reports
//!   unmapped codes ([`UnmappedQueue`]).
//! * [`TableRegistry`]: versions, activation by date, rollback, audit — as data.
//!
//! ```no_run
//! use std::sync::Arc;
//! use terminology::{TerminologyService, TableRegistry, load_tables_dir, CheckOptions};
//! let store = fhir_profiles::PackageStore::load(&["../shared/fhir-packages".into()]).unwrap();
//! let term = TerminologyService::load(Some(store.clone()), &["../shared/fhir-packages".into()], &["../shared/terminology".into()]).unwrap();
//! let validator = fhir_profiles::Validator::with_terminology(store, term.clone());
//! let snap = term.snapshot();
//! let known = |s: &str| snap.knows_system(s);
//! let tables = load_tables_dir("mapping-tables".as_ref(), &CheckOptions { known_system: Some(&known), ..Default::default() }).unwrap();
//! let mut reg = TableRegistry::new();
//! for t in tables { let (n, v) = (t.meta.name.clone(), t.meta.version.clone()); let d = t.meta.effective_date.clone(); reg.upload(t, "init").unwrap(); reg.activate(&n, &v, &d, "init").unwrap(); }
//! term.install_tables(&reg.all_versions(), &reg.active_at("2026-11-22"));
//! let mapper = reg.mapper_at("2026-11-22", snap.systems());
//! let mut obs: serde_json::Value = serde_json::json!({"resourceType": "Observation"});
//! let report = mapper.map_resource(&mut obs, "1318814790");
//! # let _ = (validator, report);
//! ```

use std::path::{Path, PathBuf};

pub mod codesystem;
pub mod conceptmap;
pub mod mapper;
pub mod ops;
pub mod registry;
pub mod service;
pub mod systems;
pub mod table;
pub mod valueset;

pub use conceptmap::Equivalence;
pub use mapper::{EXT_MAPPED_BY, EXT_MAPPED_CODING, EXT_MAPPED_EQUIVALENCE, MappedCode, Mapper, MappingReport, TargetRef, Targets, RemapProgress, RemapStatus, UnmappedEntry, UnmappedQueue, strip_mapped};
pub use ops::{OpError, TranslateRequest, pairs_from_parameters};
pub use registry::{AuditRecord, RegistryError, TableRegistry, UploadOutcome};
pub use service::{Snapshot, TerminologyService};
pub use systems::Systems;
pub use table::{CheckOptions, MappingTable, Problem, Row, TableDiff, TableMeta, TableReport, diff};

/// Hash map with a fast non-cryptographic hasher (keys are codes and URIs, not attacker-chosen
/// at a scale that matters; foldhash is seeded per process).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// Hash set with the same hasher.
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Loading errors.
#[derive(Debug, thiserror::Error)]
pub enum TermError {
    #[error("I/O error on {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("invalid JSON in {0}: {1}")]
    Json(PathBuf, serde_json::Error),
    #[error("invalid resource: {0}")]
    Resource(String),
}

/// Load every `*.csv` mapping table under `dir` (recursively, e.g. `local/`). Any refused table
/// fails the load; the error lists each file with its report.
pub fn load_tables_dir(dir: &Path, opts: &CheckOptions) -> Result<Vec<MappingTable>, Vec<(PathBuf, TableReport)>> {
    fn collect(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    collect(&p, out);
                } else if p.extension().is_some_and(|x| x == "csv") {
                    out.push(p);
                }
            }
        }
    }
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => match MappingTable::parse_csv(&text, opts) {
                Ok(t) => ok.push(t),
                Err(r) => bad.push((f, r)),
            },
            Err(e) => bad.push((f, TableReport { table: None, problems: vec![Problem { line: 0, row: None, field: None, message: format!("cannot read: {e}") }] })),
        }
    }
    if bad.is_empty() { Ok(ok) } else { Err(bad) }
}
