-- Tree nodes are keyed by the order in which a growing tree makes them,
-- (leaves up to the node's last one) << 6 | level, instead of by
-- (level, idx): every level used to grow at its own place in the middle of
-- the key's index, and appending an event now only adds at its end.
CREATE TABLE audit_nodes_by_order (
    pos  BIGINT PRIMARY KEY,
    hash TEXT NOT NULL
);
INSERT INTO audit_nodes_by_order (pos, hash)
    SELECT (((idx + 1) << level::integer) << 6) | level, hash FROM audit_nodes;
DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_by_order RENAME TO audit_nodes;
ALTER INDEX audit_nodes_by_order_pkey RENAME TO audit_nodes_pkey;
