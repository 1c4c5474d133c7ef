-- Notification channels, and one delivery per (outbox message, channel),
-- made in the transaction that made the message. `doc` holds the whole
-- object as JSON beside the columns that queries use.
CREATE TABLE channels (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    doc  TEXT NOT NULL
);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    channel_id      TEXT NOT NULL REFERENCES channels (id),
    -- Sent to the receiver; the same on every attempt.
    idempotency_key TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    -- When the next attempt is due (pending deliveries).
    due_at          BIGINT NOT NULL,
    -- A worker holds the delivery until then; after it, another may.
    claimed_until   BIGINT,
    created_at      BIGINT NOT NULL,
    doc             TEXT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, due_at);
CREATE INDEX deliveries_created ON deliveries (created_at, id);
