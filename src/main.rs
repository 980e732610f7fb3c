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
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("closebot-sync: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(closebot_sync::cli::main(cli))
}
