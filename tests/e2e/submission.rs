//! `$submit`: official examples and our fixtures, unit replacement, withdrawal, idempotent and
//! concurrent resends, all-or-nothing rejection, receipts, history, summary and flags.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::{
    both_engines,
    harness::{Server, assert_outcome, repo_root, response, shared},
};

pub fn example(name: &str) -> Value {
    let path = shared().join("examples/jp-clins").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

const OBSERVATIONS: &str = "Bundle-Bundle-CLINS-Observations-Example-01.json";
const REFERRAL: &str = "Bundle-Bundle-CLINS-Referral-Example-01.json";
const REFERRAL_NO_ENTRY: &str = "Bundle-Bundle-CLINS-Referral-NoEntry-Example-01.json";

/// Counts of current resources of a type for the canonical patient.
async fn count(server: &Server, res_type: &str, patient: &str) -> i64 {
    let (status, b) = server.get(&format!("{res_type}?patient={patient}&_summary=count")).await;
    assert_eq!(status, 200, "{b}");
    b["total"].as_i64().unwrap()
}

pub fn param<'a>(receipt: &'a Value, name: &str) -> &'a Value {
    receipt["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or(&Value::Null)
}

fn stored_kinds(receipt: &Value) -> HashMap<String, usize> {
    let mut kinds = HashMap::new();
    for p in receipt["parameter"].as_array().unwrap().iter().filter(|p| p["name"] == "stored") {
        *kinds.entry(p["part"][0]["valueCode"].as_str().unwrap().to_string()).or_default() += 1;
    }
    kinds
}

both_engines!(official_examples_and_unit_lifecycle, |db| async move {
    let server = Server::start(&db).await;

    // A lab-result collection: accepted, four lab items stored, linked to one canonical patient.
    let (status, receipt) = server.post("$submit", &example(OBSERVATIONS)).await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(receipt["resourceType"], "Parameters");
    assert_eq!(param(&receipt, "outcome")["valueCode"], "accepted");
    assert_eq!(stored_kinds(&receipt)["lab"], 4);
    let patient = param(&receipt, "patient")["valueReference"]["reference"].as_str().unwrap().to_string();
    assert_eq!(count(&server, "Observation", &patient).await, 4);
    let (_, provenance) = server.get(&format!("Provenance?_summary=count")).await;
    assert_eq!(provenance["total"], 1);

    // The same Bundle again: idempotent, same receipt, nothing duplicated.
    let (status, again) = server.post("$submit", &example(OBSERVATIONS)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, receipt);
    assert_eq!(count(&server, "Observation", &patient).await, 4);

    // Identical content laid out differently (pretty-printed) is the same resend.
    let pretty = server.post_text("$submit", serde_json::to_string_pretty(&example(OBSERVATIONS)).unwrap()).await;
    let (status, again) = crate::harness::response(pretty).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, receipt);

    // The receipt can be fetched later.
    let id = param(&receipt, "submission")["valueString"].as_str().unwrap();
    let (status, fetched) = server.get(&format!("$receipt?submission={id}")).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, receipt);
    // Where an identical resend's Location points: the earlier receipt.
    let resend = server.post_text("$submit", example(OBSERVATIONS).to_string()).await;
    assert_eq!(resend.status(), 200);
    let location = resend.headers()["location"].to_str().unwrap().to_string();
    assert!(location.ends_with(&format!("/$receipt?submission={id}")), "{location}");
    let (status, by_location) = crate::harness::response(server.client.get(&location).send().await.expect("GET")).await;
    assert_eq!(status, 200);
    assert_eq!(by_location, receipt);

    // A resend with the same key and different content replaces the unit atomically.
    let mut changed = example(OBSERVATIONS);
    let entries = changed["entry"].as_array_mut().unwrap();
    entries.truncate(3); // Patient + two Observations
    let (status, replaced) = server.post("$submit", &changed).await;
    assert_eq!(status, 201, "{replaced}");
    assert_eq!(param(&replaced, "outcome")["valueCode"], "replaced");
    assert_eq!(count(&server, "Observation", &patient).await, 2);

    // Documents posted to the base URL go through the same pipeline.
    let (status, doc) = server.post("", &example(REFERRAL)).await;
    assert_eq!(status, 201, "{doc}");
    let kinds = stored_kinds(&doc);
    assert_eq!(kinds["document"], 1);
    assert_eq!(kinds["composition"], 1);
    assert!(kinds["condition"] >= 1, "{kinds:?}");
    let referral_patient = param(&doc, "patient")["valueReference"]["reference"].as_str().unwrap().to_string();
    assert_ne!(referral_patient, patient, "branch 05 and branch 01 are different insured persons");
    let conditions = count(&server, "Condition", &referral_patient).await;
    assert!(conditions >= 1);
    // The stored Composition is searchable and its subject points at the canonical patient.
    let (_, compositions) = server.get(&format!("Composition?subject={referral_patient}")).await;
    assert_eq!(compositions["total"], 1);
    // The same unit key (patient + Bundle-ID) with no entries replaces the referral's items.
    let (status, no_entry) = server.post("$submit", &example(REFERRAL_NO_ENTRY)).await;
    assert_eq!(status, 201, "{no_entry}");
    assert_eq!(param(&no_entry, "outcome")["valueCode"], "replaced");
    assert_eq!(count(&server, "Condition", &referral_patient).await, 0);

    // Patient lookup by insured-person identifier finds the one canonical patient.
    let (_, found) = server.get("Patient?identifier=http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID|00012345:あいう:１８７:01").await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(format!("Patient/{}", found["entry"][0]["resource"]["id"].as_str().unwrap()), patient);

    // Withdrawal by the three keys deletes the unit; a second withdrawal finds nothing.
    let withdraw = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patientIdentifier", "valueString": "00012345:あいう:１８７:01"},
        {"name": "bundleIdentifierSystem", "valueUri": "http://jpfhir.jp/fhir/clins/bundle-identifier"},
        {"name": "bundleIdentifierValue", "valueString": "1318814790^2024^0123-IDa-203949583949"}
    ]});
    let (status, body) = server.post("$withdraw", &withdraw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&server, "Observation", &patient).await, 0);
    let (status, body) = server.post("$withdraw", &withdraw).await;
    assert_eq!(status, 404);
    assert_outcome(&body, "second withdrawal");

    // The institution's history counts every kind of outcome.
    let (status, history) = server.get("$submissions?institution=1318814790").await;
    assert_eq!(status, 200);
    let counts: HashMap<String, i64> = history["parameter"].as_array().unwrap().iter().filter(|p| p["name"] == "count")
        .map(|p| (p["part"][0]["valueCode"].as_str().unwrap().to_string(), p["part"][1]["valueInteger"].as_i64().unwrap()))
        .collect();
    assert_eq!(counts.get("accepted"), Some(&2), "{history}");
    assert_eq!(counts.get("replaced"), Some(&2), "{history}");
    assert_eq!(counts.get("withdrawn"), Some(&1), "{history}");
});

both_engines!(rejection_stores_nothing_and_is_reported, |db| async move {
    let server = Server::start(&db).await;
    // One Observation loses its facility-local lab code (rule R6021): the whole unit is refused.
    let mut bad = example(OBSERVATIONS);
    let coding = bad["entry"][2]["resource"]["code"]["coding"].as_array_mut().unwrap();
    coding.retain(|c| c["system"] != "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS");
    // and the insured-person identifier loses its trailing colon
    let ids = bad["entry"][0]["resource"]["identifier"].as_array_mut().unwrap();
    for id in ids.iter_mut().filter(|i| i["system"] == "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID") {
        id["value"] = json!("00012345:あいう:１８７");
    }
    let (status, outcome) = server.post("$submit", &bad).await;
    assert_eq!(status, 422, "{outcome}");
    assert_outcome(&outcome, "invalid bundle");
    let expressions: Vec<&str> = outcome["issue"].as_array().unwrap().iter()
        .filter(|i| i["severity"] == "error").filter_map(|i| i["expression"][0].as_str()).collect();
    assert!(expressions.iter().any(|e| e.starts_with("Bundle.entry[2].resource")), "local-code error located: {expressions:?}");
    assert!(expressions.iter().any(|e| e.starts_with("Bundle.entry[0].resource")), "identifier error located: {expressions:?}");
    assert!(outcome.to_string().contains("valid-value-insurance-patientIdentifier"), "{outcome}");
    assert_eq!(server.get("Observation?_summary=count").await.1["total"], 0, "nothing stored");
    assert_eq!(server.get("Patient?_summary=count").await.1["total"], 0, "nothing stored");

    // Not a submission at all
    let (status, body) = server.post("$submit", &json!({"resourceType": "Bundle", "type": "searchset"})).await;
    assert_eq!(status, 422);
    assert_outcome(&body, "searchset");

    let (_, history) = server.get("$submissions?institution=1318814790").await;
    let reasons: Vec<&Value> = history["parameter"].as_array().unwrap().iter().filter(|p| p["name"] == "rejectionReason").collect();
    assert!(!reasons.is_empty(), "{history}");
    let rejected = history["parameter"].as_array().unwrap().iter()
        .find(|p| p["name"] == "count" && p["part"][0]["valueCode"] == "rejected").unwrap();
    assert_eq!(rejected["part"][1]["valueInteger"], 1);
});

both_engines!(concurrent_identical_resends_store_once, |db| async move {
    let server = Server::start(&db).await;
    let body = example(OBSERVATIONS).to_string();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let client = server.client.clone();
        let url = server.url("$submit");
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            response(client.post(url).header("content-type", "application/fhir+json").body(body).send().await.unwrap()).await
        }));
    }
    let mut created = 0;
    let mut receipts = std::collections::HashSet::new();
    for t in tasks {
        let (status, receipt) = t.await.unwrap();
        assert!(status == 201 || status == 200, "{status} {receipt}");
        created += (status == 201) as usize;
        receipts.insert(receipt.to_string());
    }
    assert_eq!(created, 1);
    assert_eq!(receipts.len(), 1, "every resend gets the same receipt");
    assert_eq!(server.get("Observation?_summary=count").await.1["total"], 4);
});

fn manifest() -> Vec<Value> {
    let path = repo_root().join("fixtures/manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: Value = serde_json::from_str(&text).unwrap();
    manifest.as_array().or_else(|| manifest["fixtures"].as_array()).expect("manifest rows").clone()
}

fn fixture(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo_root().join("fixtures").join(file)).unwrap()).unwrap()
}

both_engines!(flags_decide_what_the_summary_shows, |db| async move {
    let server = Server::start(&db).await;
    // A diagnosis unit with UNINFORMED and UNDELIVERED conditions, from our fixtures.
    let row = manifest()
        .into_iter()
        .find(|r| r["expect"] == "accept" && r["uninformed"].as_i64() > Some(0) && r["undelivered"].as_i64() > Some(0))
        .expect("a fixture with UNINFORMED and UNDELIVERED conditions");
    let bundle = fixture(row["file"].as_str().unwrap());
    let (status, receipt) = server.post("$submit", &bundle).await;
    assert_eq!(status, 201, "{receipt}");
    let patient = param(&receipt, "patient")["valueReference"]["reference"].as_str().unwrap().to_string();
    let institution = param(&receipt, "institution")["valueIdentifier"]["value"].as_str().unwrap().to_string();
    let total = stored_kinds(&receipt)["condition"];
    let uninformed = row["uninformed"].as_u64().unwrap() as usize;
    let undelivered = row["undelivered"].as_u64().unwrap() as usize;
    let both = bundle["entry"].as_array().unwrap().iter().filter(|e| {
        let tags = e["resource"]["meta"]["tag"].to_string();
        tags.contains("UNINFORMED") && tags.contains("UNDELIVERED")
    }).count();
    let summary = |headers: Vec<(&'static str, String)>| {
        let server = &server;
        let patient = patient.clone();
        async move {
            let mut req = server.client.get(server.url(&format!("{patient}/$summary")));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let (status, b) = response(req.send().await.unwrap()).await;
            assert_eq!(status, 200, "{b}");
            assert_eq!(b["type"], "collection");
            assert_eq!(b["entry"][0]["resource"]["resourceType"], "Patient");
            b["entry"].as_array().unwrap().iter().filter(|e| e["resource"]["resourceType"] == "Condition").count()
        }
    };
    // The submitting institution sees everything; another institution not the UNDELIVERED ones;
    // the patient neither the UNDELIVERED nor the UNINFORMED ones.
    assert_eq!(summary(vec![("x-reader-type", "institution".into()), ("x-reader-institution", institution.clone())]).await, total);
    assert_eq!(summary(vec![("x-reader-type", "institution".into()), ("x-reader-institution", "2712345678".into())]).await, total - undelivered);
    assert_eq!(summary(vec![("x-reader-type", "patient".into())]).await, total - undelivered - uninformed + both);
    // Flags are kept on the stored resources.
    let (_, tagged) = server.get("Condition?_tag=http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication|UNINFORMED&_summary=count").await;
    assert_eq!(tagged["total"].as_u64().unwrap() as usize, uninformed);
});

// Every fixture in fixtures/manifest.json is accepted or rejected as the manifest says.
both_engines!(fixtures_are_accepted_or_rejected_as_declared, |db| async move {
    let rows = manifest();
    let server = Server::start(&db).await;
    let mut wrong = Vec::new();
    for row in &rows {
        let file = row["file"].as_str().unwrap();
        let body = std::fs::read_to_string(repo_root().join("fixtures").join(file)).unwrap();
        // Malformed JSON is a bad request (400); everything else refused is unprocessable (422).
        let refused_status = if serde_json::from_str::<Value>(&body).map(|v| v.is_object()).unwrap_or(false) { 422 } else { 400 };
        let (status, outcome) = response(server.post_text("$submit", body).await).await;
        let accepted = status == 201 || status == 200;
        let expected = row["expect"] == "accept";
        let short = || outcome.to_string().chars().take(600).collect::<String>();
        if accepted != expected {
            wrong.push(format!("{file}: expected {}, got {status}: {}", row["expect"], short()));
        } else if !expected {
            if status != refused_status || outcome["resourceType"] != "OperationOutcome" {
                wrong.push(format!("{file}: refused with {status} (expected {refused_status}): {}", short()));
            } else {
                assert_outcome(&outcome, file);
            }
        }
    }
    assert!(wrong.is_empty(), "{} fixtures handled wrongly:\n{}", wrong.len(), wrong.join("\n"));
});

both_engines!(canonical_patient_versions_follow_the_submitted_demographics, |db| async move {
    let server = Server::start(&db).await;
    let unit = |n: u32, family: &str| {
        let mut b = example(OBSERVATIONS);
        let value = b["identifier"]["value"].as_str().unwrap().to_string();
        b["identifier"]["value"] = json!(format!("{value}-{n}"));
        for e in b["entry"].as_array_mut().unwrap() {
            if e["resource"]["resourceType"] == "Patient" {
                e["resource"]["name"][0]["family"] = json!(family);
            }
        }
        b
    };
    let patient_of = |receipt: &Value| param(receipt, "patient")["valueReference"]["reference"].as_str().unwrap().to_string();
    let (status, first) = server.post("$submit", &unit(1, "山田")).await;
    assert_eq!(status, 201, "{first}");
    let patient = patient_of(&first);
    let version = |p: &Value| p["meta"]["versionId"].as_str().unwrap().to_string();
    let (_, p) = server.get(&patient).await;
    assert_eq!((version(&p), p["name"][0]["family"].as_str()), ("1".into(), Some("山田")), "a new patient is created with its first unit");
    // Another unit with the same demographics writes no new version; different ones do.
    let (status, second) = server.post("$submit", &unit(2, "山田")).await;
    assert_eq!((status, patient_of(&second)), (201, patient.clone()), "{second}");
    assert_eq!(version(&server.get(&patient).await.1), "1");
    let (status, third) = server.post("$submit", &unit(3, "山本")).await;
    assert_eq!(status, 201, "{third}");
    let (_, p) = server.get(&patient).await;
    assert_eq!((version(&p), p["name"][0]["family"].as_str()), ("2".into(), Some("山本")));
    // A deleted canonical Patient comes back with the next unit, as a new version.
    let r = server.client.delete(server.url(&patient)).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (status, fourth) = server.post("$submit", &unit(4, "山本")).await;
    assert_eq!(status, 201, "{fourth}");
    let (status, p) = server.get(&patient).await;
    assert_eq!((status, version(&p)), (200, "4".into()), "{p}");
});
