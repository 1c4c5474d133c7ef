-- Appending an event should only ever add to the end of what it writes.
--
-- Tree nodes are keyed by the order in which a growing tree makes them,
-- (leaves up to the node's last one) << 6 | level, instead of by
-- (level, idx): every level used to grow at its own place in the middle of
-- one index, and the table carried that index beside its rows.
CREATE TABLE audit_nodes_by_order (
    pos  INTEGER PRIMARY KEY,
    hash TEXT NOT NULL
);
INSERT INTO audit_nodes_by_order (pos, hash)
    SELECT (((idx + 1) << level) << 6) | level, hash FROM audit_nodes;
DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_by_order RENAME TO audit_nodes;

-- Every index of a table keyed by an INTEGER PRIMARY KEY already ends in
-- that key, and the audit indexes named seq a second time. Queries by
-- target, action or actor still read in seq order, without a sort.
DROP INDEX audit_target;
CREATE INDEX audit_target ON audit_events (target_kind, target_id);
DROP INDEX audit_action;
CREATE INDEX audit_action ON audit_events (action);
DROP INDEX audit_actor;
CREATE INDEX audit_actor ON audit_events (actor_name);
