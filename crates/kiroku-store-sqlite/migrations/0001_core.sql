-- Kiroku core schema for SQLite. Times are microseconds since the Unix epoch
-- (UTC); `doc` holds the whole object as JSON beside the filtered columns.

CREATE TABLE incidents (
    id          TEXT PRIMARY KEY,
    number      TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    severity    TEXT NOT NULL,
    category    TEXT NOT NULL,
    environment TEXT NOT NULL,
    detected_at INTEGER NOT NULL,
    search      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
-- Lists run newest-detected first with a (detected_at, id) keyset cursor;
-- each filter has an index in that order so a page reads about one page.
CREATE INDEX incidents_detected ON incidents (detected_at, id);
CREATE INDEX incidents_status ON incidents (status, detected_at, id);
CREATE INDEX incidents_severity ON incidents (severity, detected_at, id);
CREATE INDEX incidents_category ON incidents (category, detected_at, id);
CREATE INDEX incidents_environment ON incidents (environment, detected_at, id);

CREATE TABLE incident_counters (
    prefix TEXT NOT NULL,
    year   INTEGER NOT NULL,
    last   INTEGER NOT NULL,
    PRIMARY KEY (prefix, year)
);

CREATE TABLE timeline (
    id          TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    at          INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX timeline_incident ON timeline (incident_id, id);

CREATE TABLE users (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    doc  TEXT NOT NULL
);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    hash         TEXT NOT NULL UNIQUE,
    last_used_at INTEGER,
    doc          TEXT NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    locked_until INTEGER
);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL
);
INSERT INTO audit_head (id, size) VALUES (1, 0);

CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    time        INTEGER NOT NULL,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    actor_id    TEXT,
    actor_name  TEXT,
    actor_role  TEXT,
    source_ip   TEXT,
    target_kind TEXT NOT NULL,
    target_id   TEXT,
    -- SHA-256(0x00 || RFC 8785 canonical doc), hex: the event's Merkle leaf.
    leaf_hash   TEXT NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX audit_target ON audit_events (target_kind, target_id, seq);
CREATE INDEX audit_action ON audit_events (action, seq);
CREATE INDEX audit_actor ON audit_events (actor_name, seq);
CREATE INDEX audit_time ON audit_events (time);

-- Hashes of the complete subtrees of the RFC 6962 tree over audit events:
-- level 0 holds the leaves, (level, idx) covers leaves [idx << level, (idx + 1) << level).
CREATE TABLE audit_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  TEXT NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Public halves of every key that ever signed a tree head.
CREATE TABLE audit_keys (
    key_id     TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Data keys of the subjects whose sensitive values audit events hold,
-- wrapped by the key-encryption key. Shredding clears wrapped_key: the
-- ciphertexts stay (the tree commits to them) but no one can open them.
CREATE TABLE audit_subject_keys (
    subject     TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    wrapped_key TEXT,
    created_at  INTEGER NOT NULL,
    shredded_at INTEGER,
    PRIMARY KEY (subject, generation)
);

CREATE TABLE audit_tree_heads (
    tree_size INTEGER PRIMARY KEY,
    root_hash TEXT NOT NULL,
    time      INTEGER NOT NULL,
    key_id    TEXT NOT NULL REFERENCES audit_keys (key_id),
    signature TEXT NOT NULL
);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    topic           TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    doc             TEXT NOT NULL
);
