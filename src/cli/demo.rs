//! `closebot-sync demo`: the bundled simulator on loopback, synced into a new SQLite file,
//! changed, and synced again, for trying closebot-sync without a CloseBot key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use closebot_sim::{MutationPlan, SimOptions, SimServer, Simulator};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::exit::{CommandError, Ended};
use crate::closebot::Client;
use crate::config::Settings;
use crate::db_url::DatabaseUrl;
use crate::store::Store;
use crate::sync::{run_once, RunReport, SyncOptions};

/// The demo's changes between its two syncs.
const DEMO_CHANGES: MutationPlan = MutationPlan {
    rename: 5,
    flip_wallet: 4,
    add_tag: 4,
    rotate_token: 3,
    reorder: 2,
    delete: 3,
    add: 6,
};

/// Settings that point at a simulator and a database, keeping the operator's others.
fn pointed_at(
    settings: &Settings,
    base_url: &str,
    key: &str,
    db_url: DatabaseUrl,
) -> anyhow::Result<Settings> {
    let mut s = settings.clone();
    s.api.base_url = base_url.parse()?;
    s.api.key = Some(SecretString::from(key.to_string()));
    s.database.url = db_url;
    Ok(s)
}

/// Removes a SQLite database and the files beside it (WAL, shared memory, lock file).
pub(super) fn remove_database(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// A simulated agency of `sources` sources served on a free loopback port, and the API
/// key it accepts.
pub(super) async fn local_simulator(
    seed: u64,
    sources: usize,
) -> std::io::Result<(Simulator, SimServer, String)> {
    let options = SimOptions {
        seed,
        sources,
        ..SimOptions::default()
    };
    let key = options.api_key.clone();
    let sim = Simulator::new(options);
    let server = sim.serve(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    Ok((sim, server, key))
}

/// Starts the simulator, syncs into `db` (made anew), changes some sources, syncs again,
/// and prints what changed and how to look at it.
pub(super) async fn demo(
    settings: &Settings,
    db: &Path,
    sources: usize,
    seed: u64,
) -> Result<Ended, CommandError> {
    Ok(two_syncs(settings, db, sources, seed).await?)
}

async fn two_syncs(
    settings: &Settings,
    db: &Path,
    sources: usize,
    seed: u64,
) -> anyhow::Result<Ended> {
    let (sim, server, key) = local_simulator(seed, sources).await?;
    remove_database(db)?;
    let s = pointed_at(settings, &server.base_url(), &key, DatabaseUrl::sqlite(db))?;
    println!(
        "closebot-sync demo: a simulated CloseBot agency with {sources} sources at {}",
        server.base_url()
    );
    println!("mirroring it into {}\n", db.display());

    let store = Store::connect(&s.database.url, s.database.max_connections).await?;
    store.migrate_locked().await?;
    let client = Client::new(&s.api, SecretString::from(key))?;
    let once = || async {
        let options = SyncOptions {
            trigger: "demo".into(),
            ..SyncOptions::default()
        };
        run_once(&s, &store, &client, &options, &CancellationToken::new()).await
    };
    let first: RunReport = once().await?;
    println!("first sync:  {}", first.summary());
    let changed = sim.mutate(seed.wrapping_add(1), &DEMO_CHANGES);
    println!(
        "\nthe simulator now renames {}, flips {} wallets, adds tags to {}, rotates {} access tokens, \
         reorders the bots of {}, deletes {} and adds {} sources\n",
        changed.renamed.len(),
        changed.wallet_flipped.len(),
        changed.tag_added.len(),
        changed.token_rotated.len(),
        changed.reordered.len(),
        changed.deleted.len(),
        changed.added.len()
    );
    let second = once().await?;
    println!("second sync: {}\n", second.summary());

    let mut c = store.acquire().await?;
    #[derive(sqlx::FromRow)]
    struct Change {
        source_id: String,
        change_type: String,
        field_path: Option<String>,
    }
    let changes: Vec<Change> = c
        .conn()
        .fetch_all(
            "SELECT source_id, change_type, field_path FROM source_changes WHERE run_id = $1 \
             ORDER BY change_type, source_id, field_path",
            vec![crate::model::Val::Int(second.run_id)],
        )
        .await?;
    drop(c);
    println!(
        "what the second run recorded in source_changes ({} rows):",
        changes.len()
    );
    for ch in &changes {
        println!(
            "  {:<9} {}  {}",
            ch.change_type,
            ch.source_id,
            ch.field_path.as_deref().unwrap_or("")
        );
    }
    let example = changed.renamed.first().cloned().unwrap_or_default();
    let db_text = db.display();
    let db_url = &s.database.url;
    println!(
        "\nlook around (the database is plain SQLite; docs/schema.md explains every table):\n\
         \n  sqlite3 {db_text} \"SELECT category, COUNT(*) FROM current_sources GROUP BY category\"\
         \n  sqlite3 {db_text} \"SELECT field_path, old_value, new_value FROM source_changes WHERE change_type = 'updated'\"\
         \n  CLOSEBOT_SYNC_DATABASE__URL={db_url} closebot-sync status\
         \n  CLOSEBOT_SYNC_DATABASE__URL={db_url} closebot-sync history {example}\
         \n  CLOSEBOT_SYNC_DATABASE__URL={db_url} closebot-sync export > listing.json\n\
         \n(with cargo: cargo run --release -- status, and so on)"
    );
    store.close().await;
    server.shutdown().await;
    let ok = |r: &RunReport| r.status == crate::store::runs::RunStatus::Succeeded;
    Ok(if ok(&first) && ok(&second) {
        Ended::Done
    } else {
        Ended::Reported(crate::failure::Failure::Failed)
    })
}
