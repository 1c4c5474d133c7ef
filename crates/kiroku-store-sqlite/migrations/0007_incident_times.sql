-- The lifecycle times metrics count with, as columns beside the document,
-- and one index that holds everything a period's metrics read, so that
-- they never open a document. Existing rows take theirs from the document
-- (julianday keeps them to within a millisecond).
ALTER TABLE incidents ADD COLUMN occurred_at INTEGER;
ALTER TABLE incidents ADD COLUMN acknowledged_at INTEGER;
ALTER TABLE incidents ADD COLUMN resolved_at INTEGER;
UPDATE incidents SET
    occurred_at = CAST(ROUND((julianday(json_extract(doc, '$.occurred_at')) - 2440587.5) * 86400000000.0) AS INTEGER),
    acknowledged_at = CAST(ROUND((julianday(json_extract(doc, '$.acknowledged_at')) - 2440587.5) * 86400000000.0) AS INTEGER),
    resolved_at = CAST(ROUND((julianday(json_extract(doc, '$.resolved_at')) - 2440587.5) * 86400000000.0) AS INTEGER);
CREATE INDEX incidents_times ON incidents
    (detected_at, category, severity, occurred_at, acknowledged_at, resolved_at);
