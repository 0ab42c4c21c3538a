//! transaction (atomic, urn:uuid rewriting) and batch Bundles posted to the base.

use serde_json::json;

use crate::{
    both_engines,
    harness::{Server, assert_outcome},
};

both_engines!(transaction_is_atomic_and_rewrites_references, |db| async move {
    let server = Server::start(&db).await;
    let tx = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:0b5c7d2e-0000-4000-8000-000000000002",
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "urn:uuid:0b5c7d2e-0000-4000-8000-000000000001"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:0b5c7d2e-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": "tx-1"}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:test:mrn|tx-1"}}
        ]
    });
    let (status, body) = server.post("", &tx).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "transaction-response");
    assert_eq!(body["entry"][0]["response"]["status"], "201 Created");
    let patient_location = body["entry"][1]["response"]["location"].as_str().unwrap();
    let patient_ref = patient_location.split("/_history").next().unwrap().to_string();
    let obs_location = body["entry"][0]["response"]["location"].as_str().unwrap();
    let obs_path = obs_location.split("/_history").next().unwrap();
    let (_, obs) = server.get(obs_path).await;
    assert_eq!(obs["subject"]["reference"], patient_ref.as_str(), "urn:uuid reference rewritten");

    // The same transaction again: the conditional create finds the patient, the reference follows it.
    let (status, body) = server.post("", &tx).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entry"][1]["response"]["status"], "200 OK");
    let obs_path = body["entry"][0]["response"]["location"].as_str().unwrap().split("/_history").next().unwrap().to_string();
    assert_eq!(server.get(&obs_path).await.1["subject"]["reference"], patient_ref.as_str());
    assert_eq!(server.get("Patient?_summary=count").await.1["total"], 1);

    // A failing entry (stale If-Match) rolls back every other entry.
    let patient_id = patient_ref.trim_start_matches("Patient/");
    let failing = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "should vanish"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Patient", "id": patient_id, "active": false},
             "request": {"method": "PUT", "url": format!("Patient/{patient_id}"), "ifMatch": "W/\"99\""}}
        ]
    });
    let (status, body) = server.post("", &failing).await;
    assert_eq!(status, 412, "{body}");
    assert_outcome(&body, "failing transaction");
    assert_eq!(server.get("Observation?_summary=count").await.1["total"], 2, "nothing of the failed transaction is stored");
    assert_eq!(server.get(&patient_ref).await.1["meta"]["versionId"], "1");

    // An invalid entry is refused before anything is written, with its location.
    let invalid = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "y"}}, "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Observation"}}
    ]});
    let (status, body) = server.post("", &invalid).await;
    assert_eq!(status, 400);
    assert_eq!(body["issue"][0]["expression"][0], "Bundle.entry[1].resource.resourceType");
    assert_eq!(server.get("Observation?_summary=count").await.1["total"], 2);
});

both_engines!(batch_entries_succeed_or_fail_alone, |db| async move {
    let server = Server::start(&db).await;
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "active": true}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"resource": {"resourceType": "Patient", "id": "b1"}, "request": {"method": "PUT", "url": "Patient/b1", "ifMatch": "W/\"3\""}},
        {"request": {"method": "GET", "url": "Patient?active=true"}}
    ]});
    let (status, body) = server.post("", &batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "batch-response");
    let statuses: Vec<&str> = body["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses[0], "201 Created");
    assert!(statuses[1].starts_with("404"));
    assert!(statuses[2].starts_with("412"));
    assert_eq!(statuses[3], "200 OK");
    assert_eq!(body["entry"][3]["resource"]["total"], 1);
    assert_eq!(body["entry"][1]["response"]["outcome"]["resourceType"], "OperationOutcome");
});
