//! Ticks: the [`TickSource`] interface with tokio-cron-scheduler behind it, and the
//! [`TickWatch`] that notices when ticks stop coming.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};

use super::{ScheduleError, MAX_FRUITLESS_REBUILDS};
use crate::config::Cron;

/// Sends the time of each tick of a schedule until stopped. Ticks are signals only: whoever
/// receives them decides what to run.
pub trait TickSource: Send {
    /// Starts ticking on `cron`; a source already started is stopped first.
    fn start<'a>(
        &'a mut self,
        cron: &'a Cron,
        ticks: mpsc::UnboundedSender<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<(), ScheduleError>>;
    fn stop(&mut self) -> BoxFuture<'_, ()>;
}

/// The [`TickSource`] of the real daemon: one tokio-cron-scheduler with one UTC cron job
/// whose body only sends a tick.
#[derive(Default)]
pub struct CronTicker {
    scheduler: Option<JobScheduler>,
}

impl TickSource for CronTicker {
    fn start<'a>(
        &'a mut self,
        cron: &'a Cron,
        ticks: mpsc::UnboundedSender<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<(), ScheduleError>> {
        Box::pin(async move {
            self.stop().await;
            let fail = |e: tokio_cron_scheduler::JobSchedulerError| {
                ScheduleError::Scheduler(format!("{e:?}"))
            };
            let scheduler = JobScheduler::new().await.map_err(fail)?;
            // Job::new_async reads the expression in UTC: no fixed offset to go stale at DST.
            let job = CronJob::new_async(cron.as_str(), move |_id, _scheduler| {
                let ticks = ticks.clone();
                Box::pin(async move {
                    let _ = ticks.send(Utc::now());
                })
            })
            .map_err(fail)?;
            scheduler.add(job).await.map_err(fail)?;
            scheduler.start().await.map_err(fail)?;
            self.scheduler = Some(scheduler);
            Ok(())
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(mut s) = self.scheduler.take() {
                if let Err(e) = s.shutdown().await {
                    tracing::warn!(error = ?e, "the scheduler did not shut down cleanly");
                }
            }
        })
    }
}

/// When the next tick is due, and whether the scheduler has gone quiet.
#[derive(Debug)]
pub struct TickWatch {
    cron: Cron,
    due: DateTime<Utc>,
    grace: Duration,
    fruitless_rebuilds: u32,
}

impl TickWatch {
    pub fn new(cron: &Cron, now: DateTime<Utc>, min_grace: Duration) -> TickWatch {
        let grace = cron.longest_gap(now).max(min_grace);
        let mut w = TickWatch {
            cron: cron.clone(),
            due: now,
            grace,
            fruitless_rebuilds: 0,
        };
        w.expect_after(now);
        w
    }

    fn expect_after(&mut self, now: DateTime<Utc>) {
        // A schedule with no future time is refused by Cron::parse; if it runs out later,
        // expecting nothing for a year keeps the watchdog quiet rather than rebuilding forever.
        self.due = self
            .cron
            .next_after(now)
            .unwrap_or(now + chrono::Duration::days(366));
    }

    /// A tick came at `now`.
    pub fn ticked(&mut self, now: DateTime<Utc>) {
        self.fruitless_rebuilds = 0;
        self.expect_after(now);
    }

    /// The tick due is later than the grace allows.
    pub fn overdue(&self, now: DateTime<Utc>) -> bool {
        let grace = chrono::Duration::from_std(self.grace).unwrap_or(chrono::Duration::MAX);
        now > self.due + grace
    }

    /// The scheduler was rebuilt at `now`.
    pub fn rebuilt(&mut self, now: DateTime<Utc>) {
        self.fruitless_rebuilds += 1;
        self.expect_after(now);
    }

    /// Ticks come as expected, or a rebuild may yet bring them back.
    pub fn healthy(&self) -> bool {
        self.fruitless_rebuilds < MAX_FRUITLESS_REBUILDS
    }

    pub fn due(&self) -> DateTime<Utc> {
        self.due
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::schedule::MIN_TICK_GRACE;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 30, h, m, s).unwrap()
    }

    #[test]
    fn the_grace_is_the_longest_gap_of_the_schedule_but_never_under_the_minimum() {
        let every_second = Cron::parse("*/1 * * * * *").unwrap();
        assert_eq!(
            TickWatch::new(&every_second, at(0, 0, 0), MIN_TICK_GRACE).grace(),
            MIN_TICK_GRACE
        );
        let twice_an_hour = Cron::parse("0 0,10 * * * *").unwrap();
        assert_eq!(
            TickWatch::new(&twice_an_hour, at(0, 0, 0), MIN_TICK_GRACE).grace(),
            Duration::from_secs(50 * 60)
        );
    }

    #[test]
    fn a_missing_tick_is_overdue_only_after_the_grace_and_a_tick_clears_it() {
        let cron = Cron::parse("0 */15 * * * *").unwrap();
        let mut w = TickWatch::new(&cron, at(0, 1, 0), MIN_TICK_GRACE);
        assert_eq!(w.due(), at(0, 15, 0));
        assert!(!w.overdue(at(0, 29, 59)));
        assert!(w.overdue(at(0, 30, 1)));
        w.ticked(at(0, 30, 1));
        assert!(!w.overdue(at(0, 30, 2)));
        assert_eq!(w.due(), at(0, 45, 0));
    }

    #[test]
    fn rebuilds_that_bring_no_tick_end_the_health_that_feeds_systemds_watchdog() {
        let cron = Cron::parse("*/1 * * * * *").unwrap();
        let mut w = TickWatch::new(&cron, at(0, 0, 0), MIN_TICK_GRACE);
        for i in 0..MAX_FRUITLESS_REBUILDS {
            assert!(w.healthy(), "after {i} rebuilds");
            w.rebuilt(at(0, 1, i));
        }
        assert!(!w.healthy());
        w.ticked(at(0, 2, 0));
        assert!(w.healthy());
    }
}
