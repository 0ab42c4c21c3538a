//! FHIR operations (`$name`).

pub mod maintainer;
mod submit;

use axum::{
    http::{HeaderMap, StatusCode},
    response::Response,
};
use fhir_profiles::{ValidationOptions, to_operation_outcome};
use serde_json::Value;

use crate::api::{ApiError, SharedState, fhir_response};

/// Operations this server offers, for the CapabilityStatement.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate"),
    ("submit", "http://jpfhir.jp/fhir/gateway/OperationDefinition/submit"),
    ("withdraw", "http://jpfhir.jp/fhir/gateway/OperationDefinition/withdraw"),
    ("receipt", "http://jpfhir.jp/fhir/gateway/OperationDefinition/receipt"),
    ("submissions", "http://jpfhir.jp/fhir/gateway/OperationDefinition/submissions"),
    ("summary", "http://jpfhir.jp/fhir/gateway/OperationDefinition/Patient-summary"),
    ("unmapped", "http://jpfhir.jp/fhir/gateway/OperationDefinition/unmapped"),
    ("lookup", "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup"),
    ("validate-code", "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code"),
    ("expand", "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"),
    ("translate", "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate"),
    // terminology maintainers (bearer token with a ConceptMap write scope)
    ("upload-table", "http://jpfhir.jp/fhir/gateway/OperationDefinition/ConceptMap-upload-table"),
    ("table-diff", "http://jpfhir.jp/fhir/gateway/OperationDefinition/ConceptMap-table-diff"),
    ("activate-table", "http://jpfhir.jp/fhir/gateway/OperationDefinition/ConceptMap-activate-table"),
    ("rollback-table", "http://jpfhir.jp/fhir/gateway/OperationDefinition/ConceptMap-rollback-table"),
    ("tables", "http://jpfhir.jp/fhir/gateway/OperationDefinition/ConceptMap-tables"),
    ("remap", "http://jpfhir.jp/fhir/gateway/OperationDefinition/remap"),
    ("remap-status", "http://jpfhir.jp/fhir/gateway/OperationDefinition/remap-status"),
];

/// Terminology operations at the type level (`CodeSystem/$lookup`, `ValueSet/$expand`, ...).
fn terminology_op(state: &SharedState, res_type: &str, op: &str, pairs: &[(String, String)]) -> Option<Result<Response, ApiError>> {
    let known = matches!(
        (res_type, op),
        ("CodeSystem", "lookup" | "validate-code") | ("ValueSet", "validate-code" | "expand") | ("ConceptMap", "translate")
    );
    if !known {
        return None;
    }
    if res_type == "ConceptMap" {
        state.mapping.refresh();
    }
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Some(match state.terminology.run_operation(&format!("{res_type}/${op}"), &pairs) {
        Ok(body) => Ok(fhir_response(StatusCode::OK, body.to_string())),
        Err(e) => Ok(fhir_response(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST), e.outcome.to_string())),
    })
}

/// `POST /fhir/$name`; `text` is the body as sent.
pub async fn system(state: &SharedState, op: &str, headers: &HeaderMap, body: Value, text: &[u8]) -> Result<Response, ApiError> {
    match op {
        "validate" => validate(state, None, body),
        "submit" => submit::submit(state, headers, body, text).await,
        "withdraw" => submit::withdraw(state, body).await,
        _ => Err(unknown(op)),
    }
}

/// `GET /fhir/$name?...`
pub async fn system_get(state: &SharedState, op: &str, params: &[(String, String)]) -> Result<Response, ApiError> {
    match op {
        "receipt" => submit::receipt(state, params).await,
        "submissions" => submit::history(state, params).await,
        "unmapped" => submit::unmapped(state, params).await,
        _ => Err(unknown(op)),
    }
}

pub async fn type_level(
    state: &SharedState,
    res_type: &str,
    op: &str,
    _headers: &HeaderMap,
    body: Value,
) -> Result<Response, ApiError> {
    if body["resourceType"] == "Parameters" {
        let pairs = terminology::pairs_from_parameters(&body);
        if let Some(answer) = terminology_op(state, res_type, op, &pairs) {
            return answer;
        }
    }
    match op {
        "validate" => validate(state, Some(res_type), body),
        _ => Err(unknown(op)),
    }
}

pub async fn type_level_get(state: &SharedState, res_type: &str, op: &str, params: &[(String, String)]) -> Result<Response, ApiError> {
    terminology_op(state, res_type, op, params).unwrap_or_else(|| Err(unknown(op)))
}

pub async fn instance_get(
    state: &SharedState,
    res_type: &str,
    id: &str,
    op: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    match (res_type, op) {
        ("Patient", "summary") => submit::summary(state, id, headers).await,
        _ => Err(unknown(op)),
    }
}

fn unknown(op: &str) -> ApiError {
    ApiError::not_found(format!("operation ${op} is not supported here"))
}

/// `$validate`: the body is the resource itself, or a Parameters with `resource` and an
/// optional `profile`. The answer is 200 with the OperationOutcome whatever its verdict: the
/// operation succeeded in validating.
fn validate(state: &SharedState, res_type: Option<&str>, body: Value) -> Result<Response, ApiError> {
    let (resource, profile) = if body["resourceType"] == "Parameters" {
        let params = body["parameter"].as_array().cloned().unwrap_or_default();
        let find = |name: &str| params.iter().find(|p| p["name"] == name);
        let resource = find("resource")
            .map(|p| p["resource"].clone())
            .filter(Value::is_object)
            .ok_or_else(|| ApiError::bad_request("Parameters has no `resource` parameter").at("Parameters.parameter"))?;
        let profile = find("profile").and_then(|p| p["valueUri"].as_str().or(p["valueCanonical"].as_str())).map(String::from);
        (resource, profile)
    } else {
        (body, None)
    };
    if let Some(t) = res_type {
        if resource["resourceType"] != t {
            return Err(ApiError::bad_request(format!("the resource is not a {t}")).at("resourceType"));
        }
    }
    let options = ValidationOptions { profiles: profile.into_iter().collect() };
    let issues = state.validator.validate(&resource, &options);
    Ok(fhir_response(StatusCode::OK, to_operation_outcome(&issues).to_string()))
}
