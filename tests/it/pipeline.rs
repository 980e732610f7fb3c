//! The fast path gives the same database as the plain one: pages fetched four at a time
//! and applied in whatever order they arrive, with writes batched across pages, against
//! one page at a time; and a dry run predicts a real run without writing anything.

use closebot_sim::{Faults, MutationPlan};
use closebot_sync::store::runs::RunStatus;
use closebot_sync::sync::SyncOptions;
use serde_json::{Map, Value};

use crate::common::rebuild::assert_mirrors;
use crate::common::{databases, settings, sim_options, simulator, snapshot, Mirror};

/// Every table, without what depends on when a run ran or in which order pages arrived
/// (time stamps, the change rows' serial ids).
async fn comparable(m: &Mirror) -> Vec<(String, Vec<Value>)> {
    snapshot(m)
        .await
        .into_iter()
        .map(|(table, rows)| {
            let mut rows: Vec<Value> = rows
                .into_iter()
                .map(|row| {
                    let kept: Map<String, Value> = row
                        .into_iter()
                        .filter(|(column, _)| {
                            !(column.ends_with("_at")
                                || column.starts_with("valid_")
                                // Ids drawn from a sequence follow the order of the writes.
                                || matches!(column.as_str(), "change_id" | "history_id" | "reject_id"))
                        })
                        .collect();
                    Value::Object(kept)
                })
                .collect();
            rows.sort_by_key(|r| r.to_string());
            (table, rows)
        })
        .collect()
}

const CHANGES: MutationPlan = MutationPlan {
    rename: 40,
    flip_wallet: 30,
    add_tag: 30,
    rotate_token: 20,
    reorder: 20,
    delete: 15,
    add: 25,
};

#[tokio::test]
async fn the_concurrent_walk_and_the_batched_apply_give_the_database_of_a_serial_one() {
    // 1,500 sources: 15 pages, and more child rows than one batch of writes holds.
    let (sim, server) = simulator(sim_options(1_500, 21)).await;
    let serial_dbs = databases().await;
    let concurrent_dbs = databases().await;
    let mut mirrors = Vec::new();
    for (a, b) in serial_dbs.iter().zip(&concurrent_dbs) {
        let serial = Mirror::new(settings(
            &server.base_url(),
            a,
            &[("CLOSEBOT_SYNC_API__CONCURRENCY", "1")],
        ))
        .await;
        let concurrent = Mirror::new(settings(
            &server.base_url(),
            b,
            &[("CLOSEBOT_SYNC_API__CONCURRENCY", "4")],
        ))
        .await;
        mirrors.push((serial, concurrent));
    }
    for round in 0..2 {
        if round == 1 {
            sim.mutate(5, &CHANGES);
        }
        for (serial, concurrent) in &mirrors {
            let s = serial.sync().await;
            let c = concurrent.sync().await;
            assert_eq!(s.status, RunStatus::Succeeded, "{:?}", s.error);
            assert_eq!(c.status, RunStatus::Succeeded, "{:?}", c.error);
            assert_eq!(s.counts, c.counts, "{}", serial.backend());
            assert_eq!(s.rows_written, c.rows_written, "{}", serial.backend());
            assert_mirrors(concurrent, &sim.listing()).await;
            let (a, b) = (comparable(serial).await, comparable(concurrent).await);
            for ((table, x), (_, y)) in a.iter().zip(&b) {
                assert!(x == y, "{}: table {table} differs", serial.backend());
            }
        }
    }
    let (_, c) = &mirrors[0];
    assert!(
        c.count("SELECT COUNT(*) FROM source_changes WHERE run_id = 2")
            .await
            > 100,
        "the second round changed sources"
    );
}

#[tokio::test]
async fn sources_listed_twice_while_their_writes_wait_in_a_batch_are_applied_once() {
    // An unstable order lists some sources on two pages of one walk; the second copy must
    // see what the first one wrote, though the write had not gone out yet.
    let (sim, server) = simulator(sim_options(900, 4)).await;
    for db in databases().await {
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.mutate(8, &CHANGES);
        sim.set_faults(Faults {
            unstable_order: true,
            ..Faults::default()
        });
        let r = m.sync().await;
        assert_ne!(
            r.status,
            RunStatus::Failed,
            "{}: {:?}",
            m.backend(),
            r.error
        );
        assert!(
            r.counts.walks > 1,
            "the shuffled pages made the first walk incomplete"
        );
        sim.set_faults(Faults::default());
        let r = m.sync().await;
        assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
        assert_mirrors(&m, &sim.listing()).await;
        let duplicates = m
            .count(
                "SELECT COUNT(*) FROM (SELECT source_id FROM source_versions WHERE valid_to IS NULL \
                 GROUP BY source_id HAVING COUNT(*) > 1) d",
            )
            .await;
        assert_eq!(
            duplicates,
            0,
            "{}: a source has two open versions",
            m.backend()
        );
    }
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_names_what_the_real_run_then_does() {
    let (sim, server) = simulator(sim_options(600, 9)).await;
    for db in databases().await {
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.mutate(3, &CHANGES);
        let before = snapshot(&m).await;
        let runs = m.count("SELECT COUNT(*) FROM sync_runs").await;
        let dry = m
            .sync_with(SyncOptions {
                trigger: "test".into(),
                dry_run: true,
                ..SyncOptions::default()
            })
            .await;
        assert_eq!(dry.run_id, None);
        assert_eq!(dry.rows_written, 0);
        assert!(
            snapshot(&m).await == before,
            "{}: the dry run wrote",
            m.backend()
        );
        assert_eq!(m.count("SELECT COUNT(*) FROM sync_runs").await, runs);

        let real = m.sync().await;
        assert_eq!(real.status, RunStatus::Succeeded, "{:?}", real.error);
        let (d, r) = (&dry.counts, &real.counts);
        assert_eq!(
            (d.created, d.updated, d.unchanged, d.deleted, d.restored),
            (r.created, r.updated, r.unchanged, r.deleted, r.restored),
            "{}",
            m.backend()
        );
        assert_eq!((r.created, r.deleted), (25, 15));

        // The preview names the first sources by id of what the real run recorded.
        let preview = dry.preview.clone().expect("a dry run has a preview");
        let recorded = |kind: &str| {
            format!(
                "SELECT DISTINCT source_id FROM source_changes WHERE run_id = {} AND change_type = '{kind}' \
                 ORDER BY source_id",
                real.run_id.unwrap()
            )
        };
        for (kind, named) in [("created", &preview.created), ("deleted", &preview.deleted)] {
            let ids: Vec<String> = m
                .dump(&recorded(kind))
                .await
                .iter()
                .map(|row| row["source_id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(named, &ids, "{}: {kind}", m.backend());
        }
        let text = dry.preview_text(10);
        assert!(
            text.contains("would create 25 sources (the first 10 by id): "),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "would mark deleted 15 sources (the first 10 by id): {}",
                preview.deleted[0]
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("would update {} sources", d.updated)),
            "{text}"
        );

        let again = m
            .sync_with(SyncOptions {
                trigger: "test".into(),
                dry_run: true,
                ..SyncOptions::default()
            })
            .await;
        assert_eq!(again.preview_text(10), "nothing would change\n");
    }
}

#[tokio::test]
async fn a_new_sqlite_file_gets_16_kib_pages_and_an_older_one_keeps_its_own_and_syncs() {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    use sqlx::{ConnectOptions, Connection};

    let (sim, server) = simulator(sim_options(250, 5)).await;
    let fresh = crate::common::sqlite();
    let older = crate::common::sqlite();
    // An older closebot-sync created its file with SQLite's default 4 KiB pages.
    let path = older.dir.path().join("mirror.db");
    let mut c = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .page_size(4096)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE older_tool_was_here (x INTEGER)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();

    for (db, pages) in [(&fresh, 16_384), (&older, 4_096)] {
        let m = Mirror::new(settings(&server.base_url(), db, &[])).await;
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
        let size = m.dump("SELECT page_size FROM pragma_page_size()").await;
        assert_eq!(size[0]["page_size"], Value::from(pages), "{}", db.url);
        assert_mirrors(&m, &sim.listing()).await;
    }
}

/// Turning a file to WAL needs it to itself, and SQLite refuses at once (its busy handler is
/// not asked) while another connection is writing to it: the mirror waits for the writer
/// instead of failing with "database is locked" (two first syncs started together met this).
#[tokio::test]
async fn opening_a_file_another_connection_is_writing_waits_for_it() {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::ConnectOptions;

    let db = crate::common::sqlite();
    let path = db.dir.path().join("mirror.db");
    // A file still in SQLite's default rollback-journal mode, as another process creating
    // it leaves it for a moment, with a write transaction open.
    let mut writer = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE t (x INTEGER)",
        "BEGIN IMMEDIATE",
        "INSERT INTO t VALUES (1)",
    ] {
        sqlx::query(sql).execute(&mut writer).await.unwrap();
    }
    let url = db.url.clone();
    let open = tokio::spawn(async move {
        closebot_sync::store::Store::connect(&url.parse().unwrap(), 2).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(!open.is_finished(), "the open did not wait for the writer");
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    let store = open.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    let mode = crate::common::dump(&store, "SELECT journal_mode FROM pragma_journal_mode()").await;
    assert_eq!(mode[0]["journal_mode"], Value::from("wal"));
}
