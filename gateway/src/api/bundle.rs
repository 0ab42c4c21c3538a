//! `POST /fhir` with a Bundle: `transaction` (all or nothing) and `batch` (each entry alone).
//! Document and collection Bundles go to the submission pipeline.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    ApiError, FhirJson, SharedState, base_url, fhir_response,
    rest::{self, Return, check_id, check_type, check_update_body, conditional_query, parse_etag, prefer},
};
use crate::store::{Op, Outcome, StoredResource, instant};

pub async fn post_base(
    State(state): State<SharedState>,
    headers: HeaderMap,
    FhirJson(bundle, text): FhirJson,
) -> Result<Response, ApiError> {
    if bundle["resourceType"] != "Bundle" {
        return Err(ApiError::bad_request("only a Bundle can be posted to the base URL").at("resourceType"));
    }
    match bundle["type"].as_str() {
        Some("transaction") => transaction(&state, &headers, bundle).await,
        Some("batch") => batch(&state, &headers, bundle).await,
        Some("document" | "collection") => crate::operations::system(&state, "submit", &headers, bundle, &text).await,
        other => Err(ApiError::bad_request(format!(
            "Bundle.type `{}` cannot be posted: use transaction, batch, document or collection",
            other.unwrap_or("(missing)")
        ))
        .at("Bundle.type")),
    }
}

/// What one Bundle entry asks for.
enum Planned {
    Write(Op),
    Read(String),
}

/// Processing order FHIR gives transactions: DELETE, POST, PUT, GET.
fn rank(p: &Planned) -> u8 {
    match p {
        Planned::Write(Op::Delete { .. }) => 0,
        Planned::Write(Op::Create { .. }) => 1,
        Planned::Write(Op::Update { .. }) => 2,
        Planned::Read(_) => 3,
        Planned::Write(Op::Submit(_) | Op::Withdraw { .. } | Op::Reject(_)) => {
            unreachable!("Bundle entries are plain REST interactions")
        }
    }
}

fn plan_entry(state: &SharedState, n: usize, entry: &Value) -> Result<Planned, ApiError> {
    let at = |path: &str| format!("Bundle.entry[{n}]{path}");
    let request = &entry["request"];
    let method = request["method"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("entry has no request.method").at(at(".request.method")))?;
    let url = request["url"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("entry has no request.url").at(at(".request.url")))?;
    let full_url = entry["fullUrl"].as_str().map(String::from);
    let resource = || {
        let r = entry["resource"].clone();
        if r.is_object() && r["resourceType"].is_string() {
            Ok(r)
        } else {
            Err(ApiError::bad_request(format!("a {method} entry needs a resource")).at(at(".resource")))
        }
    };
    let (path, _query) = url.split_once('?').unwrap_or((url, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let located = |e: ApiError| e.at(at(".request.url"));
    match method {
        "POST" => {
            let res_type = segments[0];
            check_type(state, res_type).map_err(located)?;
            let mut resource = resource()?;
            if resource["resourceType"] != res_type {
                return Err(ApiError::bad_request("resourceType does not match request.url").at(at(".resource.resourceType")));
            }
            let if_none_exist = match request["ifNoneExist"].as_str() {
                Some(c) => Some(conditional_query(state, res_type, c).map_err(|e| e.at(at(".request.ifNoneExist")))?),
                None => None,
            };
            let id = crate::store::new_id();
            resource["id"] = Value::String(id.clone());
            Ok(Planned::Write(Op::Create { res_type: res_type.to_string(), id, resource, if_none_exist, full_url }))
        }
        "PUT" => {
            let [res_type, id] = segments[..] else {
                return Err(ApiError::bad_request("PUT needs request.url Type/id (conditional update is not supported)")
                    .at(at(".request.url")));
            };
            check_type(state, res_type).map_err(located)?;
            check_id(id).map_err(located)?;
            let resource = resource()?;
            check_update_body(&resource, res_type, id).map_err(|e| e.at(at(".resource")))?;
            let if_match = match request["ifMatch"].as_str() {
                Some(t) => Some(parse_etag(t).map_err(|e| e.at(at(".request.ifMatch")))?),
                None => None,
            };
            Ok(Planned::Write(Op::Update {
                res_type: res_type.to_string(),
                id: id.to_string(),
                resource,
                if_match,
                full_url,
            }))
        }
        "DELETE" => {
            let [res_type, id] = segments[..] else {
                return Err(ApiError::bad_request("DELETE needs request.url Type/id (conditional delete is not supported)")
                    .at(at(".request.url")));
            };
            check_type(state, res_type).map_err(located)?;
            check_id(id).map_err(located)?;
            Ok(Planned::Write(Op::Delete { res_type: res_type.to_string(), id: id.to_string() }))
        }
        "GET" | "HEAD" => Ok(Planned::Read(url.to_string())),
        other => Err(ApiError::bad_request(format!("request.method `{other}` is not supported")).at(at(".request.method"))),
    }
}

fn entries(bundle: &Value) -> Result<&Vec<Value>, ApiError> {
    match &bundle["entry"] {
        Value::Array(entries) => Ok(entries),
        Value::Null => Err(ApiError::bad_request("the Bundle has no entries").at("Bundle.entry")),
        _ => Err(ApiError::bad_request("Bundle.entry must be an array").at("Bundle.entry")),
    }
}

async fn transaction(state: &SharedState, headers: &HeaderMap, bundle: Value) -> Result<Response, ApiError> {
    let entries = entries(&bundle)?;
    let mut seen = std::collections::HashSet::new();
    let mut planned = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter().enumerate() {
        if let Some(full_url) = entry["fullUrl"].as_str() {
            if !seen.insert(full_url) {
                return Err(ApiError::bad_request(format!("fullUrl {full_url} appears more than once"))
                    .at(format!("Bundle.entry[{n}].fullUrl")));
            }
        }
        planned.push((n, plan_entry(state, n, entry)?));
    }
    planned.sort_by_key(|(_, p)| rank(p));
    let mut writes = Vec::new();
    let mut write_entries = Vec::new();
    let mut reads = Vec::new();
    for (n, p) in planned {
        match p {
            Planned::Write(op) => {
                write_entries.push(n);
                writes.push(op);
            }
            Planned::Read(url) => reads.push((n, url)),
        }
    }
    let outcomes = if writes.is_empty() { Vec::new() } else { state.store.write(writes).await? };
    state.metrics.count_write("transaction");
    let base = base_url(headers);
    let ret = prefer(headers).ret;
    let mut responses: Vec<Value> = vec![Value::Null; entries.len()];
    for (n, outcome) in write_entries.into_iter().zip(outcomes) {
        responses[n] = outcome_entry(&base, &outcome, ret);
    }
    for (n, url) in reads {
        responses[n] = read_entry(state, headers, &url).await;
    }
    Ok(response_bundle("transaction-response", responses))
}

async fn batch(state: &SharedState, headers: &HeaderMap, bundle: Value) -> Result<Response, ApiError> {
    let entries = entries(&bundle)?;
    let base = base_url(headers);
    let ret = prefer(headers).ret;
    let mut responses = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter().enumerate() {
        let response = match plan_entry(state, n, entry) {
            Err(e) => error_entry(e),
            Ok(Planned::Read(url)) => read_entry(state, headers, &url).await,
            Ok(Planned::Write(op)) => match state.store.write(vec![op]).await {
                Ok(mut outcomes) => outcome_entry(&base, &outcomes.pop().expect("one outcome"), ret),
                Err(e) => error_entry(e.into()),
            },
        };
        responses.push(response);
    }
    state.metrics.count_write("batch");
    Ok(response_bundle("batch-response", responses))
}

fn response_bundle(kind: &str, responses: Vec<Value>) -> Response {
    let bundle = json!({
        "resourceType": "Bundle",
        "id": crate::store::new_id(),
        "type": kind,
        "entry": responses,
    });
    fhir_response(StatusCode::OK, bundle.to_string())
}

fn outcome_entry(base: &str, outcome: &Outcome, ret: Return) -> Value {
    let stored_entry = |stored: &StoredResource, status: &str| {
        let mut entry = json!({
            "fullUrl": format!("{base}/{}/{}", stored.res_type, stored.id),
            "response": {
                "status": status,
                "location": format!("{}/{}/_history/{}", stored.res_type, stored.id, stored.version),
                "etag": format!("W/\"{}\"", stored.version),
                "lastModified": instant(stored.last_updated),
            }
        });
        if ret == Return::Representation {
            if let Ok(resource) = serde_json::from_str::<Value>(&stored.body) {
                entry["resource"] = resource;
            }
        }
        entry
    };
    match outcome {
        Outcome::Created(s) => stored_entry(s, "201 Created"),
        Outcome::Updated(s) | Outcome::Existing(s) => stored_entry(s, "200 OK"),
        Outcome::Deleted(_) => json!({"response": {"status": "204 No Content"}}),
        Outcome::Submitted(_) | Outcome::Withdrawn(_) | Outcome::Rejected => {
            unreachable!("Bundle entries are plain REST interactions")
        }
    }
}

fn error_entry(e: ApiError) -> Value {
    json!({"response": {
        "status": format!("{} {}", e.status.as_u16(), e.status.canonical_reason().unwrap_or("")),
        "outcome": super::operation_outcome(&e.issues),
    }})
}

/// A GET entry: read, vread or search, answered like the plain REST call would be.
async fn read_entry(state: &SharedState, headers: &HeaderMap, url: &str) -> Value {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result: Result<Value, ApiError> = async {
        match segments[..] {
            [res_type] => {
                check_type(state, res_type)?;
                let params = rest::parse_query(Some(query));
                let response = rest::search(state, res_type, &params, headers).await?;
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Ok(json!({"resource": serde_json::from_slice::<Value>(&bytes).unwrap_or_default(), "response": {"status": "200 OK"}}))
            }
            [res_type, id] | [res_type, id, "_history", _] => {
                check_type(state, res_type)?;
                check_id(id)?;
                let stored = match segments[..] {
                    [_, _, _, vid] => {
                        let v = vid.parse().map_err(|_| ApiError::bad_request("bad version id"))?;
                        state.store.vread(res_type, id, v).await?
                    }
                    _ => state.store.read(res_type, id).await?,
                };
                match stored {
                    None => Err(ApiError::not_found(format!("{path} is not known"))),
                    Some(s) if s.deleted => Err(ApiError::new(StatusCode::GONE, "deleted", format!("{path} was deleted"))),
                    Some(s) => Ok(json!({
                        "resource": serde_json::from_str::<Value>(&s.body).unwrap_or_default(),
                        "response": {"status": "200 OK", "etag": format!("W/\"{}\"", s.version), "lastModified": instant(s.last_updated)}
                    })),
                }
            }
            _ => Err(ApiError::bad_request(format!("unsupported GET url `{url}`"))),
        }
    }
    .await;
    result.unwrap_or_else(error_entry)
}
