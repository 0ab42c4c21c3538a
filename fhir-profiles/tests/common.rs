#![allow(dead_code)]
//! Shared test helpers: one store per test binary.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use fhir_profiles::{Issue, PackageStore, Severity};

pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// The three packages plus the terminology folder, with our definitions.
pub fn store() -> Arc<PackageStore> {
    static STORE: OnceLock<Arc<PackageStore>> = OnceLock::new();
    STORE.get_or_init(|| PackageStore::load(&[shared().join("fhir-packages"), shared().join("terminology")]).expect("load packages")).clone()
}

pub fn errors(issues: &[Issue]) -> Vec<&Issue> {
    issues.iter().filter(|i| i.severity.is_error()).collect()
}

pub fn show(issues: &[Issue]) -> String {
    issues.iter().map(|i| format!("  {} [{}] {} @ {}\n", i.severity.as_str(), i.code, i.message, i.expression)).collect()
}

pub fn warnings(issues: &[Issue]) -> Vec<&Issue> {
    issues.iter().filter(|i| i.severity == Severity::Warning).collect()
}
