//! History for audits: field changes, versions, soft deletes, export as of a time, the
//! documented queries.

use std::collections::{BTreeMap, BTreeSet};

use closebot_sim::MutationPlan;
use closebot_sync::store::runs::RunStatus;
use serde_json::Value;

use crate::common::rebuild::assert_mirrors;
use crate::common::{databases, export, settings, sim_options, simulator, Mirror};

/// The listing as export should give it back: sorted by id, credentials left out.
fn without_credentials(listing: &[Value]) -> Vec<Value> {
    let mut v: Vec<Value> = listing
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let map = r.as_object_mut().unwrap();
            map.remove("key");
            map.remove("accessToken");
            r
        })
        .collect();
    v.sort_by(|a, b| a["sourceId"].as_str().cmp(&b["sourceId"].as_str()));
    v
}

#[tokio::test]
async fn mutations_give_exactly_the_right_changes_versions_and_deletions() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(120, 21)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let plan = MutationPlan {
            rename: 4,
            flip_wallet: 4,
            add_tag: 4,
            rotate_token: 4,
            delete: 4,
            add: 4,
            ..MutationPlan::default()
        };
        let before = sim.listing();
        let r = sim.mutate(99, &plan);
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
        assert_eq!(
            (
                report.counts.created,
                report.counts.updated,
                report.counts.deleted
            ),
            (4, 16, 4)
        );
        assert_mirrors(&m, &sim.listing()).await;

        let rows = m
            .dump("SELECT source_id, change_type, field_path FROM source_changes WHERE run_id = 2")
            .await;
        let mut got: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for row in rows {
            got.entry(row["source_id"].as_str().unwrap().into())
                .or_default()
                .push((
                    row["change_type"].as_str().unwrap().into(),
                    row["field_path"].as_str().unwrap_or("").into(),
                ));
        }
        let one = |id: &String| got.get(id).cloned().unwrap_or_default();
        for id in &r.renamed {
            assert_eq!(
                one(id),
                vec![("updated".into(), "name".into())],
                "{}: renamed {id}",
                m.backend()
            );
        }
        for id in &r.wallet_flipped {
            let c = one(id);
            assert!(
                c.len() == 1 && (c[0].1 == "wallet.autoRefill" || c[0].1 == "wallet"),
                "{id}: {c:?}"
            );
        }
        for id in &r.tag_added {
            let c = one(id);
            assert!(
                c.len() == 1 && c[0].1.starts_with("bots[id=") && c[0].1.contains("].tags"),
                "{id}: {c:?}"
            );
        }
        for id in &r.token_rotated {
            assert_eq!(
                one(id),
                vec![("updated".into(), "accessToken".into())],
                "{id}"
            );
        }
        for id in &r.deleted {
            assert_eq!(one(id), vec![("deleted".into(), "".into())], "{id}");
        }
        for id in &r.added {
            assert_eq!(one(id), vec![("created".into(), "".into())], "{id}");
        }
        let touched: BTreeSet<&String> = r
            .renamed
            .iter()
            .chain(&r.wallet_flipped)
            .chain(&r.tag_added)
            .chain(&r.token_rotated)
            .chain(&r.deleted)
            .chain(&r.added)
            .collect();
        assert_eq!(
            got.keys().collect::<BTreeSet<_>>(),
            touched,
            "{}: no other source has changes",
            m.backend()
        );

        let versions = m.dump("SELECT source_id, COUNT(*) AS n, SUM(CASE WHEN valid_to IS NULL THEN 1 ELSE 0 END) AS open FROM source_versions GROUP BY source_id").await;
        for v in versions {
            let id = v["source_id"].as_str().unwrap().to_string();
            let (n, open) = (v["n"].as_i64().unwrap(), v["open"].as_i64().unwrap());
            let updated = r.renamed.contains(&id)
                || r.wallet_flipped.contains(&id)
                || r.tag_added.contains(&id)
                || r.token_rotated.contains(&id);
            let expected = if updated {
                (2, 1)
            } else if r.deleted.contains(&id) {
                (1, 0)
            } else {
                (1, 1)
            };
            assert_eq!((n, open), expected, "{}: versions of {id}", m.backend());
        }
        let deleted: BTreeSet<String> = m
            .dump("SELECT source_id FROM sources WHERE deleted_at IS NOT NULL")
            .await
            .into_iter()
            .map(|r| r["source_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(deleted, r.deleted.iter().cloned().collect());
        // The deleted sources keep their last child rows for inspection.
        let kept = m
            .count(&format!(
                "SELECT COUNT(*) AS n FROM source_bots WHERE source_id IN ('{}')",
                r.deleted.join("','")
            ))
            .await;
        let had: usize = before
            .iter()
            .filter(|s| r.deleted.iter().any(|d| s["sourceId"] == d.as_str()))
            .map(|s| s["bots"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(
            kept as usize,
            had,
            "{}: deleted sources keep their bots",
            m.backend()
        );
    }
}

#[tokio::test]
async fn a_reorder_of_bots_or_tags_alone_records_no_change() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(100, 23)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let r = sim.mutate(
            5,
            &MutationPlan {
                reorder: 6,
                ..MutationPlan::default()
            },
        );
        assert_eq!(
            r.reordered.len(),
            6,
            "the simulator found sources to reorder"
        );
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Succeeded);
        let changes = m
            .dump("SELECT source_id, field_path FROM source_changes WHERE run_id = 2")
            .await;
        assert!(changes.is_empty(), "{}: {changes:?}", m.backend());
        assert_eq!(
            m.count("SELECT COUNT(*) AS n FROM source_versions WHERE version > 1")
                .await,
            0
        );
        // The rows follow the new order, and export gives the listing as now served.
        assert_mirrors(&m, &sim.listing()).await;
        assert_eq!(
            export(&m, None).await["sources"],
            Value::Array(without_credentials(&sim.listing()))
        );
    }
}

#[tokio::test]
async fn export_as_of_a_time_between_two_runs_gives_the_earlier_listing() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(90, 29)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let first = sim.listing();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let between = chrono::Utc::now();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        sim.mutate(
            3,
            &MutationPlan {
                rename: 5,
                flip_wallet: 5,
                delete: 5,
                add: 5,
                ..MutationPlan::default()
            },
        );
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let earlier = export(&m, Some(between)).await;
        assert_eq!(
            earlier["sources"],
            Value::Array(without_credentials(&first)),
            "{}",
            m.backend()
        );
        let now = export(&m, None).await;
        assert_eq!(
            now["sources"],
            Value::Array(without_credentials(&sim.listing()))
        );
        assert_ne!(earlier["sources"], now["sources"]);
        // Before the first run the mirror knows nothing: an error, not an empty listing.
        let mut out = Vec::new();
        let before_any =
            closebot_sync::cli::export(&m.store, between - chrono::Duration::days(1), &mut out)
                .await
                .unwrap_err()
                .to_string();
        assert!(
            before_any.contains("before the mirror's first completed run (run 1"),
            "{before_any}"
        );
        assert!(out.is_empty());
    }
}

#[tokio::test]
async fn a_deleted_then_restored_source_has_its_whole_story() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(30, 31)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let mut gone = None;
        sim.edit(|l| gone = Some(l.remove(3)));
        let gone = gone.unwrap();
        let id = gone["sourceId"].as_str().unwrap().to_string();
        let r2 = m.sync().await;
        assert_eq!((r2.status, r2.counts.deleted), (RunStatus::Succeeded, 1));
        sim.edit(|l| {
            l.push(gone.clone());
            l.sort_by(|a, b| a["sourceId"].as_str().cmp(&b["sourceId"].as_str()));
        });
        let r3 = m.sync().await;
        assert_eq!((r3.status, r3.counts.restored), (RunStatus::Succeeded, 1));
        let changes = m.dump(&format!("SELECT run_id, change_type FROM source_changes WHERE source_id = '{id}' ORDER BY change_id")).await;
        let kinds: Vec<(i64, &str)> = changes
            .iter()
            .map(|c| {
                (
                    c["run_id"].as_i64().unwrap(),
                    c["change_type"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![(1, "created"), (2, "deleted"), (3, "restored")],
            "{}",
            m.backend()
        );
        let versions = m.dump(&format!("SELECT version, opened_run_id, closed_run_id FROM source_versions WHERE source_id = '{id}' ORDER BY version")).await;
        assert_eq!(versions.len(), 2);
        assert_eq!(
            (
                versions[0]["opened_run_id"].as_i64(),
                versions[0]["closed_run_id"].as_i64()
            ),
            (Some(1), Some(2))
        );
        assert_eq!(
            (
                versions[1]["opened_run_id"].as_i64(),
                versions[1]["closed_run_id"].as_i64()
            ),
            (Some(3), None)
        );
        let live = m
            .dump(&format!(
                "SELECT deleted_at FROM sources WHERE source_id = '{id}'"
            ))
            .await;
        assert_eq!(live[0]["deleted_at"], Value::Null);
        assert_mirrors(&m, &sim.listing()).await;
    }
}

#[tokio::test]
async fn retention_prunes_old_changes_and_closed_versions_but_keeps_current_ones() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(40, 37)).await;
        let m = Mirror::new(settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_HISTORY__RETAIN_DAYS", "30")],
        ))
        .await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.mutate(
            1,
            &MutationPlan {
                rename: 5,
                ..MutationPlan::default()
            },
        );
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        // Age everything written so far by 40 days.
        let age = match m.store.backend() {
            closebot_sync::store::Backend::Sqlite => [
                "UPDATE source_changes SET changed_at = strftime('%Y-%m-%dT%H:%M:%fZ', changed_at, '-40 days')",
                "UPDATE source_versions SET valid_to = strftime('%Y-%m-%dT%H:%M:%fZ', valid_to, '-40 days') WHERE valid_to IS NOT NULL",
            ],
            closebot_sync::store::Backend::Postgres => [
                "UPDATE source_changes SET changed_at = changed_at - interval '40 days'",
                "UPDATE source_versions SET valid_to = valid_to - interval '40 days' WHERE valid_to IS NOT NULL",
            ],
        };
        for sql in age {
            m.dump(&format!("{sql} RETURNING 1 AS one")).await;
        }
        let (changes, closed) = (
            m.count("SELECT COUNT(*) AS n FROM source_changes").await,
            m.count("SELECT COUNT(*) AS n FROM source_versions WHERE valid_to IS NOT NULL")
                .await,
        );
        assert!(changes >= 45 && closed == 5, "{changes} {closed}");
        sim.mutate(
            2,
            &MutationPlan {
                rename: 1,
                ..MutationPlan::default()
            },
        );
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        assert_eq!(
            m.count("SELECT COUNT(*) AS n FROM source_changes").await,
            1,
            "{}: only the new change is left",
            m.backend()
        );
        assert_eq!(
            m.count("SELECT COUNT(*) AS n FROM source_versions WHERE valid_to IS NOT NULL")
                .await,
            1
        );
        assert_eq!(
            m.count("SELECT COUNT(*) AS n FROM source_versions WHERE valid_to IS NULL")
                .await,
            40
        );
    }
}

/// The queries of one `## ` section of docs/schema.md, with their `### ` title and the
/// backend each is for (None: both).
pub fn documented_queries(section: &str) -> Vec<(String, Option<String>, String)> {
    let doc = include_str!("../../docs/schema.md");
    let mut out = Vec::new();
    let mut title = String::new();
    let mut inside = false;
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(heading) = line.strip_prefix("## ") {
            inside = heading.trim() == section;
        }
        if !inside {
            continue;
        }
        if let Some(t) = line.strip_prefix("### ") {
            title = t.to_string();
        }
        if line.trim() == "```sql" {
            let mut sql = String::new();
            for l in lines.by_ref() {
                if l.trim() == "```" {
                    break;
                }
                sql.push_str(l);
                sql.push('\n');
            }
            let backend = sql
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("-- backend: "))
                .map(|b| b.trim().to_string());
            out.push((title.clone(), backend, sql));
        }
    }
    out
}

#[tokio::test]
async fn every_query_in_the_schema_document_runs_and_finds_rows_on_both_backends() {
    let queries = documented_queries("Example queries");
    assert!(
        queries.len() >= 8,
        "the schema document has too few queries"
    );
    for db in databases().await {
        let (sim, server) = simulator(sim_options(150, 41)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let r = sim.mutate(
            8,
            &MutationPlan {
                rename: 5,
                flip_wallet: 5,
                add_tag: 5,
                rotate_token: 5,
                delete: 5,
                add: 5,
                ..MutationPlan::default()
            },
        );
        // One record the mirror must quarantine, for the query on source_rejects.
        sim.edit(|l| l[7]["wallet"] = serde_json::json!({"topUpAmount": "a lot"}));
        let report = m.sync().await;
        assert_eq!(
            (report.status, report.counts.rejected),
            (RunStatus::Partial, 1),
            "{:?}",
            report.notes
        );
        let backend = match m.store.backend() {
            closebot_sync::store::Backend::Sqlite => "sqlite",
            closebot_sync::store::Backend::Postgres => "postgres",
        };
        let source = &r.wallet_flipped[0];
        let as_of = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let mut ran = 0;
        for (title, only, sql) in &queries {
            if only.as_deref().is_some_and(|b| b != backend) {
                continue;
            }
            let sql = sql
                .replace(":source_id", &format!("'{source}'"))
                .replace(":as_of", &format!("'{as_of}'"));
            let rows = m.dump(&sql).await;
            assert!(
                !rows.is_empty(),
                "{backend}: query \"{title}\" found no rows"
            );
            ran += 1;
        }
        assert!(ran >= 14, "{backend}: ran {ran} queries");
    }
}

/// `history.retain_days`: change rows, closed versions, closed history intervals and
/// resolved rejects older than the cut-off go; what is current stays, however old.
#[tokio::test]
async fn retention_drops_what_closed_before_the_cut_off_and_keeps_what_is_current() {
    const OLD: &str = "2020-01-01T00:00:00.000000Z";
    for db in databases().await {
        let (sim, server) = simulator(sim_options(60, 23)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.mutate(
            5,
            &MutationPlan {
                rename: 4,
                flip_wallet: 6,
                reorder: 6,
                ..MutationPlan::default()
            },
        );
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        // Everything so far happened long ago; one reject was resolved then, one is open.
        let mut c = m.store.acquire().await.unwrap();
        for sql in [
            format!("UPDATE source_changes SET changed_at = '{OLD}'"),
            format!("UPDATE sync_runs SET started_at = '{OLD}', finished_at = '{OLD}'"),
            // Ten days old: within 30 days, so it stays (the cut-off counts days, not hours).
            format!(
                "INSERT INTO source_changes (run_id, source_id, change_type, changed_at) \
                 VALUES (2, 'ten days ago', 'updated', '{}')",
                (chrono::Utc::now() - chrono::Duration::days(10))
                    .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            ),
            format!("UPDATE source_versions SET valid_from = '{OLD}', valid_to = CASE WHEN valid_to IS NULL THEN valid_to ELSE '{OLD}' END"),
            format!("UPDATE source_bot_history SET valid_from = '{OLD}', valid_to = CASE WHEN valid_to IS NULL THEN valid_to ELSE '{OLD}' END"),
            format!("UPDATE source_wallet_history SET valid_from = '{OLD}', valid_to = CASE WHEN valid_to IS NULL THEN valid_to ELSE '{OLD}' END"),
            format!(
                "INSERT INTO source_rejects (source_id, field_path, reason, first_run_id, last_run_id, first_seen_at, \
                 last_seen_at, resolved_run_id, resolved_at) VALUES \
                 ('gone', 'name', 'was bad', 1, 1, '{OLD}', '{OLD}', 2, '{OLD}'), \
                 ('still', 'name', 'is bad', 1, 2, '{OLD}', '{OLD}', NULL, NULL)"
            ),
        ] {
            c.conn().execute(&sql, vec![]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        drop(c);
        let closed =
            |table: &str| format!("SELECT COUNT(*) FROM {table} WHERE valid_to IS NOT NULL");
        let open = |table: &str| format!("SELECT COUNT(*) FROM {table} WHERE valid_to IS NULL");
        let tables = [
            "source_versions",
            "source_bot_history",
            "source_wallet_history",
        ];
        let mut open_before = Vec::new();
        for t in tables {
            assert!(
                m.count(&closed(t)).await > 0,
                "{}: {t} has closed rows to prune",
                m.backend()
            );
            open_before.push(m.count(&open(t)).await);
        }
        assert!(m.count("SELECT COUNT(*) FROM source_changes").await > 0);

        let kept = Mirror::new(settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_HISTORY__RETAIN_DAYS", "30")],
        ))
        .await;
        let renamed = sim.mutate(
            6,
            &MutationPlan {
                rename: 3,
                ..MutationPlan::default()
            },
        );
        assert_eq!(kept.sync().await.status, RunStatus::Succeeded);
        let backend = m.backend();
        // The old rows went; run 3's renames (3 changes, 3 versions it closed) stayed.
        assert_eq!(
            m.count("SELECT COUNT(*) FROM source_changes WHERE run_id < 3 AND source_id <> 'ten days ago'")
                .await,
            0,
            "{backend}"
        );
        assert_eq!(
            m.count("SELECT COUNT(*) FROM source_changes").await,
            4,
            "{backend}: run 3's 3 and the one of ten days ago"
        );
        assert_eq!(m.count(&closed("source_versions")).await, 3, "{backend}");
        for (t, before) in tables.into_iter().zip(open_before) {
            if t != "source_versions" {
                assert_eq!(m.count(&closed(t)).await, 0, "{backend}: {t}");
            }
            assert_eq!(
                m.count(&open(t)).await,
                before,
                "{backend}: {t} kept its open rows"
            );
        }
        let rejects = m.dump("SELECT source_id FROM source_rejects").await;
        assert_eq!(rejects.len(), 1, "{backend}");
        assert_eq!(rejects[0]["source_id"], "still", "{backend}");
        assert_eq!(renamed.renamed.len(), 3);
        assert_mirrors(&m, &sim.listing()).await;
        // The listing of 2021 lost its closed versions: export refuses it rather than give
        // it without them; a time after the cut-off is whole and exported.
        let mut out = Vec::new();
        let pruned =
            closebot_sync::cli::export(&m.store, "2021-01-01T00:00:00Z".parse().unwrap(), &mut out)
                .await
                .unwrap_err()
                .to_string();
        assert!(
            pruned.contains("(history.retain_days)") && pruned.contains("run 3"),
            "{backend}: {pruned}"
        );
        assert!(out.is_empty());
        let after_cut = chrono::Utc::now() - chrono::Duration::days(29);
        assert_eq!(
            export(&m, Some(after_cut)).await["sources"]
                .as_array()
                .map(Vec::len),
            Some(60),
            "{backend}"
        );
    }
}
