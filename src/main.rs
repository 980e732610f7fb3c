//! The `closebot-sync` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = closebot_sync::cli::Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Tokio's own TOKIO_WORKER_THREADS still decides when it is set.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(cli.command.worker_threads());
    }
    // The blocking pool only runs CPU work (parsing pages, preparing rows, diffs). Tokio's
    // default of up to 512 threads gave a first sync about ten, and glibc a malloc arena for
    // each, which it seldom gives back; twice the cores keeps the parsing abreast of the
    // fetching at a fifth less peak memory (docs/performance.md, step 14).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    builder.max_blocking_threads(2 * cores);
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("closebot-sync: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(closebot_sync::cli::main(cli));
    // A task on the blocking pool (a large page's parsing, a large record's diff) of a run
    // that was stopped cannot be interrupted: do not let it hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}
