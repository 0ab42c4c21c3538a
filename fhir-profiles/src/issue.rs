//! Validation issues and the OperationOutcome builder.

use serde_json::{Map, Value, json};

/// Issue severity (FHIR `IssueSeverity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
    /// `fatal` or `error`.
    pub fn is_error(self) -> bool {
        matches!(self, Severity::Fatal | Severity::Error)
    }
}

/// One validation finding. `code` is a FHIR `IssueType` code (`structure`, `required`, `value`,
/// `invariant`, `code-invalid`, `not-supported`, `not-found`, `invalid`, `processing`, ...).
/// `expression` is a FHIRPath pointing at the element, e.g. `Bundle.entry[3].resource.code.coding[0]`.
/// `rule` names the rule that fired when there is one (constraint key, slice name...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Issue {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub expression: String,
    /// Constraint key / rule id (e.g. `needs-localCode-observation-laboresult`), if any.
    pub rule: Option<String>,
}

impl Issue {
    pub fn new(severity: Severity, code: &'static str, expression: impl Into<String>, message: impl Into<String>) -> Self {
        Issue { severity, code, message: message.into(), expression: expression.into(), rule: None }
    }
    pub fn error(code: &'static str, expression: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, expression, message)
    }
    pub fn warning(code: &'static str, expression: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, expression, message)
    }
    pub fn with_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }
}

/// True when any issue is `error` or `fatal`.
pub fn has_errors(issues: &[Issue]) -> bool {
    issues.iter().any(|i| i.severity.is_error())
}

/// Build an OperationOutcome from issues. With no issues, one `information` issue saying all OK.
pub fn to_operation_outcome(issues: &[Issue]) -> Value {
    let mut out = Vec::with_capacity(issues.len().max(1));
    if issues.is_empty() {
        out.push(json!({
            "severity": "information",
            "code": "informational",
            "diagnostics": "All OK: no errors or warnings were found"
        }));
    }
    for i in issues {
        let mut m = Map::new();
        m.insert("severity".into(), Value::String(i.severity.as_str().into()));
        m.insert("code".into(), Value::String(i.code.into()));
        if let Some(rule) = &i.rule {
            m.insert(
                "details".into(),
                json!({ "coding": [{ "system": "http://jpfhir.jp/fhir/gateway/CodeSystem/validation-rule", "code": rule }], "text": i.message }),
            );
        }
        m.insert("diagnostics".into(), Value::String(i.message.clone()));
        if !i.expression.is_empty() {
            m.insert("expression".into(), Value::Array(vec![Value::String(i.expression.clone())]));
        }
        out.push(Value::Object(m));
    }
    json!({ "resourceType": "OperationOutcome", "issue": out })
}
