-- How far each node's intake journal has been applied: the last record
-- whose events are committed, written in the same transaction as they are,
-- so that a restart applies every later record once and no earlier one.
CREATE TABLE intake_journals (
    id          TEXT PRIMARY KEY,
    applied_seq INTEGER NOT NULL
);
