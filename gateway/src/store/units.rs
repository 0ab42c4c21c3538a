//! Submission units inside the write transaction: replace the unit with the same key, store
//! the new one and its receipt, or recognise an identical resend; withdraw; log rejections.

use sqlx::Row;

use super::{
    Engine, StoreError,
    apply::{self, NewBody, PreparedSubmission, lock_key},
    conn::WriteConn,
};
use crate::{
    search::{SearchIndex, SqlArg},
    submission::{Submission, UnitKey, receipt},
};

/// What a submission did to the database.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The id of the submission the receipt is of (the earlier one for an identical resend).
    pub id: String,
    /// The receipt (FHIR Parameters, JSON text).
    pub receipt: String,
    /// `accepted`, `replaced`, or `unchanged` for an identical resend.
    pub outcome: &'static str,
}

/// A rejected submission, kept for the institution's data-quality report.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub id: String,
    pub institution: String,
    pub kind: String,
    pub unit: Option<UnitKey>,
    /// (rule or issue code, FHIRPath expression, message) of every error.
    pub errors: Vec<(String, String, String)>,
    pub warning_count: i64,
    /// The OperationOutcome sent back.
    pub outcome: String,
}

fn key_args(key: &UnitKey) -> [SqlArg; 3] {
    [SqlArg::Text(key.patient.clone()), SqlArg::Text(key.system.clone()), SqlArg::Text(key.value.clone())]
}

const KEY_MATCH: &str = "patient_key = $1 AND bundle_system = $2 AND bundle_value = $3";

async fn lock_unit<C: WriteConn>(conn: &mut C, key: &UnitKey) -> Result<(), StoreError> {
    if conn.engine() == Engine::Postgres {
        // Concurrent resends of one unit take turns; SQLite's single writer already does.
        let lock = lock_key(&format!("unit|{}|{}|{}", key.patient, key.system, key.value));
        conn.fetch("SELECT pg_advisory_xact_lock($1)", &[SqlArg::Int(lock)]).await?;
    }
    Ok(())
}

/// Tombstone every resource of the unit and forget its membership; `false` if there was none.
async fn remove_unit<C: WriteConn>(conn: &mut C, key: &UnitKey, now: i64) -> Result<bool, StoreError> {
    let args = key_args(key);
    let members = conn.fetch(&format!("SELECT res_type, res_id FROM unit_member WHERE {KEY_MATCH}"), &args).await?;
    for row in &members {
        apply::delete(conn, &row.text(0), &row.text(1), now).await?;
    }
    conn.execute(&format!("DELETE FROM unit_member WHERE {KEY_MATCH}"), &args).await?;
    let removed = conn.execute(&format!("DELETE FROM submission_unit WHERE {KEY_MATCH}"), &args).await?;
    Ok(removed > 0)
}

/// Stands for the outcome in a receipt rendered ahead; the writer knows whether a unit was replaced.
const OUTCOME_PLACEHOLDER: &str = "0000-outcome-0000";

/// What a submission's write can have ready before it reaches the database (see [`PreparedSubmission`]).
pub fn prepare(index: &SearchIndex, sub: &mut Submission) -> PreparedSubmission {
    let indexed = |res_type: &str, resource: &serde_json::Value| {
        let mut rows = index.index(res_type, resource);
        rows.render_keys();
        rows
    };
    let members = sub.members.iter().map(|m| indexed(&m.res_type, &m.resource)).collect();
    let bodies = sub
        .members
        .iter_mut()
        .map(|m| {
            let rendered = apply::Rendered::new(&mut m.resource);
            if rendered.is_some() {
                // Freed here rather than in the writer: the rendered text is what gets stored.
                m.resource = serde_json::Value::Null;
            }
            rendered
        })
        .collect();
    let patient = indexed("Patient", &sub.patient_resource);
    // A copy: the submitted Patient is compared with the stored one in the transaction.
    let patient_body = apply::Rendered::new(&mut sub.patient_resource.clone());
    let receipt = apply::Template::new(
        &receipt::build(sub, OUTCOME_PLACEHOLDER, apply::PLACEHOLDER_INSTANT),
        &[OUTCOME_PLACEHOLDER, apply::PLACEHOLDER_INSTANT],
    );
    PreparedSubmission { members, bodies, patient, patient_body, receipt }
}

pub async fn submit<C: WriteConn>(
    conn: &mut C,
    index: &SearchIndex,
    mut sub: Submission,
    prepared: PreparedSubmission,
    now: i64,
) -> Result<Submitted, StoreError> {
    lock_unit(conn, &sub.unit).await?;
    let args = key_args(&sub.unit);
    let current = conn
        .fetch(
            "SELECT u.content_hash, s.receipt, s.id FROM submission_unit u JOIN submission s ON s.id = u.submission_id
             WHERE u.patient_key = $1 AND u.bundle_system = $2 AND u.bundle_value = $3",
            &args,
        )
        .await?
        .pop();
    if let Some(row) = &current {
        if row.text(0) == sub.content_hash {
            return Ok(Submitted { id: row.text(2), receipt: row.text(1), outcome: "unchanged" });
        }
    }
    // The unit row and its members are written together, so no unit row means no members.
    let replaced = current.is_some() && remove_unit(conn, &sub.unit, now).await?;
    let outcome = if replaced { "replaced" } else { "accepted" };

    // The resources move into the store; the members' kinds and flags stay for the receipt.
    let PreparedSubmission { members: mut rows, bodies, patient: patient_rows, patient_body, receipt } = prepared;
    let mut resources: Vec<_> = sub
        .members
        .iter_mut()
        .zip(bodies)
        .map(|(m, body)| {
            let body = body.map(NewBody::Rendered).unwrap_or_else(|| NewBody::Json(std::mem::take(&mut m.resource)));
            (m.res_type.clone(), m.id.clone(), body)
        })
        .collect();
    let patient_id = sub.patient.patient_id();
    match patient_write(conn, &patient_id, &sub.patient_resource).await? {
        PatientWrite::Unchanged => {}
        PatientWrite::New => {
            // A patient's first unit: the Patient goes in with the members' statements.
            let body = match patient_body {
                Some(rendered) => NewBody::Rendered(rendered),
                None => NewBody::Json(std::mem::take(&mut sub.patient_resource)),
            };
            resources.push(("Patient".to_string(), patient_id, body));
            rows.push(patient_rows);
        }
        PatientWrite::Changed => {
            let patient = std::mem::take(&mut sub.patient_resource);
            apply::update(conn, index, "Patient".into(), patient_id, patient, None, Some(patient_rows), now).await?;
        }
    }
    apply::create_many(conn, resources, rows, now).await?;
    let mut unit_row = args.to_vec();
    unit_row.extend([SqlArg::Text(sub.id.clone()), SqlArg::Text(sub.content_hash.clone()), SqlArg::Text(sub.institution.clone())]);
    conn.execute(
        "INSERT INTO submission_unit (patient_key, bundle_system, bundle_value, submission_id, content_hash, institution)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &unit_row,
    )
    .await?;
    let mut member_args = Vec::with_capacity(sub.members.len() * 7);
    for m in &sub.members {
        member_args.extend(args.iter().cloned());
        member_args.extend([
            SqlArg::Text(m.res_type.clone()),
            SqlArg::Text(m.id.clone()),
            SqlArg::Text(m.kind.to_string()),
            SqlArg::Text(m.flags.join(",")),
        ]);
    }
    conn.execute_rows(
        "INSERT INTO unit_member (patient_key, bundle_system, bundle_value, res_type, res_id, item_kind, flags) VALUES ",
        "",
        7,
        &member_args,
    )
    .await?;
    count_unmapped(conn, &sub.institution, &sub.unmapped, now).await?;
    let received = super::instant(now);
    let receipt = match receipt {
        Some(template) => template.fill(&[outcome, &received]),
        None => receipt::build(&sub, outcome, &received).to_string(),
    };
    let log = LogRow { id: &sub.id, institution: &sub.institution, kind: sub.kind.as_str(), outcome, unit: Some(&sub.unit) };
    log_submission(conn, log, 0, sub.warnings.len() as i64, &receipt, now).await?;
    Ok(Submitted { id: sub.id, receipt, outcome })
}

/// One upsert for all the codes no table mapped. A code seen twice in one submission counts
/// twice, but appears once in the statement (PostgreSQL refuses to update a row twice in one).
async fn count_unmapped<C: WriteConn>(conn: &mut C, institution: &str, codes: &[(String, String)], now: i64) -> Result<(), StoreError> {
    let mut counts: std::collections::BTreeMap<&(String, String), i64> = std::collections::BTreeMap::new();
    for code in codes {
        *counts.entry(code).or_default() += 1;
    }
    let mut args = Vec::with_capacity(counts.len() * 6);
    for ((system, code), n) in counts {
        args.extend([
            SqlArg::Text(institution.to_string()),
            SqlArg::Text(system.clone()),
            SqlArg::Text(code.clone()),
            SqlArg::Int(n),
            SqlArg::Int(now),
            SqlArg::Int(now),
        ]);
    }
    conn.execute_rows(
        "INSERT INTO unmapped_code (institution, system, code, occurrences, first_seen, last_seen) VALUES ",
        " ON CONFLICT (institution, system, code)
          DO UPDATE SET occurrences = unmapped_code.occurrences + excluded.occurrences, last_seen = excluded.last_seen",
        6,
        &args,
    )
    .await
}

/// What the canonical Patient needs: it takes the submitted demographics, but an unchanged
/// Patient (the common case: every unit of a patient carries the same one) writes no new version.
enum PatientWrite {
    Unchanged,
    /// No row at all: created together with the members.
    New,
    /// A different (or deleted) current version: updated.
    Changed,
}

async fn patient_write<C: WriteConn>(conn: &mut C, id: &str, submitted: &serde_json::Value) -> Result<PatientWrite, StoreError> {
    let current = conn
        .fetch("SELECT body, deleted FROM resource_current WHERE res_type = 'Patient' AND res_id = $1", &[SqlArg::Text(id.into())])
        .await?
        .pop();
    let Some(row) = current else { return Ok(PatientWrite::New) };
    if row.int(1) != 0 {
        return Ok(PatientWrite::Changed);
    }
    let without_meta = |mut v: serde_json::Value| {
        if let Some(meta) = v.get_mut("meta").and_then(serde_json::Value::as_object_mut) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
        }
        v
    };
    let stored = without_meta(serde_json::from_str(&row.text(0)).unwrap_or_default());
    Ok(if stored == without_meta(submitted.clone()) { PatientWrite::Unchanged } else { PatientWrite::Changed })
}

/// Delete a unit by its three keys; the withdrawal itself is logged as a submission.
pub async fn withdraw<C: WriteConn>(
    conn: &mut C,
    key: &UnitKey,
    id: &str,
    institution: &str,
    receipt: &str,
    now: i64,
) -> Result<bool, StoreError> {
    lock_unit(conn, key).await?;
    if !remove_unit(conn, key, now).await? {
        return Ok(false);
    }
    let log = LogRow { id, institution, kind: "withdrawal", outcome: "withdrawn", unit: Some(key) };
    log_submission(conn, log, 0, 0, receipt, now).await?;
    Ok(true)
}

/// Who and what one row of the submission log is about.
struct LogRow<'a> {
    id: &'a str,
    institution: &'a str,
    kind: &'a str,
    outcome: &'a str,
    unit: Option<&'a UnitKey>,
}

/// One row of the submission log: accepted, replaced, withdrawn or rejected, with its receipt
/// (or the rejection's OperationOutcome).
async fn log_submission<C: WriteConn>(
    conn: &mut C,
    row: LogRow<'_>,
    errors: i64,
    warnings: i64,
    receipt: &str,
    now: i64,
) -> Result<(), StoreError> {
    let text = |s: &str| SqlArg::Text(s.to_string());
    // A submission refused before its unit was known has no unit keys.
    let (sql, unit) = match row.unit {
        Some(u) => (
            "INSERT INTO submission (id, received_at, institution, kind, outcome, error_count, warning_count, receipt,
                                     patient_key, bundle_system, bundle_value)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![text(&u.patient), text(&u.system), text(&u.value)],
        ),
        None => (
            "INSERT INTO submission (id, received_at, institution, kind, outcome, error_count, warning_count, receipt)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            Vec::new(),
        ),
    };
    let mut args = vec![
        text(row.id),
        SqlArg::Int(now),
        text(row.institution),
        text(row.kind),
        text(row.outcome),
        SqlArg::Int(errors),
        SqlArg::Int(warnings),
        text(receipt),
    ];
    args.extend(unit);
    conn.execute(sql, &args).await?;
    Ok(())
}

pub async fn record_rejection<C: WriteConn>(conn: &mut C, r: &Rejection, now: i64) -> Result<(), StoreError> {
    let log = LogRow { id: &r.id, institution: &r.institution, kind: &r.kind, outcome: "rejected", unit: r.unit.as_ref() };
    log_submission(conn, log, r.errors.len() as i64, r.warning_count, &r.outcome, now).await?;
    let text = |s: &str| SqlArg::Text(s.to_string());
    let args: Vec<SqlArg> =
        r.errors.iter().flat_map(|(rule, expression, message)| [text(&r.id), text(rule), text(expression), text(message)]).collect();
    conn.execute_rows("INSERT INTO submission_issue (submission_id, rule, expression, message) VALUES ", "", 4, &args).await
}

/// One stored item of a patient's current shared data.
#[derive(Debug, Clone)]
pub struct SharedItem {
    pub res_type: String,
    pub kind: String,
    pub flags: Vec<String>,
    pub institution: String,
    pub body: String,
}

/// An institution's submissions, for data-quality reporting.
#[derive(Debug, Clone, Default)]
pub struct SubmissionHistory {
    /// (outcome, count)
    pub outcomes: Vec<(String, i64)>,
    /// (rule, count) over rejected submissions, most frequent first.
    pub rejection_reasons: Vec<(String, i64)>,
    /// (id, received_at, kind, outcome, errors, warnings), newest first.
    pub recent: Vec<(String, i64, String, String, i64, i64)>,
}

impl super::Store {
    /// The receipt (or rejection OperationOutcome) of a submission, with its outcome.
    pub async fn submission(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT outcome, receipt FROM submission WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Every current item of the units of one patient.
    pub async fn shared_items(&self, patient_key: &str) -> Result<Vec<SharedItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.res_type, m.item_kind, m.flags, u.institution, r.body
             FROM unit_member m
             JOIN submission_unit u ON u.patient_key = m.patient_key AND u.bundle_system = m.bundle_system
                                   AND u.bundle_value = m.bundle_value
             JOIN resource_current r ON r.res_type = m.res_type AND r.res_id = m.res_id
             WHERE m.patient_key = $1 AND r.deleted = 0
             ORDER BY u.institution, m.bundle_value, m.res_type, m.res_id",
        )
        .bind(patient_key)
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SharedItem {
                res_type: r.get(0),
                kind: r.get(1),
                flags: r.get::<String, _>(2).split(',').filter(|f| !f.is_empty()).map(String::from).collect(),
                institution: r.get(3),
                body: r.get(4),
            })
            .collect())
    }

    /// (system, code, occurrences, first seen, last seen) of an institution's unmapped codes.
    pub async fn unmapped_codes(
        &self,
        institution: &str,
        system: Option<&str>,
    ) -> Result<Vec<(String, String, i64, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT system, code, occurrences, first_seen, last_seen FROM unmapped_code
             WHERE institution = $1 AND ($2 = '' OR system = $2)
             ORDER BY occurrences DESC, system, code LIMIT 1000",
        )
        .bind(institution)
        .bind(system.unwrap_or_default())
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect())
    }

    /// Drop from the unmapped-code queue every (institution, system, code) that `now_mapped`
    /// says a table maps now; returns how many left the queue. Maintainers work the queue down
    /// by publishing mappings, so what they have mapped must leave it.
    pub async fn prune_unmapped(&self, now_mapped: impl Fn(&str, &str, &str) -> bool) -> Result<u64, StoreError> {
        let rows = sqlx::query("SELECT institution, system, code FROM unmapped_code").fetch_all(&self.inner.pool).await?;
        let mut pruned = 0;
        for row in rows {
            let (institution, system, code): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            if now_mapped(&institution, &system, &code) {
                pruned += sqlx::query("DELETE FROM unmapped_code WHERE institution = $1 AND system = $2 AND code = $3")
                    .bind(&institution)
                    .bind(&system)
                    .bind(&code)
                    .execute(&self.inner.pool)
                    .await?
                    .rows_affected();
            }
        }
        Ok(pruned)
    }

    pub async fn submission_history(&self, institution: &str, count: i64) -> Result<SubmissionHistory, StoreError> {
        let pool = &self.inner.pool;
        let outcomes = sqlx::query("SELECT outcome, COUNT(*) FROM submission WHERE institution = $1 GROUP BY outcome ORDER BY outcome")
            .bind(institution)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let rejection_reasons = sqlx::query(
            "SELECT i.rule, COUNT(*) AS n FROM submission_issue i JOIN submission s ON s.id = i.submission_id
             WHERE s.institution = $1 GROUP BY i.rule ORDER BY n DESC, i.rule",
        )
        .bind(institution)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let recent = sqlx::query(&format!(
            "SELECT id, received_at, kind, outcome, error_count, warning_count FROM submission
             WHERE institution = $1 ORDER BY received_at DESC LIMIT {count}"
        ))
        .bind(institution)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
        Ok(SubmissionHistory { outcomes, rejection_reasons, recent })
    }
}
