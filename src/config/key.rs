//! The API key: from `api.key`, or read from `api.key_file` (with `${NAME}` taken from the
//! environment, as systemd's `${CREDENTIALS_DIRECTORY}`), and checked before it is ever sent.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::{invalid, ConfigError};

/// The key from whichever of the two settings is set; `None` when neither is, which only
/// the commands that call the API refuse ([`super::ApiSettings::require_key`]).
pub(super) fn resolve(
    key: Option<SecretString>,
    key_file: Option<PathBuf>,
    env: &[(String, String)],
) -> Result<Option<SecretString>, ConfigError> {
    match (key, key_file) {
        (Some(_), Some(_)) => Err(invalid(
            "api.key",
            "both api.key and api.key_file are set: keep one",
        )),
        (Some(key), None) => Ok(Some(check_key("api.key", key)?)),
        (None, Some(path)) => {
            let path = match path.to_str() {
                Some(text) => PathBuf::from(expand_variables("api.key_file", text, env)?),
                None => path,
            };
            Ok(Some(read_key_file(&path)?))
        }
        (None, None) => Ok(None),
    }
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
    use secrecy::ExposeSecret;

    use crate::config::load_toml;

    #[test]
    fn the_key_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "secret-from-file\n").unwrap();
        let s = load_toml(
            &format!("[api]\nkey_file = \"{}\"\n", key_file.display()),
            &[],
        )
        .unwrap();
        assert_eq!(s.api.key.unwrap().expose_secret(), "secret-from-file");
    }

    #[test]
    fn variables_in_the_key_file_path_are_expanded_and_an_unset_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-key"), "from-credentials\n").unwrap();
        let toml = "[api]\nkey_file = \"${CREDENTIALS_DIRECTORY}/api-key\"\n";
        let creds = dir.path().display().to_string();
        let s = load_toml(toml, &[("CREDENTIALS_DIRECTORY", creds.as_str())]).unwrap();
        assert_eq!(s.api.key.unwrap().expose_secret(), "from-credentials");
        let e = load_toml(toml, &[]).unwrap_err().to_string();
        assert!(
            e.contains("api.key_file")
                && e.contains("${CREDENTIALS_DIRECTORY}")
                && e.contains("not set"),
            "{e}"
        );
        let hint = load_toml("", &[])
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
    fn a_key_set_twice_or_holding_spaces_is_refused_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "k\n").unwrap();
        let both = format!(
            "[api]\nkey = \"k\"\nkey_file = \"{}\"\n",
            key_file.display()
        );
        let e = load_toml(&both, &[]).unwrap_err().to_string();
        assert!(e.contains("api.key") && e.contains("keep one"), "{e}");
        let e = load_toml("", &[("CLOSEBOT_SYNC_API__KEY", "two words")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.key") && e.contains("copy it again"), "{e}");
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let s = load_toml("", &[("CLOSEBOT_SYNC_API__KEY", "very-secret-key")]).unwrap();
        assert!(!format!("{s:?}").contains("very-secret-key"));
    }
}
