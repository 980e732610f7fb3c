//! `closebot-sync run`: the long-running service. Settings, database and migrations first,
//! then READY to systemd, the metrics listener, the schedule; on SIGTERM/SIGINT, STOPPING,
//! the run in flight cancelled, and out within `schedule.shutdown_timeout`.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use super::health::Health;
use super::schedule::{
    run_loop, CronTicker, Job, JobOutcome, LoopOptions, ScheduleError, Stats, Stopped, TickSource,
};
use super::serve::{self, ServeError};
use crate::closebot::{ApiError, Client};
use crate::config::{ConfigError, Settings};
use crate::failure::Failure;
use crate::store::runs::{self, RunStatus};
use crate::store::{Store, StoreError};
use crate::sync::{run_once, RunReport, SyncError, SyncOptions};
use crate::text::chain;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Settings(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl DaemonError {
    /// What kind of failure this is when it stops `run`: invalid settings stay so (their
    /// exit code, 2, is the one systemd's `RestartPreventExitStatus=2` does not restart).
    pub(crate) fn failure(&self) -> Failure {
        match self {
            DaemonError::Settings(e) => e.failure(),
            DaemonError::Store(e) => e.failure(),
            // A bad or never-firing cron is a settings error at load, so it never gets here.
            DaemonError::Api(_) | DaemonError::Schedule(_) | DaemonError::Serve(_) => {
                Failure::Failed
            }
        }
    }
}

/// Logs a run's summary at the level its outcome deserves: a requested stop or a partial
/// run is a warning, not an error.
fn log_outcome(report: &RunReport) {
    let run_id = report.run_id.unwrap_or(0);
    let status = report.status.as_str();
    let summary = report.summary();
    match report.status {
        RunStatus::Succeeded => tracing::info!(run_id, status, "{summary}"),
        RunStatus::Failed => tracing::error!(run_id, status, "{summary}"),
        _ => tracing::warn!(run_id, status, "{summary}"),
    }
}

/// Tells systemd (when `NOTIFY_SOCKET` is set; otherwise nothing happens).
pub(crate) fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// The interval of systemd's watchdog, when it watches this process.
fn systemd_watchdog() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// Part of `schedule.shutdown_timeout` kept for closing the listener and the database after
/// the run in flight has stopped.
fn closing_reserve(timeout: Duration) -> Duration {
    (timeout / 4).min(Duration::from_secs(1))
}

/// The job of each tick: one run, recorded as `trigger`, its summary sent as STATUS.
fn sync_job(settings: Arc<Settings>, store: Store, client: Client) -> Job {
    let pending = Arc::new(tokio::sync::Mutex::new(runs::Pending::default()));
    Arc::new(move |trigger, cancel| {
        let (settings, store, client) = (settings.clone(), store.clone(), client.clone());
        let pending = pending.clone();
        Box::pin(async move {
            let options = SyncOptions {
                trigger: trigger.as_str().to_string(),
                ..SyncOptions::default()
            };
            let late = async { report_late_failures(&store, &mut *pending.lock().await).await };
            tokio::select! {
                _ = late => {}
                _ = cancel.cancelled() => return JobOutcome::Ran,
            }
            let at = chrono::Utc::now();
            match run_once(&settings, &store, &client, &options, &cancel).await {
                Ok(report) => {
                    super::metrics::record_run(&report);
                    log_outcome(&report);
                    notify(&[NotifyState::Status(&report.summary())]);
                    JobOutcome::Ran
                }
                Err(SyncError::Store(StoreError::Busy(why))) => JobOutcome::Busy(why),
                // Stopped while waiting for the database: nothing was started to record.
                Err(SyncError::Cancelled) => {
                    tracing::info!("shutdown requested before the run could start");
                    JobOutcome::Ran
                }
                Err(e) => {
                    let text = chain(&e);
                    tracing::error!(error = %text, "the run could not start; the next tick tries again");
                    pending.lock().await.push(runs::Unrecorded {
                        at,
                        trigger: options.trigger.clone(),
                        error: text.clone(),
                    });
                    notify(&[NotifyState::Status(&format!(
                        "the last run could not start: {text}"
                    ))]);
                    JobOutcome::Failed
                }
            }
        })
    })
}

/// Records the runs that could not start (database down or refusing writes) as `failed`
/// rows, once the database takes writes again; until then they wait in memory.
async fn report_late_failures(store: &Store, pending: &mut runs::Pending) {
    if pending.is_empty() {
        return;
    }
    let result = match store.acquire().await {
        Ok(mut c) => pending.flush(&mut c.conn()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(n) => tracing::info!(
            recorded = n,
            "the database is back: recorded the runs that could not start"
        ),
        Err(e) => {
            tracing::debug!(waiting = pending.len(), error = %chain(&e), "still cannot record the runs that could not start")
        }
    }
}

/// Marks rows left `running` by a dead process, if no other instance is syncing (its
/// `running` row is real). Runs do this too; doing it at start keeps `status` honest even
/// when `run_on_start` is off.
async fn mark_abandoned_at_start(store: &Store) -> Result<(), StoreError> {
    let _lock = match store.lock_writer().await {
        Ok(lock) => lock,
        Err(StoreError::Busy(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut c = store.acquire().await?;
    let n = runs::mark_abandoned(&mut c.conn()).await?;
    if n > 0 {
        tracing::warn!(
            abandoned = n,
            "marked runs left running by a dead process as abandoned"
        );
    }
    Ok(())
}

/// Runs the daemon until `shutdown` is cancelled. `source` is the scheduler
/// ([`CronTicker`] in production); `stats` counts what the loop did.
pub async fn serve(
    settings: Settings,
    source: Box<dyn TickSource>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<Stopped, DaemonError> {
    let cron = settings.schedule.cron.clone();
    let key = settings.api.require_key()?.clone();
    let store = Store::connect(&settings.database.url, settings.database.max_connections).await?;
    // Under the writer lock, so a `sync` or a second instance starting now cannot migrate
    // at the same time; nothing is pending on most starts, and then no lock is needed.
    if store.pending_migrations().await? > 0 {
        let applied = store.migrate_locked().await?;
        tracing::info!(
            "migrated the database: {} applied",
            crate::text::count(applied as u64, "migration", "migrations")
        );
    }
    mark_abandoned_at_start(&store).await?;
    let client = Client::new(&settings.api, key)?;
    let health = Health::read(&store, settings.health_max_age).await?;
    let http_stop = CancellationToken::new();
    let http = match settings.metrics_listen {
        Some(addr) => {
            let handle = serve::metrics_handle()?;
            if let Some(at) = health.last_success {
                super::metrics::last_success(at.timestamp_millis() as f64 / 1000.0);
            }
            let router = serve::router(handle, store.clone(), settings.health_max_age);
            Some(serve::start(addr, router, http_stop.clone()).await?.1)
        }
        None => None,
    };
    let ready = format!(
        "ready: schedule \"{}\" (UTC); {}",
        cron.as_str(),
        health.describe()
    );
    tracing::info!("{ready}");
    notify(&[NotifyState::Ready, NotifyState::Status(&ready)]);
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        notify(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping: cancelling the run in flight"),
        ]);
    });

    let watchdog = systemd_watchdog();
    let check_every = watchdog
        .map(|w| w / 3)
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let reserve = closing_reserve(settings.schedule.shutdown_timeout);
    let opts = LoopOptions {
        cron,
        run_on_start: settings.schedule.run_on_start,
        shutdown_timeout: settings.schedule.shutdown_timeout - reserve,
        check_every,
        min_grace: super::schedule::MIN_TICK_GRACE,
        alive: watchdog
            .map(|_| -> Box<dyn Fn() + Send> { Box::new(|| notify(&[NotifyState::Watchdog])) }),
    };
    let job = sync_job(Arc::new(settings), store.clone(), client);
    let stopped = run_loop(source, job, opts, stats, shutdown).await?;

    http_stop.cancel();
    let half = reserve / 2;
    if let Some(mut task) = http {
        if tokio::time::timeout(half, &mut task).await.is_err() {
            task.abort();
        }
    }
    let _ = tokio::time::timeout(half, store.close()).await;
    tracing::info!(?stopped, "stopped");
    Ok(stopped)
}

/// The daemon with the real scheduler, until `shutdown`; how it stopped.
pub(crate) async fn run_until(
    settings: &Settings,
    shutdown: CancellationToken,
) -> Result<Stopped, DaemonError> {
    let stats = Arc::new(Stats::default());
    serve(
        settings.clone(),
        Box::new(CronTicker::default()),
        stats,
        shutdown,
    )
    .await
}
