//! Search driven by the core package's SearchParameters: tokens, references, dates, paging, sort.

use serde_json::{Value, json};

use crate::{
    both_engines,
    harness::{Server, assert_outcome},
};

fn observation(patient: &str, code: &str, date: &str, status: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "identifier": [{"system": "urn:test:obs", "value": format!("{code}-{date}")}],
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    })
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"].as_array().map(|es| {
        es.iter().filter(|e| e["search"]["mode"] == "match").map(|e| e["resource"]["effectiveDateTime"].as_str().unwrap_or_default().to_string()).collect()
    }).unwrap_or_default()
}

both_engines!(search_parameters, |db| async move {
    let server = Server::start(&db).await;
    let (status, p) = server.post("Patient", &json!({"resourceType": "Patient", "name": [{"family": "Tanaka"}]})).await;
    assert_eq!(status, 201);
    let pid = p["id"].as_str().unwrap().to_string();
    let data = [
        ("2345-7", "2024-01-10", "final", 95.0),
        ("2345-7", "2024-02-10T09:00:00+09:00", "final", 110.0),
        ("2345-7", "2024-03", "amended", 130.0),
        ("718-7", "2024-02-15", "final", 13.5),
    ];
    for (code, date, status, value) in data {
        let (s, body) = server.post("Observation", &observation(&pid, code, date, status, value)).await;
        assert_eq!(s, 201, "{body}");
    }
    let (_, other) = server.post("Observation", &observation("someone-else", "2345-7", "2023-12-31", "final", 1.0)).await;
    assert_eq!(other["resourceType"], "Observation");

    let total = |q: &'static str| {
        let server = &server;
        async move {
            let (status, b) = server.get(&format!("Observation?{q}")).await;
            assert_eq!(status, 200, "{q}: {b}");
            assert_eq!(b["type"], "searchset");
            b["total"].as_i64().unwrap()
        }
    };
    assert_eq!(total("code=2345-7").await, 4);
    assert_eq!(total("code=http://loinc.org|2345-7").await, 4);
    assert_eq!(total("code=http://snomed.info/sct|2345-7").await, 0);
    assert_eq!(total("code=2345-7,718-7").await, 5);
    assert_eq!(total("code:not=2345-7").await, 1);
    assert_eq!(server.get(&format!("Observation?patient={pid}")).await.1["total"], 4);
    assert_eq!(server.get(&format!("Observation?subject=Patient/{pid}")).await.1["total"], 4);
    assert_eq!(server.get(&format!("Observation?patient={pid}&code=2345-7")).await.1["total"], 3);
    assert_eq!(total("status=amended").await, 1);
    assert_eq!(total("category=laboratory").await, 5);
    assert_eq!(total("identifier=urn:test:obs|718-7-2024-02-15").await, 1);
    // dates: partial precision ranges
    assert_eq!(total("date=2024").await, 4);
    assert_eq!(total("date=2024-02").await, 2);
    assert_eq!(total("date=ge2024-02-01&date=lt2024-03-01").await, 2);
    assert_eq!(total("date=gt2024-02-29").await, 1);
    assert_eq!(total("date=lt2024-01-01").await, 1);
    assert_eq!(total("date=2024-02-10").await, 1); // 09:00 +09:00 is 00:00 UTC that day
    assert_eq!(total("value-quantity=gt100").await, 2);
    assert_eq!(total("value-quantity=13.5|http://unitsofmeasure.org|mg/dL").await, 1);
    // _id and _lastUpdated
    let (_, all) = server.get("Observation?_count=1").await;
    let first_id = all["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    assert_eq!(server.get(&format!("Observation?_id={first_id}")).await.1["total"], 1);
    assert_eq!(total("_lastUpdated=gt2000-01-01").await, 5);
    assert_eq!(total("_lastUpdated=lt2000-01-01").await, 0);
    // :missing
    assert_eq!(total("value-quantity:missing=true").await, 0);

    // sort and paging: follow `next` links until the end
    let (_, page) = server.get("Observation?code=2345-7&_sort=date&_count=2").await;
    assert_eq!(ids(&page), ["2023-12-31", "2024-01-10"]);
    let next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"].as_str().unwrap().to_string();
    let page2: Value = server.client.get(&next).send().await.unwrap().json().await.unwrap();
    assert_eq!(ids(&page2), ["2024-02-10T09:00:00+09:00", "2024-03"]);
    assert!(!page2["link"].as_array().unwrap().iter().any(|l| l["relation"] == "next"));
    let (_, desc) = server.get("Observation?code=2345-7&_sort=-date&_count=1").await;
    assert_eq!(ids(&desc), ["2024-03"]);

    // POST _search behaves like GET
    let r = server.client.post(server.url("Observation/_search")).header("content-type", "application/x-www-form-urlencoded")
        .body("code=718-7").send().await.unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["total"], 1);

    // strict handling refuses unknown parameters; lenient ignores them and says so
    let r = server.client.get(server.url("Observation?nonsense=1")).header("prefer", "handling=strict").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let (status, b) = server.get("Observation?nonsense=1").await;
    assert_eq!(status, 200);
    assert_eq!(b["total"], 5);
    assert!(b["entry"].as_array().unwrap().iter().any(|e| e["search"]["mode"] == "outcome"));
    // malformed values are 400 with the parameter named
    let (status, b) = server.get("Observation?date=2024-13-45").await;
    assert_eq!(status, 400);
    assert_outcome(&b, "bad date");
    assert_eq!(b["issue"][0]["expression"][0], "date");
    let (status, _) = server.get("Observation?_count=-1").await;
    assert_eq!(status, 400);
    let (status, _) = server.get("Observation?subject.name=x").await;
    assert_eq!(status, 400);

    // `combo-*` parameters (code or component code) are answered by the rows of their parts.
    let mut pressure = observation(&pid, "85354-9", "2024-04-01", "final", 0.0);
    pressure.as_object_mut().unwrap().remove("valueQuantity");
    pressure["component"] = json!([{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]);
    assert_eq!(server.post("Observation", &pressure).await.0, 201);
    assert_eq!(total("combo-code=8480-6").await, 1);
    assert_eq!(total("combo-code=2345-7").await, 4);
    assert_eq!(total("combo-code=http://loinc.org|85354-9").await, 1);
    assert_eq!(total("component-code=8480-6").await, 1);
    assert_eq!(total("code=8480-6").await, 0);
    assert_eq!(total("combo-value-quantity=gt100").await, 3);
    assert_eq!(total("combo-code:missing=true").await, 0);
    assert_eq!(total("combo-code:not=8480-6").await, 5);
    let (_, sorted) = server.get("Observation?combo-code=8480-6,718-7&_sort=combo-code").await;
    assert_eq!(ids(&sorted), ["2024-02-15", "2024-04-01"]);
    assert_eq!(total("value-quantity:missing=true").await, 1); // the pressure has components only

    // An update replaces the resource's index rows: its old values find it no more (the rows are
    // removed by the exact keys kept with the resource), its new ones do, and sorting sees them.
    let (_, found) = server.get("Observation?code=718-7").await;
    let id = found["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let mut changed = observation(&pid, "2093-3", "2025-05-05", "final", 222.0);
    changed["id"] = json!(id);
    let (status, body) = server.put(&format!("Observation/{id}"), &changed).await;
    assert_eq!(status, 200, "{body}");
    for gone in ["code=718-7", "identifier=urn:test:obs|718-7-2024-02-15", "value-quantity=13.5", "date=2024-02-15"] {
        assert_eq!(total(gone).await, 0, "{gone}");
    }
    for now in ["code=2093-3", "identifier=urn:test:obs|2093-3-2025-05-05", "value-quantity=222", "date=2025-05-05"] {
        assert_eq!(total(now).await, 1, "{now}");
    }
    let (_, latest) = server.get(&format!("Observation?patient={pid}&_sort=-date&_count=1")).await;
    assert_eq!(ids(&latest), ["2025-05-05"]);
});
