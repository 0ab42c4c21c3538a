//! FHIR operations (`$name`).

use axum::{http::HeaderMap, response::Response};
use serde_json::Value;

use crate::api::{ApiError, SharedState};

/// Operations this server offers, for the CapabilityStatement.
pub const OPERATIONS: &[(&str, &str)] = &[];

pub async fn system(_state: &SharedState, op: &str, _headers: &HeaderMap, _body: Value) -> Result<Response, ApiError> {
    Err(unknown(op))
}

pub async fn type_level(
    _state: &SharedState,
    _res_type: &str,
    op: &str,
    _headers: &HeaderMap,
    _body: Value,
) -> Result<Response, ApiError> {
    Err(unknown(op))
}

pub async fn type_level_get(_state: &SharedState, _res_type: &str, op: &str, _headers: &HeaderMap) -> Result<Response, ApiError> {
    Err(unknown(op))
}

pub async fn instance_get(
    _state: &SharedState,
    _res_type: &str,
    _id: &str,
    op: &str,
    _headers: &HeaderMap,
) -> Result<Response, ApiError> {
    Err(unknown(op))
}

fn unknown(op: &str) -> ApiError {
    ApiError::not_found(format!("operation ${op} is not supported here"))
}
