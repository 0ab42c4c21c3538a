//! Receipts: the proof, kept with the data in one transaction, that a submission was accepted.
//! A receipt is a FHIR Parameters resource.

use serde_json::{Value, json};

use super::Submission;

/// `outcome`: `accepted` (a new unit) or `replaced` (an earlier unit with the same key);
/// `received`: the instant the unit was stored.
pub fn build(sub: &Submission, outcome: &str, received: &str) -> Value {
    let mut parameters = vec![
        json!({"name": "submission", "valueString": sub.id}),
        json!({"name": "received", "valueInstant": received}),
        json!({"name": "outcome", "valueCode": outcome}),
        json!({"name": "kind", "valueCode": sub.kind.as_str()}),
        json!({"name": "institution", "valueIdentifier": {
            "system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no", "value": sub.institution}}),
        json!({"name": "unit", "part": [
            {"name": "patientIdentifier", "valueIdentifier": {"system": sub.patient.system, "value": sub.patient.value}},
            {"name": "bundleIdentifier", "valueIdentifier": {"system": sub.unit.system, "value": sub.unit.value}},
        ]}),
        json!({"name": "patient", "valueReference": {"reference": format!("Patient/{}", sub.patient.patient_id())}}),
    ];
    for m in &sub.members {
        let mut part = vec![
            json!({"name": "kind", "valueCode": m.kind}),
            json!({"name": "resource", "valueReference": {"reference": format!("{}/{}", m.res_type, m.id)}}),
        ];
        for flag in &m.flags {
            part.push(json!({"name": "flag", "valueCode": flag}));
        }
        parameters.push(json!({"name": "stored", "part": part}));
    }
    parameters.push(json!({"name": "mappedCodings", "valueInteger": sub.mapped}));
    parameters.push(json!({"name": "unmappedCodes", "valueInteger": sub.unmapped.len()}));
    if !sub.warnings.is_empty() {
        parameters.push(json!({"name": "warnings", "resource": fhir_profiles::to_operation_outcome(&sub.warnings)}));
    }
    json!({"resourceType": "Parameters", "id": sub.id, "parameter": parameters})
}
