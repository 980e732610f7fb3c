-- closebot-sync schema, SQLite flavour. Time stamps are ISO-8601 UTC text
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ) so they sort and compare as text; booleans are 0/1;
-- JSON is text. docs/schema.md describes every table and view.

CREATE TABLE sync_runs (
    run_id            INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at        TEXT NOT NULL,
    finished_at       TEXT,
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
    error             TEXT
);
CREATE INDEX sync_runs_status ON sync_runs (status, run_id);

CREATE TABLE sources (
    source_id                          TEXT PRIMARY KEY,
    agency_id                          TEXT,
    name                               TEXT,
    category                           TEXT,
    address                            TEXT,
    key                                TEXT,
    key_sha256                         TEXT,
    access_token                       TEXT,
    access_token_sha256                TEXT,
    connected                          INTEGER,
    auto_shutoff                       INTEGER,
    graceful_goodbye                   INTEGER,
    is_availability_contact_timezone   INTEGER,
    is_bot_respond_windows_quiet_hours INTEGER,
    summarize_attachments              INTEGER,
    respond_to_reactions               INTEGER,
    mark_conversation_as_unread        INTEGER,
    webhook_callback                   TEXT,
    script_installed                   INTEGER,
    script_last_seen_at                TEXT,
    script_last_seen_domain            TEXT,
    script_last_seen_endpoint          TEXT,
    hubspot_owner_id                   TEXT,
    raw_record                         TEXT NOT NULL,
    content_hash                       TEXT NOT NULL,
    version                            INTEGER NOT NULL,
    first_seen_at                      TEXT NOT NULL,
    first_seen_run_id                  INTEGER NOT NULL,
    last_changed_at                    TEXT NOT NULL,
    last_changed_run_id                INTEGER NOT NULL,
    deleted_at                         TEXT,
    deleted_run_id                     INTEGER
);
CREATE INDEX sources_live ON sources (deleted_at, source_id);

CREATE TABLE source_wallets (
    source_id                   TEXT PRIMARY KEY,
    re_billing                  INTEGER,
    auto_refill                 INTEGER,
    top_up_amount               INTEGER,
    refill_threshold            INTEGER,
    stripe_customer_id          TEXT,
    currency                    TEXT,
    response_unit_cost_override TEXT,
    storage_unit_cost_override  TEXT,
    user_unit_cost_override     TEXT
);

CREATE TABLE source_bots (
    source_id             TEXT NOT NULL,
    position              INTEGER NOT NULL,
    bot_id                TEXT,
    bot_name              TEXT,
    persona_name_override TEXT,
    enabled               INTEGER,
    tag_filter_operator   TEXT,
    PRIMARY KEY (source_id, position)
);
CREATE INDEX source_bots_bot ON source_bots (bot_id);

CREATE TABLE source_bot_channels (
    source_id    TEXT NOT NULL,
    bot_position INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    channel      TEXT,
    PRIMARY KEY (source_id, bot_position, position)
);

CREATE TABLE source_bot_tags (
    source_id    TEXT NOT NULL,
    bot_position INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    tag_id       TEXT,
    name         TEXT,
    approve_deny INTEGER,
    PRIMARY KEY (source_id, bot_position, position)
);

CREATE TABLE source_bot_tag_filter_groups (
    source_id    TEXT NOT NULL,
    bot_position INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    operator     TEXT,
    PRIMARY KEY (source_id, bot_position, position)
);

CREATE TABLE source_bot_tag_filter_rules (
    source_id      TEXT NOT NULL,
    bot_position   INTEGER NOT NULL,
    group_position INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    tag_name       TEXT,
    tag_id         TEXT,
    condition      TEXT,
    PRIMARY KEY (source_id, bot_position, group_position, position)
);

CREATE TABLE source_accounts_with_access (
    source_id  TEXT NOT NULL,
    position   INTEGER NOT NULL,
    account_id TEXT,
    PRIMARY KEY (source_id, position)
);

CREATE TABLE source_respond_windows (
    source_id       TEXT NOT NULL,
    position        INTEGER NOT NULL,
    day_of_week_utc TEXT,
    start_time_utc  TEXT,
    duration        TEXT,
    PRIMARY KEY (source_id, position)
);

CREATE TABLE source_do_not_respond_windows (
    source_id TEXT NOT NULL,
    position  INTEGER NOT NULL,
    starts_at TEXT,
    ends_at   TEXT,
    PRIMARY KEY (source_id, position)
);

CREATE TABLE source_bot_respond_windows (
    source_id       TEXT NOT NULL,
    position        INTEGER NOT NULL,
    day_of_week_utc TEXT,
    start_time_utc  TEXT,
    duration        TEXT,
    channel         TEXT,
    PRIMARY KEY (source_id, position)
);

CREATE TABLE source_script_domains (
    source_id TEXT NOT NULL,
    position  INTEGER NOT NULL,
    domain    TEXT,
    PRIMARY KEY (source_id, position)
);

CREATE TABLE bots (
    bot_id            TEXT PRIMARY KEY,
    bot_name          TEXT,
    first_seen_at     TEXT NOT NULL,
    first_seen_run_id INTEGER NOT NULL,
    updated_at        TEXT NOT NULL,
    updated_run_id    INTEGER NOT NULL
);

CREATE TABLE source_changes (
    change_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL,
    source_id   TEXT NOT NULL,
    change_type TEXT NOT NULL CHECK (change_type IN ('created','updated','deleted','restored')),
    field_path  TEXT,
    old_value   TEXT,
    new_value   TEXT,
    changed_at  TEXT NOT NULL
);
CREATE INDEX source_changes_source ON source_changes (source_id, changed_at);
CREATE INDEX source_changes_run ON source_changes (run_id);
CREATE INDEX source_changes_time ON source_changes (changed_at);

CREATE TABLE source_versions (
    source_id     TEXT NOT NULL,
    version       INTEGER NOT NULL,
    valid_from    TEXT NOT NULL,
    valid_to      TEXT,
    opened_run_id INTEGER NOT NULL,
    closed_run_id INTEGER,
    content_hash  TEXT NOT NULL,
    record        TEXT NOT NULL,
    PRIMARY KEY (source_id, version)
);
CREATE INDEX source_versions_open ON source_versions (valid_to, source_id);

-- Live sources that a run which could not be shown complete did not see (see docs/schema.md:
-- last_seen is derived from runs, so that an unchanged source costs no write).
CREATE TABLE source_misses (
    run_id    INTEGER NOT NULL,
    source_id TEXT NOT NULL,
    PRIMARY KEY (run_id, source_id)
);

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
       w.user_unit_cost_override AS wallet_user_unit_cost_override
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
    (SELECT COUNT(*) FROM sources WHERE deleted_at IS NULL) AS live_sources;
