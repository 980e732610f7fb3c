//! The service (`closebot-sync run`): the daemon that syncs on a schedule until it is
//! stopped, its optional HTTP listener (`/metrics`, `/healthz`), the health it reports, and
//! the one module that names every metric. It uses the pipeline; nothing below uses it.

pub mod daemon;
pub mod health;
mod metrics;
pub mod schedule;
mod serve;
