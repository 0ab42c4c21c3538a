//! Errors as FHIR OperationOutcomes with an honest HTTP status.

use axum::{
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{search::SearchError, store::StoreError};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// One OperationOutcome.issue: what (code, diagnostics), where (a FHIRPath expression).
#[derive(Debug, Clone)]
pub struct OutcomeIssue {
    pub severity: &'static str,
    pub code: &'static str,
    pub diagnostics: String,
    pub expression: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub issues: Vec<OutcomeIssue>,
    /// Extra response headers (e.g. `WWW-Authenticate` on a 401).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> ApiError {
        ApiError {
            status,
            issues: vec![OutcomeIssue { severity: "error", code, diagnostics: diagnostics.into(), expression: None }],
            headers: Vec::new(),
        }
    }

    /// Add an issue.
    pub fn and(mut self, issue: OutcomeIssue) -> ApiError {
        self.issues.push(issue);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> ApiError {
        self.headers.push((name, crate::auth::header_value(value)));
        self
    }

    pub fn at(mut self, expression: impl Into<String>) -> ApiError {
        if let Some(issue) = self.issues.last_mut() {
            issue.expression = Some(expression.into());
        }
        self
    }

    pub fn bad_request(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", diagnostics)
    }

    pub fn unprocessable(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "processing", diagnostics)
    }
}

pub fn operation_outcome(issues: &[OutcomeIssue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut issue = json!({"severity": i.severity, "code": i.code, "diagnostics": i.diagnostics});
            if let Some(e) = &i.expression {
                issue["expression"] = json!([e]);
            }
            issue
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = operation_outcome(&self.issues).to_string();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is never read: the connection cannot carry another request.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::PreconditionFailed(m) => ApiError::new(StatusCode::PRECONDITION_FAILED, "conflict", m),
            StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Duplicate(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Db(_) | StoreError::Sqlite(_) => {
                tracing::error!(error = %e, "database error");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "transient", "the database could not complete the request")
            }
            StoreError::WriterGone | StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "write failed");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "transient", e.to_string())
            }
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> ApiError {
        let SearchError::Invalid { param, .. } = &e;
        let param = param.clone();
        ApiError::bad_request(e.to_string()).at(param)
    }
}
