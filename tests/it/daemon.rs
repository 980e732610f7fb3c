//! The daemon: the schedule and its watchdog, shutdown of the real binary, two instances on
//! one database, `/metrics` and `/healthz`, `check` and `status`, and the systemd unit.

mod check;
mod metrics;
mod schedule;
mod shutdown;
mod systemd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use closebot_sync::store::Store;
use serde_json::Value;

use crate::common::{dump, Db, KEY};

/// The real binary, started with `CLOSEBOT_SYNC_*` variables only (none inherited), in its
/// own directory so no `closebot-sync.toml` is picked up; stderr goes to a file.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

/// Everything a test process should not pass on to the binary it starts.
fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("CLOSEBOT_SYNC")
            || k == "RUST_LOG"
            || k.starts_with("NOTIFY_SOCKET")
            || k.starts_with("WATCHDOG_")
        {
            cmd.env_remove(k);
        }
    }
}

pub fn command(
    dir: &Path,
    base_url: &str,
    db: &Db,
    args: &[&str],
    env: &[(&str, &str)],
) -> Command {
    let bin = env!("CARGO_BIN_EXE_closebot-sync");
    let mut cmd = if env.iter().any(|(k, _)| *k == "WATCHDOG_USEC") {
        // systemd names the watched process in WATCHDOG_PID: the shell's pid is the
        // binary's once it execs.
        let mut sh = Command::new("sh");
        sh.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\"", bin]);
        sh
    } else {
        Command::new(bin)
    };
    clean_env(&mut cmd);
    cmd.current_dir(dir)
        .args(args)
        .env("CLOSEBOT_SYNC_API__BASE_URL", base_url)
        .env("CLOSEBOT_SYNC_API__KEY", KEY)
        .env("CLOSEBOT_SYNC_API__MAX_RETRY_WAIT", "20ms")
        .env("CLOSEBOT_SYNC_DATABASE__URL", &db.url);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Daemon {
    /// Starts `closebot-sync run`; `name` tells two daemons' logs apart.
    pub fn start(name: &str, base_url: &str, db: &Db, env: &[(&str, &str)]) -> Daemon {
        let dir = db.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("stderr.log");
        let child = command(&dir, base_url, db, &["run"], env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the binary starts");
        Daemon { child, log }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits up to `limit` for the process to exit; kills it and panics if it does not.
    pub fn wait(&mut self, limit: Duration) -> (i32, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let code = status
                    .code()
                    .unwrap_or_else(|| panic!("killed by a signal: {status:?}\n{}", self.logs()));
                return (code, start.elapsed());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("the daemon did not exit within {limit:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` every 100 ms until it gives `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "gave up waiting for {what} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens (and migrates) the test database for reading what the daemon wrote.
pub async fn open(db: &Db) -> Store {
    let store = Store::connect(&db.url.parse().unwrap(), 2).await.unwrap();
    store.migrate_locked().await.unwrap();
    store
}

/// The rows of `sync_runs`, oldest first.
pub async fn runs(store: &Store) -> Vec<serde_json::Map<String, Value>> {
    dump(store, "SELECT run_id, status, trigger, started_at, finished_at, error FROM sync_runs ORDER BY run_id").await
}

/// Asserts that no two finished runs overlap in time. The time stamps compare as text: the
/// harness's `dump` gives `YYYY-MM-DDTHH:MM:SS.ffffffZ` on both backends.
pub fn assert_no_overlap(rows: &[serde_json::Map<String, Value>]) {
    let mut spans: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| {
                r[k].as_str()
                    .unwrap_or_else(|| panic!("{k} of {r:?}"))
                    .to_string()
            };
            (s("started_at"), s("finished_at"))
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "two runs overlap: {:?} and {:?}\n{rows:#?}",
            w[0],
            w[1]
        );
    }
}

/// A free port on loopback (bound and released: good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
