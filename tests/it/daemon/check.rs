//! `check` (settings, database, one request with the key; writes nothing) and the health
//! lines of `status`, through the real binary.

use std::process::Output;

use super::command;
use crate::common::{databases, settings, sim_options, simulator, sqlite, Db, Mirror};

fn run(base_url: &str, db: &Db, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command(db.dir.path(), base_url, db, args, env)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr);
    (status.code().expect("exited"), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_the_key_with_one_request_and_writes_nothing() {
    let (sim, server) = simulator(sim_options(120, 51)).await;
    for db in databases().await {
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        m.sync().await;
        let runs = m.count("SELECT COUNT(*) FROM sync_runs").await;
        let requests = sim.requests().len();
        let (code, out) = run(&server.base_url(), &db, &["check"], &[]);
        assert_eq!(code, 0, "{}: {out}", db.backend);
        assert!(out.contains("database  ok     "), "{out}");
        assert!(out.contains("schema up to date"), "{out}");
        assert!(
            out.contains("the key works; the listing holds 120 sources"),
            "{out}"
        );
        let made = &sim.requests()[requests..];
        assert_eq!(made.len(), 1, "{made:?}");
        assert!(
            made[0].query.contains(&("pageSize".into(), "1".into())),
            "{made:?}"
        );
        assert_eq!(m.count("SELECT COUNT(*) FROM sync_runs").await, runs);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_with_exit_1_on_a_refused_key_and_reports_pending_migrations() {
    let (_sim, server) = simulator(sim_options(5, 52)).await;
    for db in databases().await {
        let (code, out) = run(
            &server.base_url(),
            &db,
            &["check"],
            &[("CLOSEBOT_SYNC_API__KEY", "wrong")],
        );
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("api       FAILED"), "{out}");
        assert!(out.contains("the API refused the key"), "{out}");
        // The database was never migrated, and check did not migrate it.
        assert!(
            out.contains("migrations pending") || out.contains("does not exist yet"),
            "{}: {out}",
            db.backend
        );
    }
    let db = sqlite();
    run(&server.base_url(), &db, &["check"], &[]);
    let file = db.url.trim_start_matches("sqlite://");
    assert!(!std::path::Path::new(file).exists(), "check created {file}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_settings_exit_2_and_name_the_setting() {
    let (_sim, server) = simulator(sim_options(5, 53)).await;
    let db = sqlite();
    for args in [["check"], ["run"]] {
        let (code, out) = run(
            &server.base_url(),
            &db,
            &args,
            &[("CLOSEBOT_SYNC_SCHEDULE__CRON", "*/15 * * * *")],
        );
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("schedule.cron"), "{out}");
        assert!(out.contains("sec min hour"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_current_health() {
    let (_sim, server) = simulator(sim_options(20, 54)).await;
    for db in databases().await {
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        let (_, out) = run(&server.base_url(), &db, &["status"], &[]);
        assert!(
            out.contains("health: unhealthy: no run has applied changes yet"),
            "{out}"
        );
        m.sync().await;
        let (code, out) = run(&server.base_url(), &db, &["status"], &[]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("health: healthy: the last run that applied changes (run "),
            "{out}"
        );
        assert!(out.contains("(health.max_age is 1h)"), "{out}");
    }
}
