-- Codes of mappable systems that no active mapping table maps, per institution: the queue the
-- terminology maintainers work through.
CREATE TABLE unmapped_code (
    institution TEXT    NOT NULL,
    system      TEXT    NOT NULL,
    code        TEXT    NOT NULL,
    occurrences INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (institution, system, code)
);
