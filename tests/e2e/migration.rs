//! Schema migrations on a database that already holds data: the rows written under the older
//! layout must stay findable and replaceable after the gateway migrates it on start.

use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::{both_engines, harness::Server};

/// Each search index table and its value columns, as before migration 0007.
const INDEX_TABLES: [(&str, &str); 5] = [
    ("idx_token", "code TEXT NOT NULL, system TEXT NOT NULL"),
    ("idx_string", "value TEXT NOT NULL"),
    ("idx_date", "lo BIGINT NOT NULL, hi BIGINT NOT NULL"),
    ("idx_reference", "target TEXT NOT NULL"),
    ("idx_number", "value DOUBLE PRECISION NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL"),
];

/// Turns the search index tables back into their layout before migration 0007 (no `stored_at`
/// in the key) and marks 0007 as not applied, as a database written by an older gateway is.
fn before_0007() -> String {
    let mut sql = String::new();
    for (table, values) in INDEX_TABLES {
        let names: Vec<&str> = values.split(", ").map(|c| c.split(' ').next().unwrap()).collect();
        let columns = format!("res_type, param, {}, res_id", names.join(", "));
        sql.push_str(&format!(
            "CREATE TABLE {table}_old (res_type TEXT NOT NULL, param TEXT NOT NULL, {values}, res_id TEXT NOT NULL,
                 PRIMARY KEY ({columns}));
             INSERT INTO {table}_old SELECT {columns} FROM {table};
             DROP TABLE {table};
             ALTER TABLE {table}_old RENAME TO {table};\n"
        ));
    }
    sql + "DELETE FROM _sqlx_migrations WHERE version = 7;"
}

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
    sqlx::raw_sql(&before_0007()).execute(&mut conn).await.expect("back to the layout before 0007");
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
    for (table, _) in INDEX_TABLES {
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

/// Turns the unit tables back into their layout before migration 0008 (rowid tables with a
/// separate primary-key index) and marks 0008 as not applied.
const BEFORE_0008: &str = "
    CREATE TABLE submission_unit_old (patient_key TEXT NOT NULL, bundle_system TEXT NOT NULL, bundle_value TEXT NOT NULL,
        submission_id TEXT NOT NULL, content_hash TEXT NOT NULL, institution TEXT NOT NULL,
        PRIMARY KEY (patient_key, bundle_system, bundle_value));
    INSERT INTO submission_unit_old SELECT * FROM submission_unit;
    DROP TABLE submission_unit;
    ALTER TABLE submission_unit_old RENAME TO submission_unit;
    CREATE TABLE unit_member_old (patient_key TEXT NOT NULL, bundle_system TEXT NOT NULL, bundle_value TEXT NOT NULL,
        res_type TEXT NOT NULL, res_id TEXT NOT NULL, item_kind TEXT NOT NULL, flags TEXT NOT NULL,
        PRIMARY KEY (patient_key, bundle_system, bundle_value, res_type, res_id));
    INSERT INTO unit_member_old SELECT * FROM unit_member;
    DROP TABLE unit_member;
    ALTER TABLE unit_member_old RENAME TO unit_member;
    DELETE FROM _sqlx_migrations WHERE version = 8;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_stored_before_0008_are_migrated() {
    use crate::harness::{Database, Engine};
    use crate::submission::param;
    let db = Database::create(Engine::Sqlite).await.expect("sqlite");
    let mut server = Server::start(&db).await;
    let bundle = crate::submission::example("Bundle-Bundle-CLINS-Observations-Example-01.json");
    let (status, receipt) = server.post("$submit", &bundle).await;
    assert_eq!(status, 201, "{receipt}");
    server.kill();

    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql(BEFORE_0008).execute(&mut conn).await.expect("back to the layout before 0008");
    let server = Server::start(&db).await;
    for table in ["submission_unit", "unit_member"] {
        let sql: String = sqlx::query(&format!("SELECT sql FROM sqlite_master WHERE name = '{table}'"))
            .fetch_one(&mut conn)
            .await
            .expect("schema")
            .get(0);
        assert!(sql.contains("WITHOUT ROWID"), "{table}: {sql}");
    }

    // The unit is still found by its key: an identical resend gets the earlier receipt ...
    let (status, again) = server.post("$submit", &bundle).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, receipt);
    // ... and withdrawing it removes every member the unit recorded before the migration.
    let unit = param(&receipt, "unit");
    let part = |name: &str| unit["part"].as_array().unwrap().iter().find(|p| p["name"] == name).expect(name)["valueIdentifier"].clone();
    let patient = param(&receipt, "patient")["valueReference"]["reference"].as_str().unwrap().to_string();
    assert_eq!(total(&server, &format!("Observation?patient={patient}&_summary=count")).await, 4);
    let withdraw = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patientIdentifier", "valueIdentifier": part("patientIdentifier")},
        {"name": "bundleIdentifierSystem", "valueUri": part("bundleIdentifier")["system"]},
        {"name": "bundleIdentifierValue", "valueString": part("bundleIdentifier")["value"]}
    ]});
    let (status, body) = server.post("$withdraw", &withdraw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(total(&server, &format!("Observation?patient={patient}&_summary=count")).await, 0);
}
