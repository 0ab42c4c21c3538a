-- Submission units: (patient key, Bundle.identifier.system, Bundle.identifier.value) -> the
-- accepted submission that currently holds the unit.
CREATE TABLE submission_unit (
    patient_key   TEXT NOT NULL,
    bundle_system TEXT NOT NULL,
    bundle_value  TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    institution   TEXT NOT NULL,
    PRIMARY KEY (patient_key, bundle_system, bundle_value)
);

-- The resources a unit stored, with their item kind and flags.
CREATE TABLE unit_member (
    patient_key   TEXT NOT NULL,
    bundle_system TEXT NOT NULL,
    bundle_value  TEXT NOT NULL,
    res_type      TEXT NOT NULL,
    res_id        TEXT NOT NULL,
    item_kind     TEXT NOT NULL,
    flags         TEXT NOT NULL, -- comma-separated LTS, UNINFORMED, UNDELIVERED
    PRIMARY KEY (patient_key, bundle_system, bundle_value, res_type, res_id)
);
CREATE INDEX unit_member_patient ON unit_member (patient_key);

-- Every submission, accepted or rejected, with its receipt (or rejection OperationOutcome).
CREATE TABLE submission (
    id            TEXT    NOT NULL PRIMARY KEY,
    received_at   BIGINT NOT NULL,
    institution   TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    outcome       TEXT    NOT NULL, -- accepted, replaced, rejected, withdrawn
    patient_key   TEXT,
    bundle_system TEXT,
    bundle_value  TEXT,
    error_count   BIGINT NOT NULL,
    warning_count BIGINT NOT NULL,
    receipt       TEXT    NOT NULL
);
CREATE INDEX submission_institution ON submission (institution, received_at);

-- Why rejected submissions were rejected, for data-quality reporting.
CREATE TABLE submission_issue (
    submission_id TEXT NOT NULL,
    rule          TEXT NOT NULL,
    expression    TEXT NOT NULL,
    message       TEXT NOT NULL
);
CREATE INDEX submission_issue_submission ON submission_issue (submission_id);
