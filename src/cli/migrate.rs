//! `closebot-sync migrate`: create or upgrade the schema, under the writer lock.

use super::exit::{CommandError, Ended};
use crate::config::Settings;

pub(super) async fn migrate(settings: &Settings) -> Result<Ended, CommandError> {
    let store = super::connect(settings).await?;
    let applied = store.migrate_locked().await;
    store.close().await;
    let applied = applied?;
    println!(
        "database {} is up to date ({} applied now)",
        settings.database.url,
        crate::text::count(applied as u64, "migration", "migrations")
    );
    Ok(Ended::Done)
}
