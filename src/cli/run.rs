//! `closebot-sync run`: the service, until SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

use super::exit::{CommandError, Ended};
use crate::config::Settings;
use crate::service::daemon;

pub(super) async fn run(settings: &Settings) -> Result<Ended, CommandError> {
    let stopped = daemon::run_until(settings, shutdown_signal()).await?;
    Ok(Ended::Service(stopped))
}

/// A token cancelled by SIGINT or SIGTERM.
pub(super) fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}
