//! `closebot-sync simulate`: serve the bundled CloseBot simulator, to try `sync` and `run`
//! against it.

use std::net::SocketAddr;

use closebot_sim::SimOptions;

use super::exit::{CommandError, Ended};
use super::run::shutdown_signal;

/// Serves the simulator until SIGINT or SIGTERM.
pub(super) async fn simulate(
    listen: SocketAddr,
    sources: usize,
    seed: u64,
    key: String,
) -> Result<Ended, CommandError> {
    let options = SimOptions {
        seed,
        sources,
        api_key: key,
        ..Default::default()
    };
    let stop = shutdown_signal();
    let key = options.api_key.clone();
    let sources = options.sources;
    eprintln!(
        "closebot-sync simulate: {sources} sources at http://{listen}/agency/source (key {key:?}); \
         sync it with\n  CLOSEBOT_SYNC_API__BASE_URL=http://{listen} CLOSEBOT_SYNC_API__KEY={key} closebot-sync sync"
    );
    closebot_sim::serve_until(options, listen, async move { stop.cancelled().await })
        .await
        .map_err(anyhow::Error::from)?;
    Ok(Ended::Done)
}
