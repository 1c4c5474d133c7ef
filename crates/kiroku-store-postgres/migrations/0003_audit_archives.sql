-- Ranges of the audit log moved out to archive files. Their events' rows
-- are gone from audit_events; their leaves stay in audit_nodes (level 0),
-- so the tree, its signed heads and inclusion proofs span the whole log.
CREATE TABLE audit_archives (
    from_seq    BIGINT PRIMARY KEY,
    to_seq      BIGINT NOT NULL,
    file        TEXT NOT NULL,
    -- SHA-256 of the archive file's bytes, hex.
    sha256      TEXT NOT NULL,
    archived_at BIGINT NOT NULL
);
