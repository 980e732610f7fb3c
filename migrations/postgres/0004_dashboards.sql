-- Dashboards (issue 14): typed history of bot assignments and wallets, parsed respond
-- windows, cost overrides as NUMERIC, views for dashboards and a sync_health that tells
-- partial runs apart. docs/schema.md describes every table and view. The history of the
-- sources already mirrored is filled in by closebot-sync right after this migration (the
-- row in pending_backfills says it is still to do), from source_versions.

CREATE TABLE source_bot_history (
    history_id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id             TEXT NOT NULL,
    bot_id                TEXT,
    bot_position          BIGINT,
    bot_name              TEXT,
    persona_name_override TEXT,
    enabled               BOOLEAN,
    channels              TEXT,
    valid_from            TIMESTAMPTZ NOT NULL,
    valid_to              TIMESTAMPTZ,
    opened_run_id         BIGINT NOT NULL,
    closed_run_id         BIGINT
);
-- A bot's open row is looked up by source and bot (id, or position for an id-less bot):
-- by source alone, a source with thousands of bots compared each with all the others.
CREATE INDEX source_bot_history_source ON source_bot_history (source_id, bot_id, bot_position, valid_to);
CREATE INDEX source_bot_history_bot ON source_bot_history (bot_id, valid_from);
CREATE INDEX source_bot_history_opened ON source_bot_history (opened_run_id);
CREATE INDEX source_bot_history_closed ON source_bot_history (closed_run_id);

CREATE TABLE source_wallet_history (
    history_id                       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id                        TEXT NOT NULL,
    re_billing                       BOOLEAN,
    auto_refill                      BOOLEAN,
    top_up_amount                    BIGINT,
    refill_threshold                 BIGINT,
    stripe_customer_id               TEXT,
    currency                         TEXT,
    response_unit_cost_override      NUMERIC,
    storage_unit_cost_override       NUMERIC,
    user_unit_cost_override          NUMERIC,
    response_unit_cost_override_text TEXT,
    storage_unit_cost_override_text  TEXT,
    user_unit_cost_override_text     TEXT,
    valid_from                       TIMESTAMPTZ NOT NULL,
    valid_to                         TIMESTAMPTZ,
    opened_run_id                    BIGINT NOT NULL,
    closed_run_id                    BIGINT
);
CREATE INDEX source_wallet_history_source ON source_wallet_history (source_id, valid_to);
CREATE INDEX source_wallet_history_opened ON source_wallet_history (opened_run_id);
CREATE INDEX source_wallet_history_closed ON source_wallet_history (closed_run_id);

-- Work closebot-sync does once after migrating (it deletes the row in the same
-- transaction).
CREATE TABLE pending_backfills (
    name TEXT PRIMARY KEY
);
INSERT INTO pending_backfills (name) VALUES ('dashboards_0004');

-- The cost overrides: the number (NULL when the text is not one), and the text as sent.
DROP VIEW current_sources;
ALTER TABLE source_wallets RENAME COLUMN response_unit_cost_override TO response_unit_cost_override_text;
ALTER TABLE source_wallets RENAME COLUMN storage_unit_cost_override TO storage_unit_cost_override_text;
ALTER TABLE source_wallets RENAME COLUMN user_unit_cost_override TO user_unit_cost_override_text;
ALTER TABLE source_wallets
    ADD COLUMN response_unit_cost_override NUMERIC,
    ADD COLUMN storage_unit_cost_override NUMERIC,
    ADD COLUMN user_unit_cost_override NUMERIC;

ALTER TABLE source_respond_windows
    ADD COLUMN day_of_week_iso BIGINT,
    ADD COLUMN start_seconds_utc BIGINT,
    ADD COLUMN duration_seconds BIGINT;
ALTER TABLE source_bot_respond_windows
    ADD COLUMN day_of_week_iso BIGINT,
    ADD COLUMN start_seconds_utc BIGINT,
    ADD COLUMN duration_seconds BIGINT;

CREATE VIEW current_sources AS
SELECT s.source_id, s.agency_id, s.name, s.category, s.address, s.connected, s.auto_shutoff,
       s.graceful_goodbye, s.is_availability_contact_timezone, s.is_bot_respond_windows_quiet_hours,
       s.summarize_attachments, s.respond_to_reactions, s.mark_conversation_as_unread,
       s.webhook_callback, s.script_installed, s.script_last_seen_at, s.script_last_seen_domain,
       s.script_last_seen_endpoint, s.hubspot_owner_id, s.key_sha256, s.access_token_sha256,
       s.version, s.first_seen_at, s.last_changed_at,
       w.source_id IS NOT NULL AS has_wallet,
       w.re_billing AS wallet_re_billing, w.auto_refill AS wallet_auto_refill,
       w.top_up_amount AS wallet_top_up_amount, w.refill_threshold AS wallet_refill_threshold,
       w.stripe_customer_id AS wallet_stripe_customer_id, w.currency AS wallet_currency,
       w.response_unit_cost_override AS wallet_response_unit_cost_override,
       w.storage_unit_cost_override AS wallet_storage_unit_cost_override,
       w.user_unit_cost_override AS wallet_user_unit_cost_override,
       w.response_unit_cost_override_text AS wallet_response_unit_cost_override_text,
       w.storage_unit_cost_override_text AS wallet_storage_unit_cost_override_text,
       w.user_unit_cost_override_text AS wallet_user_unit_cost_override_text
FROM sources s
LEFT JOIN source_wallets w ON w.source_id = s.source_id
WHERE s.deleted_at IS NULL;

-- The last run that applied changes (succeeded or partial) apart from the last that fully
-- succeeded, and how many partial runs followed that success.
DROP VIEW sync_health;
CREATE VIEW sync_health AS
SELECT
    (SELECT run_id FROM sync_runs ORDER BY run_id DESC LIMIT 1) AS last_run_id,
    (SELECT status FROM sync_runs ORDER BY run_id DESC LIMIT 1) AS last_run_status,
    (SELECT started_at FROM sync_runs ORDER BY run_id DESC LIMIT 1) AS last_run_started_at,
    (SELECT run_id FROM sync_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1) AS last_success_run_id,
    (SELECT finished_at FROM sync_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1) AS last_success_at,
    CAST(EXTRACT(EPOCH FROM now() -
        (SELECT finished_at FROM sync_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1)
    ) AS BIGINT) AS last_success_age_seconds,
    (SELECT COUNT(*) FROM sources WHERE deleted_at IS NULL) AS live_sources,
    (SELECT run_id FROM sync_runs WHERE status IN ('succeeded', 'partial') ORDER BY run_id DESC LIMIT 1) AS last_applied_run_id,
    (SELECT status FROM sync_runs WHERE status IN ('succeeded', 'partial') ORDER BY run_id DESC LIMIT 1) AS last_applied_status,
    (SELECT finished_at FROM sync_runs WHERE status IN ('succeeded', 'partial') ORDER BY run_id DESC LIMIT 1) AS last_applied_at,
    CAST(EXTRACT(EPOCH FROM now() -
        (SELECT finished_at FROM sync_runs WHERE status IN ('succeeded', 'partial') ORDER BY run_id DESC LIMIT 1)
    ) AS BIGINT) AS last_applied_age_seconds,
    (SELECT COUNT(*) FROM sync_runs WHERE status = 'partial' AND run_id >
        COALESCE((SELECT MAX(run_id) FROM sync_runs WHERE status = 'succeeded'), 0)) AS partial_runs_in_a_row,
    (SELECT notes FROM sync_runs WHERE status = 'partial' AND run_id >
        COALESCE((SELECT MAX(run_id) FROM sync_runs WHERE status = 'succeeded'), 0)
     ORDER BY run_id DESC LIMIT 1) AS last_partial_notes;

CREATE VIEW changes_per_day AS
SELECT CAST(changed_at AT TIME ZONE 'UTC' AS DATE) AS day,
       change_type,
       substring(field_path from '^[^.\[]*') AS field,
       COUNT(*) AS changes
FROM source_changes
GROUP BY 1, 2, 3;

CREATE VIEW sync_run_log AS
SELECT run_id, started_at, finished_at, status, trigger,
       CAST(ROUND(CAST(EXTRACT(EPOCH FROM (finished_at - started_at)) AS NUMERIC), 3) AS DOUBLE PRECISION) AS duration_seconds,
       walks, pages, http_requests, retries, api_total, sources_seen, sources_created,
       sources_updated, sources_unchanged, sources_deleted, sources_restored, notes, error
FROM sync_runs;

-- 1970-01-01 was a Thursday: (epoch seconds + 3 days) mod one week counts from Monday 00:00.
CREATE VIEW respond_windows_open_now AS
SELECT s.source_id, s.name AS source_name, w.window_table, w.position, w.channel,
       w.day_of_week_utc, w.start_time_utc, w.duration,
       w.day_of_week_iso, w.start_seconds_utc, w.duration_seconds,
       s.is_bot_respond_windows_quiet_hours
FROM (
    SELECT 'respond' AS window_table, source_id, position, CAST(NULL AS TEXT) AS channel,
           day_of_week_utc, start_time_utc, duration, day_of_week_iso, start_seconds_utc, duration_seconds
    FROM source_respond_windows
    UNION ALL
    SELECT 'bot_respond', source_id, position, channel,
           day_of_week_utc, start_time_utc, duration, day_of_week_iso, start_seconds_utc, duration_seconds
    FROM source_bot_respond_windows
) w
JOIN sources s ON s.source_id = w.source_id
CROSS JOIN (SELECT (CAST(FLOOR(EXTRACT(EPOCH FROM now())) AS BIGINT) + 259200) % 604800 AS second_of_week) n
WHERE s.deleted_at IS NULL
  AND s.is_availability_contact_timezone IS NOT TRUE
  AND w.day_of_week_iso IS NOT NULL AND w.start_seconds_utc IS NOT NULL AND w.duration_seconds IS NOT NULL
  AND ((n.second_of_week - ((w.day_of_week_iso - 1) * 86400 + w.start_seconds_utc)) % 604800 + 604800) % 604800
      < w.duration_seconds;

-- The current bots of a source, by id (see source_bot_history_source).
CREATE INDEX source_bots_source_bot ON source_bots (source_id, bot_id);
