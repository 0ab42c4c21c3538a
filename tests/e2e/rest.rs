//! CRUD, versions, history and error handling of the REST API.

use serde_json::{Value, json};

use crate::{
    both_engines,
    harness::{Server, assert_outcome, response},
};

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Taro"]}], "gender": "male", "birthDate": "1970-01-02"})
}

both_engines!(crud_and_history, |db| async move {
    let server = Server::start(&db).await;
    // create
    let r = server.client.post(server.url("Patient")).header("content-type", "application/fhir+json")
        .body(patient("Yamada").to_string()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/fhir+json"));
    let (_, created) = response(r).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert!(location.ends_with(&format!("/Patient/{id}/_history/1")), "{location}");
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));

    // read
    let (status, read) = server.get(&format!("Patient/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);

    // update with the right If-Match
    let mut changed = read.clone();
    changed["name"][0]["family"] = json!("Suzuki");
    let r = server.client.put(server.url(&format!("Patient/{id}"))).header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"").body(changed.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let (_, v2) = response(r).await;
    assert_eq!(v2["meta"]["versionId"], "2");
    assert_eq!(v2["name"][0]["family"], "Suzuki");

    // stale If-Match is refused and changes nothing
    let r = server.client.put(server.url(&format!("Patient/{id}"))).header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"").body(changed.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 412);
    let (_, body) = response(r).await;
    assert_outcome(&body, "stale If-Match");
    assert_eq!(server.get(&format!("Patient/{id}")).await.1["meta"]["versionId"], "2");

    // vread of the first version
    let (status, v1) = server.get(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(status, 200);
    assert_eq!(v1["name"][0]["family"], "Yamada");
    assert_eq!(server.get(&format!("Patient/{id}/_history/9")).await.0, 404);

    // delete, then read is 410 Gone, history keeps everything
    let r = server.client.delete(server.url(&format!("Patient/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (status, body) = server.get(&format!("Patient/{id}")).await;
    assert_eq!(status, 410);
    assert_outcome(&body, "read after delete");
    let (status, history) = server.get(&format!("Patient/{id}/_history")).await;
    assert_eq!(status, 200);
    assert_eq!(history["type"], "history");
    assert_eq!(history["total"], 3);
    let methods: Vec<&str> = history["entry"].as_array().unwrap().iter().map(|e| e["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["DELETE", "PUT", "POST"]);
    assert!(history["entry"][0].get("resource").is_none());

    // update-as-create with a client id, type and system history
    let mut own = patient("Sato");
    own["id"] = json!("own-id-1");
    let (status, body) = server.put("Patient/own-id-1", &own).await;
    assert_eq!(status, 201, "{body}");
    let (_, type_history) = server.get("Patient/_history").await;
    assert_eq!(type_history["total"], 4);
    let (_, system_history) = server.get("_history?_count=2").await;
    assert_eq!(system_history["entry"].as_array().unwrap().len(), 2);
    assert!(system_history["link"].as_array().unwrap().iter().any(|l| l["relation"] == "next"));
});

both_engines!(prefer_return, |db| async move {
    let server = Server::start(&db).await;
    let send = |prefer: &'static str| {
        server.client.post(server.url("Patient")).header("content-type", "application/fhir+json")
            .header("prefer", prefer).body(patient("Ito").to_string()).send()
    };
    let r = send("return=minimal").await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("location"));
    assert!(r.text().await.unwrap().is_empty());
    let (status, body) = response(send("return=OperationOutcome").await.unwrap()).await;
    assert_eq!(status, 201);
    assert_eq!(body["resourceType"], "OperationOutcome");
    let (_, body) = response(send("return=representation").await.unwrap()).await;
    assert_eq!(body["resourceType"], "Patient");
});

both_engines!(bad_requests_get_operation_outcomes, |db| async move {
    let server = Server::start(&db).await;
    let post_raw = |path: &str, content_type: &str, body: String| {
        server.client.post(server.url(path)).header("content-type", content_type.to_string()).body(body).send()
    };
    // not JSON
    let (status, body) = response(post_raw("Patient", "application/fhir+json", "{not json".into()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_outcome(&body, "not JSON");
    // wrong media type
    let (status, body) = response(post_raw("Patient", "application/xml", "<Patient/>".into()).await.unwrap()).await;
    assert_eq!(status, 415);
    assert_outcome(&body, "xml");
    // body larger than the configured limit
    let big = json!({"resourceType": "Patient", "text": {"status": "generated", "div": "x".repeat(20 * 1024 * 1024)}});
    // On its own connection: the server closes it after refusing the unread body.
    let r = reqwest::Client::new().post(server.url("Patient")).header("content-type", "application/fhir+json")
        .body(big.to_string()).send().await.unwrap();
    assert_eq!(r.headers()["connection"], "close");
    let (status, body) = response(r).await;
    assert_eq!(status, 413);
    assert_outcome(&body, "too large");
    // resourceType does not match the URL
    let (status, body) = server.post("Observation", &patient("X")).await;
    assert_eq!(status, 400);
    assert_outcome(&body, "wrong type");
    assert_eq!(body["issue"][0]["expression"][0], "resourceType");
    // not a JSON object / no resourceType
    let (status, body) = server.post("Patient", &json!([1, 2])).await;
    assert_eq!(status, 400);
    assert_outcome(&body, "array body");
    let (status, _) = server.post("Patient", &json!({"name": []})).await;
    assert_eq!(status, 400);
    // malformed and unknown ids, unknown types
    let (status, body) = server.get("Patient/bad$id").await;
    assert_eq!(status, 400);
    assert_outcome(&body, "malformed id");
    let (status, body) = server.get(&format!("Patient/{}", "a".repeat(65))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get("Patient/does-not-exist").await;
    assert_eq!(status, 404);
    assert_outcome(&body, "unknown id");
    let (status, body) = server.get("NoSuchType/1").await;
    assert_eq!(status, 404);
    assert_outcome(&body, "unknown type");
    // update whose body id disagrees with the URL
    let mut p = patient("Kato");
    p["id"] = json!("one");
    let (status, body) = server.put("Patient/two", &p).await;
    assert_eq!(status, 400);
    assert_outcome(&body, "id mismatch");
    // method not allowed
    let r = server.client.patch(server.url("Patient/one")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let (_, body) = response(r).await;
    assert_outcome(&body, "PATCH");
    // a failed write leaves nothing behind
    let (_, all) = server.get("Patient?_summary=count").await;
    assert_eq!(all["total"], 0, "{all}");
});

both_engines!(conditional_create_race, |db| async move {
    let server = Server::start(&db).await;
    let body = json!({"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": "race-1"}]}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = server.client.clone();
        let url = server.url("Patient");
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).header("content-type", "application/fhir+json")
                .header("if-none-exist", "identifier=urn:test:mrn|race-1").body(body).send().await.unwrap();
            let status = r.status().as_u16();
            let (_, v) = response(r).await;
            (status, v["id"].as_str().unwrap_or_default().to_string())
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        assert!(status == 201 || status == 200, "status {status}");
        if status == 201 {
            created += 1;
        }
        ids.insert(id);
    }
    assert_eq!(created, 1, "exactly one create wins");
    assert_eq!(ids.len(), 1, "every request sees the same resource");
    let (_, found) = server.get("Patient?identifier=urn:test:mrn|race-1").await;
    assert_eq!(found["total"], 1);
});

both_engines!(health_metrics_and_capabilities, |db| async move {
    let server = Server::start(&db).await;
    let root = format!("http://127.0.0.1:{}", server.port);
    assert_eq!(server.client.get(format!("{root}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(server.client.get(format!("{root}/readyz")).send().await.unwrap().status(), 200);
    let (status, cap) = server.get("metadata").await;
    assert_eq!(status, 200);
    assert_eq!(cap["resourceType"], "CapabilityStatement");
    assert_eq!(cap["fhirVersion"], "4.0.1");
    let observation = cap["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Observation").unwrap();
    let params: Vec<&str> = observation["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in ["_id", "_lastUpdated", "code", "patient", "subject", "date", "status", "category", "identifier"] {
        assert!(params.contains(&p), "Observation search parameter {p} missing from {params:?}");
    }
    let metrics = server.client.get(format!("{root}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gateway_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/fhir/metadata\""), "{metrics}");
});
