//! The terminology maintainers' operations on mapping tables: upload a version (CSV or
//! ConceptMap) and see its difference from the current one, compare versions, activate a version
//! at a date, roll back, list the tables, and re-map stored data as an asynchronous job.
//! Every operation needs a bearer token with a SMART scope granting write on ConceptMap (the
//! read-only ones accept read too); the token's `sub` is the actor in the audit trail.

use axum::{
    extract::{Path, RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};
use terminology::{TableReport, registry::AuditRecord, table::{ChangedSource, Row, TableDiff}};

use crate::{
    api::{ApiError, SharedState, base_url, fhir_response, read_limited},
    auth::{Access, Principal},
    mapping::{remap, today},
    store::{RemapJobRow, instant},
};

fn maintainer(state: &SharedState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    state.auth.require(headers, "ConceptMap", &[Access::Write])
}

fn reader(state: &SharedState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    state.auth.require(headers, "ConceptMap", &[Access::Read, Access::Write])
}

fn ok(status: StatusCode, parameters: Vec<Value>) -> Response {
    fhir_response(status, json!({"resourceType": "Parameters", "parameter": parameters}).to_string())
}

fn string(name: &str, value: &str) -> Value {
    json!({"name": name, "valueString": value})
}

/// `POST /fhir/ConceptMap/$upload-table`: the body is the table as `text/csv`, or a ConceptMap
/// (`application/fhir+json`). 201 with the difference from the current version; 200 when the same
/// version with the same content is already stored; 422 with the checker's report; 409 when the
/// version exists with other content.
pub async fn upload_table(State(state): State<SharedState>, headers: HeaderMap, request: Request) -> Result<Response, ApiError> {
    let who = maintainer(&state, &headers)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let body = read_limited(request.into_body(), state.max_body_bytes).await?;
    let parsed = match media.as_str() {
        "text/csv" => {
            let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the CSV table is not UTF-8"))?;
            state.mapping.parse_csv(text)
        }
        "application/fhir+json" | "application/json" => {
            let resource: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
            if resource["resourceType"] != "ConceptMap" {
                return Err(ApiError::bad_request("the body must be a ConceptMap (or a text/csv table)").at("resourceType"));
            }
            state.mapping.parse_concept_map(&resource)
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-supported",
                format!("Content-Type `{content_type}` is not supported; send the table as text/csv or a ConceptMap as application/fhir+json"),
            ));
        }
    };
    let table = parsed.map_err(refused)?;
    let url = table.url();
    let outcome = state.mapping.upload(table, &who.subject).await?;
    let mut parameters = vec![
        string("name", &outcome.name),
        string("version", &outcome.version),
        json!({"name": "url", "valueUri": url}),
        json!({"name": "new", "valueBoolean": outcome.new}),
    ];
    if let Some(c) = &outcome.compared_with {
        parameters.push(string("comparedWith", c));
    }
    if let Some(d) = &outcome.diff {
        parameters.extend(diff_parameters(d));
    }
    Ok(ok(if outcome.new { StatusCode::CREATED } else { StatusCode::OK }, parameters))
}

/// A refused table: 422 with one issue per problem, naming its line (CSV) or element (ConceptMap).
fn refused(report: TableReport) -> ApiError {
    let mut error = ApiError::unprocessable(format!(
        "mapping table {} refused: {} problem(s)",
        report.table.as_deref().unwrap_or("(unnamed)"),
        report.problems.len()
    ));
    for p in &report.problems {
        let expression = match (&p.field, p.line) {
            (Some(f), _) if f.starts_with("group[") || f == "resourceType" => Some(format!("ConceptMap.{f}")),
            (Some(f), 0) => Some(f.clone()),
            (f, line) if line > 0 => Some(format!("line[{line}]{}", f.as_ref().map(|f| format!(".{f}")).unwrap_or_default())),
            _ => None,
        };
        error = error.and(crate::api::OutcomeIssue { severity: "error", code: "invalid", diagnostics: p.to_string(), expression });
    }
    error
}

/// `GET /fhir/ConceptMap/$table-diff?name=N&version=V[&date=D]`: the difference between version
/// V and the version active at D (default today; else the latest other version).
pub async fn table_diff(State(state): State<SharedState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    reader(&state, &headers)?;
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let name = get("name").ok_or_else(|| ApiError::bad_request("parameter `name` is required").at("name"))?;
    let version = get("version").ok_or_else(|| ApiError::bad_request("parameter `version` is required").at("version"))?;
    let date = get("date").unwrap_or_else(today);
    let registry = state.mapping.registry();
    let history = registry.tables.get(&name).ok_or_else(|| ApiError::not_found(format!("unknown mapping table '{name}'")).at("name"))?;
    let new = registry
        .get(&name, &version)
        .ok_or_else(|| ApiError::not_found(format!("mapping table '{name}' has no version '{version}'")).at("version"))?;
    let current = registry.version_active_at(&name, &date).or_else(|| history.versions.iter().rev().find(|v| v.meta.version != version).cloned());
    let mut parameters = vec![string("name", &name), string("version", &version), json!({"name": "date", "valueDate": date})];
    if let Some(c) = &current {
        parameters.push(string("comparedWith", &c.meta.version));
        parameters.extend(diff_parameters(&terminology::diff(c, &new)));
    }
    Ok(ok(StatusCode::OK, parameters))
}

/// The parameters of a Parameters body (or none for an empty body).
async fn body_parameters(state: &SharedState, request: Request) -> Result<Vec<(String, String)>, ApiError> {
    let body = read_limited(request.into_body(), state.max_body_bytes).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if value["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request("the body must be a Parameters resource").at("resourceType"));
    }
    Ok(terminology::pairs_from_parameters(&value))
}

fn required(params: &[(String, String)], name: &str) -> Result<String, ApiError> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| ApiError::bad_request(format!("parameter `{name}` is required")).at(format!("Parameters.parameter.where(name='{name}')")))
}

fn active_today(state: &SharedState, name: &str) -> Value {
    match state.mapping.registry().version_active_at(name, &today()) {
        Some(t) => string("activeToday", &t.meta.version),
        None => string("activeToday", "none"),
    }
}

/// `POST /fhir/ConceptMap/$activate-table` with Parameters `name`, `version`, `date` (valueDate,
/// default today): that version is used from that date on.
pub async fn activate_table(State(state): State<SharedState>, headers: HeaderMap, request: Request) -> Result<Response, ApiError> {
    let who = maintainer(&state, &headers)?;
    let params = body_parameters(&state, request).await?;
    let (name, version) = (required(&params, "name")?, required(&params, "version")?);
    let date = params.iter().find(|(k, _)| k == "date").map(|(_, v)| v.clone()).unwrap_or_else(today);
    state.mapping.activate(&name, &version, &date, &who.subject).await?;
    Ok(ok(
        StatusCode::OK,
        vec![string("name", &name), string("version", &version), json!({"name": "date", "valueDate": date}), active_today(&state, &name)],
    ))
}

/// `POST /fhir/ConceptMap/$rollback-table` with Parameters `name`: undoes the table's latest
/// activation (409 when there is none).
pub async fn rollback_table(State(state): State<SharedState>, headers: HeaderMap, request: Request) -> Result<Response, ApiError> {
    let who = maintainer(&state, &headers)?;
    let params = body_parameters(&state, request).await?;
    let name = required(&params, "name")?;
    let undone = state
        .mapping
        .registry()
        .tables
        .get(&name)
        .and_then(|h| h.activations.iter().max_by_key(|a| a.seq).map(|a| (a.version.clone(), a.from.clone())));
    state.mapping.rollback(&name, &who.subject).await?;
    let mut parameters = vec![string("name", &name)];
    if let Some((version, from)) = undone {
        parameters.push(json!({"name": "undone", "part": [string("version", &version), json!({"name": "date", "valueDate": from})]}));
    }
    parameters.push(active_today(&state, &name));
    Ok(ok(StatusCode::OK, parameters))
}

/// `GET /fhir/ConceptMap/$tables`: every table with its versions, activations in force, the
/// version active today and its audit trail.
pub async fn tables(State(state): State<SharedState>, headers: HeaderMap) -> Result<Response, ApiError> {
    reader(&state, &headers)?;
    let registry = state.mapping.registry();
    let date = today();
    let mut parameters = vec![json!({"name": "date", "valueDate": date})];
    for (name, history) in &registry.tables {
        let audit: Vec<&AuditRecord> = registry.audit.iter().filter(|a| &a.table == name).collect();
        let mut parts = vec![string("name", name)];
        if let Some(v) = history.versions.last() {
            parts.push(json!({"name": "url", "valueUri": v.url()}));
        }
        parts.push(active_today(&state, name));
        for v in &history.versions {
            let upload = audit.iter().find(|a| a.action == "upload" && a.version.as_deref() == Some(&v.meta.version));
            let mut p = vec![
                string("version", &v.meta.version),
                json!({"name": "effectiveDate", "valueDate": v.meta.effective_date}),
                json!({"name": "rows", "valueInteger": v.rows.len()}),
            ];
            if let Some(u) = upload {
                p.push(string("uploadedBy", &u.actor));
                p.push(json!({"name": "uploadedAt", "valueDateTime": u.at}));
            }
            parts.push(json!({"name": "version", "part": p}));
        }
        for a in &history.activations {
            parts.push(json!({"name": "activation", "part": [
                string("version", &a.version), json!({"name": "date", "valueDate": a.from}), json!({"name": "sequence", "valueInteger": a.seq})
            ]}));
        }
        for a in audit {
            parts.push(json!({"name": "audit", "part": [
                json!({"name": "sequence", "valueInteger": a.seq}), json!({"name": "at", "valueDateTime": a.at}),
                string("actor", &a.actor), json!({"name": "action", "valueCode": a.action}),
                string("version", a.version.as_deref().unwrap_or_default()), string("detail", &a.detail)
            ]}));
        }
        parameters.push(json!({"name": "table", "part": parts}));
    }
    Ok(ok(StatusCode::OK, parameters))
}

/// `POST /fhir/$remap` (optional Parameters `table`): re-map stored data with today's tables in
/// the background. 202 with `Content-Location` of the job's status; 409 while a job runs.
pub async fn remap(State(state): State<SharedState>, headers: HeaderMap, request: Request) -> Result<Response, ApiError> {
    let who = maintainer(&state, &headers)?;
    let params = body_parameters(&state, request).await?;
    let table = params.iter().find(|(k, _)| k == "table").map(|(_, v)| v.as_str());
    let job = remap::start(&state.mapping, table, &who.subject).await.map_err(|e| match e {
        remap::StartError::Running(id) => ApiError::new(StatusCode::CONFLICT, "conflict", format!("re-mapping job {id} is still running; only one runs at a time"))
            .with_header(header::CONTENT_LOCATION, &format!("{}/$remap-status/{id}", base_url(&headers))),
        remap::StartError::UnknownTable(t) => ApiError::not_found(format!("unknown mapping table '{t}'")).at("Parameters.parameter.where(name='table')"),
        remap::StartError::Store(e) => e.into(),
    })?;
    let mut response = job_response(StatusCode::ACCEPTED, &job);
    if let Ok(v) = HeaderValue::from_str(&format!("{}/$remap-status/{}", base_url(&headers), job.id)) {
        response.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    Ok(response)
}

/// `GET /fhir/$remap-status/{id}`: 202 with `X-Progress` while running, 200 once ended (state
/// `done` or `failed`); the body gives the counts either way.
pub async fn remap_status(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    reader(&state, &headers)?;
    let job = state.mapping.store().remap_job(&id).await?.ok_or_else(|| ApiError::not_found(format!("no re-mapping job {id}")))?;
    let running = job.state == "running";
    let mut response = job_response(if running { StatusCode::ACCEPTED } else { StatusCode::OK }, &job);
    if running && let Ok(v) = HeaderValue::from_str(&format!("{} of {} resources", job.processed, job.total)) {
        response.headers_mut().insert("x-progress", v);
    }
    Ok(response)
}

fn job_response(status: StatusCode, job: &RemapJobRow) -> Response {
    let mut p = vec![
        string("job", &job.id),
        json!({"name": "state", "valueCode": job.state}),
        string("requestedBy", &job.requested_by),
        json!({"name": "started", "valueInstant": instant(job.started_at)}),
        json!({"name": "total", "valueInteger": job.total}),
        json!({"name": "processed", "valueInteger": job.processed}),
        json!({"name": "changed", "valueInteger": job.changed}),
        json!({"name": "skipped", "valueInteger": job.skipped}),
    ];
    if !job.table_name.is_empty() {
        p.push(string("table", &job.table_name));
    }
    if job.finished_at > 0 {
        p.push(json!({"name": "finished", "valueInstant": instant(job.finished_at)}));
    }
    if !job.error.is_empty() {
        p.push(string("error", &job.error));
    }
    ok(status, p)
}

fn row_parts(r: &Row) -> Vec<Value> {
    let mut p = vec![json!({"name": "sourceCode", "valueCode": r.source_code})];
    if !r.source_display.is_empty() {
        p.push(string("sourceDisplay", &r.source_display));
    }
    if !r.target_code.is_empty() {
        p.push(json!({"name": "targetCode", "valueCode": r.target_code}));
    }
    if !r.target_display.is_empty() {
        p.push(string("targetDisplay", &r.target_display));
    }
    p.push(json!({"name": "equivalence", "valueCode": r.equivalence.as_str()}));
    if r.line > 0 {
        p.push(json!({"name": "line", "valueInteger": r.line}));
    }
    p
}

fn target_parts(name: &str, r: &Row) -> Value {
    let p: Vec<Value> = row_parts(r).into_iter().filter(|p| p["name"] != "sourceCode" && p["name"] != "sourceDisplay").collect();
    json!({"name": name, "part": p})
}

fn changed_parts(c: &ChangedSource) -> Value {
    let mut p = vec![json!({"name": "sourceCode", "valueCode": c.source_code})];
    p.extend(c.old.iter().map(|r| target_parts("old", r)));
    p.extend(c.new.iter().map(|r| target_parts("new", r)));
    json!({"name": "changed", "part": p})
}

/// A diff as parameters: counts, then `metadata`, `added`, `removed`, `changed` entries.
fn diff_parameters(d: &TableDiff) -> Vec<Value> {
    let mut out = vec![
        json!({"name": "addedCount", "valueInteger": d.added.len()}),
        json!({"name": "removedCount", "valueInteger": d.removed.len()}),
        json!({"name": "changedCount", "valueInteger": d.changed.len()}),
    ];
    for (field, old, new) in &d.metadata {
        out.push(json!({"name": "metadata", "part": [string("field", field), string("old", old), string("new", new)]}));
    }
    out.extend(d.added.iter().map(|r| json!({"name": "added", "part": row_parts(r)})));
    out.extend(d.removed.iter().map(|r| json!({"name": "removed", "part": row_parts(r)})));
    out.extend(d.changed.iter().map(changed_parts));
    out
}
