//! Validation interfaces: `gateway validate` and `$validate`.

use std::process::Command;

use serde_json::{Value, json};

use crate::{
    both_engines,
    harness::{Server, repo_root, shared},
};

fn examples(name: &str) -> String {
    shared().join("examples/jp-clins").join(name).display().to_string()
}

fn cli(args: &[&str]) -> (i32, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("validate")
        .args(args)
        .current_dir(repo_root())
        .env("GATEWAY_PACKAGES", crate::harness::packages())
        .output()
        .expect("run gateway validate");
    let outcomes = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (out.status.code().unwrap_or(-1), outcomes)
}

fn errors(outcome: &Value) -> Vec<&Value> {
    outcome["issue"].as_array().unwrap().iter().filter(|i| i["severity"] == "error" || i["severity"] == "fatal").collect()
}

#[test]
fn cli_prints_one_outcome_per_file_and_exits_by_verdict() {
    let good = examples("Bundle-Bundle-CLINS-Referral-Example-01.json");
    let bad = examples("MedicationRequest-ErrorExample-JP-MedReq-ExtEye-Total1.json");
    let (code, outcomes) = cli(&[&good]);
    assert_eq!(code, 0, "{outcomes:?}");
    assert_eq!(outcomes.len(), 1);
    assert!(errors(&outcomes[0]).is_empty(), "{}", outcomes[0]);

    let (code, outcomes) = cli(&[&good, &bad]);
    assert_eq!(code, 1);
    assert_eq!(outcomes.len(), 2);
    assert!(errors(&outcomes[0]).is_empty());
    let bad_errors = errors(&outcomes[1]);
    assert!(!bad_errors.is_empty());
    assert!(bad_errors.iter().all(|i| i["expression"][0].as_str().is_some_and(|e| e.starts_with("MedicationRequest"))), "{}", outcomes[1]);
    assert!(outcomes[1].to_string().contains("needs-anyOfStandardCode-medication"), "{}", outcomes[1]);

    // an unreadable file is a fatal issue, not a crash
    let (code, outcomes) = cli(&["/no/such/file.json"]);
    assert_eq!(code, 1);
    assert_eq!(outcomes[0]["issue"][0]["severity"], "fatal");
}

#[test]
fn cli_profile_and_load_options() {
    let dir = std::env::temp_dir().join(format!("gw-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A profile of our own, as a differential: Patient.gender is required.
    let profile = json!({
        "resourceType": "StructureDefinition", "url": "http://example.org/StructureDefinition/needs-gender",
        "name": "NeedsGender", "status": "active", "kind": "resource", "abstract": false, "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient", "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.gender", "path": "Patient.gender", "min": 1}]}
    });
    let profile_path = dir.join("profile.json");
    std::fs::write(&profile_path, profile.to_string()).unwrap();
    let patient_path = dir.join("patient.json");
    std::fs::write(&patient_path, json!({"resourceType": "Patient", "active": true}).to_string()).unwrap();
    let (code, _) = cli(&[patient_path.to_str().unwrap()]);
    assert_eq!(code, 0);
    let (code, outcomes) = cli(&[
        "--load", profile_path.to_str().unwrap(),
        "--profile", "http://example.org/StructureDefinition/needs-gender",
        patient_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{outcomes:?}");
    // a missing element is reported at its parent, naming the element
    assert!(errors(&outcomes[0]).iter().any(|i| i["expression"][0] == "Patient" && i["diagnostics"].as_str().unwrap_or_default().contains("gender")), "{}", outcomes[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

both_engines!(validate_operation, |db| async move {
    let server = Server::start(&db).await;
    let (status, oo) = server.post("Patient/$validate", &json!({"resourceType": "Patient", "gender": "male"})).await;
    assert_eq!(status, 200);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert!(errors(&oo).is_empty(), "{oo}");

    let (status, oo) = server.post("Patient/$validate", &json!({"resourceType": "Patient", "gender": "robot", "nickname": "x"})).await;
    assert_eq!(status, 200);
    let errs = errors(&oo);
    assert!(errs.iter().any(|i| i["expression"][0] == "Patient.gender"), "{oo}");
    assert!(errs.iter().any(|i| i["expression"][0] == "Patient" && i["diagnostics"].as_str().unwrap_or_default().contains("nickname")), "{oo}");

    // Parameters form with a profile: the JP Patient profile needs an insured-person identifier
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "gender": "male"}},
        {"name": "profile", "valueUri": "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Patient_eCS"}
    ]});
    let (status, oo) = server.post("$validate", &params).await;
    assert_eq!(status, 200);
    assert!(!errors(&oo).is_empty(), "{oo}");

    // the official referral document validates with no error
    let referral: Value = serde_json::from_str(&std::fs::read_to_string(examples("Bundle-Bundle-CLINS-Referral-Example-01.json")).unwrap()).unwrap();
    let (status, oo) = server.post("Bundle/$validate", &referral).await;
    assert_eq!(status, 200);
    assert!(errors(&oo).is_empty(), "{oo}");
    // type mismatch is a request error
    let (status, _) = server.post("Observation/$validate", &json!({"resourceType": "Patient"})).await;
    assert_eq!(status, 400);
});
