-- Runtime controls (graduated containment): one row per control placed. A control is in force
-- until it is lifted (lifted_at set) or its expiry passes; lifted rows stay as history.
CREATE TABLE controls (
    id          TEXT    PRIMARY KEY,
    target      TEXT    NOT NULL, -- `Agent::"build-bot"`
    level       TEXT    NOT NULL, -- observe | require_approval | downgrade | quarantine
    body        TEXT    NOT NULL, -- JSON: the control as placed
    placed_at   INTEGER NOT NULL,
    expires_at  INTEGER,
    lifted_at   INTEGER,
    lifted_by   TEXT,
    lift_reason TEXT
) STRICT;

CREATE INDEX controls_in_force ON controls (lifted_at, target);
