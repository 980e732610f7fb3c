//! What operators and analysts meet, through the real binary: one exit code per kind of
//! error whatever wraps it, read commands that only read (SQLite and a PostgreSQL role with
//! SELECT only), migrations under the writer lock, what an aborted run records, URLs with
//! their secrets removed, stray environment variables, and output printed once.

mod reading;

use std::time::Duration;

use closebot_sim::Faults;

use crate::cli::{binary, run};
use crate::common::{settings, sim_options, simulator, sqlite, Db, Mirror, KEY};

/// `closebot-sync ARGS` with the settings of `binary`; an empty value in `env` unsets that variable.
async fn exit_of(db: &Db, base_url: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = binary(base_url, db, KEY);
    for (k, v) in env {
        if v.is_empty() {
            c.env_remove(k);
        } else {
            c.env(k, v);
        }
    }
    let done = tokio::time::timeout(Duration::from_secs(60), run(c, args))
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not exit within a minute"));
    let (out, stdout, stderr) = done;
    (
        out.status.code().expect("exited"),
        format!("{stdout}{stderr}"),
    )
}

#[tokio::test]
async fn settings_errors_exit_2_from_every_command_whatever_wraps_them() {
    let (_sim, server) = simulator(sim_options(5, 101)).await;
    let url = server.base_url();
    let db = sqlite();
    let no_key = [("CLOSEBOT_SYNC_API__KEY", "")];
    for args in [&["run"][..], &["sync"], &["check"]] {
        let (code, out) = exit_of(&db, &url, args, &no_key).await;
        assert_eq!(code, 2, "{args:?} without a key: {out}");
        assert!(out.contains("api.key"), "{out}");
    }
    let never = [("CLOSEBOT_SYNC_SCHEDULE__CRON", "0 0 0 30 2 *")];
    for args in [&["run"][..], &["check"], &["sync"]] {
        let (code, out) = exit_of(&db, &url, args, &never).await;
        assert_eq!(code, 2, "{args:?} with a schedule that never fires: {out}");
        assert!(out.contains("schedule.cron"), "{out}");
    }
    let typo = [("CLOSEBOT_SYNC_API__PAGE_SISE", "5")];
    for args in [&["status"][..], &["history", "x"], &["export"], &["sync"]] {
        let (code, out) = exit_of(&db, &url, args, &typo).await;
        assert_eq!(code, 2, "{args:?} with a mistyped variable: {out}");
        assert!(out.contains("CLOSEBOT_SYNC_API__PAGE_SISE"), "{out}");
    }
    let (code, out) = exit_of(&db, &url, &["status", "--runs", "0"], &[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--runs"), "{out}");
}

#[tokio::test]
async fn read_commands_exit_1_with_a_clear_word_for_what_is_not_there() {
    let (sim, server) = simulator(sim_options(12, 102)).await;
    let url = server.base_url();
    let db = sqlite();
    for args in [&["status"][..], &["history", "x"], &["export"]] {
        let (code, out) = exit_of(&db, &url, args, &[]).await;
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(
            out.contains(&format!("no closebot-sync database at {}", db.url)),
            "{out}"
        );
        assert!(
            out.contains("--config /etc/closebot-sync/closebot-sync.toml")
                && out.contains("CLOSEBOT_SYNC_DATABASE__URL"),
            "{out}"
        );
    }
    assert_eq!(
        std::fs::read_dir(db.dir.path()).unwrap().count(),
        0,
        "a read command created a file"
    );

    let (code, out) = exit_of(&db, &url, &["sync"], &[]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = exit_of(&db, &url, &["history", "no-such-source"], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unknown source \"no-such-source\""), "{out}");
    let source = &sim.listing()[0];
    let id = source["sourceId"].as_str().unwrap();
    let (code, out) = exit_of(&db, &url, &["history", id], &[]).await;
    assert_eq!(code, 0, "{out}");
    let name = source["name"].as_str().unwrap_or("(no name)");
    assert!(
        out.lines().next().unwrap().contains(name),
        "the name is not in the first line:\n{out}"
    );
    let (code, out) = exit_of(&db, &url, &["export", "--as-of", "2001-01-01"], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("before the mirror's first completed run"),
        "{out}"
    );
    assert!(!out.contains("\"sources\""), "{out}");
}

/// Two first syncs on a new database (a new SQLite file, an empty PostgreSQL schema): the
/// writer lock is taken before the migrations, so one migrates and syncs, the other is
/// told another is syncing; neither trips on the other's half-made tables.
#[tokio::test]
async fn two_first_syncs_on_a_new_database_exit_0_and_4() {
    let (sim, server) = simulator(sim_options(250, 103)).await;
    // Slow pages: the first run holds the lock while the second arrives.
    sim.set_faults(Faults {
        latency: Duration::from_millis(400),
        ..Faults::default()
    });
    for db in crate::common::databases().await {
        let a = binary(&server.base_url(), &db, KEY).arg("sync").output();
        let b = binary(&server.base_url(), &db, KEY).arg("sync").output();
        let (a, b) = tokio::join!(a, b);
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut codes = [a.status.code().unwrap(), b.status.code().unwrap()];
        codes.sort();
        let text = |o: &std::process::Output| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        };
        let all = text(&a) + &text(&b);
        assert_eq!(codes, [0, 4], "{}: {all}", db.backend);
        assert!(all.contains("another closebot-sync is syncing"), "{all}");
        assert!(!all.contains("already exists"), "{all}");
    }
}

#[tokio::test]
async fn a_stopped_sync_exits_5_records_what_it_saw_applies_nothing_and_logs_no_error() {
    let (sim, server) = simulator(sim_options(250, 104)).await;
    sim.set_faults(crate::common::page_hangs(1));
    let db = sqlite();
    let child = binary(&server.base_url(), &db, KEY)
        .arg("sync")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let start = std::time::Instant::now();
    while !sim
        .requests()
        .iter()
        .any(|r| r.query.iter().any(|(k, v)| k == "page" && v == "1"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "page 1 was never asked for"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Page 0 is applied once the next pages are asked for; give it a moment to land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    assert!(
        stdout.contains("run 1 aborted") && stdout.contains("(nothing applied)"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("ERROR"),
        "a requested stop logged an error: {stderr}"
    );
    assert!(
        !stderr.contains("run 1 aborted"),
        "the summary is repeated on stderr: {stderr}"
    );

    let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
    let row = &m
        .dump("SELECT status, pages, sources_seen, sources_created, sources_unchanged, host FROM sync_runs")
        .await[0];
    assert_eq!(row["status"], "aborted");
    assert!(row["pages"].as_i64().unwrap() >= 1, "{row:?}");
    assert!(row["sources_seen"].as_i64().unwrap() >= 100, "{row:?}");
    assert_eq!(row["sources_created"], 0, "{row:?}");
    assert_eq!(row["sources_unchanged"], 0, "{row:?}");
    assert_eq!(m.count("SELECT COUNT(*) FROM sources").await, 0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(row["host"], host.trim(), "{row:?}");
}

#[tokio::test]
async fn database_urls_never_show_their_secrets_and_a_refused_connection_says_so() {
    let (_sim, server) = simulator(sim_options(5, 105)).await;
    let db = sqlite();
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    for (url, secret) in [
        ("postgres://u:s3cret-pw@127.0.0.1:1/db", "s3cret-pw"),
        (
            "postgres://u@127.0.0.1:1/db?password=s3cret-pw",
            "s3cret-pw",
        ),
        ("postgres://u:p#ss-s3cret@127.0.0.1:1/db", "p#ss-s3cret"),
    ] {
        for args in [&["status"][..], &["sync"], &["check"]] {
            let (code, out) = exit_of(
                &db,
                &server.base_url(),
                args,
                &[("CLOSEBOT_SYNC_DATABASE__URL", url)],
            )
            .await;
            assert_eq!(code, 1, "{args:?} {url}: {out}");
            assert!(!out.contains(secret), "{args:?} showed the secret: {out}");
            assert!(out.contains("127.0.0.1"), "{out}");
            assert!(!out.contains("timed out"), "{out}");
            if !url.contains('#') {
                assert!(out.to_lowercase().contains("refused"), "{out}");
            }
        }
    }
}

#[tokio::test]
async fn a_sync_prints_its_summary_once_on_stdout_with_plurals_right_and_no_colour() {
    let (_sim, server) = simulator(sim_options(5, 106)).await;
    let db = sqlite();
    let mut c = binary(&server.base_url(), &db, KEY);
    // A container platform's variable for a Service of this name: ignored, named once.
    c.env("CLOSEBOT_SYNC_PORT", "tcp://10.0.0.7:9464");
    let (out, stdout, stderr) = run(c, &["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let all = format!("{stdout}{stderr}");
    assert_eq!(all.matches("run 1 succeeded").count(), 1, "{all}");
    assert!(stdout.contains("run 1 succeeded"), "{stdout}");
    assert!(
        stdout.contains("1 page, 5 sources seen") && stdout.contains("1 request, 0 retries"),
        "{stdout}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
    assert_eq!(stderr.matches("CLOSEBOT_SYNC_PORT").count(), 1, "{stderr}");

    let (out, help, _) = run(binary(&server.base_url(), &db, KEY), &["sync", "--help"]).await;
    assert_eq!(out.status.code(), Some(0));
    for code in 0..=5 {
        assert!(
            help.contains(&format!("\n  {code}  ")),
            "exit code {code} missing:\n{help}"
        );
    }

    let (out, stdout, _) = run(binary(&server.base_url(), &db, KEY), &["migrate"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("(0 migrations applied now)"), "{stdout}");
}
