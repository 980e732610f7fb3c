//! Settings: the types the program uses, each value already parsed and checked. `load`
//! layers the defaults, the file and the environment; `validate` turns that into these.

mod cron;
mod env;
mod key;
mod load;
mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

pub use cron::Cron;
pub use validate::is_loopback;

/// The environment variable prefix; `CLOSEBOT_SYNC_API__KEY` sets `api.key`.
pub(crate) const ENV_PREFIX: &str = "CLOSEBOT_SYNC";
/// Names the settings file when `--config` is not given.
pub(crate) const CONFIG_ENV: &str = "CLOSEBOT_SYNC_CONFIG";
/// Read when neither `--config` nor `CLOSEBOT_SYNC_CONFIG` names a file, if it exists.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "closebot-sync.toml";
/// The API serves at most this many sources per page.
pub(crate) const MAX_PAGE_SIZE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The loader's error as text, without the lines of the file it quotes: kept as text
    /// (no `source`), so that nothing that prints an error's causes can show them.
    #[error("cannot read the settings: {0}")]
    Load(String),
    #[error("setting `{key}` is invalid: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error(
        "environment variable {variable} names no setting: {problem}. A setting's variable is \
         CLOSEBOT_SYNC_<SECTION>__<KEY>, two underscores between section and key (e.g. \
         CLOSEBOT_SYNC_API__PAGE_SIZE sets api.page_size)"
    )]
    Variable { variable: String, problem: String },
}

impl ConfigError {
    /// Invalid settings, whatever command meets them.
    pub(crate) fn failure(&self) -> crate::failure::Failure {
        crate::failure::Failure::Settings
    }
}

impl From<config::ConfigError> for ConfigError {
    fn from(e: config::ConfigError) -> ConfigError {
        let text = without_quoted_lines(&e);
        // A value of the wrong type from the environment: name the variable the operator
        // set, not only the key (`api.page_size` comes from CLOSEBOT_SYNC_API__PAGE_SIZE).
        if let config::ConfigError::Type {
            origin: Some(origin),
            key: Some(key),
            ..
        } = &e
        {
            if origin == "the environment" {
                let variable =
                    format!("{ENV_PREFIX}_{}", key.to_uppercase().replacen('.', "__", 1));
                return ConfigError::Load(format!(
                    "{text}: set {variable} to a value of that type (the README's settings \
                     table gives each setting's values)"
                ));
            }
        }
        ConfigError::Load(text)
    }
}

/// The loader's error without the lines of the file it quotes (`2 | key = ...`): a line of
/// the settings file may hold the API key or a database password, and the error goes to
/// the journal. The line and column stay.
fn without_quoted_lines(e: &config::ConfigError) -> String {
    let quoted = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    let text = e.to_string();
    let kept: Vec<&str> = text.lines().filter(|l| !quoted(l)).collect();
    kept.join(" ")
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// Validated settings: every value parsed and checked, the API key resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: ApiSettings,
    pub database: DatabaseSettings,
    pub sync: SyncSettings,
    pub schedule: ScheduleSettings,
    pub log: LogSettings,
    pub metrics_listen: Option<SocketAddr>,
    pub health_max_age: Duration,
    pub history_retain_days: Option<u32>,
    /// Warnings found while loading (e.g. a key in a world-readable file), logged once telemetry runs.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub base_url: url::Url,
    /// `None` only for commands that do not call the API (`migrate`, `status`, ...).
    pub key: Option<SecretString>,
    pub page_size: u32,
    pub timeout: Duration,
    pub max_retries: u32,
    pub max_retry_wait: Duration,
    pub concurrency: usize,
    /// The largest page body read; a larger one fails the run while it streams in.
    pub max_page_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: crate::db_url::DatabaseUrl,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub store_credentials: bool,
    pub max_walks: u32,
    pub max_delete_fraction: f64,
    /// A run still going after this long is stopped and rolled back.
    pub max_run_time: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// Parsed and known to fire at load, so the daemon never meets a bad expression.
    pub cron: Cron,
    pub run_on_start: bool,
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

impl ApiSettings {
    /// The key, or an error that tells the operator how to provide one.
    pub fn require_key(&self) -> Result<&SecretString, ConfigError> {
        self.key.as_ref().ok_or_else(|| {
            invalid(
                "api.key",
                "no API key is set: set CLOSEBOT_SYNC_API__KEY, or `api.key_file` (or \
                 CLOSEBOT_SYNC_API__KEY_FILE) to a file that holds it; under systemd, \
                 LoadCredential=api-key:/etc/closebot-sync/api-key with \
                 key_file = \"${CREDENTIALS_DIRECTORY}/api-key\" (variables in ${...} are expanded)",
            )
        })
    }
}

/// Loads `toml` as the settings file with `env` as the environment: the tests' way in.
#[cfg(test)]
fn load_toml(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(&file, toml).unwrap();
    Settings::load_from(
        Some(&file),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}
