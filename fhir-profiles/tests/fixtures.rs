//! The project's own fixtures (../fixtures, see its README): every `accept` file validates without
//! error (eCheckup ones with the eCheckup package set); `reject` files are reported, and those whose
//! rule is a validation rule must fail. Submission-policy rejects (not a Bundle, which profile a
//! collection must declare) belong to the gateway and are listed, not asserted.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use fhir_profiles::{PackageStore, ValidationOptions, Validator, has_errors};
use serde_json::Value;

/// Rejects decided outside the validator (gateway policy) or where this crate follows a different,
/// documented decision (definitions/README.md).
const NOT_VALIDATOR: &[&str] = &["invalid/not-a-bundle.json", "invalid/clins-bundle-profile-not-clins.json"];

#[test]
fn project_fixtures() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let Ok(bytes) = std::fs::read(dir.join("manifest.json")) else {
        eprintln!("no fixtures/manifest.json: skipped");
        return;
    };
    let manifest: Value = serde_json::from_slice(&bytes).unwrap();
    let clins = Validator::new(common::store());
    let echeckup: Arc<PackageStore> = PackageStore::load(&[common::shared().join("fhir-packages"), common::shared().join("terminology"), common::shared().join("fhir-packages-echeckup")]).unwrap();
    let echeckup = Validator::new(echeckup);
    let mut failures = Vec::new();
    let (mut n, mut caught, mut rejects) = (0, 0, 0);
    for f in manifest["fixtures"].as_array().unwrap() {
        let file = f["file"].as_str().unwrap();
        let Ok(bytes) = std::fs::read(dir.join(file)) else { continue };
        n += 1;
        let v = if f["kind"].as_str().unwrap_or("").contains("checkup") { &echeckup } else { &clins };
        let issues = v.validate_json(&bytes, &ValidationOptions::default());
        match f["expect"].as_str() {
            Some("accept") => {
                if has_errors(&issues) {
                    failures.push(format!("{file}: must be accepted:\n{}", common::show(&common::errors(&issues).into_iter().cloned().collect::<Vec<_>>())));
                }
            }
            _ => {
                if NOT_VALIDATOR.contains(&file) {
                    println!("POLICY {file}: {}", f["rule"].as_str().unwrap_or(""));
                    continue;
                }
                rejects += 1;
                if has_errors(&issues) {
                    caught += 1;
                } else {
                    failures.push(format!("{file}: must be rejected ({})", f["rule"].as_str().unwrap_or("")));
                }
            }
        }
    }
    println!("== fixtures: {n} files, {caught}/{rejects} validator rejects caught");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
