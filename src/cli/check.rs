//! `closebot-sync check`: the pre-flight check. Settings, the database (and its pending
//! migrations), and one request for one source to prove the key works. Writes nothing.

use secrecy::SecretString;

use super::exit::Ended;
use crate::closebot::Client;
use crate::config::Settings;
use crate::failure::Failure;
use crate::store::{Store, StoreError};
use crate::text::chain;

/// One line of the report.
fn line(what: &str, ok: bool, text: &str) -> String {
    let verdict = if ok { "ok" } else { "FAILED" };
    format!("{what:<9} {verdict:<6} {text}")
}

async fn check_database(settings: &Settings) -> (bool, String) {
    let url = &settings.database.url;
    let shown = url.to_string();
    let store = match Store::open_read_only(url).await {
        Ok(store) => store,
        // Before the first run a SQLite file is simply not there yet; a PostgreSQL database
        // must be created by its administrator.
        Err(StoreError::Missing { .. }) if url.sqlite_file().is_some() => {
            return (
                true,
                format!("{shown} does not exist yet: `run`, `sync` or `migrate` creates it"),
            )
        }
        Err(e) => return (false, chain(&e)),
    };
    let result = store.pending_migrations().await;
    store.close().await;
    let backend = store.backend().name();
    match result {
        Ok(0) => (true, format!("{shown} ({backend}), schema up to date")),
        Ok(n) => (
            true,
            format!(
                "{shown} ({backend}), {} pending: `run` and `sync` apply them at start, \
                 or run `closebot-sync migrate`",
                crate::text::count(n as u64, "migration", "migrations")
            ),
        ),
        Err(e) => (false, chain(&e)),
    }
}

async fn check_api(settings: &Settings) -> (bool, String) {
    let key: SecretString = match settings.api.require_key() {
        Ok(k) => k.clone(),
        Err(e) => return (false, e.to_string()),
    };
    // Exactly one request: a retry would hide what the operator needs to see.
    let mut api = settings.api.clone();
    api.max_retries = 0;
    let client = match Client::new(&api, key) {
        Ok(c) => c,
        Err(e) => return (false, chain(&e)),
    };
    match client.fetch(0, 1).await {
        Ok(page) => (
            true,
            format!(
                "{}: the key works; the listing holds {} sources",
                settings.api.base_url, page.total
            ),
        ),
        Err(e) => (false, format!("{}: {}", settings.api.base_url, chain(&e))),
    }
}

/// Runs every check and prints one line each. A missing API key is a settings failure (exit
/// 2, as other invalid settings are at load).
pub(super) async fn check_command(settings: &Settings) -> Ended {
    let schedule = format!(
        "schedule \"{}\" (UTC), run_on_start {}, metrics {}",
        settings.schedule.cron,
        settings.schedule.run_on_start,
        settings
            .metrics_listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".to_string())
    );
    println!("{}", line("settings", true, &schedule));
    let (db_ok, db) = check_database(settings).await;
    println!("{}", line("database", db_ok, &db));
    let (api_ok, api) = check_api(settings).await;
    println!("{}", line("api", api_ok, &api));
    if db_ok && api_ok {
        println!("all checks passed: `closebot-sync run` can start");
        Ended::Done
    } else if let Err(e) = settings.api.require_key() {
        // No key is a settings error, as it is for `run` and `sync`.
        println!("a check failed: fix the settings and run `closebot-sync check` again");
        Ended::Reported(e.failure())
    } else {
        println!("a check failed: fix it and run `closebot-sync check` again");
        Ended::Reported(Failure::Failed)
    }
}
