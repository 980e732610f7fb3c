//! The command line: parsing, and one file per command. Every command ends in an
//! [`exit::Ended`] or an [`exit::CommandError`], and [`exit::code`] alone turns that into the
//! process's exit code.

#[cfg(feature = "simulator")]
mod bench;
mod check;
#[cfg(feature = "simulator")]
mod demo;
mod exit;
mod export;
mod history;
mod logging;
mod migrate;
mod run;
#[cfg(feature = "simulator")]
mod simulate;
mod status;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::store::Store;
use exit::{CommandError, Ended};

pub use export::export;
pub use status::rejects_text;

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
        #[arg(long, value_name = "TIME", value_parser = export::parse_as_of)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
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

/// Loads the settings, starts logging, runs the command; the process exits with what this
/// returns.
pub async fn main(cli: Cli) -> ExitCode {
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("closebot-sync: {}", crate::text::chain(&e));
            return ExitCode::from(exit::settings_code(&e));
        }
    };
    logging::init(&settings.log);
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let outcome = run_command(cli.command, &settings).await;
    if let Err(e) = &outcome {
        let text = crate::text::chain(e);
        match settings.log.format {
            // One JSON object per line, this one too: it says why the process stopped.
            // Written directly, not through the log filter, which could hide it.
            crate::config::LogFormat::Json => eprintln!(
                "{}",
                serde_json::json!({
                    "timestamp": chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "level": "ERROR",
                    "message": "closebot-sync: error",
                    "error": text,
                    "target": "closebot_sync::cli",
                })
            ),
            crate::config::LogFormat::Text => eprintln!("closebot-sync: error: {text}"),
        }
    }
    ExitCode::from(exit::code(&outcome))
}

async fn run_command(command: Command, settings: &Settings) -> Result<Ended, CommandError> {
    match command {
        Command::Sync {
            dry_run,
            json,
            allow_mass_delete,
        } => sync::sync(settings, dry_run, allow_mass_delete, json).await,
        Command::Migrate => migrate::migrate(settings).await,
        Command::History { source_id } => history::history_command(settings, &source_id).await,
        Command::Export { as_of } => export::export_command(settings, as_of).await,
        Command::Status { runs } => status::status(settings, runs).await,
        #[cfg(feature = "simulator")]
        Command::Demo { db, sources, seed } => demo::demo(settings, &db, sources, seed).await,
        #[cfg(feature = "simulator")]
        Command::Simulate {
            listen,
            sources,
            seed,
            key,
        } => simulate::simulate(listen, sources, seed, key).await,
        #[cfg(feature = "simulator")]
        Command::Bench {
            sources,
            postgres,
            repeat,
            dir,
            latency_ms,
        } => {
            let options = bench::BenchOptions {
                sizes: sources,
                postgres,
                repeat,
                dir,
                latency: std::time::Duration::from_millis(latency_ms),
                seed: 1,
            };
            bench::bench(&options).await
        }
        Command::Run => run::run(settings).await,
        Command::Check => Ok(check::check_command(settings).await),
    }
}

/// Opens the database named in the settings.
async fn connect(settings: &Settings) -> Result<Store, CommandError> {
    Ok(Store::connect(&settings.database.url, settings.database.max_connections).await?)
}

/// Opens the database for a command that only reads (`status`, `history`, `export`): read-only,
/// never created or migrated; it must exist with a schema as new as this binary's.
async fn read_store(settings: &Settings) -> Result<Store, CommandError> {
    let url = &settings.database.url;
    let store = Store::open_read_only(url).await?;
    store.require_schema(url).await?;
    Ok(store)
}
