//! Mapping-table changes as FHIR AuditEvents (searchable like any resource: `GET
//! /fhir/AuditEvent?subtype=...&altid=<actor>`). The actor is the token's `sub`, in
//! `agent.altId`, `agent.name` and `agent.who.display`.

use serde_json::json;
use terminology::{AuditRecord, TableRegistry, table::CONCEPT_MAP_BASE};

use crate::store::Op;

/// Code system of the subtypes `upload`, `activate`, `rollback`.
pub const ACTION_SYSTEM: &str = "http://jpfhir.jp/fhir/gateway/CodeSystem/mapping-table-action";

/// The AuditEvent of one audit record, stored under a stable id (`mapping-table-audit-<seq>`), so
/// that storing it again after a crash does not duplicate it.
pub fn event_op(record: &AuditRecord, registry: &TableRegistry) -> Op {
    let id = format!("mapping-table-audit-{}", record.seq);
    let version = record.version.as_deref().unwrap_or_default();
    let canonical = registry
        .get(&record.table, version)
        .map(|t| t.canonical())
        .unwrap_or_else(|| format!("{CONCEPT_MAP_BASE}{}|{version}", record.table));
    // C: a new version; U: an activation changes which version is used; D: a rollback removes one.
    let action = match record.action.as_str() {
        "upload" => "C",
        "rollback" => "D",
        _ => "U",
    };
    let resource = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": "operation", "display": "operation"},
            {"system": ACTION_SYSTEM, "code": record.action, "display": format!("mapping table {}", record.action)}
        ],
        "action": action,
        "recorded": record.at,
        "outcome": "0",
        "outcomeDesc": record.detail,
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]},
            "who": {"display": record.actor},
            "altId": record.actor,
            "name": record.actor,
            "requestor": true
        }],
        "source": {
            "observer": {"display": "CLINS FHIR gateway"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]
        },
        "entity": [{
            "what": {"identifier": {"system": "urn:ietf:rfc:3986", "value": canonical}, "display": format!("ConceptMap {canonical}")},
            "type": {"system": "http://hl7.org/fhir/resource-types", "code": "ConceptMap", "display": "ConceptMap"},
            "name": canonical,
            "detail": [{"type": "detail", "valueString": record.detail}]
        }]
    });
    Op::Update { res_type: "AuditEvent".into(), id, resource, if_match: None, full_url: None }
}
