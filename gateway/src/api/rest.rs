//! The instance and type interactions: create, read, vread, update, delete, history, search.

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{ApiError, FhirJson, SharedState, base_url, fhir_response, valid_id};
use crate::{
    search::{SearchQuery, query::DEFAULT_COUNT},
    store::{Op, Outcome, StoredResource, instant},
};

/// What the client asked for with `Prefer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    #[default]
    Representation,
    Minimal,
    OperationOutcome,
}

pub struct Prefer {
    pub ret: Return,
    pub strict: bool,
}

pub fn prefer(headers: &HeaderMap) -> Prefer {
    let mut p = Prefer { ret: Return::Representation, strict: false };
    for value in headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
        for part in value.split([',', ';']).map(str::trim) {
            match part {
                "return=minimal" => p.ret = Return::Minimal,
                "return=representation" => p.ret = Return::Representation,
                "return=OperationOutcome" => p.ret = Return::OperationOutcome,
                "handling=strict" => p.strict = true,
                "handling=lenient" => p.strict = false,
                _ => {}
            }
        }
    }
    p
}

pub fn check_type(state: &SharedState, res_type: &str) -> Result<(), ApiError> {
    if state.store.index().model().is_resource_type(res_type) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("`{res_type}` is not a FHIR R4 resource type this server supports")))
    }
}

pub fn check_id(id: &str) -> Result<(), ApiError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("`{id}` is not a valid resource id (1-64 of A-Z a-z 0-9 - .)")))
    }
}

/// Headers every response that carries one version has.
fn version_headers(response: &mut Response, base: &str, stored: &StoredResource, location: bool) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", stored.version)) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(stored.last_updated)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if location {
        let url = format!("{base}/{}/{}/_history/{}", stored.res_type, stored.id, stored.version);
        if let Ok(v) = HeaderValue::from_str(&url) {
            headers.insert(header::LOCATION, v.clone());
            headers.insert(header::CONTENT_LOCATION, v);
        }
    }
}

fn http_date(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// The reply to a successful write, shaped by `Prefer: return=`.
pub fn write_response(status: StatusCode, base: &str, stored: &StoredResource, ret: Return, message: &str) -> Response {
    let body = match ret {
        Return::Representation => stored.body.clone(),
        Return::Minimal => String::new(),
        Return::OperationOutcome => super::operation_outcome(&[super::OutcomeIssue {
            severity: "information",
            code: "informational",
            diagnostics: message.to_string(),
            expression: None,
        }])
        .to_string(),
    };
    let mut response = if body.is_empty() { status.into_response() } else { fhir_response(status, body) };
    version_headers(&mut response, base, stored, true);
    response
}

/// `POST /fhir/{type}`: create, or a system-level operation such as `$validate`.
pub async fn create_or_operation(
    State(state): State<SharedState>,
    Path(res_type): Path<String>,
    headers: HeaderMap,
    FhirJson(resource, text): FhirJson,
) -> Result<Response, ApiError> {
    if let Some(op) = res_type.strip_prefix('$') {
        return crate::operations::system(&state, op, &headers, resource, &text).await;
    }
    check_type(&state, &res_type)?;
    if resource["resourceType"] != res_type.as_str() {
        return Err(ApiError::bad_request(format!(
            "the body's resourceType `{}` does not match the URL's `{res_type}`",
            resource["resourceType"].as_str().unwrap_or_default()
        ))
        .at("resourceType"));
    }
    let if_none_exist = match headers.get("if-none-exist").and_then(|v| v.to_str().ok()) {
        Some(criteria) => Some(conditional_query(&state, &res_type, criteria)?),
        None => None,
    };
    let id = crate::store::new_id();
    let mut resource = resource;
    resource["id"] = Value::String(id.clone());
    let op = Op::Create { res_type, id, resource, if_none_exist, full_url: None };
    let outcome = state.store.write(vec![op]).await?.pop().expect("one outcome per op");
    state.metrics.count_write("create");
    let base = base_url(&headers);
    let ret = prefer(&headers).ret;
    Ok(match outcome {
        Outcome::Created(stored) => write_response(StatusCode::CREATED, &base, &stored, ret, "created"),
        Outcome::Existing(stored) => {
            write_response(StatusCode::OK, &base, &stored, ret, "a resource matching If-None-Exist already exists")
        }
        _ => unreachable!("a create yields Created or Existing"),
    })
}

/// Parse conditional-create criteria (`identifier=sys|val`); they must select something.
pub fn conditional_query(state: &SharedState, res_type: &str, criteria: &str) -> Result<SearchQuery, ApiError> {
    let criteria = criteria.split_once('?').map(|(_, q)| q).unwrap_or(criteria);
    let params: Vec<(String, String)> = url::form_urlencoded::parse(criteria.as_bytes()).into_owned().collect();
    let query = SearchQuery::parse(state.store.index(), res_type, &params, true)?;
    if query.is_empty() {
        return Err(ApiError::bad_request("If-None-Exist has no search criteria"));
    }
    Ok(query)
}

pub async fn read(
    State(state): State<SharedState>,
    Path((res_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_type(&state, &res_type)?;
    if id == "_history" {
        return history_type(&state, &res_type, query.as_deref(), &headers).await;
    }
    if let Some(op) = id.strip_prefix('$') {
        return crate::operations::type_level_get(&state, &res_type, op, &parse_query(query.as_deref())).await;
    }
    check_id(&id)?;
    let stored = state.store.read(&res_type, &id).await?;
    serve_version(stored, &base_url(&headers), &format!("{res_type}/{id}"))
}

pub async fn vread(
    State(state): State<SharedState>,
    Path((res_type, id, vid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_type(&state, &res_type)?;
    check_id(&id)?;
    let version: i64 = vid.parse().map_err(|_| ApiError::bad_request(format!("`{vid}` is not a version id")))?;
    let stored = state.store.vread(&res_type, &id, version).await?;
    serve_version(stored, &base_url(&headers), &format!("{res_type}/{id}/_history/{vid}"))
}

fn serve_version(stored: Option<StoredResource>, base: &str, what: &str) -> Result<Response, ApiError> {
    match stored {
        None => Err(ApiError::not_found(format!("{what} is not known"))),
        Some(s) if s.deleted => {
            let mut response = ApiError::new(StatusCode::GONE, "deleted", format!("{what} was deleted")).into_response();
            version_headers(&mut response, base, &s, false);
            Ok(response)
        }
        Some(s) => {
            let mut response = fhir_response(StatusCode::OK, s.body.clone());
            version_headers(&mut response, base, &s, false);
            Ok(response)
        }
    }
}

pub async fn update(
    State(state): State<SharedState>,
    Path((res_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    FhirJson(resource, _): FhirJson,
) -> Result<Response, ApiError> {
    check_type(&state, &res_type)?;
    check_id(&id)?;
    check_update_body(&resource, &res_type, &id)?;
    let if_match = if_match(&headers)?;
    let op = Op::Update { res_type, id, resource, if_match, full_url: None };
    let outcome = state.store.write(vec![op]).await?.pop().expect("one outcome per op");
    state.metrics.count_write("update");
    let base = base_url(&headers);
    let ret = prefer(&headers).ret;
    Ok(match outcome {
        Outcome::Created(stored) => write_response(StatusCode::CREATED, &base, &stored, ret, "created"),
        Outcome::Updated(stored) => write_response(StatusCode::OK, &base, &stored, ret, "updated"),
        _ => unreachable!("an update yields Created or Updated"),
    })
}

pub fn check_update_body(resource: &Value, res_type: &str, id: &str) -> Result<(), ApiError> {
    if resource["resourceType"] != res_type {
        return Err(ApiError::bad_request(format!("the body's resourceType does not match the URL's `{res_type}`"))
            .at("resourceType"));
    }
    match resource["id"].as_str() {
        Some(body_id) if body_id == id => Ok(()),
        Some(body_id) => Err(ApiError::bad_request(format!(
            "the body's id `{body_id}` does not match the URL's id `{id}`"
        ))
        .at(format!("{res_type}.id"))),
        None => Err(ApiError::bad_request("an update must carry the resource id in the body").at(format!("{res_type}.id"))),
    }
}

/// `If-Match: W/"3"` -> 3.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        None => Ok(None),
        Some(text) => parse_etag(text).map(Some),
    }
}

pub fn parse_etag(text: &str) -> Result<i64, ApiError> {
    let bare = text.trim().trim_start_matches("W/").trim_matches('"');
    bare.parse().map_err(|_| ApiError::bad_request(format!("If-Match `{text}` is not a version ETag like W/\"1\"")))
}

pub async fn delete(
    State(state): State<SharedState>,
    Path((res_type, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_type(&state, &res_type)?;
    check_id(&id)?;
    state.store.write(vec![Op::Delete { res_type, id }]).await?;
    state.metrics.count_write("delete");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn search_get(
    State(state): State<SharedState>,
    Path(res_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = parse_query(query.as_deref());
    if let Some(op) = res_type.strip_prefix('$') {
        return crate::operations::system_get(&state, op, &params).await;
    }
    check_type(&state, &res_type)?;
    search(&state, &res_type, &params, &headers).await
}

pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

pub async fn search(
    state: &SharedState,
    res_type: &str,
    params: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let query = SearchQuery::parse(state.store.index(), res_type, params, prefer(headers).strict)?;
    let count = if query.count_only { 0 } else { query.count };
    let (found, total) = state.store.search(res_type, &query, count).await?;
    let base = base_url(headers);
    let page_url = |offset: i64| {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &query.used {
            if k != "_count" {
                pairs.append_pair(k, v);
            }
        }
        pairs.append_pair("_count", &query.count.to_string());
        if offset > 0 {
            pairs.append_pair("_offset", &offset.to_string());
        }
        format!("{base}/{res_type}?{}", pairs.finish())
    };
    let mut links = vec![("self", page_url(query.offset))];
    if query.count > 0 && query.offset + query.count < total {
        links.push(("next", page_url(query.offset + query.count)));
    }
    if query.offset > 0 {
        links.push(("previous", page_url((query.offset - query.count).max(0))));
    }
    let entries: Vec<String> = found
        .iter()
        .map(|s| {
            format!(
                r#"{{"fullUrl":{},"resource":{},"search":{{"mode":"match"}}}}"#,
                json!(format!("{base}/{res_type}/{}", s.id)),
                s.body
            )
        })
        .collect();
    let mut extra = String::new();
    if !query.ignored.is_empty() {
        // Tell the client which parameters did not take part (lenient handling).
        let outcome = super::operation_outcome(&[super::OutcomeIssue {
            severity: "warning",
            code: "not-supported",
            diagnostics: format!("search parameters ignored: {}", query.ignored.join(", ")),
            expression: None,
        }]);
        extra = format!(
            r#",{{"resource":{},"search":{{"mode":"outcome"}}}}"#,
            outcome
        );
    }
    let body = format!(
        r#"{{"resourceType":"Bundle","id":{},"meta":{{"lastUpdated":{}}},"type":"searchset","total":{},"link":{},"entry":[{}{}]}}"#,
        json!(crate::store::new_id()),
        json!(instant(crate::store::now_micros())),
        total,
        links_json(&links),
        entries.join(","),
        if entries.is_empty() { extra.trim_start_matches(',').to_string() } else { extra }
    );
    Ok(fhir_response(StatusCode::OK, body))
}

fn links_json(links: &[(&str, String)]) -> Value {
    Value::Array(links.iter().map(|(rel, url)| json!({"relation": rel, "url": url})).collect())
}

pub async fn history_system(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    history(&state, None, None, query.as_deref(), &headers).await
}

/// `GET /fhir/{type}/{id}/{sub}`: `_history` of the instance, or an instance operation.
pub async fn instance_sub(
    State(state): State<SharedState>,
    Path((res_type, id, sub)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_type(&state, &res_type)?;
    if id == "_history" {
        return Err(ApiError::not_found(format!("no such path: /{res_type}/_history/{sub}")));
    }
    check_id(&id)?;
    if sub == "_history" {
        return history(&state, Some(&res_type), Some(&id), query.as_deref(), &headers).await;
    }
    if let Some(op) = sub.strip_prefix('$') {
        return crate::operations::instance_get(&state, &res_type, &id, op, &headers).await;
    }
    Err(ApiError::not_found(format!("no such path: /{res_type}/{id}/{sub}")))
}

pub async fn instance_post(
    State(state): State<SharedState>,
    Path((res_type, id, sub)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    check_type(&state, &res_type)?;
    if sub == "_search" || sub == "_history" || !sub.starts_with('$') {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "not-supported", "POST is not allowed here"));
    }
    Err(ApiError::not_found(format!("operation {sub} is not supported on {res_type}/{id}")))
}

/// `POST /fhir/{type}/{x}`: `_search` or a type-level operation (`$validate`).
pub async fn post_type_path(
    State(state): State<SharedState>,
    Path((res_type, sub)): Path<(String, String)>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    check_type(&state, &res_type)?;
    if sub == "_search" {
        let bytes = super::read_limited(request.into_body(), state.max_body_bytes).await?;
        let params: Vec<(String, String)> = url::form_urlencoded::parse(&bytes).into_owned().collect();
        return search(&state, &res_type, &params, &headers).await;
    }
    if let Some(op) = sub.strip_prefix('$') {
        use axum::extract::FromRequest;
        let FhirJson(body, _) = FhirJson::from_request(request, &state).await?;
        return crate::operations::type_level(&state, &res_type, op, &headers, body).await;
    }
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "not-supported",
        format!("POST is not allowed on an instance ({res_type}/{sub}); use PUT to update"),
    ))
}

pub async fn history_type(
    state: &SharedState,
    res_type: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    history(state, Some(res_type), None, query, headers).await
}

async fn history(
    state: &SharedState,
    res_type: Option<&str>,
    id: Option<&str>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mut count = DEFAULT_COUNT;
    let mut offset = 0;
    let mut since = None;
    for (k, v) in parse_query(query) {
        let bad = || ApiError::bad_request(format!("`{v}` is not a valid value for {k}")).at(k.clone());
        match k.as_str() {
            "_count" => count = v.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(bad)?.min(1000),
            "_offset" => offset = v.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(bad)?,
            "_since" => since = Some(crate::search::date_range(&v).ok_or_else(bad)?.0),
            _ => {}
        }
    }
    let (versions, total) = state.store.history(res_type, id, since, count, offset).await?;
    let base = base_url(headers);
    let entries: Vec<String> = versions
        .iter()
        .map(|s| {
            let url = format!("{base}/{}/{}", s.res_type, s.id);
            let (method, status) = match (s.deleted, s.version) {
                (true, _) => ("DELETE", "204 No Content"),
                (false, 1) => ("POST", "201 Created"),
                (false, _) => ("PUT", "200 OK"),
            };
            let request = json!({"method": method, "url": format!("{}/{}", s.res_type, s.id)});
            let response = json!({"status": status, "etag": format!("W/\"{}\"", s.version), "lastModified": instant(s.last_updated)});
            if s.deleted {
                format!(r#"{{"fullUrl":{},"request":{request},"response":{response}}}"#, json!(url))
            } else {
                format!(r#"{{"fullUrl":{},"resource":{},"request":{request},"response":{response}}}"#, json!(url), s.body)
            }
        })
        .collect();
    let path = match (res_type, id) {
        (Some(t), Some(i)) => format!("{base}/{t}/{i}/_history"),
        (Some(t), None) => format!("{base}/{t}/_history"),
        _ => format!("{base}/_history"),
    };
    let mut links = vec![("self", format!("{path}?_count={count}&_offset={offset}"))];
    if offset + count < total && count > 0 {
        links.push(("next", format!("{path}?_count={count}&_offset={}", offset + count)));
    }
    let body = format!(
        r#"{{"resourceType":"Bundle","id":{},"type":"history","total":{},"link":{},"entry":[{}]}}"#,
        json!(crate::store::new_id()),
        total,
        links_json(&links),
        entries.join(",")
    );
    if res_type.is_some() && id.is_some() && total == 0 {
        return Err(ApiError::not_found(format!("{}/{} is not known", res_type.unwrap_or_default(), id.unwrap_or_default())));
    }
    Ok(fhir_response(StatusCode::OK, body))
}

pub async fn not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "not-supported", "this HTTP method is not allowed on this path")
}

pub async fn unknown_path() -> ApiError {
    ApiError::not_found("no such FHIR endpoint")
}
