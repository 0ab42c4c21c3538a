//! The FHIR REST API under `/fhir`, plus health and metrics endpoints.

mod bundle;
mod capability;
pub use capability::capability_statement;
mod outcome;
mod rest;

use std::sync::Arc;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{FromRequest, MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::Value;

use crate::{metrics::Metrics, operations::maintainer, store::Store};
pub use outcome::{ApiError, FHIR_JSON, OutcomeIssue, operation_outcome};

pub struct AppState {
    pub store: Store,
    pub validator: fhir_profiles::Validator,
    /// Validates health-checkup reports against the eCheckupReport package set (`None`: not
    /// configured, such reports are refused).
    pub checkup_validator: Option<fhir_profiles::Validator>,
    pub terminology: Arc<terminology::TerminologyService>,
    /// The mapping tables: registry, today's mapper (adds international codings to submitted
    /// resources), maintainer changes and re-mapping jobs.
    pub mapping: Arc<crate::mapping::MappingTables>,
    /// Verifies bearer tokens (maintainer operations).
    pub auth: crate::auth::Auth,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    /// The CapabilityStatement, built once at start-up.
    pub capability: String,
}

pub type SharedState = Arc<AppState>;

pub fn router(state: SharedState) -> Router {
    let fhir = Router::new()
        .route("/", get(rest::not_allowed).post(bundle::post_base))
        .route("/metadata", get(capability::metadata))
        .route("/ConceptMap/$upload-table", post(maintainer::upload_table))
        .route("/ConceptMap/$table-diff", get(maintainer::table_diff))
        .route("/ConceptMap/$activate-table", post(maintainer::activate_table))
        .route("/ConceptMap/$rollback-table", post(maintainer::rollback_table))
        .route("/ConceptMap/$tables", get(maintainer::tables))
        .route("/$remap", post(maintainer::remap))
        .route("/$remap-status/{id}", get(maintainer::remap_status))
        .route("/_history", get(rest::history_system))
        .route("/{type}", get(rest::search_get).post(rest::create_or_operation))
        .route("/{type}/{id}", get(rest::read).put(rest::update).delete(rest::delete).post(rest::post_type_path))
        .route("/{type}/{id}/{sub}", get(rest::instance_sub).post(rest::instance_post))
        .route("/{type}/{id}/_history/{vid}", get(rest::vread))
        .fallback(rest::unknown_path)
        .method_not_allowed_fallback(rest::not_allowed);
    Router::new()
        .route("/fhir/", get(rest::not_allowed).post(bundle::post_base))
        .nest("/fhir", fhir)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "exception", "internal error").into_response()
        }))
        .with_state(state)
}

async fn readyz(State(state): State<SharedState>) -> Response {
    if state.store.ping().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
    }
}

async fn metrics(State(state): State<SharedState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

/// Count and time every request by its route pattern, inside a tracing span.
async fn observe(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let span = tracing::info_span!("request", %method, uri = %request.uri(), route = %route);
    let start = std::time::Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let elapsed = start.elapsed();
    state.metrics.observe_request(method.as_str(), &route, response.status().as_u16(), elapsed);
    span.in_scope(|| {
        tracing::info!(status = response.status().as_u16(), micros = elapsed.as_micros() as u64, "served")
    });
    response
}

/// A FHIR JSON request body: size-limited (413), JSON media type (415), a JSON object (400);
/// parsed, and the text as sent (what a submission's content hash is taken over).
pub struct FhirJson(pub Value, pub Bytes);

impl FromRequest<SharedState> for FhirJson {
    type Rejection = ApiError;

    async fn from_request(request: Request<Body>, state: &SharedState) -> Result<Self, ApiError> {
        let content_type =
            request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(media.as_str(), "application/fhir+json" | "application/json" | "application/json+fhir") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-supported",
                format!("Content-Type `{content_type}` is not supported; send application/fhir+json"),
            ));
        }
        let limit = state.max_body_bytes;
        let bytes = read_limited(request.into_body(), limit).await?;
        // UTF-8 checked once over the whole body, not string by string while parsing
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: it is not UTF-8 ({e})")))?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object (a FHIR resource)"));
        }
        if !value["resourceType"].is_string() {
            return Err(ApiError::bad_request("the resource has no resourceType").at("resourceType"));
        }
        Ok(FhirJson(value, bytes))
    }
}

/// Read a body of at most `limit` bytes. A larger one is still read (and dropped) up to four
/// times the limit, so that the client, still sending, gets to read the 413 instead of a
/// broken connection; beyond that the connection is closed.
pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("the request body could not be read: {e}")))?;
        total = total.saturating_add(chunk.len());
        if total <= limit {
            buffer.extend_from_slice(&chunk);
        } else if total > limit.saturating_mul(4) {
            break;
        }
    }
    if total > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            format!("the request body is larger than the limit of {limit} bytes"),
        ));
    }
    Ok(Bytes::from(buffer))
}

/// The base URL of this server as the client addressed it.
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}/fhir")
}

/// Is `id` a valid FHIR id (`[A-Za-z0-9\-\.]{1,64}`)?
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A FHIR JSON response with the given status.
pub fn fhir_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}
