//! How a command ends, and the one place where that becomes the process's exit code. Each
//! error type says what kind of failure it is (`failure()`); nothing here looks inside an
//! error by downcasting.

use crate::closebot::ApiError;
use crate::config::ConfigError;
use crate::failure::Failure;
use crate::service::daemon::DaemonError;
use crate::service::schedule::Stopped;
use crate::store::runs::RunStatus;
use crate::store::StoreError;
use crate::sync::SyncError;

/// Exit codes, documented in the README.
const OK: u8 = 0;
const FAILED: u8 = 1;
const SETTINGS: u8 = 2;
const PARTIAL: u8 = 3;
const BUSY: u8 = 4;
const ABORTED: u8 = 5;

/// The exit codes of `sync`, as `sync --help` lists them.
pub(crate) const SYNC_HELP: &str = "Exit codes:
  0  succeeded
  1  failed: nothing of the run was applied (the summary says why)
  2  invalid settings (the message names the setting and the fix)
  3  partial: changes applied, but not all (nothing marked deleted, or sources quarantined; the summary says which)
  4  another closebot-sync is syncing this database: this run did not start
  5  stopped by SIGTERM or SIGINT: the run was rolled back";

/// How a command that raised no error ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It did what it was asked.
    Done,
    /// A sync ran and ended with this status (its summary is printed).
    Run(RunStatus),
    /// The service stopped.
    Service(Stopped),
    /// It printed its own report of what failed (a check, a missed benchmark target).
    Reported(Failure),
}

/// What ended a command early. `?` turns each layer's error into this; its `failure()` is
/// the kind the layer gave it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    #[error(transparent)]
    Settings(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Service(#[from] DaemonError),
    /// Anything else (a file that cannot be written, a failed query): exit 1.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CommandError {
    fn failure(&self) -> Failure {
        match self {
            CommandError::Settings(e) => e.failure(),
            CommandError::Store(e) => e.failure(),
            CommandError::Sync(e) => e.failure(),
            CommandError::Service(e) => e.failure(),
            CommandError::Api(_) | CommandError::Other(_) => Failure::Failed,
        }
    }
}

fn failure_code(failure: Failure) -> u8 {
    match failure {
        Failure::Failed => FAILED,
        Failure::Settings => SETTINGS,
        Failure::Busy => BUSY,
        Failure::Aborted => ABORTED,
    }
}

/// The exit code of a command's outcome.
pub(crate) fn code(outcome: &Result<Ended, CommandError>) -> u8 {
    match outcome {
        Ok(Ended::Done) => OK,
        Ok(Ended::Run(status)) => match status {
            RunStatus::Succeeded => OK,
            RunStatus::Partial => PARTIAL,
            RunStatus::Aborted => ABORTED,
            RunStatus::Failed | RunStatus::Running | RunStatus::Abandoned => FAILED,
        },
        Ok(Ended::Service(Stopped::Clean)) => OK,
        // The run in flight had to be dropped at the shutdown time-out.
        Ok(Ended::Service(Stopped::TimedOut)) => FAILED,
        Ok(Ended::Reported(failure)) => failure_code(*failure),
        Err(e) => failure_code(e.failure()),
    }
}

/// The exit code when the settings cannot be loaded, before any command starts.
pub(crate) fn settings_code(e: &ConfigError) -> u8 {
    failure_code(e.failure())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::service::schedule::ScheduleError;

    fn exit(e: impl Into<CommandError>) -> u8 {
        code(&Err(e.into()))
    }

    #[test]
    fn each_kind_of_failure_exits_with_its_documented_code_whatever_layer_raised_it() {
        let no_key = || {
            Settings::load_from(None, Vec::new())
                .unwrap()
                .api
                .require_key()
                .unwrap_err()
        };
        let busy = || StoreError::Busy("the lock file".into());
        assert_eq!(exit(no_key()), 2);
        assert_eq!(exit(DaemonError::Settings(no_key())), 2);
        let never = crate::config::Cron::parse("0 0 0 30 2 *").unwrap_err();
        assert_eq!(exit(DaemonError::Settings(never)), 2);
        assert_eq!(exit(busy()), 4);
        assert_eq!(exit(DaemonError::Store(busy())), 4);
        assert_eq!(exit(SyncError::Store(busy())), 4);
        assert_eq!(exit(SyncError::Cancelled), 5);
        assert_eq!(exit(DaemonError::Schedule(ScheduleError::CurrentThread)), 1);
        assert_eq!(exit(anyhow::anyhow!("anything else")), 1);
    }

    #[test]
    fn a_run_exits_by_its_status_and_the_service_by_how_it_stopped() {
        for (ended, want) in [
            (Ended::Done, 0),
            (Ended::Run(RunStatus::Succeeded), 0),
            (Ended::Run(RunStatus::Partial), 3),
            (Ended::Run(RunStatus::Aborted), 5),
            (Ended::Run(RunStatus::Failed), 1),
            (Ended::Service(Stopped::Clean), 0),
            (Ended::Service(Stopped::TimedOut), 1),
            (Ended::Reported(Failure::Settings), 2),
            (Ended::Reported(Failure::Failed), 1),
        ] {
            assert_eq!(code(&Ok(ended)), want, "{ended:?}");
        }
    }
}
