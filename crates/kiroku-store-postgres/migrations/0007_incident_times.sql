-- The lifecycle times metrics count with, as columns beside the document,
-- and one index that holds everything a period's metrics read, so that
-- they never open a document. Existing rows take theirs from the document.
ALTER TABLE incidents
    ADD COLUMN occurred_at BIGINT,
    ADD COLUMN acknowledged_at BIGINT,
    ADD COLUMN resolved_at BIGINT;
UPDATE incidents SET
    occurred_at = (EXTRACT(EPOCH FROM (doc::jsonb ->> 'occurred_at')::timestamptz) * 1000000)::BIGINT,
    acknowledged_at = (EXTRACT(EPOCH FROM (doc::jsonb ->> 'acknowledged_at')::timestamptz) * 1000000)::BIGINT,
    resolved_at = (EXTRACT(EPOCH FROM (doc::jsonb ->> 'resolved_at')::timestamptz) * 1000000)::BIGINT;
CREATE INDEX incidents_times ON incidents
    (detected_at, category, severity, occurred_at, acknowledged_at, resolved_at);
