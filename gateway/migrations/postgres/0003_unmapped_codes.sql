-- Codes of mappable systems that no active mapping table maps, per institution: the queue the
-- terminology maintainers work through.
CREATE TABLE unmapped_code (
    institution TEXT    NOT NULL,
    system      TEXT    NOT NULL,
    code        TEXT    NOT NULL,
    occurrences BIGINT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    PRIMARY KEY (institution, system, code)
);
