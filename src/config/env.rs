//! The `CLOSEBOT_SYNC_*` environment variables: which set a setting (each checked against
//! the known keys, so a typo stops the program) and which are strays to warn about.

use super::load::known_keys;
use super::{ConfigError, CONFIG_ENV, ENV_PREFIX};

/// Sorts the `CLOSEBOT_SYNC_*` variables: settings (`SECTION__KEY`, each checked against the
/// known keys) and strays without a `__`, such as Kubernetes' `CLOSEBOT_SYNC_PORT` for a
/// Service of that name, which are left alone. `CLOSEBOT_SYNC_CONFIG` names the file.
pub(super) fn settings_variables(
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

#[cfg(test)]
mod tests {
    use crate::config::{load_toml, Settings, CONFIG_ENV};

    #[test]
    fn variables_without_a_double_underscore_are_ignored_with_one_warning_naming_them() {
        let s = load_toml(
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
            let e = load_toml("", &[(var, "5")]).unwrap_err();
            assert_eq!(e.failure(), crate::failure::Failure::Settings);
            let e = e.to_string();
            assert!(e.contains(var) && e.contains(says), "{e}");
            assert!(e.contains("CLOSEBOT_SYNC_<SECTION>__<KEY>"), "{e}");
        }
    }
}
