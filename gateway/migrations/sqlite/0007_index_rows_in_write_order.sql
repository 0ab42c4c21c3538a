-- A search index row's key gains `stored_at`, the last_updated of the version that wrote it,
-- just before the resource id: (type, parameter, value..., stored_at, resource). Rows of a
-- value that many resources share (a gender, a profile, a code) then go to the end of that
-- value's range instead of a random place in it (a Patient's id is a hash), so a batch of
-- writes dirties the same few pages instead of one page per row. A resource's rows are removed
-- by their exact keys: `index_keys` plus resource_current.last_updated.
CREATE TABLE idx_token_in_order (res_type TEXT NOT NULL, param TEXT NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL,
                                 stored_at INTEGER NOT NULL, res_id TEXT NOT NULL,
                                 PRIMARY KEY (res_type, param, code, system, stored_at, res_id)) WITHOUT ROWID;
INSERT INTO idx_token_in_order (res_type, param, code, system, stored_at, res_id)
    SELECT i.res_type, i.param, i.code, i.system, r.last_updated, i.res_id
    FROM idx_token i JOIN resource_current r ON r.res_type = i.res_type AND r.res_id = i.res_id;
DROP TABLE idx_token;
ALTER TABLE idx_token_in_order RENAME TO idx_token;

CREATE TABLE idx_string_in_order (res_type TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL,
                                  stored_at INTEGER NOT NULL, res_id TEXT NOT NULL,
                                  PRIMARY KEY (res_type, param, value, stored_at, res_id)) WITHOUT ROWID;
INSERT INTO idx_string_in_order (res_type, param, value, stored_at, res_id)
    SELECT i.res_type, i.param, i.value, r.last_updated, i.res_id
    FROM idx_string i JOIN resource_current r ON r.res_type = i.res_type AND r.res_id = i.res_id;
DROP TABLE idx_string;
ALTER TABLE idx_string_in_order RENAME TO idx_string;

CREATE TABLE idx_date_in_order (res_type TEXT NOT NULL, param TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
                                stored_at INTEGER NOT NULL, res_id TEXT NOT NULL,
                                PRIMARY KEY (res_type, param, lo, hi, stored_at, res_id)) WITHOUT ROWID;
INSERT INTO idx_date_in_order (res_type, param, lo, hi, stored_at, res_id)
    SELECT i.res_type, i.param, i.lo, i.hi, r.last_updated, i.res_id
    FROM idx_date i JOIN resource_current r ON r.res_type = i.res_type AND r.res_id = i.res_id;
DROP TABLE idx_date;
ALTER TABLE idx_date_in_order RENAME TO idx_date;

CREATE TABLE idx_reference_in_order (res_type TEXT NOT NULL, param TEXT NOT NULL, target TEXT NOT NULL,
                                     stored_at INTEGER NOT NULL, res_id TEXT NOT NULL,
                                     PRIMARY KEY (res_type, param, target, stored_at, res_id)) WITHOUT ROWID;
INSERT INTO idx_reference_in_order (res_type, param, target, stored_at, res_id)
    SELECT i.res_type, i.param, i.target, r.last_updated, i.res_id
    FROM idx_reference i JOIN resource_current r ON r.res_type = i.res_type AND r.res_id = i.res_id;
DROP TABLE idx_reference;
ALTER TABLE idx_reference_in_order RENAME TO idx_reference;

CREATE TABLE idx_number_in_order (res_type TEXT NOT NULL, param TEXT NOT NULL, value REAL NOT NULL, system TEXT NOT NULL,
                                  code TEXT NOT NULL, stored_at INTEGER NOT NULL, res_id TEXT NOT NULL,
                                  PRIMARY KEY (res_type, param, value, system, code, stored_at, res_id)) WITHOUT ROWID;
INSERT INTO idx_number_in_order (res_type, param, value, system, code, stored_at, res_id)
    SELECT i.res_type, i.param, i.value, i.system, i.code, r.last_updated, i.res_id
    FROM idx_number i JOIN resource_current r ON r.res_type = i.res_type AND r.res_id = i.res_id;
DROP TABLE idx_number;
ALTER TABLE idx_number_in_order RENAME TO idx_number;
