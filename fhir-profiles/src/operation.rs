//! `$validate` helpers for the gateway's CLI and HTTP layers.

use serde_json::Value;

use crate::issue::{Issue, has_errors, to_operation_outcome};
use crate::validator::{ValidationOptions, Validator};

/// Run `$validate` on a request body: either the resource itself, or a `Parameters` resource with
/// a `resource` parameter (and optional `profile` parameters). `type_in_path` is the `{type}` of
/// `POST /fhir/{type}/$validate` (the resource must be of that type); `profile` is the `profile`
/// query parameter. Returns the OperationOutcome and whether the resource is valid.
pub fn validate_operation(validator: &Validator, body: &Value, type_in_path: Option<&str>, profile: Option<&str>) -> (Value, bool) {
    let mut profiles: Vec<String> = profile.map(|p| vec![p.to_string()]).unwrap_or_default();
    let mut resource = body;
    if body.get("resourceType").and_then(Value::as_str) == Some("Parameters") && type_in_path != Some("Parameters") {
        let params = body.get("parameter").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        match params.iter().find(|p| p.get("name").and_then(Value::as_str) == Some("resource")).and_then(|p| p.get("resource")) {
            Some(r) => resource = r,
            None => {
                let i = Issue::error("required", "Parameters", "The $validate Parameters have no 'resource' parameter to validate");
                return (to_operation_outcome(&[i]), false);
            }
        }
        for p in params.iter().filter(|p| p.get("name").and_then(Value::as_str) == Some("profile")) {
            if let Some(u) = p.get("valueUri").or_else(|| p.get("valueCanonical")).and_then(Value::as_str) {
                profiles.push(u.to_string());
            }
        }
    }
    if let Some(t) = type_in_path {
        let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
        if rt != t {
            let i = Issue::error("invalid", rt, format!("The resource is a {rt}, but this is the $validate operation of {t}"));
            return (to_operation_outcome(&[i]), false);
        }
    }
    let issues = validator.validate(resource, &ValidationOptions { profiles });
    let ok = !has_errors(&issues);
    (to_operation_outcome(&issues), ok)
}

/// `gateway validate [--profile URL] FILE`: parse the bytes (JSON) and validate; returns the
/// OperationOutcome and whether the resource is valid.
pub fn validate_file_bytes(validator: &Validator, bytes: &[u8], profile: Option<&str>) -> (Value, bool) {
    let opts = ValidationOptions { profiles: profile.map(|p| vec![p.to_string()]).unwrap_or_default() };
    let issues = validator.validate_json(bytes, &opts);
    let ok = !has_errors(&issues);
    (to_operation_outcome(&issues), ok)
}
