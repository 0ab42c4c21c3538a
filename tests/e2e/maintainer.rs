//! The terminology maintainer workflow over HTTP: bearer tokens and scopes; upload a table
//! version (CSV, ConceptMap) and see the difference; bad tables refused with the rows named;
//! activate at a date; `$translate` and new submissions follow the active version; roll back;
//! AuditEvents; everything survives a restart; the re-mapping job.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::{
    both_engines,
    harness::{Database, Server, assert_outcome, repo_root, response},
    submission::example,
};

const SECRET: &str = "e2e-maintainer-secret-0123456789abcdef";
const CORELAB: &str = "jlac10-corelab-to-loinc";
const CORELAB_SYSTEM: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS";
const POTASSIUM: &str = "3H015000002326101";
const PROTEIN: &str = "3A015000001827101";
const OBSERVATIONS: &str = "Bundle-Bundle-CLINS-Observations-Example-01.json";

/// An HS256 JWT minted here, independently of the gateway's code.
fn token(sub: &str, scope: &str, expires_in: i64, secret: &str) -> String {
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let exp = chrono::Utc::now().timestamp() + expires_in;
    let input = format!("{}.{}", enc(br#"{"alg":"HS256","typ":"JWT"}"#), enc(json!({"sub": sub, "exp": exp, "scope": scope}).to_string().as_bytes()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", enc(&mac.finalize().into_bytes()))
}

fn alice() -> String {
    token("alice", "openid system/ConceptMap.write", 600, SECRET)
}

async fn start(db: &Database) -> Server {
    Server::start_with(db, &[("GATEWAY_JWT_HS256_SECRET", SECRET)]).await
}

/// A request with an optional bearer token: (status, headers, JSON body).
async fn call(server: &Server, method: &str, path: &str, token: Option<&str>, content_type: &str, body: String) -> (u16, HeaderMap, Value) {
    let mut request = server.client.request(method.parse().unwrap(), server.url(path));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if !body.is_empty() {
        request = request.header("content-type", content_type).body(body);
    }
    let r = request.send().await.expect("request");
    let headers = r.headers().clone();
    let (status, body) = response(r).await;
    (status, headers, body)
}

async fn get(server: &Server, path: &str) -> (u16, Value) {
    let (s, _, b) = call(server, "GET", path, Some(&alice()), "", String::new()).await;
    (s, b)
}

async fn post_parameters(server: &Server, path: &str, params: Value) -> (u16, Value) {
    let body = json!({"resourceType": "Parameters", "parameter": params}).to_string();
    let (s, _, b) = call(server, "POST", path, Some(&alice()), "application/fhir+json", body).await;
    (s, b)
}

async fn upload_csv(server: &Server, csv: &str) -> (u16, Value) {
    let (s, _, b) = call(server, "POST", "ConceptMap/$upload-table", Some(&alice()), "text/csv", csv.to_string()).await;
    (s, b)
}

fn param<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["parameter"].as_array().and_then(|ps| ps.iter().find(|x| x["name"] == name)).unwrap_or(&Value::Null)
}

fn params<'a>(p: &'a Value, name: &str) -> Vec<&'a Value> {
    p["parameter"].as_array().map(|ps| ps.iter().filter(|x| x["name"] == name).collect()).unwrap_or_default()
}

fn part<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["part"].as_array().and_then(|ps| ps.iter().find(|x| x["name"] == name)).unwrap_or(&Value::Null)
}

/// Tomorrow in Japan (UTC+9), where activation dates are calendar dates.
fn tomorrow() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(9 + 24)).format("%Y-%m-%d").to_string()
}

/// Version 2.0.0 of the core-lab table, written to a temporary directory: potassium maps to
/// LOINC 6298-4 instead of 2823-3, and one row is added.
fn corelab_v2() -> String {
    let v1 = std::fs::read_to_string(repo_root().join("mapping-tables").join(format!("{CORELAB}.csv"))).unwrap();
    let mut v2 = v1.replace("# version: 1.0.0", "# version: 2.0.0");
    let line = v2.lines().find(|l| l.starts_with(POTASSIUM)).unwrap().to_string();
    v2 = v2.replace(&line, &line.replace("2823-3,Potassium [Moles/volume] in Serum or Plasma", "6298-4,Potassium [Moles/volume] in Blood"));
    // total protein: in the official example, not mapped by 1.0.0
    v2.push_str(&format!("{PROTEIN},E2E added row,2885-2,Protein [Mass/volume] in Serum or Plasma,wider,added in 2.0.0\n"));
    let dir = std::env::temp_dir().join(format!("gateway-e2e-tables-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("v2.csv"), &v2).unwrap();
    let text = std::fs::read_to_string(dir.join("v2.csv")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    text
}

async fn translate_potassium(server: &Server) -> String {
    let (status, p) = server.get(&format!("ConceptMap/$translate?system={CORELAB_SYSTEM}&code={POTASSIUM}&target=http://loinc.org")).await;
    assert_eq!(status, 200, "{p}");
    p.to_string()
}

/// The current potassium Observation (by its original JLAC10 code) and its body.
async fn potassium_observation(server: &Server) -> Value {
    let (status, found) = server.get(&format!("Observation?code={CORELAB_SYSTEM}|{POTASSIUM}")).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"], 1, "{found}");
    found["entry"][0]["resource"].clone()
}

/// Poll a re-mapping job's status until it is no longer running (202 while it runs).
async fn finished_job(server: &Server, status_path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, s) = get(server, status_path).await;
        let running = param(&s, "state")["valueCode"] == "running";
        assert_eq!(status, if running { 202 } else { 200 }, "{s}");
        if !running {
            return s;
        }
        assert!(Instant::now() < deadline, "the job did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn loinc_codings(observation: &Value) -> Vec<(String, String)> {
    observation["code"]["coding"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["system"] == "http://loinc.org")
        .map(|c| (c["code"].as_str().unwrap().to_string(), c["extension"][0]["valueCanonical"].as_str().unwrap_or_default().to_string()))
        .collect()
}

both_engines!(maintainer_tokens_and_scopes, |db| async move {
    let server = start(&db).await;
    let tables = "ConceptMap/$tables";
    // no token
    let (status, headers, body) = call(&server, "GET", tables, None, "", String::new()).await;
    assert_eq!(status, 401, "{body}");
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{headers:?}");
    assert_outcome(&body, "no token");
    // wrong signature, expired, malformed
    for (what, t) in [
        ("bad signature", token("alice", "system/ConceptMap.write", 600, "another-secret-another-secret-0123")),
        ("expired", token("alice", "system/ConceptMap.write", -3600, SECRET)),
        ("malformed", "not-a-jwt".to_string()),
    ] {
        let (status, headers, body) = call(&server, "GET", tables, Some(&t), "", String::new()).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"), "{what}: {headers:?}");
        assert_outcome(&body, what);
    }
    // a valid token without a ConceptMap write scope
    let reader = token("bob", "system/Patient.read patient/ConceptMap.write", 600, SECRET);
    for (method, path) in [("GET", tables), ("POST", "ConceptMap/$rollback-table"), ("POST", "$remap")] {
        let (status, headers, body) = call(&server, method, path, Some(&reader), "application/fhir+json", "{}".into()).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(headers["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
        assert_outcome(&body, "no scope");
    }
    // other scope forms that grant it
    for scope in ["system/*.*", "user/ConceptMap.*", "system/ConceptMap.cruds"] {
        let (status, _, body) = call(&server, "GET", tables, Some(&token("carol", scope, 600, SECRET)), "", String::new()).await;
        assert_eq!(status, 200, "{scope}: {body}");
    }
    // the operations are in the CapabilityStatement
    let (_, capability) = server.get("metadata").await;
    for op in ["upload-table", "table-diff", "activate-table", "rollback-table", "tables", "remap", "remap-status"] {
        assert!(capability["rest"][0]["operation"].as_array().unwrap().iter().any(|o| o["name"] == op), "{op}");
    }
    drop(server);

    // without a configured secret there is no issuer: 401 that says so
    let server = Server::start(&db).await;
    let (status, _, body) = call(&server, "GET", tables, Some(&alice()), "", String::new()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("jwt_hs256_secret"), "{body}");
});

both_engines!(maintainer_bad_tables_are_refused_naming_the_rows, |db| async move {
    let server = start(&db).await;
    let csv = "# name: e2e-bad\n# version: 1.0.0\n# effective-date: 2026-01-01\n\
               # source-system: http://example.org/no-such-system\n# target-system: http://loinc.org\n# publisher: e2e\n\
               source_code,source_display,target_code,target_display,equivalence,comment\n\
               A1,a,1-1,one,equivalent,\n\
               A2,b,2-2,two,sameish,\n\
               A1,a,9-9,nine,equivalent,\n\
               A3,\"c,3-3,three,equivalent,\n\
               A4,d,4-4\n";
    let (status, oo) = upload_csv(&server, csv).await;
    assert_eq!(status, 422, "{oo}");
    assert_outcome(&oo, "bad table");
    let text = oo.to_string();
    assert!(text.contains("unknown code system") && text.contains("no-such-system"), "unknown system: {oo}");
    for (line, what) in [(9, "sameish"), (10, "conflicting"), (11, "unterminated"), (12, "number of columns")] {
        let issue = oo["issue"].as_array().unwrap().iter().find(|i| i["diagnostics"].as_str().unwrap().starts_with(&format!("line {line}")));
        let issue = issue.unwrap_or_else(|| panic!("no issue for line {line}: {oo}"));
        assert!(issue["diagnostics"].as_str().unwrap().contains(what), "line {line}: {issue}");
        assert!(issue["expression"][0].as_str().unwrap().starts_with(&format!("line[{line}]")), "{issue}");
    }
    // a ConceptMap with an unknown equivalence is refused naming the element
    let cm = json!({"resourceType": "ConceptMap", "id": "e2e-cm-bad", "url": "http://example.org/ConceptMap/e2e-cm-bad", "version": "1",
        "status": "active", "publisher": "e2e", "date": "2026-01-01",
        "group": [{"source": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full", "target": "http://hl7.org/fhir/sid/icd-10",
                   "element": [{"code": "I10", "target": [{"code": "I10", "equivalence": "roughly"}]}]}]});
    let (status, _, oo) = call(&server, "POST", "ConceptMap/$upload-table", Some(&alice()), "application/fhir+json", cm.to_string()).await;
    assert_eq!(status, 422, "{oo}");
    assert!(oo.to_string().contains("ConceptMap.group[0].element[0].target[0].equivalence"), "{oo}");
    // nothing was stored
    let (_, tables) = get(&server, "ConceptMap/$tables").await;
    assert!(!tables.to_string().contains("e2e-bad"), "{tables}");
    // other media types are refused
    let (status, _, _) = call(&server, "POST", "ConceptMap/$upload-table", Some(&alice()), "text/plain", "x".into()).await;
    assert_eq!(status, 415);
});

both_engines!(maintainer_workflow_end_to_end, |db| async move {
    let mut server = start(&db).await;
    // Data stored under version 1.0.0: potassium carries LOINC 2823-3 only.
    let (status, receipt) = server.post("$submit", &example(OBSERVATIONS)).await;
    assert_eq!(status, 201, "{receipt}");
    let stored = potassium_observation(&server).await;
    let potassium_id = stored["id"].as_str().unwrap().to_string();
    let original_codings: Vec<Value> = stored["code"]["coding"].as_array().unwrap().iter().filter(|c| c.get("extension").is_none()).cloned().collect();
    assert!(loinc_codings(&stored).iter().all(|(code, _)| code == "2823-3"), "{stored}");
    let unmapped = || async { server.get("$unmapped?institution=1318814790").await.1.to_string() };
    assert!(unmapped().await.contains(PROTEIN), "queued while no table maps it");

    // Upload 2.0.0 as CSV: the difference from the active 1.0.0.
    let v2 = corelab_v2();
    let (status, up) = upload_csv(&server, &v2).await;
    assert_eq!(status, 201, "{up}");
    assert_eq!(param(&up, "new")["valueBoolean"], true);
    assert_eq!(param(&up, "comparedWith")["valueString"], "1.0.0");
    assert_eq!((param(&up, "addedCount")["valueInteger"].as_i64(), param(&up, "changedCount")["valueInteger"].as_i64(), param(&up, "removedCount")["valueInteger"].as_i64()), (Some(1), Some(1), Some(0)), "{up}");
    assert_eq!(part(params(&up, "added")[0], "sourceCode")["valueCode"], PROTEIN);
    let changed = params(&up, "changed")[0];
    assert_eq!(part(changed, "sourceCode")["valueCode"], POTASSIUM);
    assert_eq!(part(part(changed, "old"), "targetCode")["valueCode"], "2823-3");
    assert_eq!(part(part(changed, "new"), "targetCode")["valueCode"], "6298-4");
    // the same upload again is a no-op; the same version with other content a conflict
    let (status, again) = upload_csv(&server, &v2).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(param(&again, "new")["valueBoolean"], false);
    let (status, oo) = upload_csv(&server, &v2.replace("added in 2.0.0", "changed comment")).await;
    assert_eq!(status, 409, "{oo}");
    assert_outcome(&oo, "version exists");
    // $table-diff gives the same difference
    let (status, d) = get(&server, &format!("ConceptMap/$table-diff?name={CORELAB}&version=2.0.0")).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(param(&d, "comparedWith")["valueString"], "1.0.0");
    assert_eq!(param(&d, "changedCount")["valueInteger"], 1, "{d}");
    let (status, _) = get(&server, &format!("ConceptMap/$table-diff?name={CORELAB}&version=9.9.9")).await;
    assert_eq!(status, 404);

    // Upload a new table as a ConceptMap.
    let cm = json!({"resourceType": "ConceptMap", "id": "e2e-cm-table", "url": "http://jpfhir.jp/fhir/gateway/ConceptMap/e2e-cm-table",
        "version": "1.0.0", "status": "active", "publisher": "e2e", "date": "2026-01-01",
        "group": [{"source": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full", "target": "http://hl7.org/fhir/sid/icd-10",
                   "element": [{"code": "J189", "target": [{"code": "J18.9", "equivalence": "equivalent"}]}]}]});
    let (status, _, up) = call(&server, "POST", "ConceptMap/$upload-table", Some(&alice()), "application/fhir+json", cm.to_string()).await;
    assert_eq!(status, 201, "{up}");
    assert_eq!(param(&up, "name")["valueString"], "e2e-cm-table");
    assert!(param(&up, "comparedWith").is_null(), "{up}");

    // Activate 2.0.0 from tomorrow: today's answers stay on 1.0.0; the version is reachable by version.
    let (status, a) = post_parameters(&server, "ConceptMap/$activate-table", json!([
        {"name": "name", "valueString": CORELAB}, {"name": "version", "valueString": "2.0.0"}, {"name": "date", "valueDate": tomorrow()}])).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(param(&a, "activeToday")["valueString"], "1.0.0");
    let t = translate_potassium(&server).await;
    assert!(t.contains("2823-3") && !t.contains("6298-4"), "{t}");
    let url = format!("http://jpfhir.jp/fhir/gateway/ConceptMap/{CORELAB}");
    let (_, by_version) = server.get(&format!("ConceptMap/$translate?url={url}&conceptMapVersion=2.0.0&system={CORELAB_SYSTEM}&code={POTASSIUM}")).await;
    assert!(by_version.to_string().contains("6298-4"), "{by_version}");
    // bad activations
    let (status, oo) = post_parameters(&server, "ConceptMap/$activate-table", json!([
        {"name": "name", "valueString": CORELAB}, {"name": "version", "valueString": "7.0.0"}])).await;
    assert_eq!(status, 404, "{oo}");
    let (status, oo) = post_parameters(&server, "ConceptMap/$activate-table", json!([
        {"name": "name", "valueString": CORELAB}, {"name": "version", "valueString": "2.0.0"}, {"name": "date", "valueString": "tomorrow"}])).await;
    assert_eq!(status, 400, "{oo}");

    // Activate 2.0.0 today: $translate answers 6298-4.
    let (status, a) = post_parameters(&server, "ConceptMap/$activate-table", json!([
        {"name": "name", "valueString": CORELAB}, {"name": "version", "valueString": "2.0.0"}])).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(param(&a, "activeToday")["valueString"], "2.0.0");
    let t = translate_potassium(&server).await;
    assert!(t.contains("6298-4") && !t.contains("2823-3"), "{t}");
    let queue = unmapped().await;
    assert!(!queue.contains(PROTEIN) && queue.contains("0000181800"), "mapped codes leave the queue, others stay: {queue}");

    // Re-map the stored data with 2.0.0, as a background job.
    let (status, headers, job) = call(&server, "POST", "$remap", Some(&alice()), "", String::new()).await;
    assert_eq!(status, 202, "{job}");
    let location = headers["content-location"].to_str().unwrap().to_string();
    assert!(location.contains("/$remap-status/"), "{location}");
    let status_path = location.split("/fhir/").nth(1).unwrap().to_string();
    let done = finished_job(&server, &status_path).await;
    assert_eq!(param(&done, "state")["valueCode"], "done", "{done}");
    assert_eq!(param(&done, "requestedBy")["valueString"], "alice");
    assert!(param(&done, "changed")["valueInteger"].as_i64().unwrap() >= 1, "{done}");
    assert_eq!(param(&done, "processed")["valueInteger"], param(&done, "total")["valueInteger"], "{done}");
    let remapped = potassium_observation(&server).await;
    assert_eq!(remapped["id"], potassium_id.as_str());
    assert_eq!(remapped["meta"]["versionId"], "2", "a new version: {remapped}");
    let loinc = loinc_codings(&remapped);
    assert!(loinc.contains(&("6298-4".to_string(), format!("{url}|2.0.0"))), "{loinc:?}");
    for original in &original_codings {
        assert!(remapped["code"]["coding"].as_array().unwrap().contains(original), "original {original} kept: {remapped}");
    }
    let (_, history) = server.get(&format!("Observation/{potassium_id}/_history")).await;
    assert_eq!(history["total"], 2, "{history}");
    let (status, _) = get(&server, "$remap-status/no-such-job").await;
    assert_eq!(status, 404);

    // A new submission is mapped with 2.0.0, marked with the table and version.
    let mut resend = example(OBSERVATIONS);
    resend["timestamp"] = json!("2024-10-19T10:00:00.000+09:00");
    let (status, receipt) = server.post("$submit", &resend).await;
    assert_eq!(status, 201, "{receipt}");
    let fresh = potassium_observation(&server).await;
    assert_ne!(fresh["id"], potassium_id.as_str());
    assert!(loinc_codings(&fresh).contains(&("6298-4".to_string(), format!("{url}|2.0.0"))), "{fresh}");

    // Roll back: 1.0.0 again today (the activation from tomorrow stays).
    let (status, r) = post_parameters(&server, "ConceptMap/$rollback-table", json!([{"name": "name", "valueString": CORELAB}])).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(param(&r, "activeToday")["valueString"], "1.0.0", "{r}");
    let t = translate_potassium(&server).await;
    assert!(t.contains("2823-3") && !t.contains("6298-4"), "{t}");
    // Roll back a directory table completely: nothing active.
    let (status, r) = post_parameters(&server, "ConceptMap/$rollback-table", json!([{"name": "name", "valueString": "mhlw-icd10-to-icd10"}])).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(param(&r, "activeToday")["valueString"], "none");
    let (status, oo) = post_parameters(&server, "ConceptMap/$rollback-table", json!([{"name": "name", "valueString": "mhlw-icd10-to-icd10"}])).await;
    assert_eq!(status, 409, "nothing left to roll back: {oo}");

    // Every change is an AuditEvent naming the actor.
    let (_, events) = server.get("AuditEvent?altid=alice&_count=100").await;
    let actions: Vec<String> = events["entry"].as_array().unwrap().iter()
        .map(|e| e["resource"]["subtype"][1]["code"].as_str().unwrap().to_string()).collect();
    for action in ["upload", "activate", "rollback"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
    assert_eq!(actions.len(), 6, "2 uploads, 2 activations, 2 rollbacks: {actions:?}");
    let (_, rollbacks) = server.get("AuditEvent?subtype=http://jpfhir.jp/fhir/gateway/CodeSystem/mapping-table-action|rollback").await;
    assert_eq!(rollbacks["total"], 2, "{rollbacks}");
    let event = &rollbacks["entry"].as_array().unwrap().iter().find(|e| e["resource"]["entity"][0]["name"] == format!("{url}|2.0.0")).unwrap()["resource"];
    assert_eq!(event["agent"][0]["name"], "alice");
    assert_eq!(event["outcome"], "0");
    let (_, all_events) = server.get("AuditEvent?_summary=count").await;

    // Restart on the same database: versions, activations and rollbacks survive; the directory
    // tables are not activated again over the rollbacks.
    let (_, before) = get(&server, "ConceptMap/$tables").await;
    server.kill();
    drop(server);
    server = start(&db).await;
    let (status, after) = get(&server, "ConceptMap/$tables").await;
    assert_eq!(status, 200, "{after}");
    let table = |t: &Value, name: &str| t["parameter"].as_array().unwrap().iter().find(|p| part(p, "name")["valueString"] == name).cloned().unwrap();
    for name in [CORELAB, "mhlw-icd10-to-icd10", "e2e-cm-table"] {
        assert_eq!(table(&before, name), table(&after, name), "{name}");
    }
    let corelab = table(&after, CORELAB);
    assert_eq!(part(&corelab, "activeToday")["valueString"], "1.0.0");
    let activations: Vec<(String, String)> = corelab["part"].as_array().unwrap().iter().filter(|p| p["name"] == "activation")
        .map(|a| (part(a, "version")["valueString"].as_str().unwrap().into(), part(a, "date")["valueDate"].as_str().unwrap().into())).collect();
    assert_eq!(activations.len(), 2, "{corelab}");
    assert!(activations.contains(&("2.0.0".into(), tomorrow())), "{activations:?}");
    assert_eq!(part(&table(&after, "mhlw-icd10-to-icd10"), "activeToday")["valueString"], "none");
    let t = translate_potassium(&server).await;
    assert!(t.contains("2823-3") && !t.contains("6298-4"), "{t}");
    let (_, all_after) = server.get("AuditEvent?_summary=count").await;
    assert_eq!(all_events["total"], all_after["total"], "a restart changes nothing");
});

both_engines!(maintainer_remap_job_resumes_after_restart, |db| async move {
    let mut server = start(&db).await;
    let (status, receipt) = server.post("$submit", &example(OBSERVATIONS)).await;
    assert_eq!(status, 201, "{receipt}");
    let (status, up) = upload_csv(&server, &corelab_v2()).await;
    assert_eq!(status, 201, "{up}");
    let (status, a) = post_parameters(&server, "ConceptMap/$activate-table", json!([
        {"name": "name", "valueString": CORELAB}, {"name": "version", "valueString": "2.0.0"}])).await;
    assert_eq!(status, 200, "{a}");
    server.kill();
    drop(server);
    // A job left running by a process that stopped (table-filtered, nothing processed yet).
    {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        sqlx::query(
            "INSERT INTO remap_job (id, state, table_name, requested_by, started_at, finished_at, total, processed, changed, skipped,
                                    cursor_type, cursor_id, error)
             VALUES ('interrupted-job', 'running', $1, 'alice', 1, 0, 1, 0, 0, 0, '', '', '')",
        )
        .bind(CORELAB)
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let server = start(&db).await;
    let done = finished_job(&server, "$remap-status/interrupted-job").await;
    assert_eq!(param(&done, "state")["valueCode"], "done", "{done}");
    assert_eq!(param(&done, "table")["valueString"], CORELAB);
    // Only the three Observations with a core-lab code were looked at, and all three changed:
    // potassium (new target), total protein (mapped for the first time) and urine protein (same
    // target, now marked as produced by 2.0.0).
    assert_eq!(param(&done, "processed")["valueInteger"], 3, "{done}");
    assert_eq!(param(&done, "changed")["valueInteger"], 3, "{done}");
    let url = format!("http://jpfhir.jp/fhir/gateway/ConceptMap/{CORELAB}");
    assert!(loinc_codings(&potassium_observation(&server).await).contains(&("6298-4".to_string(), format!("{url}|2.0.0"))));
});
