-- An incident's postmortem: the document being written, its stage and the
-- approvals of its current version, as one JSON document.
CREATE TABLE postmortems (
    incident_id TEXT PRIMARY KEY REFERENCES incidents (id),
    version     INTEGER NOT NULL,
    doc         TEXT NOT NULL
);

-- Each version made final, frozen as the canonical bytes whose SHA-256 the
-- audit trail records.
CREATE TABLE postmortem_versions (
    incident_id  TEXT NOT NULL REFERENCES incidents (id),
    version      INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    finalised_at INTEGER NOT NULL,
    canonical    TEXT NOT NULL,
    PRIMARY KEY (incident_id, version)
);

-- Action items, copied out of each saved postmortem so that they can be
-- tracked across incidents. due is a civil date, YYYY-MM-DD, so it sorts
-- as text.
CREATE TABLE action_items (
    id          TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    status      TEXT NOT NULL,
    owner_id    TEXT,
    due         TEXT,
    reminded    INTEGER NOT NULL DEFAULT 0,
    doc         TEXT NOT NULL
);
CREATE INDEX action_items_incident ON action_items (incident_id);
CREATE INDEX action_items_open_due ON action_items (due) WHERE status <> 'done';

-- The duties an incident's facts bring, with their status. remind_at is
-- the next reminder (or the overdue notice) still to send.
CREATE TABLE obligations (
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    rule        TEXT NOT NULL,
    status      TEXT NOT NULL,
    due_at      INTEGER NOT NULL,
    remind_at   INTEGER,
    doc         TEXT NOT NULL,
    PRIMARY KEY (incident_id, rule)
);
CREATE INDEX obligations_remind ON obligations (remind_at) WHERE remind_at IS NOT NULL;
CREATE INDEX obligations_pending ON obligations (due_at) WHERE status = 'pending';
