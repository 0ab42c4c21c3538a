//! Every official JP-CLINS example validates against its declared profiles without errors,
//! except the intentionally invalid ones, which fail (or warn) for their intended reason.

mod common;

use fhir_profiles::{ValidationOptions, Validator, has_errors};
use serde_json::Value;

const INVALID: &[(&str, &str)] = &[
    ("MedicationRequest-ErrorExample-JP-MedReq-ExtEye-Total1.json", "needs-anyOfStandardCode-medication"),
    ("Observation-ErrorExample-ObsLabo-eGFR.json", "needs-localCode-observation-laboresult"),
];
/// Valid structurally, but its required-binding code cannot be checked (terminology not available).
const WARN_ONLY: &str = "MedicationRequest-ErrorExample-JP-MedReq-PO-SID-28days.json";

fn examples() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(common::shared().join("examples/jp-clins"))
        .expect("examples dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

#[test]
fn all_examples_validate_as_expected() {
    let validator = Validator::new(common::store());
    let mut failures = Vec::new();
    let files = examples();
    assert!(files.len() >= 60, "expected the JP-CLINS examples, found {}", files.len());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        assert!(v.pointer("/meta/profile/0").is_some() || v["resourceType"] == "Bundle", "{name} declares no profile");
        let issues = validator.validate(&v, &ValidationOptions::default());
        if let Some((_, rule)) = INVALID.iter().find(|(n, _)| *n == name) {
            let hit = issues.iter().any(|i| i.severity.is_error() && i.rule.as_deref() == Some(*rule));
            if !hit {
                failures.push(format!("{name}: expected an error from rule {rule}, got:\n{}", common::show(&issues)));
            }
            let others: Vec<_> = common::errors(&issues).into_iter().filter(|i| i.rule.as_deref() != Some(*rule)).collect();
            if !others.is_empty() {
                failures.push(format!("{name}: unexpected extra errors:\n{}", others.iter().map(|i| format!("  {} @ {}\n", i.message, i.expression)).collect::<String>()));
            }
        } else if name == WARN_ONLY {
            if has_errors(&issues) {
                failures.push(format!("{name}: must not be rejected (terminology unavailable):\n{}", common::show(&issues)));
            }
            let w = issues.iter().any(|i| i.code == "code-invalid" && i.message.contains("2124030F2ZZZ") && i.message.contains("could not be checked"));
            if !w {
                failures.push(format!("{name}: expected a warning that 2124030F2ZZZ could not be checked:\n{}", common::show(&issues)));
            }
        } else if has_errors(&issues) {
            failures.push(format!("{name}: false rejection:\n{}", common::show(&common::errors(&issues).into_iter().cloned().collect::<Vec<_>>())));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn load(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(common::shared().join("examples/jp-clins").join(name)).unwrap()).unwrap()
}

fn rules_fired(v: &Value) -> Vec<String> {
    let validator = Validator::new(common::store());
    validator.validate(v, &ValidationOptions::default()).into_iter().filter(|i| i.severity.is_error()).map(|i| i.rule.unwrap_or(i.message)).collect()
}

#[test]
fn clins_bundle_rules() {
    let base = load("Bundle-Bundle-CLINS-Observations-Example-01.json");
    assert!(rules_fired(&base).is_empty());

    // versioned entry profile is accepted (the packaged validEntryProfile-* would reject it)
    let mut b = base.clone();
    b["entry"][1]["resource"]["meta"]["profile"][0] = Value::from("http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Observation_LabResult_eCS|1");
    assert!(rules_fired(&b).is_empty(), "{:?}", rules_fired(&b));

    // wrong entry profile declared
    let mut b = base.clone();
    b["entry"][1]["resource"]["meta"]["profile"][0] = Value::from("http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Observation_Common_eCS");
    assert!(rules_fired(&b).iter().any(|r| r == "gw-validEntryProfile-ObservationLabResult"), "{:?}", rules_fired(&b));

    // Patient-only bundle: the packaged R02143 rejects it (deletion is $withdraw)
    let mut b = base.clone();
    b["entry"] = Value::Array(vec![base["entry"][0].clone()]);
    let fired = rules_fired(&b);
    assert!(fired.iter().any(|r| r.contains("mustHaveOneMore")), "{fired:?}");

    // R9017O: Observation without performer
    let mut b = base.clone();
    b["entry"][2]["resource"].as_object_mut().unwrap().remove("performer");
    assert!(rules_fired(&b).iter().any(|r| r == "gw-R9017O-observation-needs-performer"), "{:?}", rules_fired(&b));

    // R9016O: Observation without encounter
    let mut b = base.clone();
    b["entry"][2]["resource"].as_object_mut().unwrap().remove("encounter");
    assert!(rules_fired(&b).iter().any(|r| r == "gw-R9016O-observation-needs-encounter"), "{:?}", rules_fired(&b));

    // mixing resource types in one CLINS Bundle
    let mut b = base.clone();
    let cond = load("Condition-Example-JP-Condition-eCS-01.json");
    b["entry"].as_array_mut().unwrap().push(serde_json::json!({ "fullUrl": "urn:uuid:5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", "resource": cond }));
    assert!(rules_fired(&b).iter().any(|r| r == "gw-R0214-single-resource-type"), "{:?}", rules_fired(&b));

    // Patient not first: ordered closed slicing and R0211
    let mut b = base.clone();
    b["entry"].as_array_mut().unwrap().swap(0, 1);
    let fired = rules_fired(&b);
    assert!(fired.iter().any(|r| r == "first-bundle-entry-is-Patient"), "{fired:?}");
    assert!(fired.iter().any(|r| r.contains("out of order")), "{fired:?}");

    // CLINS references: only #id or the Patient entry's fullUrl; no logical references
    let mut b = base.clone();
    b["entry"][2]["resource"]["subject"] = serde_json::json!({ "reference": b["entry"][1]["fullUrl"].clone() });
    assert!(rules_fired(&b).iter().any(|r| r == "gw-clins-references"), "{:?}", rules_fired(&b));
    let mut b = base.clone();
    b["entry"][2]["resource"]["subject"] = serde_json::json!({ "identifier": { "system": "urn:x", "value": "1" } });
    assert!(rules_fired(&b).iter().any(|r| r == "gw-clins-references"), "{:?}", rules_fired(&b));

    // Bundle-ID format
    let mut b = base.clone();
    b["identifier"]["value"] = Value::from("X1318814790Y^2024^abc");
    assert!(rules_fired(&b).iter().any(|r| r == "valid-value-bundleIdenfifier"), "{:?}", rules_fired(&b));

    // unanchored institution number in the extension
    let mut b = base.clone();
    let ext = b["entry"][1]["resource"]["extension"].as_array_mut().unwrap();
    for e in ext.iter_mut() {
        if e["url"] == "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber" {
            e["valueIdentifier"]["value"] = Value::from("X1318814790Y");
        }
    }
    let fired = rules_fired(&b);
    assert!(fired.iter().any(|r| r == "gw-valid-value-institutionNumber"), "{fired:?}");
}

#[test]
fn document_bundle_identifier_rule() {
    let mut b = load("Bundle-Bundle-CLINS-Referral-Example-01.json");
    assert!(rules_fired(&b).is_empty(), "{:?}", rules_fired(&b));
    b["identifier"]["value"] = Value::from("1318814790-2024-0123");
    assert!(rules_fired(&b).iter().any(|r| r == "gw-R2152-bundle-identifier"), "{:?}", rules_fired(&b));
}

#[test]
fn errors_point_at_elements() {
    let mut b = load("Bundle-Bundle-CLINS-Observations-Example-01.json");
    b["entry"][3]["resource"]["code"]["coding"][0]["system"] = Value::from(" bad uri");
    let issues = Validator::new(common::store()).validate(&b, &ValidationOptions::default());
    assert!(issues.iter().any(|i| i.severity.is_error() && i.expression.starts_with("Bundle.entry[3].resource.code.coding[0]")), "{}", common::show(&issues));
}

#[test]
fn profile_with_and_without_version() {
    let v = load("Patient-Example-JP-Patient-eCS-MAKINO.json");
    let validator = Validator::new(common::store());
    for p in ["http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS", "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS|1"] {
        let issues = validator.validate(&v, &ValidationOptions::with_profile(p));
        assert!(!has_errors(&issues), "{p}: {}", common::show(&issues));
    }
    // one StructureDefinition, compiled once whichever way it is named (so a resource is checked
    // against it once when its meta.profile carries the version and a slice names it without)
    let store = common::store();
    let url = "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Observation_LabResult_eCS";
    let versioned = store.profile(&format!("{url}|1")).expect("the profile, by major version");
    assert!(std::sync::Arc::ptr_eq(&versioned, &store.profile(url).expect("the profile")));
    assert!(store.profile(&format!("{url}|2")).is_none(), "no version 2 is loaded");
    // an unknown profile explicitly requested is an error; in meta.profile a warning
    let issues = validator.validate(&v, &ValidationOptions::with_profile("http://example.org/nope"));
    assert!(has_errors(&issues));
    let mut v2 = v.clone();
    v2["meta"]["profile"] = serde_json::json!(["http://example.org/nope"]);
    let issues = validator.validate(&v2, &ValidationOptions::default());
    assert!(!has_errors(&issues) && issues.iter().any(|i| i.code == "not-found"), "{}", common::show(&issues));
}
