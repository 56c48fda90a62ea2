-- Arbiter's first SQLite schema.
-- A migration that has shipped is never edited: change the schema by adding the next numbered file.
--
-- Domain objects live in `body` as JSON (arbiter-core's serde form); the columns beside it are
-- copies of the fields that keys and filters need, written in the same statement as the body.
-- Keys compare as bytes (SQLite's BINARY collation), which is the order listings promise.

CREATE TABLE identities (
    kind       TEXT    NOT NULL, -- IdentityKind::as_str, e.g. `ai_agent`
    id         TEXT    NOT NULL,
    lifecycle  TEXT    NOT NULL, -- Lifecycle::as_str, copied from body
    owner      TEXT,             -- the owner's Human id, copied from body
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT, WITHOUT ROWID;

CREATE INDEX identities_by_lifecycle ON identities (lifecycle, kind, id);
CREATE INDEX identities_by_owner ON identities (owner, kind, id);

-- Direct memberships (Identity::member_of), for the `member_of` filter.
CREATE TABLE identity_memberships (
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    parent_type TEXT NOT NULL,
    parent_id   TEXT NOT NULL,
    PRIMARY KEY (kind, id, parent_type, parent_id),
    FOREIGN KEY (kind, id) REFERENCES identities (kind, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE INDEX identity_memberships_by_parent ON identity_memberships (parent_type, parent_id, kind, id);

CREATE TABLE groups (
    group_type TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (group_type, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE resources (
    resource_type TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (resource_type, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE signals (
    subject_type TEXT    NOT NULL,
    subject_id   TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (subject_type, subject_id, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE policy_versions (
    version    INTEGER PRIMARY KEY, -- 1, 2, 3…
    digest     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    reason     TEXT    NOT NULL
) STRICT;

CREATE TABLE policy_sources (
    version  INTEGER NOT NULL REFERENCES policy_versions (version),
    position INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    text     TEXT    NOT NULL,
    PRIMARY KEY (version, position),
    UNIQUE (version, name)
) STRICT, WITHOUT ROWID;

-- At most one row: the active policy version.
CREATE TABLE active_policy (
    singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
    version      INTEGER NOT NULL REFERENCES policy_versions (version),
    activated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    key_hash   TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    revoked_at INTEGER
) STRICT;

-- The change feed. AUTOINCREMENT: a seq is never reused, even after a rolled-back write.
CREATE TABLE change_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor_id   TEXT    NOT NULL,
    actor_role TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    detail     TEXT    NOT NULL -- JSON
) STRICT;

-- Policy versions and the change feed are history: the database itself refuses to rewrite them.
CREATE TRIGGER policy_versions_no_update BEFORE UPDATE ON policy_versions
BEGIN SELECT RAISE(ABORT, 'policy versions are never edited'); END;
CREATE TRIGGER policy_versions_no_delete BEFORE DELETE ON policy_versions
BEGIN SELECT RAISE(ABORT, 'policy versions are never deleted'); END;
CREATE TRIGGER policy_sources_no_update BEFORE UPDATE ON policy_sources
BEGIN SELECT RAISE(ABORT, 'policy versions are never edited'); END;
CREATE TRIGGER policy_sources_no_delete BEFORE DELETE ON policy_sources
BEGIN SELECT RAISE(ABORT, 'policy versions are never deleted'); END;
CREATE TRIGGER change_events_no_update BEFORE UPDATE ON change_events
BEGIN SELECT RAISE(ABORT, 'the change feed is append-only'); END;
CREATE TRIGGER change_events_no_delete BEFORE DELETE ON change_events
BEGIN SELECT RAISE(ABORT, 'the change feed is append-only'); END;
