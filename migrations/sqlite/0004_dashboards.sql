-- Dashboards (issue 14): typed history of bot assignments and wallets, parsed respond
-- windows, cost overrides as numbers, views for dashboards, a sync_health that tells
-- partial runs apart, and declared types that BI tools recognise (TIMESTAMP, BOOLEAN,
-- NUMERIC). docs/schema.md describes every table and view. The history of the sources
-- already mirrored is filled in by closebot-sync right after this migration (the row in
-- pending_backfills says it is still to do), from source_versions.
--
-- Changing a declared type means rebuilding the table: create the new one, copy every
-- row, drop the old, rename, recreate its indexes; the views are dropped first and
-- created again at the end. Values are copied as stored: TIMESTAMP and BOOLEAN columns
-- have NUMERIC affinity, which leaves the fixed-width time stamp text as text (it is not
-- a number) and the 0/1 integers as integers.

DROP VIEW source_last_seen;
DROP VIEW current_sources;
DROP VIEW current_bot_assignments;
DROP VIEW sync_health;

CREATE TABLE sources_new (
    source_id                          TEXT PRIMARY KEY,
    agency_id                          TEXT,
    name                               TEXT,
    category                           TEXT,
    address                            TEXT,
    key                                TEXT,
    key_sha256                         TEXT,
    access_token                       TEXT,
    access_token_sha256                TEXT,
    connected                          BOOLEAN,
    auto_shutoff                       BOOLEAN,
    graceful_goodbye                   BOOLEAN,
    is_availability_contact_timezone   BOOLEAN,
    is_bot_respond_windows_quiet_hours BOOLEAN,
    summarize_attachments              BOOLEAN,
    respond_to_reactions               BOOLEAN,
    mark_conversation_as_unread        BOOLEAN,
    webhook_callback                   TEXT,
    script_installed                   BOOLEAN,
    script_last_seen_at                TIMESTAMP,
    script_last_seen_domain            TEXT,
    script_last_seen_endpoint          TEXT,
    hubspot_owner_id                   TEXT,
    raw_record                         TEXT NOT NULL,
    content_hash                       TEXT NOT NULL,
    version                            INTEGER NOT NULL,
    first_seen_at                      TIMESTAMP NOT NULL,
    first_seen_run_id                  INTEGER NOT NULL,
    last_changed_at                    TIMESTAMP NOT NULL,
    last_changed_run_id                INTEGER NOT NULL,
    deleted_at                         TIMESTAMP,
    deleted_run_id                     INTEGER
);
INSERT INTO sources_new SELECT
    source_id, agency_id, name, category, address, key, key_sha256, access_token,
    access_token_sha256, connected, auto_shutoff, graceful_goodbye,
    is_availability_contact_timezone, is_bot_respond_windows_quiet_hours,
    summarize_attachments, respond_to_reactions, mark_conversation_as_unread,
    webhook_callback, script_installed, script_last_seen_at, script_last_seen_domain,
    script_last_seen_endpoint, hubspot_owner_id, raw_record, content_hash, version,
    first_seen_at, first_seen_run_id, last_changed_at, last_changed_run_id, deleted_at,
    deleted_run_id
FROM sources;
DROP TABLE sources;
ALTER TABLE sources_new RENAME TO sources;
CREATE INDEX sources_live ON sources (deleted_at, source_id);

-- The cost overrides: the number (NULL when the text is not one; filled in after the
-- migration by closebot-sync, which parses the text) and the text as sent.
CREATE TABLE source_wallets_new (
    source_id                        TEXT PRIMARY KEY,
    re_billing                       BOOLEAN,
    auto_refill                      BOOLEAN,
    top_up_amount                    INTEGER,
    refill_threshold                 INTEGER,
    stripe_customer_id               TEXT,
    currency                         TEXT,
    response_unit_cost_override_text TEXT,
    storage_unit_cost_override_text  TEXT,
    user_unit_cost_override_text     TEXT,
    response_unit_cost_override      NUMERIC,
    storage_unit_cost_override       NUMERIC,
    user_unit_cost_override          NUMERIC
);
INSERT INTO source_wallets_new (source_id, re_billing, auto_refill, top_up_amount, refill_threshold,
    stripe_customer_id, currency, response_unit_cost_override_text, storage_unit_cost_override_text,
    user_unit_cost_override_text)
SELECT source_id, re_billing, auto_refill, top_up_amount, refill_threshold, stripe_customer_id,
    currency, response_unit_cost_override, storage_unit_cost_override, user_unit_cost_override
FROM source_wallets;
DROP TABLE source_wallets;
ALTER TABLE source_wallets_new RENAME TO source_wallets;

CREATE TABLE source_bots_new (
    source_id             TEXT NOT NULL,
    position              INTEGER NOT NULL,
    bot_id                TEXT,
    bot_name              TEXT,
    persona_name_override TEXT,
    enabled               BOOLEAN,
    tag_filter_operator   TEXT,
    PRIMARY KEY (source_id, position)
);
INSERT INTO source_bots_new SELECT source_id, position, bot_id, bot_name, persona_name_override,
    enabled, tag_filter_operator FROM source_bots;
DROP TABLE source_bots;
ALTER TABLE source_bots_new RENAME TO source_bots;
CREATE INDEX source_bots_bot ON source_bots (bot_id);
CREATE INDEX source_bots_source_bot ON source_bots (source_id, bot_id);

CREATE TABLE source_bot_tags_new (
    source_id    TEXT NOT NULL,
    bot_position INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    tag_id       TEXT,
    name         TEXT,
    approve_deny BOOLEAN,
    PRIMARY KEY (source_id, bot_position, position)
);
INSERT INTO source_bot_tags_new SELECT source_id, bot_position, position, tag_id, name, approve_deny
FROM source_bot_tags;
DROP TABLE source_bot_tags;
ALTER TABLE source_bot_tags_new RENAME TO source_bot_tags;

CREATE TABLE source_do_not_respond_windows_new (
    source_id TEXT NOT NULL,
    position  INTEGER NOT NULL,
    starts_at TIMESTAMP,
    ends_at   TIMESTAMP,
    PRIMARY KEY (source_id, position)
);
INSERT INTO source_do_not_respond_windows_new SELECT source_id, position, starts_at, ends_at
FROM source_do_not_respond_windows;
DROP TABLE source_do_not_respond_windows;
ALTER TABLE source_do_not_respond_windows_new RENAME TO source_do_not_respond_windows;

CREATE TABLE bots_new (
    bot_id            TEXT PRIMARY KEY,
    bot_name          TEXT,
    first_seen_at     TIMESTAMP NOT NULL,
    first_seen_run_id INTEGER NOT NULL,
    updated_at        TIMESTAMP NOT NULL,
    updated_run_id    INTEGER NOT NULL
);
INSERT INTO bots_new SELECT bot_id, bot_name, first_seen_at, first_seen_run_id, updated_at, updated_run_id
FROM bots;
DROP TABLE bots;
ALTER TABLE bots_new RENAME TO bots;

CREATE TABLE source_changes_new (
    change_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL,
    source_id   TEXT NOT NULL,
    change_type TEXT NOT NULL CHECK (change_type IN ('created','updated','deleted','restored')),
    field_path  TEXT,
    old_value   TEXT,
    new_value   TEXT,
    changed_at  TIMESTAMP NOT NULL
);
INSERT INTO source_changes_new SELECT change_id, run_id, source_id, change_type, field_path,
    old_value, new_value, changed_at FROM source_changes;
-- Ids of pruned changes are never given out again: the new table continues the old
-- table's sequence, not its highest remaining id.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'source_changes_new', seq FROM sqlite_sequence WHERE name = 'source_changes'
  AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'source_changes_new');
UPDATE sqlite_sequence
SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'source_changes'), 0))
WHERE name = 'source_changes_new';
DROP TABLE source_changes;
ALTER TABLE source_changes_new RENAME TO source_changes;
CREATE INDEX source_changes_source ON source_changes (source_id, changed_at);
CREATE INDEX source_changes_run ON source_changes (run_id);
CREATE INDEX source_changes_time ON source_changes (changed_at);

CREATE TABLE source_versions_new (
    source_id     TEXT NOT NULL,
    version       INTEGER NOT NULL,
    valid_from    TIMESTAMP NOT NULL,
    valid_to      TIMESTAMP,
    opened_run_id INTEGER NOT NULL,
    closed_run_id INTEGER,
    content_hash  TEXT NOT NULL,
    record        TEXT NOT NULL,
    PRIMARY KEY (source_id, version)
);
INSERT INTO source_versions_new SELECT source_id, version, valid_from, valid_to, opened_run_id,
    closed_run_id, content_hash, record FROM source_versions;
DROP TABLE source_versions;
ALTER TABLE source_versions_new RENAME TO source_versions;
CREATE INDEX source_versions_open ON source_versions (valid_to, source_id);

ALTER TABLE source_respond_windows ADD COLUMN day_of_week_iso INTEGER;
ALTER TABLE source_respond_windows ADD COLUMN start_seconds_utc INTEGER;
ALTER TABLE source_respond_windows ADD COLUMN duration_seconds INTEGER;
ALTER TABLE source_bot_respond_windows ADD COLUMN day_of_week_iso INTEGER;
ALTER TABLE source_bot_respond_windows ADD COLUMN start_seconds_utc INTEGER;
ALTER TABLE source_bot_respond_windows ADD COLUMN duration_seconds INTEGER;

CREATE TABLE source_bot_history (
    history_id            INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id             TEXT NOT NULL,
    bot_id                TEXT,
    bot_position          INTEGER,
    bot_name              TEXT,
    persona_name_override TEXT,
    enabled               BOOLEAN,
    channels              TEXT,
    valid_from            TIMESTAMP NOT NULL,
    valid_to              TIMESTAMP,
    opened_run_id         INTEGER NOT NULL,
    closed_run_id         INTEGER
);
-- A bot's open row is looked up by source and bot (id, or position for an id-less bot):
-- by source alone, a source with thousands of bots compared each with all the others.
CREATE INDEX source_bot_history_source ON source_bot_history (source_id, bot_id, bot_position, valid_to);
CREATE INDEX source_bot_history_bot ON source_bot_history (bot_id, valid_from);
CREATE INDEX source_bot_history_opened ON source_bot_history (opened_run_id);
CREATE INDEX source_bot_history_closed ON source_bot_history (closed_run_id);

CREATE TABLE source_wallet_history (
    history_id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id                        TEXT NOT NULL,
    re_billing                       BOOLEAN,
    auto_refill                      BOOLEAN,
    top_up_amount                    INTEGER,
    refill_threshold                 INTEGER,
    stripe_customer_id               TEXT,
    currency                         TEXT,
    response_unit_cost_override      NUMERIC,
    storage_unit_cost_override       NUMERIC,
    user_unit_cost_override          NUMERIC,
    response_unit_cost_override_text TEXT,
    storage_unit_cost_override_text  TEXT,
    user_unit_cost_override_text     TEXT,
    valid_from                       TIMESTAMP NOT NULL,
    valid_to                         TIMESTAMP,
    opened_run_id                    INTEGER NOT NULL,
    closed_run_id                    INTEGER
);
CREATE INDEX source_wallet_history_source ON source_wallet_history (source_id, valid_to);
CREATE INDEX source_wallet_history_opened ON source_wallet_history (opened_run_id);
CREATE INDEX source_wallet_history_closed ON source_wallet_history (closed_run_id);

CREATE TABLE sync_runs_new (
    run_id            INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at        TIMESTAMP NOT NULL,
    finished_at       TIMESTAMP,
    status            TEXT NOT NULL CHECK (status IN ('running','succeeded','partial','failed','aborted','abandoned')),
    trigger           TEXT NOT NULL,
    host              TEXT,
    pid               INTEGER,
    walks             INTEGER NOT NULL DEFAULT 0,
    pages             INTEGER NOT NULL DEFAULT 0,
    http_requests     INTEGER NOT NULL DEFAULT 0,
    retries           INTEGER NOT NULL DEFAULT 0,
    api_total         INTEGER,
    sources_seen      INTEGER NOT NULL DEFAULT 0,
    sources_created   INTEGER NOT NULL DEFAULT 0,
    sources_updated   INTEGER NOT NULL DEFAULT 0,
    sources_unchanged INTEGER NOT NULL DEFAULT 0,
    sources_deleted   INTEGER NOT NULL DEFAULT 0,
    sources_restored  INTEGER NOT NULL DEFAULT 0,
    notes             TEXT,
    error             TEXT,
    sources_rejected  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO sync_runs_new (run_id, started_at, finished_at, status, trigger, host, pid, walks,
    pages, http_requests, retries, api_total, sources_seen, sources_created, sources_updated,
    sources_unchanged, sources_deleted, sources_restored, notes, error, sources_rejected)
SELECT run_id, started_at, finished_at, status, trigger, host, pid, walks,
    pages, http_requests, retries, api_total, sources_seen, sources_created, sources_updated,
    sources_unchanged, sources_deleted, sources_restored, notes, error, sources_rejected
FROM sync_runs;
-- As for source_changes: a pruned run's id is never given out again.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'sync_runs_new', seq FROM sqlite_sequence WHERE name = 'sync_runs'
  AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sync_runs_new');
UPDATE sqlite_sequence
SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'sync_runs'), 0))
WHERE name = 'sync_runs_new';
DROP TABLE sync_runs;
ALTER TABLE sync_runs_new RENAME TO sync_runs;
CREATE INDEX sync_runs_status ON sync_runs (status, run_id);

CREATE TABLE source_rejects_new (
    reject_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id       TEXT NOT NULL,
    field_path      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    first_run_id    INTEGER NOT NULL,
    last_run_id     INTEGER NOT NULL,
    first_seen_at   TIMESTAMP NOT NULL,
    last_seen_at    TIMESTAMP NOT NULL,
    resolved_run_id INTEGER,
    resolved_at     TIMESTAMP
);
INSERT INTO source_rejects_new SELECT reject_id, source_id, field_path, reason, first_run_id,
    last_run_id, first_seen_at, last_seen_at, resolved_run_id, resolved_at FROM source_rejects;
INSERT INTO sqlite_sequence (name, seq)
SELECT 'source_rejects_new', seq FROM sqlite_sequence WHERE name = 'source_rejects'
  AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'source_rejects_new');
UPDATE sqlite_sequence
SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'source_rejects'), 0))
WHERE name = 'source_rejects_new';
DROP TABLE source_rejects;
ALTER TABLE source_rejects_new RENAME TO source_rejects;
CREATE UNIQUE INDEX source_rejects_open ON source_rejects (source_id) WHERE resolved_at IS NULL;
CREATE INDEX source_rejects_source ON source_rejects (source_id, first_seen_at);


-- Work closebot-sync does once after migrating (it deletes the row in the same
-- transaction).
CREATE TABLE pending_backfills (
    name TEXT PRIMARY KEY
);
INSERT INTO pending_backfills (name) VALUES ('dashboards_0004');

CREATE VIEW source_last_seen AS
SELECT s.source_id,
       r.run_id      AS last_seen_run_id,
       r.started_at  AS last_seen_at
FROM sources s
LEFT JOIN sync_runs r ON r.run_id = (
    SELECT r2.run_id FROM sync_runs r2
    WHERE r2.status IN ('succeeded', 'partial')
      AND r2.run_id >= s.first_seen_run_id
      AND (s.deleted_run_id IS NULL OR r2.run_id < s.deleted_run_id)
      AND NOT EXISTS (SELECT 1 FROM source_misses m WHERE m.run_id = r2.run_id AND m.source_id = s.source_id)
    ORDER BY r2.run_id DESC LIMIT 1);

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

CREATE VIEW current_bot_assignments AS
SELECT s.source_id, s.name AS source_name, s.category, b.position AS bot_position, b.bot_id,
       COALESCE(b.bot_name, d.bot_name) AS bot_name, b.persona_name_override, b.enabled,
       b.tag_filter_operator
FROM sources s
JOIN source_bots b ON b.source_id = s.source_id
LEFT JOIN bots d ON d.bot_id = b.bot_id
WHERE s.deleted_at IS NULL;

-- The last run that applied changes (succeeded or partial) apart from the last that fully
-- succeeded, and how many partial runs followed that success.
CREATE VIEW sync_health AS
SELECT
    (SELECT run_id FROM sync_runs ORDER BY run_id DESC LIMIT 1) AS last_run_id,
    (SELECT status FROM sync_runs ORDER BY run_id DESC LIMIT 1) AS last_run_status,
    (SELECT started_at FROM sync_runs ORDER BY run_id DESC LIMIT 1) AS last_run_started_at,
    (SELECT run_id FROM sync_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1) AS last_success_run_id,
    (SELECT finished_at FROM sync_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1) AS last_success_at,
    CAST(ROUND((julianday('now') - julianday(
        (SELECT finished_at FROM sync_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1)
    )) * 86400) AS INTEGER) AS last_success_age_seconds,
    (SELECT COUNT(*) FROM sources WHERE deleted_at IS NULL) AS live_sources,
    (SELECT run_id FROM sync_runs WHERE status IN ('succeeded', 'partial') ORDER BY run_id DESC LIMIT 1) AS last_applied_run_id,
    (SELECT status FROM sync_runs WHERE status IN ('succeeded', 'partial') ORDER BY run_id DESC LIMIT 1) AS last_applied_status,
    (SELECT finished_at FROM sync_runs WHERE status IN ('succeeded', 'partial') ORDER BY run_id DESC LIMIT 1) AS last_applied_at,
    CAST(ROUND((julianday('now') - julianday(
        (SELECT finished_at FROM sync_runs WHERE status IN ('succeeded', 'partial') ORDER BY run_id DESC LIMIT 1)
    )) * 86400) AS INTEGER) AS last_applied_age_seconds,
    (SELECT COUNT(*) FROM sync_runs WHERE status = 'partial' AND run_id >
        COALESCE((SELECT MAX(run_id) FROM sync_runs WHERE status = 'succeeded'), 0)) AS partial_runs_in_a_row,
    (SELECT notes FROM sync_runs WHERE status = 'partial' AND run_id >
        COALESCE((SELECT MAX(run_id) FROM sync_runs WHERE status = 'succeeded'), 0)
     ORDER BY run_id DESC LIMIT 1) AS last_partial_notes;

-- `field` is the first segment of field_path: `wallet`, `bots`, `name`, ...
CREATE VIEW changes_per_day AS
SELECT substr(changed_at, 1, 10) AS day,
       change_type,
       CASE WHEN field_path IS NULL THEN NULL ELSE substr(field_path, 1, min(
           CASE instr(field_path, '.') WHEN 0 THEN length(field_path) + 1 ELSE instr(field_path, '.') END,
           CASE instr(field_path, '[') WHEN 0 THEN length(field_path) + 1 ELSE instr(field_path, '[') END) - 1)
       END AS field,
       COUNT(*) AS changes
FROM source_changes
GROUP BY 1, 2, 3;

CREATE VIEW sync_run_log AS
SELECT run_id, started_at, finished_at, status, trigger,
       ROUND((julianday(finished_at) - julianday(started_at)) * 86400.0, 3) AS duration_seconds,
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
    SELECT 'respond' AS window_table, source_id, position, NULL AS channel,
           day_of_week_utc, start_time_utc, duration, day_of_week_iso, start_seconds_utc, duration_seconds
    FROM source_respond_windows
    UNION ALL
    SELECT 'bot_respond', source_id, position, channel,
           day_of_week_utc, start_time_utc, duration, day_of_week_iso, start_seconds_utc, duration_seconds
    FROM source_bot_respond_windows
) w
JOIN sources s ON s.source_id = w.source_id
CROSS JOIN (SELECT (CAST(strftime('%s', 'now') AS INTEGER) + 259200) % 604800 AS second_of_week) n
WHERE s.deleted_at IS NULL
  AND s.is_availability_contact_timezone IS NOT TRUE
  AND w.day_of_week_iso IS NOT NULL AND w.start_seconds_utc IS NOT NULL AND w.duration_seconds IS NOT NULL
  AND ((n.second_of_week - ((w.day_of_week_iso - 1) * 86400 + w.start_seconds_utc)) % 604800 + 604800) % 604800
      < w.duration_seconds;
