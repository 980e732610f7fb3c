-- Quarantined sources: a record the mirror cannot store as sent (a field of the wrong type,
-- a date that does not parse, an id too long to index) no longer fails the run. The source
-- keeps its stored state, and one open row here says why, from the first run that met the
-- bad record to the last; the run that next mirrors it (or finds it gone) closes the row.
CREATE TABLE source_rejects (
    reject_id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id       TEXT NOT NULL,
    field_path      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    first_run_id    BIGINT NOT NULL,
    last_run_id     BIGINT NOT NULL,
    first_seen_at   TIMESTAMPTZ NOT NULL,
    last_seen_at    TIMESTAMPTZ NOT NULL,
    resolved_run_id BIGINT,
    resolved_at     TIMESTAMPTZ
);
-- At most one open reject per source.
CREATE UNIQUE INDEX source_rejects_open ON source_rejects (source_id) WHERE resolved_at IS NULL;
CREATE INDEX source_rejects_source ON source_rejects (source_id, first_seen_at);

ALTER TABLE sync_runs ADD COLUMN sources_rejected BIGINT NOT NULL DEFAULT 0;
