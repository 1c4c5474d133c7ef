-- Escalation policies and on-call schedules: named, versioned documents.
CREATE TABLE escalation_policies (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    doc     TEXT NOT NULL
);

CREATE TABLE schedules (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    doc     TEXT NOT NULL
);

-- One incident's progress through its policy: a durable timer. due_at is
-- when it must be stepped again (NULL: only a change to the incident wakes
-- it); a worker holds it until claimed_until.
CREATE TABLE escalations (
    incident_id   TEXT PRIMARY KEY REFERENCES incidents (id),
    due_at        INTEGER,
    claimed_until INTEGER,
    doc           TEXT NOT NULL
);
CREATE INDEX escalations_due ON escalations (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX escalations_held ON escalations (claimed_until) WHERE claimed_until IS NOT NULL;

-- Pages are deliveries made by escalation for an incident; an
-- acknowledgement cancels those still waiting.
ALTER TABLE deliveries ADD COLUMN incident_id TEXT;
ALTER TABLE deliveries ADD COLUMN page INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_pages ON deliveries (incident_id) WHERE page = 1 AND status = 'pending';
