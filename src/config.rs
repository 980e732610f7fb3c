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
    pub url: String,
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
                "no API key is set: set CLOSEBOT_SYNC_API__KEY, or `api.key_file` to a file that holds it \
                 (with systemd: LoadCredential= and key_file = \"${CREDENTIALS_DIRECTORY}/api-key\")",
            )
        })
    }
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
        // Only our own variables, and not the one that names the file: it is no setting.
        let ours: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")) && k != CONFIG_ENV)
            .collect();
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
        validate(raw, warnings)
    }

    /// True when the database URL names PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database.url.starts_with("postgres")
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

fn validate(raw: RawSettings, warnings: Vec<String>) -> Result<Settings, ConfigError> {
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
        (None, Some(path)) => Some(read_key_file(&path)?),
        (None, None) => None,
    };
    let url = raw.database.url.trim().to_string();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        return Err(invalid(
            "database.url",
            "must start with sqlite: (e.g. sqlite://closebot-sync.db) or postgres:// \
             (e.g. postgres://user@localhost/closebot)",
        ));
    }
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
                parse_cron(&raw.schedule.cron).map_err(|p| invalid("schedule.cron", p))?;
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
        assert_eq!(from_defaults.database.url, "sqlite://closebot-sync.db");
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
        assert_eq!(s.database.url, "postgres://u@h/db");
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
    fn the_key_never_shows_in_debug_output() {
        let s = load("", &[("CLOSEBOT_SYNC_API__KEY", "very-secret-key")]).unwrap();
        assert!(!format!("{s:?}").contains("very-secret-key"));
    }
}
