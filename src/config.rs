//! Settings: built-in defaults, then the TOML file, then `CLOSEBOT_SYNC_<SECTION>__<KEY>`
//! environment variables. Validated once, into [`Settings`], before anything runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The environment variable prefix; `CLOSEBOT_SYNC_API__KEY` sets `api.key`.
pub const ENV_PREFIX: &str = "CLOSEBOT_SYNC";
/// Names the settings file when `--config` is not given.
pub const CONFIG_ENV: &str = "CLOSEBOT_SYNC_CONFIG";
/// Read when neither `--config` nor `CLOSEBOT_SYNC_CONFIG` names a file, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "closebot-sync.toml";
/// The API serves at most this many sources per page.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The range of `api.max_page_bytes`: a page of 100 real sources is a few hundred kB.
const PAGE_BYTES_RANGE: std::ops::RangeInclusive<u64> = (64 << 10)..=(256 << 20);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the settings: {0}")]
    Load(#[from] config::ConfigError),
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
    /// The process's exit code for invalid settings, whatever command meets them.
    pub fn exit_code(&self) -> u8 {
        crate::cli::exit::SETTINGS
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// The settings as written by the operator, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    api: RawApi,
    database: RawDatabase,
    sync: RawSync,
    schedule: RawSchedule,
    log: RawLog,
    metrics: RawMetrics,
    health: RawHealth,
    history: RawHistory,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    base_url: String,
    key: Option<SecretString>,
    key_file: Option<PathBuf>,
    page_size: u32,
    timeout: String,
    max_retries: u32,
    max_retry_wait: String,
    concurrency: u32,
    max_page_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    max_connections: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    store_credentials: bool,
    max_walks: u32,
    max_delete_fraction: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: String,
    run_on_start: bool,
    shutdown_timeout: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: String,
    format: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    max_age: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    retain_days: Option<u32>,
}

/// Settings without a default (so not in [`DEFAULTS`]); with those, every key there is.
const KEYS_WITHOUT_DEFAULT: &[&str] = &[
    "api.key",
    "api.key_file",
    "metrics.listen",
    "history.retain_days",
];

/// The built-in defaults; `config.example.toml` repeats them for operators.
const DEFAULTS: &str = r#"
[api]
base_url = "https://api.closebot.com"
page_size = 100
timeout = "30s"
max_retries = 5
max_retry_wait = "60s"
concurrency = 4
max_page_bytes = 16777216

[database]
url = "sqlite://closebot-sync.db"
max_connections = 4

[sync]
store_credentials = false
max_walks = 3
max_delete_fraction = 0.5

[schedule]
cron = "0 */15 * * * *"
run_on_start = true
shutdown_timeout = "10s"

[log]
level = "info"
format = "text"

[metrics]

[health]
max_age = "1h"

[history]
"#;

/// Validated settings: every value parsed and checked, the API key resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: ApiSettings,
    pub database: DatabaseSettings,
    pub sync: SyncSettings,
    pub schedule: ScheduleSettings,
    pub log: LogSettings,
    pub metrics_listen: Option<std::net::SocketAddr>,
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
}

#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    pub cron: String,
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

/// The settings' keys, `section.key`: those with a default and those without.
fn known_keys() -> Result<Vec<String>, ConfigError> {
    let defaults = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
        .build()?;
    let mut keys: Vec<String> = KEYS_WITHOUT_DEFAULT.iter().map(|k| k.to_string()).collect();
    let sections: config::Map<String, config::Map<String, config::Value>> =
        defaults.try_deserialize()?;
    for (section, table) in sections {
        keys.extend(table.keys().map(|key| format!("{section}.{key}")));
    }
    keys.sort();
    Ok(keys)
}

/// Sorts the `CLOSEBOT_SYNC_*` variables: settings (`SECTION__KEY`, each checked against the
/// known keys) and strays without a `__`, such as Kubernetes' `CLOSEBOT_SYNC_PORT` for a
/// Service of that name, which are left alone. `CLOSEBOT_SYNC_CONFIG` names the file.
fn settings_variables(
    env: &[(String, String)],
) -> Result<(config::Map<String, String>, Vec<String>), ConfigError> {
    let known = known_keys()?;
    let prefix = format!("{ENV_PREFIX}_");
    let mut settings = config::Map::new();
    let mut strays = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        if name == CONFIG_ENV {
            continue;
        }
        let Some((section, key)) = rest.split_once("__") else {
            strays.push(name.clone());
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let keys_of: Vec<&str> = known
            .iter()
            .filter_map(|k| k.strip_prefix(&format!("{section}.")))
            .collect();
        let problem = if keys_of.is_empty() {
            let mut sections: Vec<&str> =
                known.iter().filter_map(|k| k.split('.').next()).collect();
            sections.dedup();
            Some(format!(
                "there is no section [{section}] (the sections: {})",
                sections.join(", ")
            ))
        } else if !keys_of.contains(&key.as_str()) {
            Some(format!(
                "[{section}] has no key `{key}` (its keys: {})",
                keys_of.join(", ")
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ConfigError::Variable {
                variable: name.clone(),
                problem,
            });
        }
        settings.insert(name.clone(), value.clone());
    }
    strays.sort();
    Ok((settings, strays))
}

/// Expands `${NAME}` from the environment (systemd's `${CREDENTIALS_DIRECTORY}`, ...); a
/// variable that is not set is an error naming it.
fn expand_variables(
    key: &'static str,
    text: &str,
    env: &[(String, String)],
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(invalid(
                key,
                format!("{text:?} opens `${{` without closing it: write ${{NAME}}"),
            ));
        };
        let name = &after[..end];
        match env.iter().find(|(k, _)| k == name) {
            Some((_, value)) => out.push_str(value),
            None => {
                return Err(invalid(
                    key,
                    format!(
                        "{text:?} uses ${{{name}}}, which is not set in the environment \
                         (systemd sets CREDENTIALS_DIRECTORY only for a service with \
                         LoadCredential=; elsewhere write the file's path)"
                    ),
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Settings {
    /// Loads from the defaults, `file` (or the file named by `CLOSEBOT_SYNC_CONFIG`, or
    /// `./closebot-sync.toml` if present) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let named = file.map(Path::to_path_buf).or_else(|| {
            env.iter()
                .find(|(k, _)| k == CONFIG_ENV)
                .map(|(_, v)| PathBuf::from(v))
        });
        let mut warnings = Vec::new();
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        let file_used = match named {
            Some(path) => {
                if !path.is_file() {
                    return Err(invalid(
                        "--config",
                        format!(
                            "the settings file {} does not exist or is not a file",
                            path.display()
                        ),
                    ));
                }
                Some(path)
            }
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        if let Some(path) = &file_used {
            builder = builder
                .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
        // Only our own variables of the SECTION__KEY shape; others are named once, in a warning.
        let (ours, strays) = settings_variables(&env)?;
        if !strays.is_empty() {
            warnings.push(format!(
                "ignored {} not of the form CLOSEBOT_SYNC_<SECTION>__<KEY> (two underscores): {} \
                 (a container platform may set such variables; if one was meant as a setting, \
                 write it as e.g. CLOSEBOT_SYNC_API__KEY)",
                if strays.len() == 1 {
                    "an environment variable"
                } else {
                    "environment variables"
                },
                strays.join(", ")
            ));
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(ours)),
        );
        let raw: RawSettings = builder.build()?.try_deserialize()?;
        if let Some(path) = &file_used {
            if raw.api.key.is_some() && readable_by_others(path) {
                warnings.push(format!(
                    "the settings file {} holds api.key and is readable by other users: \
                     run `chmod 600 {}` or move the key to api.key_file",
                    path.display(),
                    path.display()
                ));
            }
        }
        validate(raw, warnings, &env)
    }
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o004 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

fn duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| {
        invalid(
            key,
            format!("{text:?} is not a duration ({e}); write e.g. \"30s\", \"5m\" or \"1h\""),
        )
    })
}

fn validate(
    raw: RawSettings,
    warnings: Vec<String>,
    env: &[(String, String)],
) -> Result<Settings, ConfigError> {
    let base_url = url::Url::parse(&raw.api.base_url).map_err(|e| {
        invalid(
            "api.base_url",
            format!("{:?} is not a URL ({e})", raw.api.base_url),
        )
    })?;
    check_transport(&base_url)?;
    if raw.api.page_size == 0 || raw.api.page_size > MAX_PAGE_SIZE {
        return Err(invalid(
            "api.page_size",
            format!(
                "{} is out of range: the API serves 1 to {MAX_PAGE_SIZE} sources per page",
                raw.api.page_size
            ),
        ));
    }
    let timeout = duration("api.timeout", &raw.api.timeout)?;
    if timeout.is_zero() {
        return Err(invalid(
            "api.timeout",
            "must be more than zero, e.g. \"30s\"",
        ));
    }
    let max_retry_wait = duration("api.max_retry_wait", &raw.api.max_retry_wait)?;
    if raw.api.concurrency == 0 || raw.api.concurrency > 16 {
        return Err(invalid(
            "api.concurrency",
            format!("{} is out of range: use 1 to 16", raw.api.concurrency),
        ));
    }
    if !PAGE_BYTES_RANGE.contains(&raw.api.max_page_bytes) {
        return Err(invalid(
            "api.max_page_bytes",
            format!(
                "{} is out of range: use {} (64 KiB) to {} (256 MiB); a page of 100 sources \
                 is a few hundred kB, and the default is 16777216 (16 MiB)",
                raw.api.max_page_bytes,
                PAGE_BYTES_RANGE.start(),
                PAGE_BYTES_RANGE.end()
            ),
        ));
    }
    let key = match (raw.api.key, raw.api.key_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "api.key",
                "both api.key and api.key_file are set: keep one",
            ))
        }
        (Some(key), None) => Some(check_key("api.key", key)?),
        (None, Some(path)) => {
            let path = match path.to_str() {
                Some(text) => PathBuf::from(expand_variables("api.key_file", text, env)?),
                None => path,
            };
            Some(read_key_file(&path)?)
        }
        (None, None) => None,
    };
    let url = raw.database.url.parse().map_err(|e| {
        invalid(
            "database.url",
            format!("{e} (set it in the settings file or as CLOSEBOT_SYNC_DATABASE__URL)"),
        )
    })?;
    if raw.database.max_connections < 2 {
        return Err(invalid(
            "database.max_connections",
            "must be at least 2 (one for the run's transaction, one for its run row)",
        ));
    }
    if raw.sync.max_walks == 0 || raw.sync.max_walks > 10 {
        return Err(invalid("sync.max_walks", "use 1 to 10"));
    }
    if !(0.0..=1.0).contains(&raw.sync.max_delete_fraction) {
        return Err(invalid(
            "sync.max_delete_fraction",
            format!(
                "{} is not a fraction: use 0.0 to 1.0 (0.5 = at most half of the live sources)",
                raw.sync.max_delete_fraction
            ),
        ));
    }
    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(invalid(
                "log.format",
                format!("{other:?} is not a format: use \"text\" or \"json\""),
            ))
        }
    };
    tracing_subscriber::EnvFilter::try_new(&raw.log.level).map_err(|e| {
        invalid(
            "log.level",
            format!(
                "{:?}: {e}; use e.g. \"info\" or \"closebot_sync=debug\"",
                raw.log.level
            ),
        )
    })?;
    let metrics_listen = raw
        .metrics
        .listen
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.parse().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("{s:?} is not an address: write e.g. \"127.0.0.1:9464\""),
                )
            })
        })
        .transpose()?;
    if raw.history.retain_days == Some(0) {
        return Err(invalid(
            "history.retain_days",
            "0 would delete history as soon as it is written: leave it unset to keep \
             history forever, or give a number of days",
        ));
    }
    Ok(Settings {
        api: ApiSettings {
            base_url,
            key,
            page_size: raw.api.page_size,
            timeout,
            max_retries: raw.api.max_retries,
            max_retry_wait,
            concurrency: raw.api.concurrency as usize,
            max_page_bytes: raw.api.max_page_bytes,
        },
        database: DatabaseSettings {
            url,
            max_connections: raw.database.max_connections,
        },
        sync: SyncSettings {
            store_credentials: raw.sync.store_credentials,
            max_walks: raw.sync.max_walks,
            max_delete_fraction: raw.sync.max_delete_fraction,
        },
        schedule: ScheduleSettings {
            cron: {
                let cron =
                    parse_cron(&raw.schedule.cron).map_err(|p| invalid("schedule.cron", p))?;
                if cron
                    .find_next_occurrence(&chrono::Utc::now(), false)
                    .is_err()
                {
                    return Err(invalid(
                        "schedule.cron",
                        format!(
                            "{:?} names no time in the future (a date that never comes, such as \
                             30 February): `run` would never sync",
                            raw.schedule.cron
                        ),
                    ));
                }
                raw.schedule.cron
            },
            run_on_start: raw.schedule.run_on_start,
            shutdown_timeout: duration(
                "schedule.shutdown_timeout",
                &raw.schedule.shutdown_timeout,
            )?,
        },
        log: LogSettings {
            level: raw.log.level,
            format,
        },
        metrics_listen,
        health_max_age: duration("health.max_age", &raw.health.max_age)?,
        history_retain_days: raw.history.retain_days,
        warnings,
    })
}

/// Parses a cron expression the way the scheduler reads it: six fields, "sec min hour
/// day-of-month month day-of-week", both day fields must match, in UTC.
pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    let fields = text.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "{text:?} has {fields} fields; write six, \"sec min hour day-of-month month day-of-week\" \
             (UTC), e.g. \"0 */15 * * * *\" for every 15 minutes"
        ));
    }
    croner::Cron::new(text)
        .with_seconds_required()
        .with_dom_and_dow()
        .parse()
        .map_err(|e| {
            format!(
                "{text:?} is not a cron expression ({e}); write \"sec min hour day-of-month month \
                 day-of-week\" (UTC), e.g. \"0 */15 * * * *\" for every 15 minutes"
            )
        })
}

/// The key travels in a header: plain HTTP is allowed only to this machine (the simulator).
fn check_transport(url: &url::Url) -> Result<(), ConfigError> {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(invalid(
            "api.base_url",
            format!(
                "{url} is plain http: the API key would cross the network unencrypted; \
                 use https:// (plain http is accepted only for a loopback host such as the simulator)"
            ),
        )),
        other => Err(invalid(
            "api.base_url",
            format!("scheme {other:?} is not supported: use https://"),
        )),
    }
}

fn check_key(key_name: &'static str, key: SecretString) -> Result<SecretString, ConfigError> {
    let text = key.expose_secret().trim();
    if text.is_empty() {
        return Err(invalid(key_name, "the API key is empty"));
    }
    if text.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid(
            key_name,
            "the API key holds spaces or control characters: copy it again from CloseBot",
        ));
    }
    Ok(SecretString::from(text.to_string()))
}

fn read_key_file(path: &Path) -> Result<SecretString, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            "api.key_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    check_key("api.key_file", SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, toml).unwrap();
        Settings::load_from(
            Some(&file),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn the_example_file_holds_exactly_the_built_in_defaults() {
        let example = include_str!("../config.example.toml");
        let from_example = load(example, &[]).unwrap();
        let from_defaults = load("", &[]).unwrap();
        assert_eq!(format!("{from_example:?}"), format!("{from_defaults:?}"));
        assert_eq!(from_defaults.api.page_size, 100);
        assert_eq!(
            from_defaults.database.url.as_str(),
            "sqlite://closebot-sync.db"
        );
        assert!(!from_defaults.sync.store_credentials);
    }

    #[test]
    fn environment_variables_override_the_file_with_both_separators() {
        let s = load(
            "[api]\npage_size = 50\n",
            &[
                ("CLOSEBOT_SYNC_API__PAGE_SIZE", "25"),
                ("CLOSEBOT_SYNC_DATABASE__URL", "postgres://u@h/db"),
                ("CLOSEBOT_SYNC_API__KEY", "00123"),
            ],
        )
        .unwrap();
        assert_eq!(s.api.page_size, 25);
        assert_eq!(s.database.url.as_str(), "postgres://u@h/db");
        // try_parsing is off: a key of digits stays the string it was.
        assert_eq!(s.api.key.as_ref().unwrap().expose_secret(), "00123");
    }

    #[test]
    fn a_bad_value_names_the_key_and_the_fix() {
        for (toml, key) in [
            ("[api]\ntimeout = \"soon\"\n", "api.timeout"),
            (
                "[api]\nbase_url = \"http://api.closebot.com\"\n",
                "api.base_url",
            ),
            (
                "[sync]\nmax_delete_fraction = 2.0\n",
                "sync.max_delete_fraction",
            ),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[api]\nmax_page_bytes = 1000\n", "api.max_page_bytes"),
            ("[api]\nmax_page_bytes = 1000000000\n", "api.max_page_bytes"),
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            ("[history]\nretain_days = 0\n", "history.retain_days"),
            ("[schedule]\ncron = \"*/15 * * * *\"\n", "schedule.cron"),
            ("[schedule]\ncron = \"0 61 * * * *\"\n", "schedule.cron"),
        ] {
            let e = load(toml, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
        let typo = load("[api]\npage_sise = 5\n", &[]).unwrap_err().to_string();
        assert!(typo.contains("page_sise"), "{typo}");
    }

    #[test]
    fn plain_http_is_accepted_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
            "https://x.example",
        ] {
            let toml = format!("[api]\nbase_url = \"{ok}\"\n");
            assert!(load(&toml, &[]).is_ok(), "{ok}");
        }
        let e = load("[api]\nbase_url = \"http://10.0.0.5\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn the_key_file_is_read_and_a_world_readable_key_draws_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "secret-from-file\n").unwrap();
        let s = load(
            &format!("[api]\nkey_file = \"{}\"\n", key_file.display()),
            &[],
        )
        .unwrap();
        assert_eq!(s.api.key.unwrap().expose_secret(), "secret-from-file");

        let file = dir.path().join("s.toml");
        std::fs::write(&file, "[api]\nkey = \"k\"\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = Settings::load_from(Some(&file), Vec::new()).unwrap();
        assert!(
            s.warnings.iter().any(|w| w.contains("chmod 600")),
            "{:?}",
            s.warnings
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Settings::load_from(Some(&file), Vec::new())
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn variables_without_a_double_underscore_are_ignored_with_one_warning_naming_them() {
        let s = load(
            "",
            &[
                ("CLOSEBOT_SYNC_PORT", "tcp://10.0.0.7:9464"),
                ("CLOSEBOT_SYNC_SERVICE_HOST", "10.0.0.7"),
                ("CLOSEBOT_SYNC_API__PAGE_SIZE", "25"),
            ],
        )
        .unwrap();
        assert_eq!(s.api.page_size, 25);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        let w = &s.warnings[0];
        assert!(
            w.contains("CLOSEBOT_SYNC_PORT, CLOSEBOT_SYNC_SERVICE_HOST") && w.contains("__"),
            "{w}"
        );
        // The variable that names the settings file is no stray.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "").unwrap();
        let s = Settings::load_from(None, [(CONFIG_ENV.to_string(), file.display().to_string())])
            .unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn a_typo_in_a_setting_variable_names_the_variable_and_the_rule() {
        for (var, says) in [
            (
                "CLOSEBOT_SYNC_API__PAGE_SISE",
                "[api] has no key `page_sise`",
            ),
            ("CLOSEBOT_SYNC_APII__KEY", "there is no section [apii]"),
        ] {
            let e = load("", &[(var, "5")]).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let e = e.to_string();
            assert!(e.contains(var) && e.contains(says), "{e}");
            assert!(e.contains("CLOSEBOT_SYNC_<SECTION>__<KEY>"), "{e}");
        }
    }

    #[test]
    fn variables_in_the_key_file_path_are_expanded_and_an_unset_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-key"), "from-credentials\n").unwrap();
        let toml = "[api]\nkey_file = \"${CREDENTIALS_DIRECTORY}/api-key\"\n";
        let creds = dir.path().display().to_string();
        let s = load(toml, &[("CREDENTIALS_DIRECTORY", creds.as_str())]).unwrap();
        assert_eq!(s.api.key.unwrap().expose_secret(), "from-credentials");
        let e = load(toml, &[]).unwrap_err().to_string();
        assert!(
            e.contains("api.key_file")
                && e.contains("${CREDENTIALS_DIRECTORY}")
                && e.contains("not set"),
            "{e}"
        );
        let hint = load("", &[])
            .unwrap()
            .api
            .require_key()
            .unwrap_err()
            .to_string();
        assert!(
            hint.contains("${CREDENTIALS_DIRECTORY}/api-key") && hint.contains("expanded"),
            "{hint}"
        );
    }

    #[test]
    fn an_in_memory_database_and_a_schedule_that_never_fires_are_refused() {
        for url in ["sqlite::memory:", "sqlite://x.db?mode=memory"] {
            let e = load(&format!("[database]\nurl = \"{url}\"\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("database.url") && e.contains("in-memory"), "{e}");
        }
        let e = load("[schedule]\ncron = \"0 0 0 30 2 *\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("schedule.cron") && e.contains("never"), "{e}");
    }

    #[test]
    fn a_malformed_database_url_names_the_setting_its_variable_and_an_example() {
        for url in [
            "mysql://x",
            "sqlite://x.db?cache=sideways",
            "closebot-sync.db",
        ] {
            let e = load("", &[("CLOSEBOT_SYNC_DATABASE__URL", url)])
                .unwrap_err()
                .to_string();
            for says in [
                "database.url",
                "CLOSEBOT_SYNC_DATABASE__URL",
                "sqlite://closebot-sync.db",
            ] {
                assert!(e.contains(says), "{url}: {e}");
            }
        }
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let s = load("", &[("CLOSEBOT_SYNC_API__KEY", "very-secret-key")]).unwrap();
        assert!(!format!("{s:?}").contains("very-secret-key"));
    }
}
