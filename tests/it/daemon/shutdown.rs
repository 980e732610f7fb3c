//! SIGTERM during a slow run of the real binary, with systemd's notify socket watching; and
//! two daemons on one database never syncing at the same time.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use closebot_sim::{FaultAction, FaultRule, Faults, MutationPlan};

use super::{assert_no_overlap, eventually, open, Daemon};
use crate::common::{databases, settings, sim_options, simulator, snapshot, sqlite, Mirror};

/// Everything sent to the notify socket so far, one message per entry.
fn received(sock: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_run_exits_0_in_time_with_the_row_aborted_and_the_data_as_before() {
    let (sim, server) = simulator(sim_options(250, 21)).await;
    let db = sqlite();
    let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
    assert_eq!(m.sync().await.status.as_str(), "succeeded");
    let before = snapshot(&m).await;
    // The next run would change things, and hangs on page 1 with page 0 applied.
    sim.mutate(
        5,
        &MutationPlan {
            rename: 10,
            delete: 3,
            add: 5,
            ..MutationPlan::default()
        },
    );
    sim.set_faults(crate::common::page_hangs(1));
    let socket_path = db.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let timeout = Duration::from_secs(5);
    let earlier = sim.requests().len();
    let mut d = Daemon::start(
        "d",
        &server.base_url(),
        &db,
        &[
            ("CLOSEBOT_SYNC_SCHEDULE__CRON", "0 0 0 1 1 *"),
            ("CLOSEBOT_SYNC_SCHEDULE__SHUTDOWN_TIMEOUT", "5s"),
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "600000"),
        ],
    );
    eventually(Duration::from_secs(30), "the run to wait on page 1", || {
        let waiting = sim.requests()[earlier..]
            .iter()
            .any(|r| r.query.iter().any(|(k, v)| k == "page" && v == "1"));
        async move { waiting.then_some(()) }
    })
    .await;
    let rows = super::runs(&m.store).await;
    assert_eq!(rows.last().unwrap()["status"], "running", "{rows:#?}");

    d.signal("TERM");
    let (code, _took) = d.wait(timeout + Duration::from_secs(5));
    assert_eq!(code, 0, "{}", d.logs());
    // Exit 0 is the daemon's own word that the run stopped within shutdown_timeout (past
    // it, `run` exits 1); the wall time seen from here adds process teardown, not asserted.

    let rows = super::runs(&m.store).await;
    let last = rows.last().unwrap();
    assert_eq!(last["status"], "aborted", "{rows:#?}");
    assert_eq!(last["trigger"], "start");
    assert_eq!(snapshot(&m).await, before, "the aborted run changed data");
    // A requested stop is no error, and the scheduler's start-up chatter stays below INFO.
    let logs = d.logs();
    assert!(logs.contains("run 2 aborted"), "{logs}");
    assert!(!logs.contains("ERROR"), "{logs}");
    assert!(
        !logs.contains("Uninited") && !logs.contains("Job creator created"),
        "{logs}"
    );

    let messages = received(&sock);
    let pos = |what: &str| messages.iter().position(|m| m.contains(what));
    let ready = pos("READY=1").unwrap_or_else(|| panic!("no READY: {messages:?}"));
    let stopping = pos("STOPPING=1").unwrap_or_else(|| panic!("no STOPPING: {messages:?}"));
    assert!(ready < stopping, "{messages:?}");
    assert!(
        pos("WATCHDOG=1").is_some(),
        "no watchdog ping: {messages:?}"
    );
    let status_after = messages[stopping..]
        .iter()
        .any(|m| m.contains("STATUS=run") && m.contains("aborted"));
    assert!(status_after, "no STATUS with the aborted run: {messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_database_never_sync_at_the_same_time() {
    let (sim, server) = simulator(sim_options(50, 31)).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(1500),
        ..Faults::default()
    });
    for db in databases().await {
        // Migrate first, so the two do not race to create the schema.
        let store = open(&db).await;
        let env = [("CLOSEBOT_SYNC_SCHEDULE__CRON", "*/1 * * * * *")];
        let mut a = Daemon::start("a", &server.base_url(), &db, &env);
        let mut b = Daemon::start("b", &server.base_url(), &db, &env);
        eventually(Duration::from_secs(60), "four finished runs", || {
            let store = store.clone();
            async move {
                let rows = super::runs(&store).await;
                (rows.iter().filter(|r| r["status"] == "succeeded").count() >= 4).then_some(())
            }
        })
        .await;
        a.signal("TERM");
        b.signal("TERM");
        assert_eq!(a.wait(Duration::from_secs(15)).0, 0, "{}", a.logs());
        assert_eq!(b.wait(Duration::from_secs(15)).0, 0, "{}", b.logs());

        let rows = super::runs(&store).await;
        assert_no_overlap(&rows);
        let busy = [&a, &b]
            .iter()
            .filter(|d| d.logs().contains("another instance is syncing"))
            .count();
        assert!(
            busy >= 1,
            "{}: neither daemon met the other's lock:\n{}\n{}",
            db.backend,
            a.logs(),
            b.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_a_large_record_is_parsed_and_compared_is_served_in_time() {
    let (sim, server) = simulator(sim_options(150, 29)).await;
    let db = sqlite();
    let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
    let bots = |renamed: bool| {
        (0..40_000)
            .map(|i| {
                let name = if renamed && i == 27_777 {
                    "renamed".to_string()
                } else {
                    format!("bot {i}")
                };
                serde_json::json!({"id": format!("bot-{i}"), "botName": name, "enabled": true,
                    "channels": ["SMS", "Email"]})
            })
            .collect::<Vec<_>>()
    };
    sim.edit(|l| l[0]["bots"] = serde_json::Value::Array(bots(false)));
    assert_eq!(m.sync().await.status.as_str(), "succeeded");
    let count = |table: &'static str| {
        let m = &m;
        async move { m.count(&format!("SELECT COUNT(*) AS n FROM {table}")).await }
    };
    let before = (
        count("source_changes").await,
        count("source_versions").await,
    );
    // The next run parses, prepares and compares the large record of page 0 (CPU work that
    // must stay off the one runtime thread the daemon gets here), then waits on page 1.
    sim.edit(|l| l[0]["bots"] = serde_json::Value::Array(bots(true)));
    sim.set_faults(Faults {
        rules: vec![FaultRule {
            page: Some(1),
            attempts: 1..=1000,
            action: FaultAction::Delay(Duration::from_secs(120)),
        }],
        ..Faults::default()
    });
    let timeout = Duration::from_secs(3);
    let earlier = sim.requests().len();
    let mut d = Daemon::start(
        "d",
        &server.base_url(),
        &db,
        &[
            ("CLOSEBOT_SYNC_SCHEDULE__CRON", "0 0 0 1 1 *"),
            ("CLOSEBOT_SYNC_SCHEDULE__SHUTDOWN_TIMEOUT", "3s"),
            ("CLOSEBOT_SYNC_API__CONCURRENCY", "1"),
            ("TOKIO_WORKER_THREADS", "1"),
        ],
    );
    eventually(Duration::from_secs(30), "page 0 to be served", || {
        let served = sim.requests()[earlier..]
            .iter()
            .any(|r| r.status == 200 && r.query.iter().any(|(k, v)| k == "page" && v == "0"));
        async move { served.then_some(()) }
    })
    .await;
    d.signal("TERM");
    let (code, _took) = d.wait(timeout + Duration::from_secs(10));
    assert_eq!(code, 0, "{}", d.logs());
    // Exit 0 is the daemon's own word that the run stopped within shutdown_timeout (past
    // it, `run` exits 1); the wall time seen from here adds process teardown, not asserted.
    let rows = super::runs(&m.store).await;
    assert_eq!(rows.last().unwrap()["status"], "aborted", "{rows:#?}");
    assert_eq!(
        (
            count("source_changes").await,
            count("source_versions").await
        ),
        before,
        "the aborted run changed data"
    );
}
