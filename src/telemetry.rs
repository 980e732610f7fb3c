//! Logs and metrics: `tracing` with an `EnvFilter` (from `RUST_LOG`, else `log.level`) in
//! text or JSON, and the `closebot_sync_*` metrics a run records.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};
use crate::store::runs::RunStatus;
use crate::sync::RunReport;

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
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
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
}

/// Records a finished run in the metrics (a no-op until a recorder is installed).
pub fn record_run(report: &RunReport) {
    let status = report.status.as_str();
    metrics::counter!("closebot_sync_runs_total", "status" => status).increment(1);
    metrics::histogram!("closebot_sync_run_duration_seconds").record(report.duration.as_secs_f64());
    let c = &report.counts;
    metrics::counter!("closebot_sync_http_requests_total").increment(c.http_requests);
    metrics::counter!("closebot_sync_http_retries_total").increment(c.retries);
    for (state, n) in [
        ("created", c.created),
        ("updated", c.updated),
        ("unchanged", c.unchanged),
        ("deleted", c.deleted),
        ("restored", c.restored),
        ("rejected", c.rejected),
    ] {
        metrics::gauge!("closebot_sync_last_run_sources", "state" => state).set(n as f64);
    }
    if report.status == RunStatus::Succeeded {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        metrics::gauge!("closebot_sync_last_success_timestamp_seconds").set(now);
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
