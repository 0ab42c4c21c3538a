//! Runs the HL7 validator test cases (R4 JSON) in shared/conformance/fhir-test-cases and compares
//! our verdict (valid / invalid) with the reference validator's.

mod common;

use std::path::Path;

use fhir_profiles::{ValidationOptions, Validator, has_errors, parse_json};
use serde_json::Value;

struct Outcome {
    name: String,
    step: &'static str,
    expected: bool,
    ours: Option<bool>,
    our_errors: Vec<String>,
    expected_messages: Vec<String>,
    skipped: Option<String>,
}

fn load_supporting(store: &fhir_profiles::PackageStore, dir: &Path, files: &[Value]) -> Result<(), String> {
    for f in files.iter().filter_map(Value::as_str) {
        let p = dir.join(f);
        // XML supporting files (StructureDefinitions) are converted with fhir_profiles::parse_xml
        store.add_file_any(&p).map_err(|e| format!("{f}: {e}"))?;
    }
    Ok(())
}

#[test]
fn reference_validator_agreement() {
    let root = common::shared().join("conformance/fhir-test-cases");
    let manifest: Value = serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    let dir = root.join("files");
    let base = common::store();
    let mut outcomes = Vec::new();
    for case in manifest["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap().to_string();
        let file = case["file"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let store = base.child();
        let expected = case["expect"]["valid"].as_bool().unwrap();
        let msgs = |e: &Value| e["messages"].as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
        let supporting = case["supporting"].as_array().cloned().unwrap_or_default();
        let mut o = Outcome { name: name.clone(), step: "base", expected, ours: None, our_errors: vec![], expected_messages: msgs(&case["expect"]), skipped: None };
        match load_supporting(&store, &dir, &supporting) {
            Err(e) => o.skipped = Some(e),
            Ok(()) => {
                let v = Validator::new(store.clone());
                let issues = v.validate_json(&bytes, &ValidationOptions::default());
                o.ours = Some(!has_errors(&issues));
                o.our_errors = issues.iter().filter(|i| i.severity.is_error()).map(|i| format!("{} @ {}", i.message, i.expression)).collect();
            }
        }
        outcomes.push(o);
        if let Some(p) = case.get("profile") {
            let pexp = p["expect"]["valid"].as_bool().unwrap();
            let mut o = Outcome { name: name.clone(), step: "profile", expected: pexp, ours: None, our_errors: vec![], expected_messages: msgs(&p["expect"]), skipped: None };
            let source = p["source"].as_str().unwrap();
            let mut files: Vec<Value> = vec![Value::from(source)];
            files.extend(p["supporting"].as_array().cloned().unwrap_or_default());
            let pstore = store.child();
            match load_supporting(&pstore, &dir, &files) {
                Err(e) => o.skipped = Some(e),
                Ok(()) => {
                    let sd: Value = if source.ends_with(".xml") {
                        fhir_profiles::parse_xml(&pstore, &std::fs::read_to_string(dir.join(source)).unwrap()).unwrap_or_default()
                    } else {
                        serde_json::from_slice(&std::fs::read(dir.join(source)).unwrap()).unwrap()
                    };
                    let url = sd["url"].as_str().unwrap_or("").to_string();
                    let v = Validator::new(pstore);
                    let issues = match parse_json(&bytes) {
                        Ok(inst) => v.validate(&inst, &ValidationOptions::with_profile(url)),
                        Err(i) => vec![i],
                    };
                    o.ours = Some(!has_errors(&issues));
                    o.our_errors = issues.iter().filter(|i| i.severity.is_error()).map(|i| format!("{} @ {}", i.message, i.expression)).collect();
                }
            }
            outcomes.push(o);
        }
    }
    let total = outcomes.len();
    let skipped: Vec<&Outcome> = outcomes.iter().filter(|o| o.skipped.is_some()).collect();
    let checked: Vec<&Outcome> = outcomes.iter().filter(|o| o.ours.is_some()).collect();
    let agree = checked.iter().filter(|o| o.ours == Some(o.expected)).count();
    let rate = agree as f64 / checked.len().max(1) as f64;
    let rate_all = agree as f64 / total.max(1) as f64;
    println!("== fhir-test-cases: {total} checks (base + profile steps), {} run, {} skipped", checked.len(), skipped.len());
    println!("== agreement with the reference validator: {agree}/{} = {:.1}% of run checks ({:.1}% of all checks, skipped counted as disagreement)", checked.len(), rate * 100.0, rate_all * 100.0);
    for o in &skipped {
        println!("SKIPPED {} [{}]: {}", o.name, o.step, o.skipped.as_deref().unwrap_or(""));
    }
    for o in checked.iter().filter(|o| o.ours != Some(o.expected)) {
        println!("DISAGREE {} [{}]: reference says {}, we say {}", o.name, o.step, verdict(o.expected), verdict(o.ours.unwrap()));
        for m in &o.expected_messages {
            println!("    reference: {m}");
        }
        for m in &o.our_errors {
            println!("    ours:      {m}");
        }
    }
    assert!(rate >= 0.90, "agreement {:.1}% is below 90%", rate * 100.0);
}

fn verdict(v: bool) -> &'static str {
    if v { "valid" } else { "invalid" }
}
