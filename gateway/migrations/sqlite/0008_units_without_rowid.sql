-- A unit's rows and its members are only ever found by their primary key (the unit key, which
-- starts with the patient), so they live in that key's B-tree alone (WITHOUT ROWID) instead of
-- a rowid table plus a separate B-tree for the key: one insert per row instead of two. The
-- rows are small (under 200 bytes), which is what WITHOUT ROWID suits.
CREATE TABLE submission_unit_by_key (
    patient_key   TEXT NOT NULL,
    bundle_system TEXT NOT NULL,
    bundle_value  TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    institution   TEXT NOT NULL,
    PRIMARY KEY (patient_key, bundle_system, bundle_value)
) WITHOUT ROWID;
INSERT INTO submission_unit_by_key SELECT patient_key, bundle_system, bundle_value, submission_id, content_hash, institution
    FROM submission_unit;
DROP TABLE submission_unit;
ALTER TABLE submission_unit_by_key RENAME TO submission_unit;

CREATE TABLE unit_member_by_key (
    patient_key   TEXT NOT NULL,
    bundle_system TEXT NOT NULL,
    bundle_value  TEXT NOT NULL,
    res_type      TEXT NOT NULL,
    res_id        TEXT NOT NULL,
    item_kind     TEXT NOT NULL,
    flags         TEXT NOT NULL, -- comma-separated LTS, UNINFORMED, UNDELIVERED
    PRIMARY KEY (patient_key, bundle_system, bundle_value, res_type, res_id)
) WITHOUT ROWID;
INSERT INTO unit_member_by_key SELECT patient_key, bundle_system, bundle_value, res_type, res_id, item_kind, flags
    FROM unit_member;
DROP TABLE unit_member;
ALTER TABLE unit_member_by_key RENAME TO unit_member;
