//! Every metric the service exposes, named here once: the Prometheus recorder and its
//! descriptions, and the functions the daemon and the schedule call to record.

use std::sync::Mutex;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::store::runs::RunStatus;
use crate::sync::RunReport;

const RUNS_TOTAL: &str = "closebot_sync_runs_total";
const RUN_DURATION: &str = "closebot_sync_run_duration_seconds";
const LAST_RUN_SOURCES: &str = "closebot_sync_last_run_sources";
const LAST_SUCCESS: &str = "closebot_sync_last_success_timestamp_seconds";
const HTTP_REQUESTS: &str = "closebot_sync_http_requests_total";
const HTTP_RETRIES: &str = "closebot_sync_http_retries_total";
const SKIPPED_TICKS: &str = "closebot_sync_skipped_ticks_total";
const SCHEDULER_REBUILDS: &str = "closebot_sync_scheduler_rebuilds_total";

/// Run durations reach from seconds (a small agency) to many minutes.
const DURATION_BUCKETS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the process-wide Prometheus recorder once and returns its handle (an error
/// says why it could not be installed).
pub(crate) fn install() -> Result<PrometheusHandle, String> {
    // Held while installing: a second caller waits and gets the same handle.
    let mut slot = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(RUN_DURATION.to_string()),
            &DURATION_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    *slot = Some(handle.clone());
    Ok(handle)
}

fn describe() {
    describe_counter!(RUNS_TOTAL, "Runs by how they ended (status).");
    describe_histogram!(RUN_DURATION, Unit::Seconds, "How long runs took.");
    describe_gauge!(
        LAST_RUN_SOURCES,
        "Sources of the last run by what happened to them (state; `rejected`: quarantined, see source_rejects)."
    );
    describe_gauge!(
        LAST_SUCCESS,
        Unit::Seconds,
        "When the last successful run finished (Unix time), read from sync_runs at start."
    );
    describe_counter!(HTTP_REQUESTS, "Requests made to the CloseBot API.");
    describe_counter!(
        HTTP_RETRIES,
        "Requests to the CloseBot API that were retried."
    );
    describe_counter!(
        SKIPPED_TICKS,
        "Ticks of the schedule that started no run: overlap (the last run was still going) or busy (another instance was syncing)."
    );
    describe_counter!(
        SCHEDULER_REBUILDS,
        "Times the scheduler delivered no tick for well over its interval and was rebuilt."
    );
}

/// Records a finished run (a no-op until a recorder is installed).
pub(crate) fn record_run(report: &RunReport) {
    let status = report.status.as_str();
    metrics::counter!(RUNS_TOTAL, "status" => status).increment(1);
    metrics::histogram!(RUN_DURATION).record(report.duration.as_secs_f64());
    let c = &report.counts;
    metrics::counter!(HTTP_REQUESTS).increment(c.http_requests);
    metrics::counter!(HTTP_RETRIES).increment(c.retries);
    for (state, n) in [
        ("created", c.created),
        ("updated", c.updated),
        ("unchanged", c.unchanged),
        ("deleted", c.deleted),
        ("restored", c.restored),
        ("rejected", c.rejected),
    ] {
        metrics::gauge!(LAST_RUN_SOURCES, "state" => state).set(n as f64);
    }
    if report.status == RunStatus::Succeeded {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        last_success(now);
    }
}

/// When the last successful run finished, in Unix seconds.
pub(crate) fn last_success(at_seconds: f64) {
    metrics::gauge!(LAST_SUCCESS).set(at_seconds);
}

/// Why a tick of the schedule started no run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Skipped {
    /// The last run was still going.
    Overlap,
    /// Another instance held the writer lock.
    Busy,
}

impl Skipped {
    fn label(self) -> &'static str {
        match self {
            Skipped::Overlap => "overlap",
            Skipped::Busy => "busy",
        }
    }
}

/// Creates the schedule's series at 0, so a graph or an alert sees 0 rather than nothing.
pub(crate) fn schedule_started() {
    for reason in [Skipped::Overlap, Skipped::Busy] {
        metrics::counter!(SKIPPED_TICKS, "reason" => reason.label()).increment(0);
    }
    metrics::counter!(SCHEDULER_REBUILDS).increment(0);
}

pub(crate) fn skipped_tick(why: Skipped) {
    metrics::counter!(SKIPPED_TICKS, "reason" => why.label()).increment(1);
}

pub(crate) fn scheduler_rebuilt() {
    metrics::counter!(SCHEDULER_REBUILDS).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::runs::RunCounts;

    /// Each state of the last run's sources is its own series, quarantined ones included
    /// (the operator's alert on `rejected` reads it).
    #[test]
    fn a_run_sets_every_state_of_its_sources_rejected_included() {
        let handle = install().unwrap();
        let report = RunReport {
            run_id: Some(7),
            status: RunStatus::Partial,
            counts: RunCounts {
                created: 3,
                updated: 2,
                unchanged: 11,
                deleted: 1,
                restored: 4,
                rejected: 5,
                ..RunCounts::default()
            },
            notes: None,
            error: None,
            duration: std::time::Duration::from_millis(1500),
            rows_written: 0,
            preview: None,
        };
        record_run(&report);
        let text = handle.render();
        for (state, n) in [
            ("created", 3),
            ("updated", 2),
            ("unchanged", 11),
            ("deleted", 1),
            ("restored", 4),
            ("rejected", 5),
        ] {
            let series = format!("{LAST_RUN_SOURCES}{{state=\"{state}\"}} {n}");
            assert!(text.contains(&series), "no {series} in\n{text}");
        }
        assert!(
            text.contains(&format!("{RUNS_TOTAL}{{status=\"partial\"}} 1")),
            "{text}"
        );
    }
}
