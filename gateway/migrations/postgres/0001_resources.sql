-- Current version of every resource (deleted ones keep a tombstone row).
CREATE TABLE resource_current (
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL, -- microseconds since the Unix epoch
    deleted      BIGINT NOT NULL,
    body         TEXT    NOT NULL, -- the resource as served, meta included ('' for a tombstone)
    PRIMARY KEY (res_type, res_id)
);
CREATE INDEX resource_current_updated ON resource_current (res_type, last_updated);

-- Every earlier version; the current one lives only in resource_current.
CREATE TABLE resource_history (
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted      BIGINT NOT NULL,
    body         TEXT    NOT NULL,
    PRIMARY KEY (res_type, res_id, version)
);
CREATE INDEX resource_history_updated ON resource_history (last_updated);

-- Search index of the current versions, one table per search parameter kind. The primary key
-- starts with the resource (rows are replaced per resource); the second index serves searches.
CREATE TABLE idx_token (res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
                        system TEXT NOT NULL, code TEXT NOT NULL,
                        PRIMARY KEY (res_type, res_id, param, system, code));
CREATE INDEX idx_token_find ON idx_token (res_type, param, code, system);

CREATE TABLE idx_string (res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
                         value TEXT NOT NULL,
                         PRIMARY KEY (res_type, res_id, param, value));
CREATE INDEX idx_string_find ON idx_string (res_type, param, value);

CREATE TABLE idx_date (res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
                       lo BIGINT NOT NULL, hi BIGINT NOT NULL,
                       PRIMARY KEY (res_type, res_id, param, lo, hi));
CREATE INDEX idx_date_find ON idx_date (res_type, param, lo, hi);

CREATE TABLE idx_reference (res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
                            target TEXT NOT NULL,
                            PRIMARY KEY (res_type, res_id, param, target));
CREATE INDEX idx_reference_find ON idx_reference (res_type, param, target);

CREATE TABLE idx_number (res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
                         value DOUBLE PRECISION NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL,
                         PRIMARY KEY (res_type, res_id, param, value, system, code));
CREATE INDEX idx_number_find ON idx_number (res_type, param, value);
