-- Alert intake: services, their integrations, deduplicated alerts and
-- change events. `doc` holds the whole object as JSON.

CREATE TABLE services (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    version BIGINT NOT NULL,
    doc     TEXT NOT NULL
);

CREATE TABLE integrations (
    id         TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id),
    key        TEXT NOT NULL UNIQUE,
    doc        TEXT NOT NULL
);
CREATE INDEX integrations_service ON integrations (service_id);

CREATE TABLE alerts (
    id             TEXT PRIMARY KEY,
    integration_id TEXT NOT NULL REFERENCES integrations (id),
    service_id     TEXT NOT NULL REFERENCES services (id),
    dedup_key      TEXT NOT NULL,
    status         TEXT NOT NULL,
    incident_id    TEXT REFERENCES incidents (id),
    group_key      TEXT,
    first_seen_at  BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    doc            TEXT NOT NULL
);
-- At most one open alert per (integration, dedup key): the deduplication
-- rule itself, held by the database.
CREATE UNIQUE INDEX alerts_open ON alerts (integration_id, dedup_key)
    WHERE status <> 'resolved';
CREATE INDEX alerts_incident ON alerts (incident_id) WHERE incident_id IS NOT NULL;
CREATE INDEX alerts_group ON alerts (service_id, group_key, first_seen_at)
    WHERE group_key IS NOT NULL;
-- Lists run newest first by first sighting, with an (at, id) keyset cursor.
CREATE INDEX alerts_first_seen ON alerts (first_seen_at, id);
CREATE INDEX alerts_status ON alerts (status, first_seen_at, id);

CREATE TABLE service_changes (
    id         TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id),
    at         BIGINT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX service_changes_service ON service_changes (service_id, at);
