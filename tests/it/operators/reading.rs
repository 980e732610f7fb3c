//! Read commands that only read: a SQLite file its reader may not write, in a folder it may
//! not write; a PostgreSQL role with SELECT only; and `export` as one snapshot while a run
//! renames every source.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use closebot_sim::MutationPlan;
use closebot_sync::store::Store;
use closebot_sync::sync::SyncOptions;
use serde_json::Value;
use sqlx::Connection;

use crate::cli::{binary, run};
use crate::common::{databases, settings, sim_options, simulator, sqlite, Db, Mirror, KEY};

/// The user nobody, when the tests run as root (who could write the file whatever its mode).
const NOBODY: u32 = 65534;

fn running_as_root(dir: &std::path::Path) -> bool {
    let probe = dir.join("owner-probe");
    std::fs::write(&probe, "").unwrap();
    let root = std::fs::metadata(&probe).unwrap().uid() == 0;
    std::fs::remove_file(&probe).unwrap();
    root
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs every read command against `db` with `url`; each must exit 0.
async fn read_commands_succeed(db: &Db, base_url: &str, url: &str, id: &str, as_user: Option<u32>) {
    for args in [&["status"][..], &["history", id], &["export"], &["check"]] {
        let mut c = binary(base_url, db, KEY);
        c.env("CLOSEBOT_SYNC_DATABASE__URL", url);
        if let Some(uid) = as_user {
            c.uid(uid).gid(uid);
        }
        let (out, stdout, stderr) = run(c, args).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} {args:?}:\n{stdout}{stderr}",
            db.backend
        );
        if args[0] == "export" {
            let listing: Value = serde_json::from_str(&stdout).unwrap();
            assert!(!listing["sources"].as_array().unwrap().is_empty());
        }
    }
}

#[tokio::test]
async fn read_commands_work_on_a_sqlite_file_and_folder_their_user_cannot_write() {
    let (sim, server) = simulator(sim_options(60, 111)).await;
    let db = sqlite();
    let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
    m.sync().await;
    m.store.close().await;
    let dir = db.dir.path();
    let as_root = running_as_root(dir);
    let file = dir.join("mirror.db");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    for name in files_in(dir) {
        if name != "mirror.db" {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let before = files_in(dir);
    let id = sim.listing()[0]["sourceId"].as_str().unwrap().to_string();
    read_commands_succeed(
        &db,
        &server.base_url(),
        &db.url,
        &id,
        as_root.then_some(NOBODY),
    )
    .await;
    assert_eq!(files_in(dir), before, "a read command created a file");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn read_commands_work_for_a_postgresql_role_with_select_only() {
    let (sim, server) = simulator(sim_options(40, 112)).await;
    for db in databases().await {
        let Some((admin, schema)) = db.postgres_schema() else {
            continue;
        };
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        m.sync().await;
        let role = format!("reader_{}", rand::random::<u32>());
        let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
        for sql in [
            format!("CREATE ROLE {role} LOGIN"),
            format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"),
        ] {
            sqlx::query(&sql).execute(&mut c).await.unwrap();
        }
        let mut url = url::Url::parse(&db.url).unwrap();
        url.set_username(&role).unwrap();
        let id = sim.listing()[0]["sourceId"].as_str().unwrap().to_string();
        read_commands_succeed(&db, &server.base_url(), url.as_str(), &id, None).await;
        // The role really cannot write: a sync with it fails.
        let mut s = binary(&server.base_url(), &db, KEY);
        s.env("CLOSEBOT_SYNC_DATABASE__URL", url.as_str());
        let (out, stdout, stderr) = run(s, &["sync"]).await;
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
            sqlx::query(&sql).execute(&mut c).await.unwrap();
        }
    }
}

/// Each source's name, by id.
fn names(listing: &[Value]) -> HashMap<String, String> {
    listing
        .iter()
        .map(|s| {
            (
                s["sourceId"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_taken_while_a_run_renames_every_source_see_it_wholly_or_not_at_all() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(3000, 113)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        m.sync().await;
        let old = names(&sim.listing());
        sim.mutate(
            7,
            &MutationPlan {
                rename: 3000,
                ..MutationPlan::default()
            },
        );
        let new = names(&sim.listing());
        let renamed: Vec<&String> = old.keys().filter(|id| old[*id] != new[*id]).collect();
        assert!(renamed.len() > 2500, "{} renamed", renamed.len());
        let reader = Store::open_read_only(&db.url.parse().unwrap())
            .await
            .unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let exports = {
            let done = done.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut out = Vec::new();
                    closebot_sync::cli::export(&reader, chrono::Utc::now(), &mut out)
                        .await
                        .unwrap();
                    let listing: Value = serde_json::from_slice(&out).unwrap();
                    seen.push(names(listing["sources"].as_array().unwrap()));
                }
                seen
            })
        };
        let report = m
            .sync_with(SyncOptions {
                trigger: "test".into(),
                ..SyncOptions::default()
            })
            .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(report.counts.updated as usize, renamed.len());
        let seen = exports.await.unwrap();
        assert!(
            seen.len() >= 2,
            "{}: only {} exports",
            db.backend,
            seen.len()
        );
        for (i, got) in seen.iter().enumerate() {
            let as_old = renamed.iter().filter(|id| got[**id] == old[**id]).count();
            let as_new = renamed.iter().filter(|id| got[**id] == new[**id]).count();
            assert!(
                as_old == renamed.len() || as_new == renamed.len(),
                "{}: export {i} of {} mixes both states: {as_old} old names, {as_new} new",
                db.backend,
                seen.len()
            );
        }
    }
}
