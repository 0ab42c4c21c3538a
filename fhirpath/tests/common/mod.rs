//! Shared test helpers: the FHIR R4 model built from the core package.

use fhirpath::Model;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// Load the StructureDefinitions from the R4 core package (kind != logical).
pub fn load_core_sds() -> Vec<Value> {
    let path = shared().join("fhir-packages/hl7.fhir.r4.core-4.0.1.tgz");
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = Vec::new();
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let p = entry.path().unwrap().to_string_lossy().to_string();
        let Some(name) = p.strip_prefix("package/") else { continue };
        if !name.starts_with("StructureDefinition-") || !name.ends_with(".json") {
            continue;
        }
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        if v.get("kind").and_then(Value::as_str) == Some("logical") {
            continue;
        }
        out.push(v);
    }
    out
}

pub fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| {
        let sds = load_core_sds();
        let t = std::time::Instant::now();
        let m = Model::from_structure_definitions(sds.iter());
        eprintln!("model built from {} SDs in {:?}", sds.len(), t.elapsed());
        m
    })
}

