//! The real binary, as an operator runs it: exit codes, output, secrets, kill -9.

use std::process::Output;
use std::time::Duration;

use closebot_sim::Faults;
use closebot_sync::store::runs::RunStatus;
use serde_json::Value;
use tokio::process::Command;

use crate::common::rebuild::assert_mirrors;
use crate::common::{databases, settings, sim_options, simulator, snapshot, Db, Mirror, KEY};

pub fn binary(base_url: &str, db: &Db, key: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_closebot-sync"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CLOSEBOT_SYNC_API__BASE_URL", base_url)
        .env("CLOSEBOT_SYNC_API__KEY", key)
        .env("CLOSEBOT_SYNC_DATABASE__URL", &db.url)
        .env("CLOSEBOT_SYNC_API__MAX_RETRY_WAIT", "20ms")
        .current_dir(db.dir.path())
        .kill_on_drop(true);
    c
}

pub async fn run(mut c: Command, args: &[&str]) -> (Output, String, String) {
    let out = c.args(args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out, stdout, stderr)
}

#[tokio::test]
async fn sync_status_history_and_export_work_from_the_command_line() {
    let (sim, server) = simulator(sim_options(140, 73)).await;
    let db = crate::common::sqlite();
    let (out, stdout, stderr) = run(binary(&server.base_url(), &db, KEY), &["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("run 1 succeeded") && stdout.contains("140 sources seen (140 created"),
        "{stdout}"
    );

    sim.mutate(
        4,
        &closebot_sim::MutationPlan {
            rename: 1,
            ..Default::default()
        },
    );
    let (out, stdout, _) = run(binary(&server.base_url(), &db, KEY), &["sync"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("1 updated"), "{stdout}");

    let (out, stdout, _) = run(binary(&server.base_url(), &db, KEY), &["status"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.lines().count() >= 3 && stdout.contains("succeeded"),
        "{stdout}"
    );

    let listing = sim.listing();
    let renamed = listing
        .iter()
        .find(|s| s["name"].as_str().is_some())
        .unwrap();
    let id = renamed["sourceId"].as_str().unwrap();
    let (out, stdout, _) = run(binary(&server.base_url(), &db, KEY), &["history", id]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("created") && stdout.contains("versions"),
        "{stdout}"
    );

    let (out, stdout, stderr) = run(binary(&server.base_url(), &db, KEY), &["export"]).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let exported: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(exported["sources"].as_array().unwrap().len(), 140);
    assert!(!stdout.contains("\"accessToken\""));

    let (out, _, stderr) = run(
        binary(&server.base_url(), &db, KEY),
        &["export", "--as-of", "last tuesday"],
    )
    .await;
    // An argument that does not parse, like a bad setting: exit 2.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--as-of") && stderr.contains("RFC 3339"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_refused_key_exits_non_zero_and_says_why_without_showing_the_key() {
    let (_sim, server) = simulator(sim_options(10, 79)).await;
    let db = crate::common::sqlite();
    let wrong = "wrong-key-4f1c9e";
    let (out, stdout, stderr) = run(binary(&server.base_url(), &db, wrong), &["sync"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("failed") && stdout.contains("refused the key"),
        "{stdout}"
    );
    assert!(!stdout.contains(wrong) && !stderr.contains(wrong));
}

/// operating.md tells operators that `sync` and `migrate` leave no write-ahead log beside
/// the database when no other process has it open. A connection still being returned to
/// the pool when it closed used to stay open until the exit, which left the log after
/// most first syncs; several fresh databases make a pass by chance unlikely.
#[tokio::test]
async fn sync_and_migrate_leave_no_write_ahead_log_when_they_exit() {
    let (_sim, server) = simulator(sim_options(60, 89)).await;
    for round in 0..4 {
        let db = crate::common::sqlite();
        let file = db.dir.path().join("mirror.db");
        let wal = db.dir.path().join("mirror.db-wal");
        let (out, stdout, stderr) = run(binary(&server.base_url(), &db, KEY), &["sync"]).await;
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert!(file.is_file(), "round {round}: no database");
        assert!(
            !wal.exists(),
            "round {round}: `sync` left {}",
            wal.display()
        );
        let (out, _, stderr) = run(binary(&server.base_url(), &db, KEY), &["migrate"]).await;
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            !wal.exists(),
            "round {round}: `migrate` left {}",
            wal.display()
        );
    }
}

#[tokio::test]
async fn a_rust_log_that_does_not_parse_is_named_in_a_warning_and_the_run_goes_on() {
    let (_sim, server) = simulator(sim_options(5, 97)).await;
    let db = crate::common::sqlite();
    let mut c = binary(&server.base_url(), &db, KEY);
    c.env("RUST_LOG", "closebot_sync=[[bad");
    let (out, stdout, stderr) = run(c, &["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("RUST_LOG does not parse") && stderr.contains("closebot_sync=[[bad"),
        "{stderr}"
    );
}

/// A server (or a proxy in front of it) that echoes the request back in its error bodies
/// must not get the key into the log, the summary or `sync_runs.error`.
#[tokio::test]
async fn an_error_body_that_echoes_the_key_is_shown_without_it() {
    let (sim, server) = simulator(sim_options(10, 101)).await;
    let echo = |code: u16, attempt: u32| closebot_sim::FaultRule {
        page: Some(0),
        attempts: attempt..=attempt,
        action: closebot_sim::FaultAction::Status {
            code,
            retry_after: Some("0".into()),
            body: Some(format!(
                r#"{{"error": "denied", "request": {{"X-CB-KEY": "{KEY}"}}}}"#
            )),
        },
    };
    sim.set_faults(Faults {
        rules: vec![echo(503, 1), echo(401, 2)],
        ..Faults::default()
    });
    let db = crate::common::sqlite();
    let mut c = binary(&server.base_url(), &db, KEY);
    c.env("RUST_LOG", "debug");
    let (out, stdout, stderr) = run(c, &["sync"]).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("refused the key") && stdout.contains(r#""X-CB-KEY": "***""#),
        "{stdout}"
    );
    assert!(
        stderr.contains("HTTP 503") && !stderr.contains(KEY) && !stdout.contains(KEY),
        "{stdout}{stderr}"
    );
    let (_, status, _) = run(binary(&server.base_url(), &db, KEY), &["status"]).await;
    assert!(
        status.contains("refused the key") && !status.contains(KEY),
        "{status}"
    );
}

/// A proxy named in the environment is not used for a loopback API: over plain http it
/// would receive the key in clear text, on another machine.
#[tokio::test]
async fn a_proxy_in_the_environment_never_carries_a_loopback_request() {
    let (sim, server) = simulator(sim_options(10, 103)).await;
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    let proxy_task = tokio::spawn(async move {
        // Accepts and drops: a request sent here fails, and is counted.
        while let Ok((stream, _)) = proxy.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let db = crate::common::sqlite();
    let mut c = binary(&server.base_url(), &db, KEY);
    for variable in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        c.env(variable, &proxy_url);
    }
    let (out, stdout, stderr) = run(c, &["sync"]).await;
    proxy_task.abort();
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the proxy was used"
    );
    assert!(sim.requests().iter().all(|r| r.authorized));
}

/// An https API goes through the proxy named in the environment, and when that proxy
/// cannot be reached the error says which variable named it, never its address (which may
/// hold a password).
#[tokio::test]
async fn a_proxy_that_cannot_be_reached_is_named_by_its_variable_without_its_address() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let db = crate::common::sqlite();
    let mut c = binary("https://api.closebot.invalid", &db, KEY);
    c.env(
        "HTTPS_PROXY",
        format!("http://proxyuser:hunter2@127.0.0.1:{port}"),
    )
    .env("CLOSEBOT_SYNC_API__MAX_RETRIES", "0");
    let (out, stdout, stderr) = run(c, &["sync"]).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("HTTPS_PROXY is set") && stdout.contains("refused"),
        "{stdout}"
    );
    let everything = format!("{stdout}{stderr}");
    for secret in ["hunter2", "proxyuser", &format!(":{port}"), KEY] {
        assert!(!everything.contains(secret), "{secret}: {everything}");
    }
}

/// The README's first command: the demo syncs a simulated agency twice and shows what
/// changed, leaving a database that `status` reads and no write-ahead log beside it.
#[tokio::test]
async fn the_demo_syncs_twice_shows_the_changes_and_leaves_a_readable_database() {
    let db = crate::common::sqlite();
    let file = db.dir.path().join("demo.db");
    let file_arg = file.display().to_string();
    let mut c = binary("https://unused.invalid", &db, KEY);
    c.env_remove("CLOSEBOT_SYNC_DATABASE__URL");
    let (out, stdout, stderr) = run(c, &["demo", "--db", &file_arg, "--sources", "60"]).await;
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("second sync")
            && stdout.contains("source_changes")
            && stdout.contains("  updated "),
        "{stdout}"
    );
    assert!(
        !db.dir.path().join("demo.db-wal").exists(),
        "the demo left its log"
    );
    let mut c = binary("https://unused.invalid", &db, KEY);
    c.env(
        "CLOSEBOT_SYNC_DATABASE__URL",
        format!("sqlite://{file_arg}"),
    );
    let (out, status, stderr) = run(c, &["status"]).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        status.contains("succeeded") && status.contains("demo"),
        "{status}"
    );
}

#[tokio::test]
async fn a_bad_setting_exits_with_code_2_naming_the_key() {
    let db = crate::common::sqlite();
    let mut c = binary("https://api.closebot.com", &db, KEY);
    c.env("CLOSEBOT_SYNC_API__CONCURRENCY", "0");
    let (out, _, stderr) = run(c, &["sync"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("api.concurrency"), "{stderr}");
}

#[tokio::test]
async fn a_trace_level_log_of_a_full_run_holds_no_secret() {
    let (sim, server) = simulator(sim_options(120, 83)).await;
    let db = crate::common::sqlite();
    let secrets: Vec<String> = sim
        .listing()
        .iter()
        .flat_map(|s| ["key", "accessToken"].map(|f| s[f].as_str().map(str::to_string)))
        .flatten()
        .collect();
    assert!(secrets.len() > 50);
    let mut c = binary(&server.base_url(), &db, KEY);
    c.env("RUST_LOG", "trace");
    let (out, stdout, stderr) = run(c, &["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.len() > 10_000,
        "a trace log this short proves nothing"
    );
    let all = format!("{stdout}{stderr}");
    assert!(!all.contains(KEY), "the API key is in the log");
    for s in &secrets {
        assert!(
            !all.contains(s.as_str()),
            "a source credential is in the log"
        );
    }
}

#[tokio::test]
async fn kill_9_at_any_moment_leaves_the_last_committed_run_and_the_next_run_completes() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(2500, 89)).await;
        let s = settings(&server.base_url(), &db, &[]);
        let m = Mirror::new(s).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.mutate(
            6,
            &closebot_sim::MutationPlan {
                rename: 200,
                delete: 50,
                add: 50,
                ..Default::default()
            },
        );
        sim.set_faults(Faults {
            latency: Duration::from_millis(100),
            ..Faults::default()
        });
        let before = snapshot(&m).await;
        // The first kill comes 30 ms after the start, whatever the process reached; the
        // others a while after its run row exists (so they do not depend on how fast a
        // loaded machine starts a process), and so leave an abandoned run each.
        for (i, (after_row, after_ms)) in [(false, 30u64), (true, 0), (true, 120), (true, 300)]
            .into_iter()
            .enumerate()
        {
            let runs_before = m.dump("SELECT run_id FROM sync_runs").await.len();
            let mut child = binary(&server.base_url(), &db, KEY)
                .arg("sync")
                .spawn()
                .unwrap();
            if after_row {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while m.dump("SELECT run_id FROM sync_runs").await.len() == runs_before {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no run row after 60 s"
                    );
                    if child.try_wait().unwrap().is_some() {
                        panic!("the run ended before its row was seen: make it slower");
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            if child.try_wait().unwrap().is_some() {
                panic!("the run ended before the kill at {after_ms} ms: make it slower");
            }
            child.start_kill().unwrap();
            child.wait().await.unwrap();
            assert_eq!(
                snapshot(&m).await,
                before,
                "{}: kill at {after_ms} ms changed data",
                m.backend()
            );
            let runs = m.dump("SELECT status FROM sync_runs ORDER BY run_id").await;
            assert!(runs.len() <= 2 + i, "{runs:?}");
        }
        sim.set_faults(Faults::default());
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
        assert_mirrors(&m, &sim.listing()).await;
        let statuses: Vec<String> = m
            .dump("SELECT status FROM sync_runs ORDER BY run_id")
            .await
            .into_iter()
            .map(|r| r["status"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(statuses.first().map(String::as_str), Some("succeeded"));
        assert_eq!(statuses.last().map(String::as_str), Some("succeeded"));
        assert!(
            statuses.iter().filter(|s| *s == "abandoned").count() >= 3,
            "{statuses:?}"
        );
        assert!(!statuses.iter().any(|s| s == "running"), "{statuses:?}");
    }
}

/// operating.md: with `log.format = "json"` every line of a run carries its `run_id`, the
/// lines of the page tasks (a retry) too, so a run's lines can be picked out of the journal.
#[tokio::test]
async fn every_json_log_line_of_a_run_carries_its_run_id() {
    let (sim, server) = simulator(sim_options(250, 75)).await;
    let db = crate::common::sqlite();
    sim.set_faults(Faults {
        rules: vec![closebot_sim::FaultRule {
            page: Some(1),
            attempts: 1..=1,
            action: closebot_sim::FaultAction::Status {
                code: 503,
                retry_after: None,
                body: None,
            },
        }],
        ..Faults::default()
    });
    let mut c = binary(&server.base_url(), &db, KEY);
    c.env("CLOSEBOT_SYNC_LOG__FORMAT", "json");
    let (out, stdout, stderr) = run(c, &["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let retry = stderr
        .lines()
        .find(|l| l.contains("retrying a page"))
        .unwrap_or_else(|| panic!("no retry logged: {stderr}"));
    let line: Value = serde_json::from_str(retry).unwrap();
    assert_eq!(line["span"]["run_id"], 1, "{retry}");
}

/// With JSON logs, the error that ends a command is a JSON line like the others, so the
/// `jq` recipes of operating.md do not stop at it.
#[tokio::test]
async fn with_json_logs_the_error_that_ends_a_command_is_json_too() {
    let db = crate::common::sqlite();
    let mut c = binary("http://127.0.0.1:9", &db, KEY);
    // Even with the log filtered down to nothing, the error that ends the command shows.
    c.env("CLOSEBOT_SYNC_LOG__FORMAT", "json")
        .env("CLOSEBOT_SYNC_LOG__LEVEL", "off");
    // No database yet: `status` ends on an error.
    let (out, stdout, stderr) = run(c, &["status"]).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let last = lines.last().expect("a line");
    assert_eq!(last["level"], "ERROR", "{stderr}");
    let error = last["error"].as_str().unwrap_or_default();
    assert!(error.contains("no closebot-sync database"), "{stderr}");
}
