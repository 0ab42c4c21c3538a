//! Rough performance check (run with `--release -- --ignored --nocapture`).

#[allow(dead_code)]
mod common;
use common as suite;

use fhirpath::{Context, Expression, evaluate};
use serde_json::json;
use std::time::Instant;

#[test]
#[ignore]
fn perf_simple_paths() {
    let m = suite::model();
    let patient = json!({
        "resourceType": "Patient", "id": "p1",
        "identifier": [{"system": "y", "value": "1"}, {"system": "x", "value": "2"}],
        "name": [{"family": "Yamada", "given": ["Taro"]}],
        "birthDate": "1970-01-01", "gender": "male"
    });
    let ctx = Context::new(m).with_resource(&patient);
    for src in [
        "identifier.where(system='x').value",
        "Patient.name.family",
        "birthDate < @2000-01-01",
        "name.given.first() = 'Taro' and gender = 'male'",
        "Patient.identifier.value.first().matches('^[0-9]+$')",
    ] {
        let e = Expression::parse(src).unwrap();
        let n = 200_000;
        let t = Instant::now();
        let mut c = 0;
        for _ in 0..n {
            c += evaluate(&e, &ctx, &patient, "Patient").unwrap().len();
        }
        let per = t.elapsed() / n;
        println!("{src:60} {per:?} ({c})");
    }
}
