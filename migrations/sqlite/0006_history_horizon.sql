-- SQLite flavour of the PostgreSQL migration of the same number.
-- With history.retain_days set, a run deletes the history that closed before a cut-off;
-- the run records that cut-off, so that a reader (export --as-of) can tell a time whose
-- listing can no longer be rebuilt whole. NULL: the run deleted nothing by age.
ALTER TABLE sync_runs ADD COLUMN history_pruned_before TIMESTAMP;
