#![allow(dead_code)]
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use terminology::TerminologyService;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn shared() -> PathBuf {
    let p = root().join("../shared");
    if p.exists() { p } else { root().join("shared") }
}

/// One service per test binary: packages + shared/terminology.
pub fn service() -> Arc<TerminologyService> {
    static S: OnceLock<Arc<TerminologyService>> = OnceLock::new();
    S.get_or_init(|| {
        let pk = shared().join("fhir-packages");
        let store = fhir_profiles::PackageStore::load_with_rules(std::slice::from_ref(&pk), None).expect("packages");
        TerminologyService::load(Some(store), &[pk], &[shared().join("terminology")]).expect("service")
    })
    .clone()
}

/// The value of an out parameter of a Parameters resource.
pub fn param<'a>(p: &'a Value, name: &str) -> Option<&'a Value> {
    p["parameter"].as_array()?.iter().find(|x| x["name"] == name).and_then(|x| x.as_object()?.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v))
}

pub fn params<'a>(p: &'a Value, name: &str) -> Vec<&'a Value> {
    p["parameter"].as_array().map(|a| a.iter().filter(|x| x["name"] == name).collect()).unwrap_or_default()
}

pub fn part<'a>(p: &'a Value, name: &str) -> Option<&'a Value> {
    p["part"].as_array()?.iter().find(|x| x["name"] == name).and_then(|x| x.as_object()?.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v))
}
