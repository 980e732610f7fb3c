//! What kind of failure ended a command. Each layer's error type says which through a
//! `failure()` method; the command line alone turns it into an exit code (`cli::exit`).

/// The kinds of failure an operator (or systemd, or a script) acts on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Anything else: the message says what failed and what to do.
    Failed,
    /// The settings are invalid: fix them; retrying as they are cannot help.
    Settings,
    /// Another closebot-sync holds the database's writer lock: this one did not start.
    Busy,
    /// Stopped by SIGTERM or SIGINT.
    Aborted,
}
