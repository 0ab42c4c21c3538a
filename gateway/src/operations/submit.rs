//! `$submit`, `$withdraw`, `$receipt`, `$submissions` and `Patient/{id}/$summary`.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use fhir_profiles::{ValidationOptions, to_operation_outcome};
use serde_json::{Value, json};

use crate::{
    api::{ApiError, SharedState, base_url, fhir_response},
    store::{Op, Outcome, Rejection, instant, now_micros},
    submission::{self, Refusal, SubmissionKind, UnitKey, identity},
};

/// Validate, identify, extract and store one Bundle; 201 with the receipt, 200 with the
/// earlier receipt for an identical resend, 422 with every problem otherwise (nothing stored).
pub async fn submit(state: &SharedState, headers: &HeaderMap, bundle: Value, text: &[u8]) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let institution = submission::institution_of(&bundle).unwrap_or_else(|| "unknown".into());
    let kind = match submission::kind_of(&bundle) {
        Ok(kind) => kind,
        Err(refusal) => return reject(state, &institution, "unknown", None, vec![refusal_issue(refusal)], 0).await,
    };
    let options = ValidationOptions { profiles: vec![kind.bundle_profile().to_string()] };
    let validator = match (kind, &state.checkup_validator) {
        (SubmissionKind::ECheckupReport, Some(checkup)) => checkup,
        (SubmissionKind::ECheckupReport, None) => {
            let refusal = Refusal { expression: "Bundle".into(), message: "health-checkup reports are not accepted: no eCheckupReport package is configured (checkup_packages)".into() };
            return reject(state, &institution, kind.as_str(), None, vec![refusal_issue(refusal)], 0).await;
        }
        _ => &state.validator,
    };
    let issues = validator.validate(&bundle, &options);
    state.metrics.observe_validation(kind.as_str(), started.elapsed());
    let (errors, warnings): (Vec<_>, Vec<_>) = issues.into_iter().partition(|i| i.severity.is_error());
    if !errors.is_empty() {
        let warning_count = warnings.len() as i64;
        let all: Vec<_> = errors.into_iter().chain(warnings).collect();
        return reject(state, &institution, kind.as_str(), submission::unit_key(&bundle), all, warning_count).await;
    }
    let mismatches = submission::institution_mismatches(&bundle, &institution);
    if !mismatches.is_empty() {
        let issues = mismatches.into_iter().map(refusal_issue).collect();
        return reject(state, &institution, kind.as_str(), submission::unit_key(&bundle), issues, 0).await;
    }
    let mut sub = match submission::extract(bundle, text, kind, warnings) {
        Ok(sub) => sub,
        Err(refusal) => return reject(state, &institution, kind.as_str(), None, vec![refusal_issue(refusal)], 0).await,
    };
    sub.map_codes(&state.mapping.mapper());
    let outcome = state.store.write(vec![Op::Submit(Box::new(sub))]).await?.pop().expect("one outcome");
    let Outcome::Submitted(done) = outcome else { unreachable!("a submission yields Submitted") };
    state.metrics.count_submission(kind.as_str(), done.outcome);
    let status = if done.outcome == "unchanged" { StatusCode::OK } else { StatusCode::CREATED };
    let url = format!("{}/$receipt?submission={}", base_url(headers), done.id);
    let mut response = fhir_response(status, done.receipt);
    if let Ok(v) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

fn refusal_issue(r: Refusal) -> fhir_profiles::Issue {
    fhir_profiles::Issue::error("invalid", r.expression, r.message).with_rule("gateway-submission")
}

/// 422 with every issue; the rejection is logged (durably) for the institution's report.
async fn reject(
    state: &SharedState,
    institution: &str,
    kind: &str,
    unit: Option<UnitKey>,
    issues: Vec<fhir_profiles::Issue>,
    warning_count: i64,
) -> Result<Response, ApiError> {
    let outcome = to_operation_outcome(&issues).to_string();
    let errors = issues
        .iter()
        .filter(|i| i.severity.is_error())
        .map(|i| (i.rule.clone().unwrap_or_else(|| i.code.to_string()), i.expression.clone(), i.message.clone()))
        .collect();
    let rejection = Rejection {
        id: crate::store::new_id(),
        institution: institution.to_string(),
        kind: kind.to_string(),
        unit,
        errors,
        warning_count,
        outcome: outcome.clone(),
    };
    state.store.write(vec![Op::Reject(Box::new(rejection))]).await?;
    state.metrics.count_submission(kind, "rejected");
    Ok(fhir_response(StatusCode::UNPROCESSABLE_ENTITY, outcome))
}

/// `$withdraw` with Parameters `patientIdentifier` (the insured-person identifier value, or a
/// valueIdentifier), `bundleIdentifierSystem`, `bundleIdentifierValue`.
pub async fn withdraw(state: &SharedState, body: Value) -> Result<Response, ApiError> {
    if body["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request("$withdraw takes a Parameters resource").at("resourceType"));
    }
    let params = body["parameter"].as_array().cloned().unwrap_or_default();
    let param = |name: &str| params.iter().find(|p| p["name"] == name).cloned();
    let missing = |name: &str| ApiError::bad_request(format!("parameter `{name}` is required")).at(format!("Parameters.parameter.where(name='{name}')"));
    let patient_identifier = param("patientIdentifier").ok_or_else(|| missing("patientIdentifier"))?;
    let identifier = match (&patient_identifier["valueIdentifier"], patient_identifier["valueString"].as_str()) {
        (Value::Object(_), _) => patient_identifier["valueIdentifier"].clone(),
        (_, Some(value)) => json!({"system": identity::INSURED_SYSTEM, "value": value}),
        _ => return Err(missing("patientIdentifier")),
    };
    let patient = identity::identify(&json!({"resourceType": "Patient", "identifier": [identifier]}))
        .map_err(|e| ApiError::bad_request(e.message).at("Parameters.parameter.where(name='patientIdentifier')"))?;
    let text = |name: &str| -> Result<String, ApiError> {
        let p = param(name).ok_or_else(|| missing(name))?;
        p["valueUri"].as_str().or(p["valueString"].as_str()).map(String::from).ok_or_else(|| missing(name))
    };
    let key = UnitKey { patient: patient.key.clone(), system: text("bundleIdentifierSystem")?, value: text("bundleIdentifierValue")? };
    let institution = key.value.split('^').next().unwrap_or("unknown").to_string();
    let id = crate::store::new_id();
    let receipt = json!({"resourceType": "Parameters", "id": id, "parameter": [
        {"name": "submission", "valueString": id},
        {"name": "received", "valueInstant": instant(now_micros())},
        {"name": "outcome", "valueCode": "withdrawn"},
        {"name": "unit", "part": [
            {"name": "patientIdentifier", "valueIdentifier": {"system": patient.system, "value": patient.value}},
            {"name": "bundleIdentifier", "valueIdentifier": {"system": key.system, "value": key.value}},
        ]},
    ]})
    .to_string();
    let op = Op::Withdraw { key, id, institution, receipt: receipt.clone() };
    match state.store.write(vec![op]).await?.pop() {
        Some(Outcome::Withdrawn(true)) => Ok(fhir_response(StatusCode::OK, receipt)),
        _ => Err(ApiError::not_found("no submission unit has these three keys")),
    }
}

/// `GET $receipt?submission=ID`: the receipt of an accepted submission, or the
/// OperationOutcome of a rejected one.
pub async fn receipt(state: &SharedState, params: &[(String, String)]) -> Result<Response, ApiError> {
    let id = params
        .iter()
        .find(|(k, _)| k == "submission")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| ApiError::bad_request("parameter `submission` is required").at("submission"))?;
    match state.store.submission(id).await? {
        Some((_, receipt)) => Ok(fhir_response(StatusCode::OK, receipt)),
        None => Err(ApiError::not_found(format!("no submission {id}"))),
    }
}

/// `GET $submissions?institution=X[&_count=N]`: accept/reject counts, rejection reasons and the
/// latest submissions of one institution.
pub async fn history(state: &SharedState, params: &[(String, String)]) -> Result<Response, ApiError> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let institution = get("institution").ok_or_else(|| ApiError::bad_request("parameter `institution` is required").at("institution"))?;
    let count = match get("_count") {
        Some(c) => c.parse::<i64>().ok().filter(|c| (0..=1000).contains(c)).ok_or_else(|| ApiError::bad_request("_count must be 0..1000").at("_count"))?,
        None => 50,
    };
    let h = state.store.submission_history(institution, count).await?;
    let mut parameters = vec![json!({"name": "institution", "valueString": institution})];
    for (outcome, n) in &h.outcomes {
        parameters.push(json!({"name": "count", "part": [{"name": "outcome", "valueCode": outcome}, {"name": "submissions", "valueInteger": n}]}));
    }
    for (rule, n) in &h.rejection_reasons {
        parameters.push(json!({"name": "rejectionReason", "part": [{"name": "rule", "valueString": rule}, {"name": "occurrences", "valueInteger": n}]}));
    }
    for (id, at, kind, outcome, errors, warnings) in &h.recent {
        parameters.push(json!({"name": "submission", "part": [
            {"name": "id", "valueString": id},
            {"name": "received", "valueInstant": instant(*at)},
            {"name": "kind", "valueCode": kind},
            {"name": "outcome", "valueCode": outcome},
            {"name": "errors", "valueInteger": errors},
            {"name": "warnings", "valueInteger": warnings},
        ]}));
    }
    Ok(fhir_response(StatusCode::OK, json!({"resourceType": "Parameters", "parameter": parameters}).to_string()))
}

/// `GET $unmapped?institution=X[&system=S]`: the codes no active mapping table maps, with how
/// often and when they were seen, most frequent first.
pub async fn unmapped(state: &SharedState, params: &[(String, String)]) -> Result<Response, ApiError> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let institution = get("institution").ok_or_else(|| ApiError::bad_request("parameter `institution` is required").at("institution"))?;
    let rows = state.store.unmapped_codes(institution, get("system")).await?;
    let mut parameters = vec![json!({"name": "institution", "valueString": institution})];
    for (system, code, occurrences, first, last) in rows {
        parameters.push(json!({"name": "code", "part": [
            {"name": "system", "valueUri": system},
            {"name": "code", "valueCode": code},
            {"name": "occurrences", "valueInteger": occurrences},
            {"name": "firstSeen", "valueInstant": instant(first)},
            {"name": "lastSeen", "valueInstant": instant(last)},
        ]}));
    }
    Ok(fhir_response(StatusCode::OK, json!({"resourceType": "Parameters", "parameter": parameters}).to_string()))
}

/// Who is reading. Until the access-control capability issues tokens, the reader says so in
/// `X-Reader-Type` (`institution`, `patient`, ...) and `X-Reader-Institution`; no header means
/// an institution other than any submitter, which sees no UNDELIVERED item.
pub struct Reader {
    pub is_patient: bool,
    pub institution: Option<String>,
}

impl Reader {
    pub fn from_headers(headers: &HeaderMap) -> Reader {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Reader { is_patient: get("x-reader-type").as_deref() == Some("patient"), institution: get("x-reader-institution") }
    }

    /// UNDELIVERED: only the submitting institution; UNINFORMED: never the patient.
    pub fn may_see(&self, flags: &[String], institution: &str) -> bool {
        let undelivered = flags.iter().any(|f| f == "UNDELIVERED");
        let uninformed = flags.iter().any(|f| f == "UNINFORMED");
        !(undelivered && self.institution.as_deref() != Some(institution)) && !(uninformed && self.is_patient)
    }
}

/// The 6 items (and documents) of every institution for one patient, as a collection Bundle
/// with the Patient first; flags decide what this reader may see.
pub async fn summary(state: &SharedState, id: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let patient = state.store.read("Patient", id).await?.filter(|p| !p.deleted).ok_or_else(|| ApiError::not_found(format!("Patient/{id} is not known")))?;
    let patient_json: Value = serde_json::from_str(&patient.body).map_err(|_| ApiError::unprocessable("stored Patient is not JSON"))?;
    let key = identity::identify(&patient_json)
        .map_err(|_| ApiError::not_found(format!("Patient/{id} has no shared data (it was not created by a submission)")))?;
    let reader = Reader::from_headers(headers);
    let items = state.store.shared_items(&key.key).await?;
    let base = base_url(headers);
    let mut entries = vec![format!(r#"{{"fullUrl":{},"resource":{}}}"#, json!(format!("{base}/Patient/{id}")), patient.body)];
    for item in &items {
        let shared_kind = matches!(
            item.kind.as_str(),
            "condition" | "drug-allergy" | "other-allergy" | "infection" | "lab" | "prescription" | "composition"
        );
        if !shared_kind {
            continue;
        }
        // Hidden items leave no trace, not even a count: that too would disclose something.
        if !reader.may_see(&item.flags, &item.institution) {
            continue;
        }
        let rid: Value = serde_json::from_str::<Value>(&item.body).map(|v| v["id"].clone()).unwrap_or_default();
        entries.push(format!(
            r#"{{"fullUrl":{},"resource":{}}}"#,
            json!(format!("{base}/{}/{}", item.res_type, rid.as_str().unwrap_or_default())),
            item.body
        ));
    }
    let body = format!(
        r#"{{"resourceType":"Bundle","id":{},"meta":{{"lastUpdated":{}}},"type":"collection","entry":[{}]}}"#,
        json!(crate::store::new_id()),
        json!(instant(now_micros())),
        entries.join(",")
    );
    Ok(fhir_response(StatusCode::OK, body))
}
