//! Start-up cost: load the three packages (plus terminology) and be ready to validate; prints the
//! elapsed time and the resident memory (VmRSS / VmHWM from /proc/self/status).
//!
//! `cargo run --release -p fhir-profiles --example startup`

use std::path::PathBuf;
use std::time::Instant;

use fhir_profiles::{PackageStore, ValidationOptions, Validator};

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let t = Instant::now();
    let store = PackageStore::load(&[shared.join("fhir-packages"), shared.join("terminology")]).expect("load");
    let loaded = t.elapsed();
    println!("packages: {}", store.packages().iter().map(|p| format!("{}#{}", p.name, p.version)).collect::<Vec<_>>().join(", "));
    println!("load (index + FHIRPath model + gateway rules): {loaded:?}");
    println!("VmRSS after load: {}  (peak VmHWM: {})", status("VmRSS:"), status("VmHWM:"));
    // first validation of the referral document compiles the profiles it needs
    let v = Validator::new(store);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(shared.join("examples/jp-clins/Bundle-Bundle-CLINS-Referral-Example-01.json")).unwrap()).unwrap();
    let t = Instant::now();
    let issues = v.validate(&doc, &ValidationOptions::default());
    println!("first referral validation (compiles profiles): {:?}, {} issues", t.elapsed(), issues.len());
    println!("VmRSS after first validation: {}  (peak VmHWM: {})", status("VmRSS:"), status("VmHWM:"));
}
