//! The command line: what each command does, its output and its exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::closebot::Client;
use crate::config::Settings;
use crate::store::runs::{self, RunStatus};
use crate::store::Store;
use crate::sync::{self, chain, SyncOptions};

/// Exit codes, documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const SETTINGS: u8 = 2;
    pub const PARTIAL: u8 = 3;
    pub const BUSY: u8 = 4;
    pub const ABORTED: u8 = 5;

    /// The exit codes of `sync`, as `sync --help` lists them.
    pub const SYNC_HELP: &str = "Exit codes:
  0  succeeded
  1  failed: nothing of the run was applied (the summary says why)
  2  invalid settings (the message names the setting and the fix)
  3  partial: changes applied, nothing marked deleted (the summary says why)
  4  another closebot-sync is syncing this database: this run did not start
  5  stopped by SIGTERM or SIGINT: the run was rolled back";
}

/// The exit code of an error that ends a command, whatever wraps it: the chain of causes
/// is walked once, and the first error that knows its code decides (1 when none does).
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(known_exit_code)
        .unwrap_or(exit::FAILED)
}

fn known_exit_code(e: &(dyn std::error::Error + 'static)) -> Option<u8> {
    use crate::config::ConfigError;
    use crate::daemon::DaemonError;
    use crate::schedule::ScheduleError;
    use crate::store::StoreError;
    use crate::sync::SyncError;
    if let Some(e) = e.downcast_ref::<ConfigError>() {
        return Some(e.exit_code());
    }
    if let Some(e) = e.downcast_ref::<DaemonError>() {
        return Some(e.exit_code());
    }
    if let Some(e) = e.downcast_ref::<ScheduleError>() {
        return Some(e.exit_code());
    }
    if let Some(e) = e.downcast_ref::<SyncError>() {
        return Some(e.exit_code());
    }
    e.downcast_ref::<StoreError>().map(StoreError::exit_code)
}

#[derive(Debug, Parser)]
#[command(
    name = "closebot-sync",
    version,
    about = "Mirrors the CloseBot sources listing into SQLite or PostgreSQL"
)]
pub struct Cli {
    /// Settings file (default: $CLOSEBOT_SYNC_CONFIG, else ./closebot-sync.toml if present).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one sync now; the exit code says how it went (listed below).
    #[command(after_help = exit::SYNC_HELP)]
    Sync {
        /// Walk and compare, print what would change, write nothing (not even the run's row).
        #[arg(long)]
        dry_run: bool,
        /// Print the run's report as one JSON object instead of the summary line.
        #[arg(long)]
        json: bool,
        /// Accept, this once, a walk that would mark more than sync.max_delete_fraction deleted.
        #[arg(long)]
        allow_mass_delete: bool,
    },
    /// Create or upgrade the database schema.
    Migrate,
    /// Print a source's name, versions and field changes, newest first (exit 1 for an
    /// unknown id). Reads only.
    History {
        /// The sourceId.
        source_id: String,
    },
    /// Write the listing as it stood at a time, as JSON, to stdout; one consistent snapshot
    /// (exit 1, nothing on stdout, for a time before the mirror's first completed run).
    /// Reads only.
    Export {
        /// RFC 3339 time (e.g. 2026-03-03T12:00:00Z) or a date (the end of that day, UTC). Default: now.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
    },
    /// Run as a service: sync on `schedule.cron` (UTC) until SIGTERM or SIGINT (exit 0 after
    /// a clean stop, 1 when it could not start or the run in flight had to be dropped, 2 for
    /// invalid settings, 4 when another instance held the lock it needs to migrate).
    Run,
    /// Check the settings, the database (read-only) and the API key without writing anything
    /// (exit 0 when all passed, 1 when one failed, 2 for invalid settings).
    Check,
    /// Try it without a key: sync a simulated agency into a new SQLite file, change it, sync again.
    #[cfg(feature = "simulator")]
    Demo {
        /// The SQLite file to create (replaced if it exists).
        #[arg(long, default_value = "closebot-demo.db", value_name = "PATH")]
        db: PathBuf,
        /// How many sources the simulated agency has.
        #[arg(long, default_value_t = 250)]
        sources: usize,
        /// Seed of the simulated data (the same seed gives the same agency).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Serve the bundled CloseBot simulator (for trying `sync` and `run` against it).
    #[cfg(feature = "simulator")]
    Simulate {
        /// Address to listen on (loopback: the client refuses plain http elsewhere).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// How many sources the simulated agency has.
        #[arg(long, default_value_t = 250)]
        sources: usize,
        /// Seed of the simulated data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The API key the simulator accepts.
        #[arg(long, default_value = "sim-key")]
        key: String,
    },
    /// Measure: sync the bundled simulator at each size into SQLite (and PostgreSQL with
    /// --postgres), each run in a child process; print a Markdown table and the targets
    /// (exit 0 when all are met, 1 when one is missed).
    #[cfg(feature = "simulator")]
    Bench {
        /// Listing sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        sources: Vec<usize>,
        /// A PostgreSQL URL to measure on too; the benchmark works in a schema of its own and
        /// drops it after.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Runs that leave the database as it was (no-op, dry runs) are repeated this often
        /// and the median counts.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Folder for the SQLite files (default: a new one in the temp folder, removed after).
        #[arg(long, value_name = "PATH")]
        dir: Option<PathBuf>,
        /// Latency per request of the latency-hiding run, in milliseconds.
        #[arg(long, default_value_t = 50)]
        latency_ms: u64,
    },
    /// Show the last runs and the current health. Reads only.
    Status {
        /// How many runs to show (at least 1).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
    },
}

/// Runs the parsed command line; the process exits with what this returns.
impl Command {
    /// The runtime's worker threads for this command. A sync's pace is set by the
    /// database's writer (SQLite's own thread, or the PostgreSQL server), so the commands
    /// that sync leave it a core and parse pages on the others: on two cores, a first sync
    /// took about 15% less time so. The other commands, the simulator's among them (`simulate`,
    /// `demo`, and `bench`, which serves it while its syncs run in child processes), use
    /// every core.
    pub fn worker_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        match self {
            Command::Sync { .. } | Command::Run => cores.saturating_sub(1).max(1),
            _ => cores,
        }
    }
}

pub async fn main(cli: Cli) -> ExitCode {
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("closebot-sync: {}", chain(&e));
            return ExitCode::from(exit::SETTINGS);
        }
    };
    crate::telemetry::init(&settings.log);
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    match run(cli.command, &settings).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("closebot-sync: error: {}", chain(e.as_ref()));
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(command: Command, settings: &Settings) -> anyhow::Result<u8> {
    match command {
        Command::Sync {
            dry_run,
            json,
            allow_mass_delete,
        } => {
            let options = SyncOptions {
                trigger: "manual".to_string(),
                dry_run,
                allow_mass_delete,
                migrate: !dry_run,
            };
            sync_command(settings, &options, json).await
        }
        Command::Migrate => {
            let store = connect(settings).await?;
            let applied = store.migrate_locked().await?;
            println!(
                "database {} is up to date ({} applied now)",
                settings.database.url,
                crate::report::count(applied as u64, "migration", "migrations")
            );
            Ok(exit::OK)
        }
        Command::History { source_id } => {
            let store = read_store(settings).await?;
            let text = crate::report::history(&store, &source_id).await?;
            print!("{text}");
            Ok(exit::OK)
        }
        Command::Export { as_of } => {
            let at = match as_of {
                Some(t) => crate::report::parse_as_of(&t).map_err(anyhow::Error::msg)?,
                None => chrono::Utc::now(),
            };
            let store = read_store(settings).await?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = crate::report::export(&store, at, &mut out).await?;
            tracing::debug!(sources = n, "exported the listing as of {at}");
            Ok(exit::OK)
        }
        Command::Status { runs: n } => {
            let store = read_store(settings).await?;
            let mut c = store.acquire().await?;
            let rows = runs::last(&mut c.conn(), n).await?;
            print!("{}", crate::report::runs_table(&rows));
            let (rejects, total) = runs::open_rejects(&mut c.conn(), 10).await?;
            print!("{}", crate::report::rejects_text(&rejects, total));
            let health = crate::health::Health::read(&store, settings.health_max_age).await?;
            println!("health: {}", health.describe());
            Ok(exit::OK)
        }
        #[cfg(feature = "simulator")]
        Command::Demo { db, sources, seed } => {
            crate::demo::demo(settings, &db, sources, seed).await
        }
        #[cfg(feature = "simulator")]
        Command::Simulate {
            listen,
            sources,
            seed,
            key,
        } => {
            let options = closebot_sim::SimOptions {
                seed,
                sources,
                api_key: key,
                ..Default::default()
            };
            crate::demo::simulate(listen, options, shutdown_signal()).await
        }
        #[cfg(feature = "simulator")]
        Command::Bench {
            sources,
            postgres,
            repeat,
            dir,
            latency_ms,
        } => {
            let options = crate::bench::BenchOptions {
                sizes: sources,
                postgres,
                repeat,
                dir,
                latency: std::time::Duration::from_millis(latency_ms),
                seed: 1,
            };
            crate::bench::bench(&options).await
        }
        Command::Run => Ok(crate::daemon::run_command(settings, shutdown_signal()).await?),
        Command::Check => Ok(crate::check::check_command(settings).await),
    }
}

/// Opens the database named in the settings.
pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    Ok(Store::connect(&settings.database.url, settings.database.max_connections).await?)
}

/// Opens the database for a command that only reads (`status`, `history`, `export`): read-only,
/// never created or migrated; it must exist with a schema as new as this binary's.
pub async fn read_store(settings: &Settings) -> anyhow::Result<Store> {
    let url = &settings.database.url;
    let store = Store::open_read_only(url).await?;
    store.require_schema(url).await?;
    Ok(store)
}

/// The database for a dry run: it must exist and be migrated (the dry run creates nothing).
async fn dry_run_store(settings: &Settings) -> anyhow::Result<Store> {
    let url = &settings.database.url;
    if let Some(path) = url.sqlite_file() {
        if !path.exists() {
            anyhow::bail!(
                "there is no database at {} yet, and a dry run creates nothing: run `closebot-sync migrate` \
                 first (it creates the empty tables), then the dry run shows what a first sync would write",
                path.display()
            );
        }
    }
    let store = connect(settings).await?;
    if store.pending_migrations().await? > 0 {
        anyhow::bail!(
            "the database schema is not the one this binary writes, and a dry run changes nothing: \
             run `closebot-sync migrate` first"
        );
    }
    Ok(store)
}

/// A token cancelled by SIGINT or SIGTERM.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

/// `sync`: run once (migrating first, under the writer lock), print the summary once, on
/// stdout, and exit by the run's status.
pub async fn sync_command(
    settings: &Settings,
    options: &SyncOptions,
    json: bool,
) -> anyhow::Result<u8> {
    let key = settings.api.require_key()?.clone();
    let store = if options.dry_run {
        // A dry run writes nothing, not even the schema: it compares against the tables.
        dry_run_store(settings).await?
    } else {
        connect(settings).await?
    };
    let client = Client::new(&settings.api, key)?;
    let cancel = shutdown_signal();
    let report = sync::run_once(settings, &store, &client, options, &cancel).await?;
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary());
        print!("{}", report.preview_text(10));
    }
    store.close().await;
    Ok(match report.status {
        RunStatus::Succeeded => exit::OK,
        RunStatus::Partial => exit::PARTIAL,
        RunStatus::Aborted => exit::ABORTED,
        _ => exit::FAILED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::DaemonError;
    use crate::schedule::ScheduleError;
    use crate::store::StoreError;
    use crate::sync::SyncError;
    use anyhow::Context;

    fn wrapped(e: impl std::error::Error + Send + Sync + 'static) -> anyhow::Error {
        Err::<(), _>(e).context("starting the service").unwrap_err()
    }

    #[test]
    fn the_exit_code_is_found_whatever_wraps_the_error() {
        let no_key = Settings::load_from(None, Vec::new())
            .unwrap()
            .api
            .require_key()
            .unwrap_err();
        let busy = || StoreError::Busy("the lock file".into());
        for (error, code) in [
            (wrapped(DaemonError::Settings(no_key)), exit::SETTINGS),
            (
                wrapped(DaemonError::Schedule(ScheduleError::Never(
                    "0 0 0 30 2 *".into(),
                ))),
                exit::SETTINGS,
            ),
            (wrapped(DaemonError::Store(busy())), exit::BUSY),
            (wrapped(SyncError::Store(busy())), exit::BUSY),
            (anyhow::Error::new(SyncError::Cancelled), exit::ABORTED),
            (
                wrapped(DaemonError::Schedule(ScheduleError::CurrentThread)),
                exit::FAILED,
            ),
            (anyhow::anyhow!("anything else"), exit::FAILED),
        ] {
            assert_eq!(exit_code(&error), code, "{error:#}");
        }
    }
}
