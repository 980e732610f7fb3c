//! `closebot-sync check`: the pre-flight check. Settings, the database (and its pending
//! migrations), and one request for one source to prove the key works. Writes nothing.

use std::str::FromStr;

use secrecy::SecretString;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::closebot::Client;
use crate::config::Settings;
use crate::store::{redact_url, Store, StoreError};
use crate::sync::chain;

/// One line of the report.
fn line(what: &str, ok: bool, text: &str) -> String {
    let verdict = if ok { "ok" } else { "FAILED" };
    format!("{what:<9} {verdict:<6} {text}")
}

/// Opens the database without creating or changing it: SQLite read-only (`None` when the
/// file does not exist yet), PostgreSQL as usual (only reads follow).
async fn open_read_only(settings: &Settings) -> Result<Option<Store>, StoreError> {
    let url = &settings.database.url;
    let fail = |source| StoreError::Connect {
        url: redact_url(url),
        source,
    };
    if !url.starts_with("sqlite:") {
        return Store::connect(url, 2).await.map(Some);
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(fail)?
        .read_only(true);
    let path = options.get_filename().to_path_buf();
    if !path.exists() {
        return Ok(None);
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(fail)?;
    let mut lock_path = path.into_os_string();
    lock_path.push(".lock");
    Ok(Some(Store::Sqlite {
        pool,
        lock_path: lock_path.into(),
    }))
}

async fn check_database(settings: &Settings) -> (bool, String) {
    let shown = redact_url(&settings.database.url);
    match open_read_only(settings).await {
        Ok(None) => (
            true,
            format!("{shown} does not exist yet: `run`, `sync` or `migrate` creates it"),
        ),
        Ok(Some(store)) => {
            let result = store.pending_migrations().await;
            store.close().await;
            match result {
                Ok(0) => (
                    true,
                    format!("{shown} ({}), schema up to date", store.backend().name()),
                ),
                Ok(n) => (
                    true,
                    format!(
                        "{shown} ({}), {n} migrations pending: `run` and `sync` apply them at start, \
                         or run `closebot-sync migrate`",
                        store.backend().name()
                    ),
                ),
                Err(e) => (false, chain(&e)),
            }
        }
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

/// Runs every check, prints one line each, and returns the exit code: 0 when all passed,
/// 1 when one failed (invalid settings never get here: they exit 2 at load).
pub async fn check_command(settings: &Settings) -> u8 {
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
        crate::cli::exit::OK
    } else {
        println!("a check failed: fix it and run `closebot-sync check` again");
        crate::cli::exit::FAILED
    }
}
