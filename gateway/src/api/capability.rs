//! `GET /fhir/metadata`: a CapabilityStatement that states exactly what this server does.

use axum::{extract::State, http::StatusCode, response::Response};
use serde_json::{Value, json};

use super::{SharedState, fhir_response};
use crate::search::SearchIndex;

pub async fn metadata(State(state): State<SharedState>) -> Response {
    fhir_response(StatusCode::OK, state.capability.clone())
}

/// Built once at start-up from the search parameters actually indexed.
pub fn capability_statement(index: &SearchIndex, operations: &[(&str, &str)]) -> String {
    let mut types: Vec<&str> = index.resource_types().collect();
    types.sort_unstable();
    let interactions = ["read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type"];
    let resources: Vec<Value> = types
        .iter()
        .map(|t| {
            let mut params: Vec<Value> = vec![
                json!({"name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"}),
                json!({"name": "_lastUpdated", "type": "date", "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"}),
            ];
            params.extend(index.params(t).map(|p| {
                json!({"name": p.code, "type": p.kind.as_str(), "definition": p.url, "documentation": p.description})
            }));
            json!({
                "type": t,
                "interaction": interactions.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": params,
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "publisher": "CLINS gateway",
        "kind": "instance",
        "software": {"name": "gateway", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "FHIR R4 gateway for Japan's EHR information sharing service"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Search: modifiers :missing (all), :not (token), :exact and :contains (string), \
                              :Type (reference); prefixes eq ne gt lt ge le sa eb ap on date, number, quantity; \
                              _count (max 1000), _offset, _sort, _summary=count. Chained parameters, _include and _has are not supported. \
                              Unknown parameters are ignored unless Prefer: handling=strict.",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "operation": operations.iter().map(|(name, def)| json!({"name": name, "definition": def})).collect::<Vec<_>>(),
        }],
    })
    .to_string()
}
