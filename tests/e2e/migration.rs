//! Schema migrations on a database that already holds data: the rows written under the older
//! layout must stay findable and replaceable after the gateway migrates it on start.

use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::{both_engines, harness::Server};

/// Turns the search index tables back into their layout before migration 0007 (no `stored_at`
/// in the key) and marks 0007 as not applied, as a database written by an older gateway is.
const BEFORE_0007: &str = "
CREATE TABLE idx_token_old (res_type TEXT NOT NULL, param TEXT NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL,
    res_id TEXT NOT NULL, PRIMARY KEY (res_type, param, code, system, res_id));
INSERT INTO idx_token_old SELECT res_type, param, code, system, res_id FROM idx_token;
DROP TABLE idx_token;
ALTER TABLE idx_token_old RENAME TO idx_token;
CREATE TABLE idx_string_old (res_type TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL, res_id TEXT NOT NULL,
    PRIMARY KEY (res_type, param, value, res_id));
INSERT INTO idx_string_old SELECT res_type, param, value, res_id FROM idx_string;
DROP TABLE idx_string;
ALTER TABLE idx_string_old RENAME TO idx_string;
CREATE TABLE idx_date_old (res_type TEXT NOT NULL, param TEXT NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL,
    res_id TEXT NOT NULL, PRIMARY KEY (res_type, param, lo, hi, res_id));
INSERT INTO idx_date_old SELECT res_type, param, lo, hi, res_id FROM idx_date;
DROP TABLE idx_date;
ALTER TABLE idx_date_old RENAME TO idx_date;
CREATE TABLE idx_reference_old (res_type TEXT NOT NULL, param TEXT NOT NULL, target TEXT NOT NULL, res_id TEXT NOT NULL,
    PRIMARY KEY (res_type, param, target, res_id));
INSERT INTO idx_reference_old SELECT res_type, param, target, res_id FROM idx_reference;
DROP TABLE idx_reference;
ALTER TABLE idx_reference_old RENAME TO idx_reference;
CREATE TABLE idx_number_old (res_type TEXT NOT NULL, param TEXT NOT NULL, value DOUBLE PRECISION NOT NULL,
    system TEXT NOT NULL, code TEXT NOT NULL, res_id TEXT NOT NULL, PRIMARY KEY (res_type, param, value, system, code, res_id));
INSERT INTO idx_number_old SELECT res_type, param, value, system, code, res_id FROM idx_number;
DROP TABLE idx_number;
ALTER TABLE idx_number_old RENAME TO idx_number;
DELETE FROM _sqlx_migrations WHERE version = 7;
";

const INDEX_TABLES: [&str; 5] = ["idx_token", "idx_string", "idx_date", "idx_reference", "idx_number"];

fn observation(patient: &str, code: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2025-04-01",
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    })
}

async fn total(server: &Server, query: &str) -> i64 {
    let (status, bundle) = server.get(query).await;
    assert_eq!(status, 200, "{query}: {bundle}");
    bundle["total"].as_i64().unwrap_or_else(|| panic!("{query}: no total in {bundle}"))
}

both_engines!(index_rows_written_before_0007_are_migrated, |db| async move {
    let mut server = Server::start(&db).await;
    let (status, patient) =
        server.post("Patient", &json!({"resourceType": "Patient", "name": [{"family": "Migrate"}], "gender": "female", "birthDate": "1960-02-03"})).await;
    assert_eq!(status, 201, "{patient}");
    let pid = patient["id"].as_str().unwrap().to_string();
    let (status, obs) = server.post("Observation", &observation(&pid, "2345-7", 95.0)).await;
    assert_eq!(status, 201, "{obs}");
    let oid = obs["id"].as_str().unwrap().to_string();
    server.kill();

    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql(BEFORE_0007).execute(&mut conn).await.expect("back to the layout before 0007");
    let server = Server::start(&db).await;

    // Every kind of row written before the migration still finds its resource.
    for query in [
        "Patient?family=migrate",
        "Patient?gender=female",
        "Patient?birthdate=1960-02-03",
        "Observation?code=http://loinc.org|2345-7",
        &format!("Observation?subject=Patient/{pid}"),
        "Observation?value-quantity=95",
    ] {
        assert_eq!(total(&server, query).await, 1, "{query}");
    }
    // Replacing the resources removes their migrated rows exactly: the old values find nothing.
    let mut changed = patient.clone();
    changed["gender"] = json!("male");
    changed["name"] = json!([{"family": "Renamed"}]);
    let (status, body) = server.put(&format!("Patient/{pid}"), &changed).await;
    assert_eq!(status, 200, "{body}");
    let mut changed = observation(&pid, "718-7", 13.5);
    changed["id"] = json!(oid);
    let (status, body) = server.put(&format!("Observation/{oid}"), &changed).await;
    assert_eq!(status, 200, "{body}");
    for (query, expected) in [
        ("Patient?family=migrate", 0),
        ("Patient?family=renamed", 1),
        ("Patient?gender=female", 0),
        ("Patient?gender=male", 1),
        ("Observation?code=2345-7", 0),
        ("Observation?code=718-7", 1),
        ("Observation?value-quantity=95", 0),
        ("Observation?value-quantity=13.5", 1),
    ] {
        assert_eq!(total(&server, query).await, expected, "{query}");
    }
    // No row is left that does not belong to its resource's current version.
    for table in INDEX_TABLES {
        let orphans: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM {table} i LEFT JOIN resource_current r ON r.res_type = i.res_type AND r.res_id = i.res_id
             WHERE r.res_id IS NULL OR r.last_updated <> i.stored_at"
        ))
        .fetch_one(&mut conn)
        .await
        .expect("count")
        .get(0);
        assert_eq!(orphans, 0, "{table}");
    }
});
