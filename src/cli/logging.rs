//! Logging, started once for every command: `tracing` with an `EnvFilter` (from `RUST_LOG`,
//! else `log.level`) in text or JSON, on stderr.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Libraries that log routine steps at INFO (the scheduler's "Uninited", sqlx's PostgreSQL
/// notices such as `relation "_sqlx_migrations" already exists, skipping`): held at WARN
/// under `log.level`, unless it names them itself. `RUST_LOG` decides everything when set.
const QUIET: [&str; 2] = ["tokio_cron_scheduler", "sqlx::postgres::notice"];

/// The filter of `log.level`, with the chatty libraries held at WARN.
pub fn filter_directives(level: &str) -> String {
    let mut directives = level.to_string();
    for target in QUIET {
        if !level.contains(target) {
            directives.push_str(&format!(",{target}=warn"));
        }
    }
    directives
}

/// Colours only for a person at a terminal: never into a file, a pipe or the journal, and
/// never with `NO_COLOR` set (https://no-color.org).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Starts logging to stderr. Safe to call twice (the second call does nothing).
pub fn init(log: &LogSettings) {
    use std::io::IsTerminal;
    // A RUST_LOG that does not parse is ignored, and said so once logging is up.
    let mut ignored = None;
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) => EnvFilter::try_new(&f)
            .map_err(|e| ignored = Some((f, e)))
            .ok(),
        Err(_) => None,
    }
    .unwrap_or_else(|| EnvFilter::new(filter_directives(&log.level)));
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    if let Some((rust_log, error)) = ignored {
        tracing::warn!(
            %rust_log,
            %error,
            "RUST_LOG does not parse, so it is ignored and log.level applies: fix or unset it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_goes_only_to_a_terminal_and_never_with_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        // no-color.org: an empty NO_COLOR does not count.
        assert!(use_colour(true, Some(OsStr::new(""))));
    }

    #[test]
    fn chatty_libraries_are_held_at_warn_unless_the_level_names_them() {
        let d = filter_directives("info");
        assert_eq!(
            d,
            "info,tokio_cron_scheduler=warn,sqlx::postgres::notice=warn"
        );
        assert!(EnvFilter::try_new(&d).is_ok());
        let named = filter_directives("info,tokio_cron_scheduler=debug");
        assert_eq!(named.matches("tokio_cron_scheduler").count(), 1, "{named}");
    }
}
