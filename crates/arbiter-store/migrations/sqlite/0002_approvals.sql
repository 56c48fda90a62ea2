-- Human approvals, and the person an approver's API key acts for.

-- An approver key acts for one human (`Human::"alice"`): approvals are made in that person's
-- name, and only a key that acts for a person can approve.
ALTER TABLE api_keys ADD COLUMN acts_for TEXT;

-- One row per approval request. A request is pending until a human approves or denies it, or it
-- lapses; an approved request is a grant, usable `uses_left` more times until `grant_expires_at`,
-- for exactly the request whose digest it carries.
CREATE TABLE approvals (
    id               TEXT    PRIMARY KEY,
    digest           TEXT    NOT NULL, -- SHA-256 of the canonical request it covers
    state            TEXT    NOT NULL, -- pending | approved | denied
    principal        TEXT    NOT NULL, -- the subject, `Agent::"build-bot"`
    body             TEXT    NOT NULL, -- JSON: what is asked, why, who may approve
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL, -- a pending request lapses then
    decided_by       TEXT,             -- the human who approved or denied
    decided_at       INTEGER,
    decision_reason  TEXT,
    uses_left        INTEGER NOT NULL DEFAULT 0,
    grant_expires_at INTEGER
) STRICT;

CREATE INDEX approvals_by_state ON approvals (state, created_at);
-- Serves both the pending lookup (ordered by creation) and the grant lookup by digest.
CREATE INDEX approvals_by_digest ON approvals (digest, state, created_at);
