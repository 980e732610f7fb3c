//! `closebot-sync sync`: one run now (migrating first, under the writer lock), its summary
//! printed once on stdout; the exit code says how the run went.

use super::exit::{CommandError, Ended};
use super::run::shutdown_signal;
use crate::closebot::Client;
use crate::config::Settings;
use crate::store::Store;
use crate::sync::{run_once, SyncOptions};

pub(super) async fn sync(
    settings: &Settings,
    dry_run: bool,
    allow_mass_delete: bool,
    json: bool,
) -> Result<Ended, CommandError> {
    let options = SyncOptions {
        trigger: "manual".to_string(),
        dry_run,
        allow_mass_delete,
        migrate: !dry_run,
    };
    let key = settings.api.require_key()?.clone();
    let store = if dry_run {
        // A dry run writes nothing, not even the schema: it compares against the tables.
        dry_run_store(settings).await?
    } else {
        super::connect(settings).await?
    };
    let client = Client::new(&settings.api, key)?;
    let cancel = shutdown_signal();
    let report = run_once(settings, &store, &client, &options, &cancel).await?;
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary());
        print!("{}", report.preview_text(10));
    }
    store.close().await;
    Ok(Ended::Run(report.status))
}

/// The database for a dry run: it must exist and be migrated (the dry run creates nothing).
async fn dry_run_store(settings: &Settings) -> Result<Store, CommandError> {
    let url = &settings.database.url;
    if let Some(path) = url.sqlite_file() {
        if !path.exists() {
            return Err(anyhow::anyhow!(
                "there is no database at {} yet, and a dry run creates nothing: run `closebot-sync migrate` \
                 first (it creates the empty tables), then the dry run shows what a first sync would write",
                path.display()
            )
            .into());
        }
    }
    let store = super::connect(settings).await?;
    if store.pending_migrations().await? > 0 {
        return Err(anyhow::anyhow!(
            "the database schema is not the one this binary writes, and a dry run changes nothing: \
             run `closebot-sync migrate` first"
        )
        .into());
    }
    Ok(store)
}
