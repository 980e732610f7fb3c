//! Logs and metrics: `tracing` with an `EnvFilter` (from `RUST_LOG`, else `log.level`) in
//! text or JSON, and the `closebot_sync_*` metrics a run records.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};
use crate::store::runs::RunStatus;
use crate::sync::RunReport;

/// Starts logging to stderr. Safe to call twice (the second call does nothing).
pub fn init(log: &LogSettings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
