//! Loading: `config.example.toml` as built in (the one place defaults are written), then the
//! TOML file, then `CLOSEBOT_SYNC_<SECTION>__<KEY>` variables, into the settings as written.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use super::{invalid, ConfigError, Settings, CONFIG_ENV, DEFAULT_CONFIG_FILE, ENV_PREFIX};

/// The built-in defaults: the example file the operator reads is the one the program reads
/// first, so the two cannot disagree. Its commented-out keys have no default.
const DEFAULTS: &str = include_str!("../../config.example.toml");

/// Settings without a default, shown commented out in [`DEFAULTS`]; with those, every key
/// there is.
const KEYS_WITHOUT_DEFAULT: &[&str] = &[
    "api.key",
    "api.key_file",
    "metrics.listen",
    "history.retain_days",
];

/// The settings as written by the operator, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub api: RawApi,
    pub database: RawDatabase,
    pub sync: RawSync,
    pub schedule: RawSchedule,
    pub log: RawLog,
    pub metrics: RawMetrics,
    pub health: RawHealth,
    pub history: RawHistory,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub base_url: String,
    pub key: Option<SecretString>,
    pub key_file: Option<PathBuf>,
    pub page_size: u32,
    pub timeout: String,
    pub max_retries: u32,
    pub max_retry_wait: String,
    pub concurrency: u32,
    pub max_page_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub store_credentials: bool,
    pub max_walks: u32,
    pub max_delete_fraction: f64,
    pub max_run_time: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub cron: String,
    pub run_on_start: bool,
    pub shutdown_timeout: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: String,
    pub format: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub max_age: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHistory {
    pub retain_days: Option<u32>,
}

fn defaults() -> config::File<config::FileSourceString, config::FileFormat> {
    config::File::from_str(DEFAULTS, config::FileFormat::Toml)
}

/// The defaults' values as `section.key` → the value as text.
fn default_values() -> Result<Vec<(String, String)>, ConfigError> {
    let sections: config::Map<String, config::Map<String, config::Value>> =
        config::Config::builder()
            .add_source(defaults())
            .build()?
            .try_deserialize()?;
    Ok(sections
        .into_iter()
        .flat_map(|(section, table)| {
            table
                .into_iter()
                .map(move |(key, value)| (format!("{section}.{key}"), value.to_string()))
        })
        .collect())
}

/// The settings' keys, `section.key`: those with a default and those without.
pub(super) fn known_keys() -> Result<Vec<String>, ConfigError> {
    let mut keys: Vec<String> = KEYS_WITHOUT_DEFAULT.iter().map(|k| k.to_string()).collect();
    keys.extend(default_values()?.into_iter().map(|(key, _)| key));
    keys.sort();
    Ok(keys)
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
        let mut builder = config::Config::builder().add_source(defaults());
        let file_used = match named {
            Some(path) => {
                if !path.is_file() {
                    return Err(invalid(
                        // Named as the operator gave it.
                        if file.is_some() {
                            "--config"
                        } else {
                            CONFIG_ENV
                        },
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
        let (ours, strays) = super::env::settings_variables(&env)?;
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
        super::validate::validate(raw, warnings, &env)
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

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::load_toml;

    #[test]
    fn a_value_of_the_wrong_type_in_the_environment_names_its_variable() {
        let e = load_toml("", &[("CLOSEBOT_SYNC_API__PAGE_SIZE", "many")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CLOSEBOT_SYNC_API__PAGE_SIZE") && e.contains("api.page_size"),
            "{e}"
        );
        // From the file, the file is to blame, not a variable nobody set.
        let e = load_toml("[api]\npage_size = \"many\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("api.page_size") && !e.contains("CLOSEBOT_SYNC_API__PAGE_SIZE"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_settings_file_is_named_by_where_it_was_given() {
        let e = Settings::load_from(
            None,
            [(CONFIG_ENV.to_string(), "/nonexistent.toml".to_string())],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(CONFIG_ENV) && !e.contains("--config"), "{e}");
        let e = Settings::load_from(Some(Path::new("/nonexistent.toml")), [])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--config"), "{e}");
    }

    #[test]
    fn a_settings_file_that_does_not_parse_is_named_without_its_lines() {
        for toml in [
            "[api]\nkey = Sup3rSecretKey_42\n",
            "[database]\nurl = \"postgres://closebot:Pa55word@db/closebot\n",
        ] {
            // As the command line prints it: the error and its causes.
            let e = crate::text::chain(&load_toml(toml, &[]).unwrap_err());
            assert!(e.contains("line 2"), "{e}");
            assert!(
                !e.contains("Sup3rSecretKey_42") && !e.contains("Pa55word"),
                "{e}"
            );
        }
    }

    /// The settings table of the README: (key, environment variable, default as written).
    fn readme_table() -> Vec<(String, String, String)> {
        let readme = include_str!("../../README.md");
        let cell = |text: &str| text.trim().trim_matches('`').to_string();
        readme
            .lines()
            .skip_while(|line| *line != "| key | environment variable | default | meaning |")
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').collect();
                let default = cells[3].trim();
                // The value in backticks; an explanation may follow it, as `16777216` (16 MiB).
                let default = match default.strip_prefix('`') {
                    Some(rest) => rest.split('`').next().unwrap_or_default().to_string(),
                    None => default.to_string(),
                };
                (cell(cells[1]), cell(cells[2]), default)
            })
            .collect()
    }

    #[test]
    fn the_readme_settings_table_names_every_key_with_its_variable_and_the_built_in_default() {
        let defaults = default_values().unwrap();
        let table = readme_table();
        let mut documented: Vec<String> = table.iter().map(|(key, _, _)| key.clone()).collect();
        documented.sort();
        assert_eq!(documented, known_keys().unwrap());
        for (key, variable, default) in table {
            let (section, name) = key.split_once('.').unwrap();
            let expected = format!("{ENV_PREFIX}_{section}__{name}").to_ascii_uppercase();
            assert_eq!(variable, expected, "{key}");
            match defaults.iter().find(|(k, _)| *k == key) {
                Some((_, value)) => assert_eq!(&default, value, "{key}"),
                None => assert!(default.starts_with('—'), "{key} has no default: {default}"),
            }
        }
    }

    #[test]
    fn keys_without_a_default_are_shown_commented_out_in_the_example_file() {
        let defaults = default_values().unwrap();
        for key in KEYS_WITHOUT_DEFAULT {
            assert!(!defaults.iter().any(|(k, _)| k == key), "{key} has a value");
            let (section, name) = key.split_once('.').unwrap();
            let in_section = DEFAULTS
                .split(&format!("[{section}]\n"))
                .nth(1)
                .and_then(|rest| rest.split("\n[").next())
                .unwrap_or_else(|| panic!("no [{section}] in the example"));
            assert!(
                in_section.contains(&format!("\n# {name} = ")),
                "{key} is not shown in the example"
            );
        }
    }

    #[test]
    fn the_built_in_defaults_are_those_documented() {
        let s = load_toml("", &[]).unwrap();
        assert_eq!(s.api.page_size, 100);
        assert_eq!(s.api.timeout, std::time::Duration::from_secs(30));
        assert_eq!(s.database.url.as_str(), "sqlite://closebot-sync.db");
        assert!(!s.sync.store_credentials);
        assert_eq!(s.schedule.cron.as_str(), "0 */15 * * * *");
        assert!(s.api.key.is_none() && s.metrics_listen.is_none());
        assert_eq!(s.history_retain_days, None);
    }

    #[test]
    fn environment_variables_override_the_file_with_both_separators() {
        let s = load_toml(
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
    fn a_world_readable_file_holding_the_key_draws_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
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
    fn a_variable_may_set_a_key_that_has_no_default() {
        let s = load_toml(
            "",
            &[
                ("CLOSEBOT_SYNC_METRICS__LISTEN", "127.0.0.1:9464"),
                ("CLOSEBOT_SYNC_HISTORY__RETAIN_DAYS", "30"),
            ],
        )
        .unwrap();
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(s.history_retain_days, Some(30));
    }
}
