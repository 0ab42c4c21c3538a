//! The submission pipeline for the 3 documents and the 6 clinical items:
//! validate -> identify the patient -> extract and classify -> store the unit atomically -> receipt.

pub mod identity;
pub mod receipt;

use std::collections::HashMap;

use serde_json::{Value, json};

use identity::PatientKey;

pub const BUNDLE_ID_SYSTEM: &str = "http://jpfhir.jp/fhir/clins/bundle-identifier";
pub const FLAG_SYSTEM: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication";
const INSTITUTION_EXTENSION: &str = "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber";
const INFECTION_SYSTEMS: &[&str] = &[
    "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_InfectionLabo_CS",
    "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC11/JP_CLINS_ObsLabResult_InfectionLabo_CS",
];

/// What kind of Bundle a submission is, and the Bundle profile it must conform to whatever its
/// `meta.profile` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmissionKind {
    EReferral,
    EDischargeSummary,
    ECheckupReport,
    /// Patient summary (療養計画書): a CLINS document beside the three.
    EPatientSummary,
    /// JP_Bundle_CLINS: a Patient and items of one type.
    Clins,
}

impl SubmissionKind {
    pub const ALL: [SubmissionKind; 5] = [
        SubmissionKind::EReferral,
        SubmissionKind::EDischargeSummary,
        SubmissionKind::ECheckupReport,
        SubmissionKind::EPatientSummary,
        SubmissionKind::Clins,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionKind::EReferral => "eReferral",
            SubmissionKind::EDischargeSummary => "eDischargeSummary",
            SubmissionKind::ECheckupReport => "eCheckupReport",
            SubmissionKind::EPatientSummary => "ePCS",
            SubmissionKind::Clins => "clins",
        }
    }

    pub fn bundle_profile(self) -> &'static str {
        match self {
            SubmissionKind::EReferral => "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eReferral",
            SubmissionKind::EDischargeSummary => {
                "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eDischargeSummary"
            }
            SubmissionKind::ECheckupReport => "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eCheckupGeneral",
            SubmissionKind::EPatientSummary => "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_ePCS",
            SubmissionKind::Clins => "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_CLINS",
        }
    }

    fn is_document(self) -> bool {
        self != SubmissionKind::Clins
    }
}

/// A problem that stops a submission before validation can run (wrong shape of Bundle).
#[derive(Debug)]
pub struct Refusal {
    pub expression: String,
    pub message: String,
}

fn refuse(expression: &str, message: impl Into<String>) -> Refusal {
    Refusal { expression: expression.into(), message: message.into() }
}

/// Decide the kind from `Bundle.type` and, for documents, the Composition's type code.
pub fn kind_of(bundle: &Value) -> Result<SubmissionKind, Refusal> {
    if bundle["resourceType"] != "Bundle" {
        return Err(refuse("resourceType", "a submission must be a Bundle"));
    }
    match bundle["type"].as_str() {
        Some("collection") => Ok(SubmissionKind::Clins),
        Some("document") => {
            let composition = &bundle["entry"][0]["resource"];
            if composition["resourceType"] != "Composition" {
                return Err(refuse("Bundle.entry[0].resource", "the first entry of a document Bundle must be its Composition"));
            }
            let codes: Vec<&str> = composition["type"]["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["code"].as_str())
                .collect();
            if codes.contains(&"57133-1") {
                Ok(SubmissionKind::EReferral)
            } else if codes.contains(&"18842-5") {
                Ok(SubmissionKind::EDischargeSummary)
            } else if codes.contains(&"53576-5") || codes.contains(&"JPGCHKUP01") {
                Ok(SubmissionKind::ECheckupReport)
            } else if codes.contains(&"56447-6") {
                Ok(SubmissionKind::EPatientSummary)
            } else {
                Err(refuse(
                    "Bundle.entry[0].resource.type",
                    "the Composition type is none of 57133-1 (referral), 18842-5 (discharge summary), 53576-5 (checkup report), 56447-6 (patient summary)",
                ))
            }
        }
        other => Err(refuse(
            "Bundle.type",
            format!("Bundle.type `{}` is not a submission: use document or collection", other.unwrap_or("(missing)")),
        )),
    }
}

/// The 6 clinical items (and the other things a unit stores), as counted in receipts and summaries.
pub fn item_kind(resource: &Value, from_document: bool) -> &'static str {
    match resource["resourceType"].as_str().unwrap_or_default() {
        "Condition" => "condition",
        "AllergyIntolerance" => {
            let medication = resource["category"].as_array().into_iter().flatten().any(|c| c == "medication");
            if medication { "drug-allergy" } else { "other-allergy" }
        }
        "Observation" => {
            let systems: Vec<&str> = resource["code"]["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["system"].as_str())
                .collect();
            if systems.iter().any(|s| INFECTION_SYSTEMS.contains(s)) {
                "infection"
            } else if is_lab_result(resource) {
                "lab"
            } else {
                "observation"
            }
        }
        "MedicationRequest" if from_document => "prescription",
        "Composition" => "composition",
        "Provenance" => "provenance",
        "Bundle" => "document",
        _ => "document-entry",
    }
}

fn is_lab_result(resource: &Value) -> bool {
    let profiled = resource["meta"]["profile"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|p| p.starts_with("http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Observation_LabResult_eCS"));
    let laboratory = resource["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .any(|c| c["code"] == "laboratory");
    profiled || laboratory
}

/// The three keys of a submission unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitKey {
    pub patient: String,
    pub system: String,
    pub value: String,
}

/// The institution code is the first part of the Bundle-ID (`1318814790^2024^...`).
pub fn institution_of(bundle: &Value) -> Option<String> {
    let value = bundle_identifier(bundle)?.1;
    let code = value.split('^').next()?;
    (code.len() == 10 && code.bytes().all(|b| b.is_ascii_digit())).then(|| code.to_string())
}

/// The unit key, when the Bundle carries enough to compute it (for the rejection log).
pub fn unit_key(bundle: &Value) -> Option<UnitKey> {
    let patient = bundle["entry"].as_array()?.iter().find(|e| e["resource"]["resourceType"] == "Patient")?;
    let key = identity::identify(&patient["resource"]).ok()?;
    let (system, value) = bundle_identifier(bundle)?;
    Some(UnitKey { patient: key.key, system: system.into(), value: value.into() })
}

fn bundle_identifier(bundle: &Value) -> Option<(&str, &str)> {
    let identifiers: Vec<&Value> = match &bundle["identifier"] {
        Value::Array(a) => a.iter().collect(),
        v @ Value::Object(_) => vec![v],
        _ => Vec::new(),
    };
    identifiers
        .into_iter()
        .find(|i| i["system"] == BUNDLE_ID_SYSTEM)
        .and_then(|i| Some((i["system"].as_str()?, i["value"].as_str()?)))
}

/// One resource of a unit, ready to store.
#[derive(Debug, Clone)]
pub struct Member {
    pub res_type: String,
    pub id: String,
    pub kind: &'static str,
    /// `meta.tag` flags: LTS, UNINFORMED, UNDELIVERED.
    pub flags: Vec<String>,
    pub resource: Value,
}

/// Everything one accepted submission stores, computed before the database is touched.
#[derive(Debug, Clone)]
pub struct Submission {
    pub id: String,
    pub kind: SubmissionKind,
    pub institution: String,
    pub unit: UnitKey,
    pub patient: PatientKey,
    /// The canonical Patient (id = patient key hash), written as a new version.
    pub patient_resource: Value,
    pub members: Vec<Member>,
    /// Hash of the whole Bundle: an identical resend is recognised and answered idempotently.
    pub content_hash: String,
    /// Warnings from validation, kept in the receipt.
    pub warnings: Vec<fhir_profiles::Issue>,
    /// International codings added beside the originals by the mapping tables.
    pub mapped: usize,
    /// (system, code) of mappable codes no active table maps, for the institution's queue.
    pub unmapped: Vec<(String, String)>,
}

impl Submission {
    /// Add international codings to the extracted clinical resources (never to the document
    /// as sent, the Patient or the Provenance); remember what could not be mapped.
    pub fn map_codes(&mut self, mapper: &terminology::Mapper) {
        for m in &mut self.members {
            if matches!(m.kind, "document" | "provenance") {
                continue;
            }
            let report = mapper.map_resource(&mut m.resource, &self.institution);
            self.mapped += report.mapped.len();
            self.unmapped.extend(report.unmapped);
        }
    }
}

/// What makes two submissions identical resends: SHA-256 of the JSON text as sent, without the
/// whitespace between tokens (a pretty-printed and a compact copy of the same Bundle are one; a
/// character spelled as an escape, `\u3042`, differs from the character itself). Cheaper than
/// serializing the parsed Bundle again; `raw` must be JSON the parser accepted, so a quote
/// outside a string always opens one.
pub fn content_hash(raw: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let (mut at, mut run_from) = (0, 0);
    while at < raw.len() {
        match raw[at] {
            // a string, skipped to its closing quote (most of a Bundle's bytes are in strings)
            b'"' => {
                at += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &raw[at..]) {
                        // an escape: the byte after the backslash is part of the string
                        Some(k) if raw[at + k] == b'\\' => at = (at + k + 2).min(raw.len()),
                        Some(k) => {
                            at += k + 1;
                            break;
                        }
                        None => {
                            at = raw.len();
                            break;
                        }
                    }
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                hasher.update(&raw[run_from..at]);
                at += 1;
                run_from = at;
            }
            _ => at += 1,
        }
    }
    hasher.update(&raw[run_from..]);
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Split a validated Bundle into what is stored: the canonical Patient, each entry as its own
/// resource with references inside the Bundle pointed at the stored resources, the document
/// Bundle itself, and a Provenance that records where it all came from. The Bundle is taken
/// apart rather than copied.
pub fn extract(mut bundle: Value, raw: &[u8], kind: SubmissionKind, warnings: Vec<fhir_profiles::Issue>) -> Result<Submission, Refusal> {
    let entries = bundle["entry"].as_array().map(Vec::as_slice).unwrap_or_default();
    let (patient_at, patient) = entries
        .iter()
        .enumerate()
        .find(|(_, e)| e["resource"]["resourceType"] == "Patient")
        .map(|(n, e)| (n, &e["resource"]))
        .ok_or_else(|| refuse("Bundle.entry", "the Bundle has no Patient"))?;
    let patient_key = identity::identify(patient)
        .map_err(|e| refuse(&format!("Bundle.entry[{patient_at}].resource.{}", e.element), e.message))?;
    let (system, value) =
        bundle_identifier(&bundle).ok_or_else(|| refuse("Bundle.identifier", format!("no identifier with system {BUNDLE_ID_SYSTEM}")))?;
    let (system, value) = (system.to_string(), value.to_string());
    let institution =
        institution_of(&bundle).ok_or_else(|| refuse("Bundle.identifier.value", "the Bundle-ID does not start with a 10-digit institution code"))?;
    let patient_id = patient_key.patient_id();
    let submission_id = crate::store::new_id();
    let content_hash = content_hash(raw);

    // Ids for every entry, and the fullUrl -> Type/id map that rewrites references.
    let mut references: HashMap<String, String> = HashMap::new();
    let mut ids = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter().enumerate() {
        let res_type = entry["resource"]["resourceType"].as_str().unwrap_or_default();
        let id = if n == patient_at { patient_id.clone() } else { crate::store::new_id() };
        if let Some(full_url) = entry["fullUrl"].as_str() {
            references.insert(full_url.to_string(), format!("{res_type}/{id}"));
        }
        ids.push(id);
    }
    // The document as sent (its own references intact), retrievable as a whole.
    let document = kind.is_document().then(|| bundle.clone());
    let Value::Array(entries) = bundle["entry"].take() else { unreachable!("the Patient was found among the entries") };
    let mut members = Vec::with_capacity(entries.len() + 2);
    let mut patient_resource = Value::Null;
    for ((n, mut entry), id) in entries.into_iter().enumerate().zip(ids) {
        let mut resource = entry["resource"].take();
        if n == patient_at {
            resource["id"] = json!(id);
            patient_resource = resource;
            continue;
        }
        let res_type = resource["resourceType"].as_str().unwrap_or_default().to_string();
        if res_type == "MedicationRequest" && !kind.is_document() {
            // JP_Bundle_CLINS accepts MedicationRequest entries but CLINS does not process them.
            continue;
        }
        let kind_of_item = item_kind(&resource, kind.is_document());
        rewrite_references(&mut resource, &references);
        resource["id"] = json!(id);
        members.push(Member { res_type, id, kind: kind_of_item, flags: flags(&resource), resource });
    }
    if let Some(mut document) = document {
        let id = crate::store::new_id();
        document["id"] = json!(id);
        members.push(Member { res_type: "Bundle".into(), id, kind: "document", flags: Vec::new(), resource: document });
    }
    let provenance_id = crate::store::new_id();
    let provenance = provenance(&provenance_id, &members, &institution, &system, &value, &submission_id);
    members.push(Member { res_type: "Provenance".into(), id: provenance_id, kind: "provenance", flags: Vec::new(), resource: provenance });

    Ok(Submission {
        id: submission_id,
        kind,
        institution,
        unit: UnitKey { patient: patient_key.key.clone(), system, value },
        patient: patient_key,
        patient_resource,
        members,
        content_hash,
        warnings,
        mapped: 0,
        unmapped: Vec::new(),
    })
}

/// Point references to Bundle entries at the stored resources; others stay as they are.
fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) {
    let _ = crate::store::visit_references(value, &mut |reference| {
        if let Some(target) = map.get(reference.as_str()) {
            *reference = target.clone();
        }
        Ok(())
    });
}

/// LTS / UNINFORMED / UNDELIVERED tags of a resource.
pub fn flags(resource: &Value) -> Vec<String> {
    resource["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["system"] == FLAG_SYSTEM)
        .filter_map(|t| t["code"].as_str().map(String::from))
        .collect()
}

fn provenance(id: &str, members: &[Member], institution: &str, system: &str, value: &str, submission: &str) -> Value {
    let targets: Vec<Value> = members.iter().map(|m| json!({"reference": format!("{}/{}", m.res_type, m.id)})).collect();
    let mut entity = vec![json!({
        "role": "source",
        "what": {"identifier": {"system": system, "value": value}, "display": "submitted Bundle"}
    })];
    if let Some(doc) = members.iter().find(|m| m.kind == "document") {
        entity.push(json!({"role": "source", "what": {"reference": format!("Bundle/{}", doc.id)}}));
    }
    json!({
        "resourceType": "Provenance",
        "id": id,
        "target": targets,
        "recorded": crate::store::instant(crate::store::now_micros()),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}]},
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": {"identifier": {"system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no", "value": institution}}
        }],
        "entity": entity,
        "extension": [{"url": "http://jpfhir.jp/fhir/gateway/StructureDefinition/submission-id", "valueString": submission}]
    })
}

/// Every resource of the Bundle carries the same institution code as its Bundle-ID, where it
/// says one (JP_eCS_InstitutionNumber): a unit comes from one institution.
pub fn institution_mismatches(bundle: &Value, institution: &str) -> Vec<Refusal> {
    let mut out = Vec::new();
    for (n, entry) in bundle["entry"].as_array().into_iter().flatten().enumerate() {
        for (k, ext) in entry["resource"]["extension"].as_array().into_iter().flatten().enumerate() {
            if ext["url"] == INSTITUTION_EXTENSION {
                if let Some(code) = ext["valueIdentifier"]["value"].as_str() {
                    if code != institution {
                        out.push(refuse(
                            &format!("Bundle.entry[{n}].resource.extension[{k}].value.value"),
                            format!("institution number {code} differs from the Bundle-ID's institution {institution}"),
                        ));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::content_hash;

    #[test]
    fn content_hash_ignores_layout_but_not_content() {
        let bundle = serde_json::json!({"resourceType": "Bundle", "entry": [{"resource": {"text": "a \"quoted\" \\ b  c", "n": 1.50, "path": "C:\\", "after": " "}}]});
        let compact = serde_json::to_string(&bundle).unwrap();
        let pretty = serde_json::to_string_pretty(&bundle).unwrap();
        assert_ne!(compact, pretty);
        assert_eq!(content_hash(compact.as_bytes()), content_hash(pretty.as_bytes()));
        assert_eq!(content_hash(compact.as_bytes()), content_hash(format!(" \r\n{compact}\t").as_bytes()));
        // whitespace inside a string (after an escaped quote and backslash too) is content
        let spaced = compact.replace("b  c", "b c");
        assert_ne!(content_hash(compact.as_bytes()), content_hash(spaced.as_bytes()));
        let moved = compact.replace("a \\\"quoted\\\"", "a\\\"quoted\\\" ");
        assert_ne!(content_hash(compact.as_bytes()), content_hash(moved.as_bytes()));
        // ... and so is the space in a string after one that ends in an escaped backslash
        let emptied = compact.replace("\"after\":\" \"", "\"after\":\"\"");
        assert_ne!(emptied, compact);
        assert_ne!(content_hash(compact.as_bytes()), content_hash(emptied.as_bytes()));
        assert_eq!(content_hash(br#"{"a":"\\"}"#), content_hash(br#"{"a":"\\" }"#));
        assert_ne!(content_hash(br#"{"a":"\" x"}"#), content_hash(br#"{"a":"\"x"}"#));
        assert_eq!(content_hash(compact.as_bytes()).len(), 64);
    }
}
