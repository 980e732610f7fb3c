//! The schedule: a cron expression, always read in UTC, turned into ticks, and the loop that
//! turns ticks into runs, one at a time. tokio-cron-scheduler stays behind [`TickSource`].
//!
//! The crate's known bugs, and the guard against each:
//! - a job slower than its interval is started again by the next tick: the cron job only
//!   *sends* a tick; one loop runs the syncs, and a tick that comes while a run is going is
//!   skipped, logged and counted (`closebot_sync_skipped_ticks_total{reason="overlap"}`);
//! - a time zone is turned into a fixed offset once, so a schedule drifts across DST: the
//!   schedule is UTC, always;
//! - a job can stop firing once its next tick lies in the past: a watchdog computes from the
//!   expression when the next tick is due and rebuilds the scheduler when none came for well
//!   over that (`closebot_sync_scheduler_rebuilds_total`); the `alive` hook (systemd's
//!   watchdog) is called only while ticks come as expected;
//! - it can deadlock on a current-thread runtime: [`run_loop`] refuses one.

mod ticks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics::{self, Skipped};

pub use crate::config::Cron;
pub use ticks::{CronTicker, TickSource, TickWatch};

/// However short the interval, a tick counts as missing only this long after it was due (the
/// daemon's [`LoopOptions::min_grace`]): the crate looks at its jobs every 500 ms and keeps
/// next-tick times in whole seconds.
pub const MIN_TICK_GRACE: Duration = Duration::from_secs(5);
/// After this many rebuilds in a row that brought no tick, `alive` is no longer called, so
/// systemd's watchdog restarts the process.
pub const MAX_FRUITLESS_REBUILDS: u32 = 3;
/// How long one rebuild of the scheduler may take.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("the scheduler failed to start: {0}")]
    Scheduler(String),
    #[error(
        "`run` needs tokio's multi-thread runtime: the scheduler can deadlock on a current-thread \
         one (main.rs builds a multi-thread runtime; tests use #[tokio::test(flavor = \"multi_thread\")])"
    )]
    CurrentThread,
}

/// What started a run; recorded in `sync_runs.trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `schedule.run_on_start`.
    Start,
    /// A tick of `schedule.cron`.
    Schedule,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Schedule => "schedule",
        }
    }
}

/// How one job went, as the loop counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// It ran (its own status, succeeded or not, is in its report and its row).
    Ran,
    /// Another instance holds the writer lock; the text says which lock.
    Busy(String),
    /// It could not run (database or API down, ...); already logged by the job.
    Failed,
}

/// The work done at a tick; it must stop soon after its token is cancelled.
pub type Job =
    Arc<dyn Fn(Trigger, CancellationToken) -> BoxFuture<'static, JobOutcome> + Send + Sync>;

/// What one loop has done; the metrics carry the same, summed over the process.
#[derive(Debug, Default)]
pub struct Stats {
    pub ticks: AtomicU64,
    pub runs: AtomicU64,
    pub skipped_overlap: AtomicU64,
    pub skipped_busy: AtomicU64,
    pub failed: AtomicU64,
    pub rebuilds: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub struct LoopOptions {
    pub cron: Cron,
    pub run_on_start: bool,
    /// How long stopping may take, the run in flight included.
    pub shutdown_timeout: Duration,
    /// How often the tick watchdog looks, and `alive` is called while ticks are on time.
    pub check_every: Duration,
    /// A tick is missing once it is this long overdue, or the longest gap of the schedule if
    /// that is longer ([`MIN_TICK_GRACE`] in the daemon).
    pub min_grace: Duration,
    /// The systemd watchdog ping.
    pub alive: Option<Box<dyn Fn() + Send>>,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing was left running.
    Clean,
    /// The run in flight did not stop within `shutdown_timeout` and was dropped (its
    /// transaction rolls back; its row stays `running` until the next start marks it abandoned).
    TimedOut,
}

fn spawn_run(
    job: &Job,
    trigger: Trigger,
    shutdown: &CancellationToken,
    stats: &Stats,
) -> JoinHandle<JobOutcome> {
    bump(&stats.runs);
    tokio::spawn(job(trigger, shutdown.child_token()))
}

/// Runs `job` at start (if asked) and at each tick of `source`, never two at once, until
/// `shutdown` is cancelled; then stops the source and waits for the run in flight (whose
/// token is cancelled too) for at most `shutdown_timeout`.
pub async fn run_loop(
    mut source: Box<dyn TickSource>,
    job: Job,
    opts: LoopOptions,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<Stopped, ScheduleError> {
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread
    {
        return Err(ScheduleError::CurrentThread);
    }
    metrics::schedule_started();
    let (tx, mut rx) = mpsc::unbounded_channel();
    source.start(&opts.cron, tx.clone()).await?;
    let mut watch = TickWatch::new(&opts.cron, Utc::now(), opts.min_grace);
    tracing::info!(
        cron = opts.cron.as_str(),
        next = %watch.due(),
        "the schedule is running (times are UTC)"
    );
    let mut running = opts
        .run_on_start
        .then(|| spawn_run(&job, Trigger::Start, &shutdown, &stats));
    let mut check = tokio::time::interval(opts.check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(at) = rx.recv() => {
                bump(&stats.ticks);
                watch.ticked(Utc::now());
                if running.is_some() {
                    bump(&stats.skipped_overlap);
                    metrics::skipped_tick(Skipped::Overlap);
                    tracing::warn!(tick = %at, "a tick came while the last run is still going: skipped it (runs never overlap)");
                } else {
                    running = Some(spawn_run(&job, Trigger::Schedule, &shutdown, &stats));
                }
            }
            done = async { running.as_mut().expect("guarded by the condition").await }, if running.is_some() => {
                running = None;
                match done {
                    Ok(JobOutcome::Ran) => {}
                    Ok(JobOutcome::Busy(why)) => {
                        bump(&stats.skipped_busy);
                        metrics::skipped_tick(Skipped::Busy);
                        tracing::info!(lock = %why, "another instance is syncing: skipped this tick");
                    }
                    Ok(JobOutcome::Failed) => bump(&stats.failed),
                    Err(e) => {
                        bump(&stats.failed);
                        tracing::error!(error = %e, "the run panicked; the next tick tries again");
                    }
                }
            }
            _ = check.tick() => {
                let now = Utc::now();
                if watch.overdue(now) {
                    tracing::warn!(
                        due = %watch.due(),
                        grace_seconds = watch.grace().as_secs(),
                        "the scheduler delivered no tick for well over the interval: rebuilding it"
                    );
                    bump(&stats.rebuilds);
                    metrics::scheduler_rebuilt();
                    // A wedged scheduler may not even shut down: do not let it wedge the loop
                    // (and with it shutdown and the systemd pings).
                    match tokio::time::timeout(REBUILD_TIMEOUT, source.start(&opts.cron, tx.clone())).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "rebuilding the scheduler failed; trying again later"),
                        Err(_) => tracing::error!("rebuilding the scheduler did not finish in time; trying again later"),
                    }
                    watch.rebuilt(now);
                }
                match &opts.alive {
                    Some(alive) if watch.healthy() => alive(),
                    _ => {}
                }
            }
        }
    }
    tracing::info!("stopping: no new runs; a run in flight is cancelled and rolled back");
    let deadline = tokio::time::Instant::now() + opts.shutdown_timeout;
    if tokio::time::timeout_at(deadline, source.stop())
        .await
        .is_err()
    {
        tracing::warn!("the scheduler did not stop in time; leaving it");
    }
    let Some(mut run) = running else {
        return Ok(Stopped::Clean);
    };
    match tokio::time::timeout_at(deadline, &mut run).await {
        Ok(_) => Ok(Stopped::Clean),
        Err(_) => {
            run.abort();
            tracing::error!(
                timeout = ?opts.shutdown_timeout,
                "the run did not stop within schedule.shutdown_timeout: dropped it (its transaction \
                 rolls back; the next start marks its row abandoned)"
            );
            Ok(Stopped::TimedOut)
        }
    }
}
