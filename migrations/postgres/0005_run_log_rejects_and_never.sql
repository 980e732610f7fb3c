-- sync_run_log gains sources_rejected, the count of sources a run quarantined (see
-- source_rejects), the one sources_* count of sync_runs it did not show. Appended as the
-- view's last column: CREATE OR REPLACE VIEW keeps the view's existing columns where they
-- are, so views and grants that users built on it stay valid.
CREATE OR REPLACE VIEW sync_run_log AS
SELECT run_id, started_at, finished_at, status, trigger,
       CAST(ROUND(CAST(EXTRACT(EPOCH FROM (finished_at - started_at)) AS NUMERIC), 3) AS DOUBLE PRECISION) AS duration_seconds,
       walks, pages, http_requests, retries, api_total, sources_seen, sources_created,
       sources_updated, sources_unchanged, sources_deleted, sources_restored, notes, error,
       sources_rejected
FROM sync_runs;

-- The API writes a time stamp that never happened as .NET's smallest date-time,
-- 0001-01-01T00:00:00; the typed columns now hold NULL for it (the stored records keep it
-- as sent). Rows written before that say so too.
UPDATE sources SET script_last_seen_at = NULL
WHERE script_last_seen_at = TIMESTAMPTZ '0001-01-01 00:00:00+00';
UPDATE source_do_not_respond_windows SET starts_at = NULL
WHERE starts_at = TIMESTAMPTZ '0001-01-01 00:00:00+00';
UPDATE source_do_not_respond_windows SET ends_at = NULL
WHERE ends_at = TIMESTAMPTZ '0001-01-01 00:00:00+00';
