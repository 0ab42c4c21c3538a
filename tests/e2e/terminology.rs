//! Terminology operations over HTTP, the mapping step on ingestion and the unmapped-code queue.

use serde_json::{Value, json};

use crate::{both_engines, harness::Server, submission::example};

fn param<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["parameter"].as_array().and_then(|ps| ps.iter().find(|x| x["name"] == name)).unwrap_or(&Value::Null)
}

both_engines!(terminology_operations, |db| async move {
    let server = Server::start(&db).await;
    // $lookup on a JP-Core code system
    let (status, p) = server.get("CodeSystem/$lookup?system=http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS&code=laboratory").await;
    assert_eq!(status, 200, "{p}");
    assert!(param(&p, "display")["valueString"].is_string(), "{p}");
    let (status, oo) = server.get("CodeSystem/$lookup?system=http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS&code=no-such-code").await;
    assert!(status >= 400, "{oo}");
    assert_eq!(oo["resourceType"], "OperationOutcome");

    // $validate-code against the J-FAGY allergen value set (content from ../shared/terminology)
    let vs = "http://jpfhir.jp/fhir/core/ValueSet/JP_AllergyIntolerance_VS";
    let food = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS";
    let (status, p) = server.get(&format!("ValueSet/$validate-code?url={vs}&system={food}&code=J9FC11310000")).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(param(&p, "result")["valueBoolean"], true, "{p}");
    let (_, p) = server.get(&format!("ValueSet/$validate-code?url={vs}&system={food}&code=J9FC99999999")).await;
    assert_eq!(param(&p, "result")["valueBoolean"], false, "{p}");
    // the POST form with Parameters gives the same answer
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": vs}, {"name": "system", "valueUri": food}, {"name": "code", "valueCode": "J9FC11310000"}]});
    let (status, p) = server.post("ValueSet/$validate-code", &body).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(param(&p, "result")["valueBoolean"], true, "{p}");

    // $expand with filter and paging
    let (status, expansion) = server.get(&format!("ValueSet/$expand?url={vs}&count=5&offset=5")).await;
    assert_eq!(status, 200, "{expansion}");
    assert_eq!(expansion["expansion"]["contains"].as_array().unwrap().len(), 5, "{expansion}");
    assert!(expansion["expansion"]["total"].as_i64().unwrap() > 1000);
    assert_eq!(expansion["expansion"]["offset"], 5);

    // $translate with a mapping table: JLAC10 potassium -> LOINC 2823-3
    let (status, p) = server.get("ConceptMap/$translate?system=http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS&code=3H015000002326101&target=http://loinc.org").await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(param(&p, "result")["valueBoolean"], true, "{p}");
    assert!(p.to_string().contains("2823-3"), "{p}");
});

both_engines!(submissions_get_international_codes_and_queue_the_rest, |db| async move {
    let server = Server::start(&db).await;
    let (status, receipt) = server.post("$submit", &example("Bundle-Bundle-CLINS-Observations-Example-01.json")).await;
    assert_eq!(status, 201, "{receipt}");
    assert!(param(&receipt, "mappedCodings")["valueInteger"].as_i64().unwrap() >= 2, "{receipt}");
    // The potassium result carries LOINC beside its original codings, marked with its table.
    let (_, found) = server.get("Observation?code=http://loinc.org|2823-3").await;
    assert_eq!(found["total"], 1, "{found}");
    let codings = found["entry"][0]["resource"]["code"]["coding"].as_array().unwrap().clone();
    let loinc = codings.iter().find(|c| c["system"] == "http://loinc.org").unwrap();
    assert!(loinc.to_string().contains("jlac10"), "marked with the table that produced it: {loinc}");
    assert!(codings.iter().any(|c| c["code"] == "3H015000002326101"), "the original stays: {codings:?}");
    // The example's local lab codes are not in institution 1318814790's table: queued.
    let (status, queue) = server.get("$unmapped?institution=1318814790").await;
    assert_eq!(status, 200, "{queue}");
    let codes: Vec<&str> = queue["parameter"].as_array().unwrap().iter().filter(|p| p["name"] == "code")
        .map(|p| p["part"][1]["valueCode"].as_str().unwrap()).collect();
    assert!(codes.contains(&"0000181800"), "{queue}");
    // A resend counts again.
    let mut resend = example("Bundle-Bundle-CLINS-Observations-Example-01.json");
    resend["timestamp"] = json!("2024-10-19T10:00:00.000+09:00");
    let (status, _) = server.post("$submit", &resend).await;
    assert_eq!(status, 201);
    let (_, queue) = server.get("$unmapped?institution=1318814790&system=http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS").await;
    let entry = queue["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "code" && p["part"][1]["valueCode"] == "0000181800").unwrap();
    assert_eq!(entry["part"][2]["valueInteger"], 2, "{queue}");
});
