-- The mapping-table registry (versions, activations, audit) and the re-mapping jobs. The
-- registry's in-memory form (terminology::TableRegistry) is rebuilt from these rows at start-up.
-- Absent values are '' or 0 rather than NULL, so that both engines decode them alike.

-- Every uploaded table version, immutable once stored.
CREATE TABLE mapping_table_version (
    name        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    seq         INTEGER NOT NULL, -- the registry's action number of the upload (upload order)
    content_csv TEXT    NOT NULL, -- the table in canonical CSV form (metadata header + rows)
    uploaded_at TEXT    NOT NULL, -- RFC 3339
    uploaded_by TEXT    NOT NULL,
    PRIMARY KEY (name, version)
);

-- Every activation; a rollback marks the one it undid (kept for the record).
CREATE TABLE mapping_table_activation (
    seq          INTEGER NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    active_from  TEXT    NOT NULL, -- YYYY-MM-DD
    activated_by TEXT    NOT NULL,
    activated_at TEXT    NOT NULL,
    undone_seq   INTEGER NOT NULL  -- seq of the rollback that undid it, 0 while in force
);
CREATE INDEX mapping_table_activation_name ON mapping_table_activation (name, version);

-- The audit trail of the registry; each row is also stored as a FHIR AuditEvent.
CREATE TABLE mapping_table_audit (
    seq          INTEGER NOT NULL PRIMARY KEY,
    recorded_at  TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL, -- upload, activate, rollback
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    detail       TEXT    NOT NULL,
    event_stored INTEGER NOT NULL  -- 1 once the AuditEvent resource is stored
);

-- Background re-mapping of stored resources with the active tables.
CREATE TABLE remap_job (
    id           TEXT    NOT NULL PRIMARY KEY,
    state        TEXT    NOT NULL, -- running, done, failed
    table_name   TEXT    NOT NULL, -- '' for every table
    requested_by TEXT    NOT NULL,
    started_at   INTEGER NOT NULL, -- microseconds since the Unix epoch
    finished_at  INTEGER NOT NULL, -- 0 while running
    total        INTEGER NOT NULL,
    processed    INTEGER NOT NULL,
    changed      INTEGER NOT NULL,
    skipped      INTEGER NOT NULL, -- changed concurrently by a submission: left to it
    cursor_type  TEXT    NOT NULL, -- last (res_type, res_id) processed
    cursor_id    TEXT    NOT NULL,
    error        TEXT    NOT NULL
);
