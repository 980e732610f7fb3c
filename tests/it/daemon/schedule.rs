//! The schedule: it keeps firing, never overlaps a slow run, notices a scheduler that went
//! quiet, and refuses a current-thread runtime. Rows left `running` become `abandoned`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use closebot_sim::Faults;
use closebot_sync::service::daemon;
use closebot_sync::service::schedule::{
    run_loop, Cron, CronTicker, Job, JobOutcome, LoopOptions, ScheduleError, Stats, Stopped,
    TickSource, MAX_FRUITLESS_REBUILDS,
};
use closebot_sync::store::runs;
use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{assert_no_overlap, eventually, open};
use crate::common::{databases, settings, sim_options, simulator};

/// The daemon in this process on the real cron ticker: its counts, its stop, its task.
fn spawn_daemon(
    settings: closebot_sync::config::Settings,
) -> (
    Arc<Stats>,
    CancellationToken,
    tokio::task::JoinHandle<Result<Stopped, daemon::DaemonError>>,
) {
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(daemon::serve(
        settings,
        Box::new(CronTicker::default()),
        stats.clone(),
        stop.clone(),
    ));
    (stats, stop, task)
}

fn n(c: &AtomicU64) -> u64 {
    Stats::get(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_keeps_firing_after_a_run_slower_than_the_interval_and_never_overlaps_it() {
    let (sim, server) = simulator(sim_options(50, 11)).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(2500),
        ..Faults::default()
    });
    for db in databases().await {
        let s = settings(
            &server.base_url(),
            &db,
            &[
                ("CLOSEBOT_SYNC_SCHEDULE__CRON", "*/1 * * * * *"),
                ("CLOSEBOT_SYNC_SCHEDULE__RUN_ON_START", "false"),
            ],
        );
        let (stats, stop, task) = spawn_daemon(s);
        eventually(Duration::from_secs(60), "a third run", || {
            let done = n(&stats.runs) >= 3;
            async move { done.then_some(()) }
        })
        .await;
        stop.cancel();
        let stopped = task.await.unwrap().expect("the daemon ran");
        assert_eq!(stopped, Stopped::Clean, "{}", db.backend);

        let rows = super::runs(&open(&db).await).await;
        assert_eq!(
            rows.len() as u64,
            n(&stats.runs),
            "{}: {rows:#?}",
            db.backend
        );
        let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
        // The first two ran to the end; the third was cancelled by the stop or finished first.
        assert_eq!(
            &statuses[..2],
            ["succeeded", "succeeded"],
            "{}: {rows:#?}",
            db.backend
        );
        assert!(rows.iter().all(|r| r["trigger"] == "schedule"), "{rows:#?}");
        assert_no_overlap(&rows);
        // Each run took 2.5 ticks: the ticks in between were skipped, and ticking went on.
        assert!(n(&stats.skipped_overlap) >= 2, "{}: {stats:?}", db.backend);
        assert!(
            n(&stats.ticks) >= n(&stats.runs) + n(&stats.skipped_overlap),
            "{stats:?}"
        );
        assert_eq!(
            n(&stats.rebuilds),
            0,
            "a healthy scheduler is never rebuilt"
        );
    }
}

/// A tick source that delivers `first_ticks` ticks after its first start and then goes
/// quiet (the crate's "stops firing" bug); from the second start on it ticks every 200 ms,
/// unless `never_recovers`.
struct Stalling {
    starts: Arc<AtomicU32>,
    first_ticks: u32,
    never_recovers: bool,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TickSource for Stalling {
    fn start<'a>(
        &'a mut self,
        _cron: &'a Cron,
        ticks: UnboundedSender<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<(), ScheduleError>> {
        Box::pin(async move {
            self.stop().await;
            let start = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
            let limit = match (start, self.never_recovers) {
                (1, _) => Some(self.first_ticks),
                (_, true) => Some(0),
                (_, false) => None,
            };
            self.task = Some(tokio::spawn(async move {
                let mut sent = 0;
                while limit.is_none_or(|l| sent < l) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if ticks.send(Utc::now()).is_err() {
                        return;
                    }
                    sent += 1;
                }
            }));
            Ok(())
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(t) = self.task.take() {
                t.abort();
            }
        })
    }
}

fn counting_job(count: Arc<AtomicU64>) -> Job {
    Arc::new(move |_trigger, _cancel| {
        let count = count.clone();
        Box::pin(async move {
            count.fetch_add(1, Ordering::SeqCst);
            JobOutcome::Ran
        })
    })
}

fn options(alive: Arc<AtomicU64>) -> LoopOptions {
    LoopOptions {
        cron: Cron::parse("*/1 * * * * *").unwrap(),
        run_on_start: false,
        shutdown_timeout: Duration::from_secs(2),
        check_every: Duration::from_millis(100),
        min_grace: Duration::from_millis(500),
        alive: Some(Box::new(move || {
            alive.fetch_add(1, Ordering::SeqCst);
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_stops_ticking_is_noticed_and_rebuilt_and_the_runs_go_on() {
    let starts = Arc::new(AtomicU32::new(0));
    let source = Stalling {
        starts: starts.clone(),
        first_ticks: 2,
        never_recovers: false,
        task: None,
    };
    let (jobs, alive) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_loop(
        Box::new(source),
        counting_job(jobs.clone()),
        options(alive.clone()),
        stats.clone(),
        stop.clone(),
    ));
    eventually(Duration::from_secs(30), "runs after a rebuild", || {
        let ok = n(&stats.rebuilds) >= 1 && jobs.load(Ordering::SeqCst) >= 4;
        async move { ok.then_some(()) }
    })
    .await;
    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), Stopped::Clean);
    assert_eq!(n(&stats.rebuilds), 1, "{stats:?}");
    assert_eq!(
        starts.load(Ordering::SeqCst),
        2,
        "started once, rebuilt once"
    );
    assert!(
        alive.load(Ordering::SeqCst) > 0,
        "systemd's watchdog was pinged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_never_recovers_stops_the_pings_to_systemds_watchdog() {
    let source = Stalling {
        starts: Arc::new(AtomicU32::new(0)),
        first_ticks: 1,
        never_recovers: true,
        task: None,
    };
    let (jobs, alive) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_loop(
        Box::new(source),
        counting_job(jobs.clone()),
        options(alive.clone()),
        stats.clone(),
        stop.clone(),
    ));
    eventually(Duration::from_secs(30), "the fruitless rebuilds", || {
        let ok = n(&stats.rebuilds) >= u64::from(MAX_FRUITLESS_REBUILDS);
        async move { ok.then_some(()) }
    })
    .await;
    let pinged = alive.load(Ordering::SeqCst);
    assert!(pinged > 0, "pinged while ticks were expected");
    // Ten checks later: no ping, so systemd's WatchdogSec= runs out and it restarts us.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(alive.load(Ordering::SeqCst), pinged);
    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), Stopped::Clean);
    assert_eq!(jobs.load(Ordering::SeqCst), 1, "one tick, one run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_start_is_counted_and_the_next_tick_tries_again() {
    let source = Stalling {
        starts: Arc::new(AtomicU32::new(0)),
        first_ticks: u32::MAX,
        never_recovers: false,
        task: None,
    };
    let tries = Arc::new(AtomicU64::new(0));
    let counter = tries.clone();
    // As when the database is down: the job fails before any run row exists.
    let job: Job = Arc::new(move |_trigger, _cancel| {
        let counter = counter.clone();
        Box::pin(async move {
            counter.fetch_add(1, Ordering::SeqCst);
            JobOutcome::Failed
        })
    });
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_loop(
        Box::new(source),
        job,
        options(Arc::default()),
        stats.clone(),
        stop.clone(),
    ));
    eventually(Duration::from_secs(30), "three failed tries", || {
        let ok = n(&stats.failed) >= 3;
        async move { ok.then_some(()) }
    })
    .await;
    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), Stopped::Clean);
    assert!(tries.load(Ordering::SeqCst) >= 3);
    assert_eq!(n(&stats.rebuilds), 0, "{stats:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_loop_refuses_a_current_thread_runtime() {
    let err = run_loop(
        Box::new(CronTicker::default()),
        counting_job(Arc::default()),
        options(Arc::default()),
        Arc::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ScheduleError::CurrentThread), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_left_running_is_marked_abandoned_on_the_next_start() {
    let (_sim, server) = simulator(sim_options(10, 2)).await;
    for db in databases().await {
        let store = open(&db).await;
        let mut c = store.acquire().await.unwrap();
        let id = runs::start(&mut c.conn(), Utc::now(), "schedule")
            .await
            .unwrap();
        drop(c);
        let s = settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_SCHEDULE__RUN_ON_START", "false")],
        );
        // Stopped before it starts: the start-up work (migrations, abandoned rows) still runs.
        let stop = CancellationToken::new();
        stop.cancel();
        let stopped = daemon::serve(s, Box::new(CronTicker::default()), Arc::default(), stop)
            .await
            .unwrap();
        assert_eq!(stopped, Stopped::Clean);
        let rows = super::runs(&store).await;
        assert_eq!(
            rows.len(),
            1,
            "{}: no run was started: {rows:#?}",
            db.backend
        );
        assert_eq!(rows[0]["run_id"], id);
        assert_eq!(rows[0]["status"], "abandoned", "{}", db.backend);
        assert!(rows[0]["finished_at"].is_string());
        assert!(rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("stopped before it finished"));
    }
}

/// A run that does not stop when told (a job deaf to its token) is dropped once
/// `shutdown_timeout` has passed, and the loop says so: `run` then exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ignores_the_shutdown_is_dropped_after_the_timeout() {
    let started = Arc::new(AtomicU64::new(0));
    let counter = started.clone();
    let job: Job = Arc::new(move |_trigger, _cancel| {
        let counter = counter.clone();
        Box::pin(async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            JobOutcome::Ran
        })
    });
    let mut opts = options(Arc::default());
    opts.run_on_start = true;
    opts.shutdown_timeout = Duration::from_millis(200);
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_loop(
        Box::new(Stalling {
            starts: Arc::new(AtomicU32::new(0)),
            first_ticks: 0,
            never_recovers: false,
            task: None,
        }),
        job,
        opts,
        Arc::new(Stats::default()),
        stop.clone(),
    ));
    eventually(Duration::from_secs(30), "the run to start", || {
        let ok = started.load(Ordering::SeqCst) == 1;
        async move { ok.then_some(()) }
    })
    .await;
    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), Stopped::TimedOut);
}

/// The daemon records the runs that could not start (the database refusing writes) as
/// `failed` rows once it takes writes again: nothing is lost from `sync_runs`, though the
/// rows come late, and runs go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_could_not_start_are_recorded_once_the_database_takes_writes_again() {
    let (_sim, server) = simulator(sim_options(10, 3)).await;
    for db in databases().await {
        let store = open(&db).await;
        let (refuse, allow): (&[&str], &[&str]) = match store.backend() {
            closebot_sync::store::Backend::Sqlite => (
                &["CREATE TRIGGER refuse_runs BEFORE INSERT ON sync_runs \
                   BEGIN SELECT RAISE(ABORT, 'refusing writes'); END"],
                &["DROP TRIGGER refuse_runs"],
            ),
            closebot_sync::store::Backend::Postgres => (
                &[
                    "CREATE FUNCTION refuse_runs() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'refusing writes'; END $$",
                    "CREATE TRIGGER refuse_runs BEFORE INSERT ON sync_runs \
                     FOR EACH ROW EXECUTE FUNCTION refuse_runs()",
                ],
                &["DROP TRIGGER refuse_runs ON sync_runs"],
            ),
        };
        let run_sql = |sql: &'static [&'static str]| {
            let store = store.clone();
            async move {
                let mut c = store.acquire().await.unwrap();
                for s in sql {
                    c.conn().execute(s, vec![]).await.unwrap();
                }
            }
        };
        run_sql(refuse).await;
        let s = settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_SCHEDULE__CRON", "*/1 * * * * *")],
        );
        let (stats, stop, task) = spawn_daemon(s);
        eventually(
            Duration::from_secs(30),
            "two runs that could not start",
            || {
                let ok = n(&stats.failed) >= 2;
                async move { ok.then_some(()) }
            },
        )
        .await;
        assert!(super::runs(&store).await.is_empty(), "{}", db.backend);
        run_sql(allow).await;
        let rows = eventually(Duration::from_secs(30), "the late rows and a run", || {
            let store = store.clone();
            async move {
                let rows = super::runs(&store).await;
                rows.iter()
                    .any(|r| r["status"] == "succeeded")
                    .then_some(rows)
            }
        })
        .await;
        stop.cancel();
        task.await.unwrap().unwrap();
        let late: Vec<_> = rows.iter().filter(|r| r["status"] == "failed").collect();
        assert!(late.len() >= 2, "{}: {rows:#?}", db.backend);
        for r in late {
            let error = r["error"].as_str().unwrap();
            assert!(
                error.contains("recorded late") && error.contains("refusing writes"),
                "{error}"
            );
        }
    }
}
