//! Records the API may send that no column can hold as they are, on both backends: each is
//! stored by a documented rule or quarantined, and never stops the mirror of the others.

use closebot_sim::SimOptions;
use closebot_sync::store::runs::RunStatus;
use closebot_sync::sync::SyncOptions;
use serde_json::{json, Value};

use crate::common::{databases, settings, sim_options, simulator, snapshot, Mirror};

async fn exported(m: &Mirror) -> Vec<Value> {
    crate::common::export(m, None).await["sources"]
        .as_array()
        .unwrap()
        .clone()
}

fn id_at(l: &[Value], i: usize) -> String {
    l[i]["sourceId"].as_str().unwrap().to_string()
}

async fn open_rejects(m: &Mirror) -> Vec<(String, String)> {
    m.dump("SELECT source_id, field_path FROM source_rejects WHERE resolved_at IS NULL ORDER BY source_id")
        .await
        .into_iter()
        .map(|r| {
            (
                r["source_id"].as_str().unwrap().to_string(),
                r["field_path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_nul_in_any_string_is_stored_by_one_rule_and_exported_as_sent() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(40, 71)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        let mut ids = Vec::new();
        sim.edit(|l| {
            ids = (0..6).map(|i| id_at(l, i)).collect();
            l[0]["name"] = json!("Acme\u{0}Dental");
            l[1]["address"] = json!("\u{0}");
            l[2]["bots"] = json!([{"id": "b-nul", "botName": "Bot\u{0}1", "enabled": true,
                "tags": [{"id": "t1", "name": "hot\u{0}lead", "approveDeny": true}]}]);
            l[3]["brandNewField"] = json!({"k\u{0}ey": ["x\u{0}y", "\u{E000}kept"]});
            l[4]["sourceId"] = json!(format!("{}\u{0}", ids[4]));
        });
        let sent = sim.listing();
        let report = m.sync().await;
        assert_eq!(
            report.status,
            RunStatus::Succeeded,
            "{} {:?}",
            m.backend(),
            report.error
        );
        assert_eq!(report.counts.created, 40, "{}", m.backend());

        // Typed columns: U+FFFD for the NUL, the same on both backends.
        let name = m
            .dump(&format!(
                "SELECT name FROM sources WHERE source_id = '{}'",
                ids[0]
            ))
            .await;
        assert_eq!(
            name[0]["name"],
            json!("Acme\u{FFFD}Dental"),
            "{}",
            m.backend()
        );
        let bot = m
            .dump("SELECT bot_name FROM source_bots WHERE bot_id = 'b-nul'")
            .await;
        assert_eq!(bot[0]["bot_name"], json!("Bot\u{FFFD}1"));
        let tag = m
            .dump("SELECT name FROM source_bot_tags WHERE tag_id = 't1'")
            .await;
        assert_eq!(tag[0]["name"], json!("hot\u{FFFD}lead"));
        let nul_id = format!("{}\u{FFFD}", ids[4]);
        assert_eq!(
            m.count(&format!(
                "SELECT COUNT(*) AS n FROM sources WHERE source_id = '{nul_id}'"
            ))
            .await,
            1,
            "{}",
            m.backend()
        );

        // The export gives every string back as the API sent it.
        let exported = exported(&m).await;
        let by_id = |id: &str| {
            exported
                .iter()
                .find(|r| r["sourceId"] == json!(id))
                .unwrap_or_else(|| panic!("{id} exported"))
                .clone()
        };
        assert_eq!(by_id(&ids[0])["name"], json!("Acme\u{0}Dental"));
        assert_eq!(by_id(&ids[1])["address"], json!("\u{0}"));
        assert_eq!(
            by_id(&ids[2])["bots"][0]["tags"][0]["name"],
            json!("hot\u{0}lead")
        );
        assert_eq!(
            by_id(&ids[3])["brandNewField"],
            json!({"k\u{0}ey": ["x\u{0}y", "\u{E000}kept"]})
        );
        // The id too: the table keys the source by U+FFFD, the export gives the NUL back.
        let sent_id = format!("{}\u{0}", ids[4]);
        let with_nul = sent
            .iter()
            .find(|r| r["sourceId"] == json!(sent_id))
            .unwrap();
        let mut expected = with_nul.clone();
        let map = expected.as_object_mut().unwrap();
        map.shift_remove("key");
        map.shift_remove("accessToken");
        assert_eq!(by_id(&sent_id), expected);

        // The next run over the same listing changes nothing, and a new source arrives.
        sim.edit(|l| {
            let mut fresh = l[10].clone();
            fresh["sourceId"] = json!("zz-new-after-nul");
            l.push(fresh);
        });
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
        assert_eq!(
            (
                report.counts.created,
                report.counts.updated,
                report.counts.deleted
            ),
            (1, 0, 0),
            "{}",
            m.backend()
        );
    }
}

#[tokio::test]
async fn a_malformed_record_is_quarantined_while_the_others_apply_and_is_taken_once_fixed() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(60, 73)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let stored_before = m
            .dump("SELECT source_id, content_hash, version, deleted_at FROM sources ORDER BY source_id")
            .await;
        let mut bad = Vec::new();
        sim.edit(|l| {
            bad = vec![id_at(l, 3), id_at(l, 9), id_at(l, 20)];
            l[3]["wallet"] = json!({"topUpAmount": 12.5});
            l[9]["doNotRespondWindows"] = json!([{"start": "soon", "end": null}]);
            l[20]["connected"] = json!("yes");
            l[30]["name"] = json!("renamed while others are bad");
            let mut fresh = l[0].clone();
            fresh["sourceId"] = json!("zz-created-beside-bad-records");
            l.push(fresh);
        });
        let dry = m
            .sync_with(SyncOptions {
                dry_run: true,
                ..SyncOptions::default()
            })
            .await;
        let report = m.sync().await;
        for r in [&dry, &report] {
            assert_eq!(
                r.status,
                RunStatus::Partial,
                "{}: {:?}",
                m.backend(),
                r.error
            );
            assert_eq!(
                (
                    r.counts.rejected,
                    r.counts.created,
                    r.counts.updated,
                    r.counts.deleted
                ),
                (3, 1, 1, 0),
                "{}",
                m.backend()
            );
            let notes = r.notes.clone().unwrap();
            assert!(
                notes.contains("3 sources quarantined")
                    && notes.contains("wallet.topUpAmount")
                    && notes.contains("doNotRespondWindows[0].start")
                    && notes.contains("connected"),
                "{notes}"
            );
        }
        let mut expected: Vec<(String, String)> = bad
            .iter()
            .cloned()
            .zip([
                "wallet.topUpAmount",
                "doNotRespondWindows[0].start",
                "connected",
            ])
            .map(|(id, f)| (id, f.to_string()))
            .collect();
        expected.sort();
        assert_eq!(open_rejects(&m).await, expected, "{}", m.backend());
        // The quarantined sources keep their stored state: not updated, not deleted.
        let stored_now = m
            .dump("SELECT source_id, content_hash, version, deleted_at FROM sources ORDER BY source_id")
            .await;
        for id in &bad {
            let find = |rows: &Vec<serde_json::Map<String, Value>>| {
                rows.iter().find(|r| r["source_id"] == json!(id)).cloned()
            };
            assert_eq!(find(&stored_now), find(&stored_before), "{id}");
        }
        let run = report.run_id.unwrap();
        // The run's row says how many, and so does the view dashboards read.
        let recorded = m
            .dump(&format!(
                "SELECT r.sources_rejected, l.sources_rejected AS logged \
                 FROM sync_runs r JOIN sync_run_log l ON l.run_id = r.run_id WHERE r.run_id = {run}"
            ))
            .await;
        assert_eq!(
            (&recorded[0]["sources_rejected"], &recorded[0]["logged"]),
            (&json!(3), &json!(3))
        );

        // `status` lists them.
        let mut c = m.store.acquire().await.unwrap();
        let (rows, total) = closebot_sync::store::runs::open_rejects(&mut c.conn(), 2)
            .await
            .unwrap();
        drop(c);
        let shown = closebot_sync::cli::rejects_text(&rows, total);
        assert!(
            shown.starts_with("quarantined: 3 sources") && shown.contains("and 1 more"),
            "{shown}"
        );
        assert_eq!(rows.len(), 2);
        assert!(shown.contains(&rows[0].source_id) && shown.contains(&rows[0].field_path));

        // A second run over the same bad records keeps one open reject each.
        let again = m.sync().await;
        assert_eq!(again.counts.rejected, 3);
        assert_eq!(
            m.count("SELECT COUNT(*) AS n FROM source_rejects").await,
            3,
            "{}",
            m.backend()
        );

        // The vendor fixes two records: they are taken, and their rejects closed.
        sim.edit(|l| {
            for r in l.iter_mut() {
                if r["sourceId"] == json!(bad[0]) {
                    r["wallet"] = json!({"topUpAmount": 12});
                }
                if r["sourceId"] == json!(bad[1]) {
                    r["doNotRespondWindows"] = json!([]);
                }
            }
        });
        let fixed = m.sync().await;
        assert_eq!(fixed.status, RunStatus::Partial);
        assert_eq!((fixed.counts.rejected, fixed.counts.updated), (1, 2));
        assert_eq!(
            open_rejects(&m).await,
            vec![(bad[2].clone(), "connected".to_string())]
        );
        let closed = m
            .dump("SELECT source_id, resolved_run_id FROM source_rejects WHERE resolved_at IS NOT NULL ORDER BY source_id")
            .await;
        assert_eq!(closed.len(), 2);
        assert!(closed
            .iter()
            .all(|r| r["resolved_run_id"] == json!(fixed.run_id.unwrap())));
    }
}

/// A record nested deeper than a JSON reader goes (here in a field the mirror does not
/// know) would fail its whole page, and so every run while the API sends it.
#[tokio::test]
async fn a_record_nested_too_deep_to_read_is_quarantined_and_the_page_is_mirrored() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(40, 83)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let before = m
            .dump("SELECT source_id, content_hash FROM sources ORDER BY source_id")
            .await;
        let mut deep = json!("bottom");
        for _ in 0..300 {
            deep = json!([deep]);
        }
        let mut bad = String::new();
        sim.edit(|l| {
            bad = id_at(l, 7);
            l[7]["futureField"] = deep.clone();
            l[8]["name"] = json!("renamed beside a record too deep");
        });
        let report = m.sync().await;
        assert_eq!(
            report.status,
            RunStatus::Partial,
            "{}: {:?}",
            m.backend(),
            report.error
        );
        assert_eq!((report.counts.rejected, report.counts.updated), (1, 1));
        assert_eq!(
            open_rejects(&m).await,
            [(bad.clone(), "(the record)".to_string())]
        );
        let after = m
            .dump("SELECT source_id, content_hash FROM sources ORDER BY source_id")
            .await;
        let row = |rows: &[serde_json::Map<String, Value>]| {
            rows.iter()
                .find(|r| r["source_id"] == bad.as_str())
                .cloned()
        };
        assert_eq!(
            row(&after),
            row(&before),
            "the quarantined source kept its state"
        );
        // Once the API sends it readable again, the reject is closed.
        sim.edit(|l| {
            l[7].as_object_mut().unwrap().shift_remove("futureField");
        });
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        assert!(open_rejects(&m).await.is_empty());
    }
}

#[tokio::test]
async fn ids_too_long_to_index_are_quarantined_not_fatal() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(20, 79)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        let long = "L".repeat(3_000);
        let mut bot_owner = String::new();
        sim.edit(|l| {
            l[0]["sourceId"] = json!(long.clone());
            bot_owner = id_at(l, 5);
            l[5]["bots"] = json!([{"id": "B".repeat(3_000), "botName": "long"}]);
        });
        let report = m.sync().await;
        assert_eq!(
            report.status,
            RunStatus::Partial,
            "{}: {:?}",
            m.backend(),
            report.error
        );
        assert_eq!((report.counts.rejected, report.counts.created), (2, 18));
        let rejects = open_rejects(&m).await;
        assert_eq!(rejects.len(), 2, "{rejects:?}");
        assert!(rejects.contains(&(bot_owner.clone(), "bots[0].id".to_string())));
        let long_key = rejects.iter().find(|(_, f)| f == "sourceId").unwrap();
        assert!(long_key.0.starts_with("LLLL") && long_key.0.contains("3000 bytes, sha256:"));
        assert!(long_key.0.len() < 300);
    }
}

#[tokio::test]
async fn one_id_listed_twice_with_different_content_is_decided_the_same_whatever_the_order() {
    let mut kept = Vec::new();
    for swap in [false, true] {
        for db in databases().await {
            let (sim, server) = simulator(sim_options(10, 83)).await;
            let mut dup = String::new();
            sim.edit(|l| {
                dup = id_at(l, 4);
                let mut other = l[4].clone();
                other["name"] = json!("the other copy");
                if swap {
                    l.insert(4, other);
                } else {
                    l.insert(5, other);
                }
            });
            // The copies sort next to each other: a page of 5 puts them on different pages.
            let m = Mirror::new(settings(
                &server.base_url(),
                &db,
                &[("CLOSEBOT_SYNC_API__PAGE_SIZE", "5")],
            ))
            .await;
            let first = m.sync().await;
            assert_eq!(first.counts.created, 10, "{:?}", first.error);
            let notes = first.notes.clone().unwrap();
            assert!(
                notes.contains(&dup) && notes.contains("more than once"),
                "{notes}"
            );
            let stored = m
                .dump(&format!(
                    "SELECT content_hash, name FROM sources WHERE source_id = '{dup}'"
                ))
                .await;
            kept.push(stored[0]["content_hash"].clone());

            let before = snapshot(&m).await;
            for _ in 0..2 {
                let again = m.sync().await;
                assert_eq!(
                    (again.counts.created, again.counts.updated),
                    (0, 0),
                    "{}: {:?}",
                    m.backend(),
                    again.notes
                );
            }
            assert_eq!(snapshot(&m).await, before, "{}", m.backend());
        }
    }
    assert!(kept.windows(2).all(|w| w[0] == w[1]), "{kept:?}");
    // And it is the copy whose own hash is the smaller: each copy mirrored alone.
    let mut alone = Vec::new();
    for other in [false, true] {
        let (sim, server) = simulator(sim_options(10, 83)).await;
        let mut dup = String::new();
        sim.edit(|l| {
            dup = id_at(l, 4);
            if other {
                l[4]["name"] = json!("the other copy");
            }
        });
        let db = crate::common::sqlite();
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let stored = m
            .dump(&format!(
                "SELECT content_hash FROM sources WHERE source_id = '{dup}'"
            ))
            .await;
        alone.push(stored[0]["content_hash"].as_str().unwrap().to_string());
    }
    assert_ne!(alone[0], alone[1]);
    let smallest = alone.iter().min().unwrap();
    assert_eq!(kept[0].as_str(), Some(smallest.as_str()), "{alone:?}");
}

#[tokio::test]
async fn credentials_at_any_depth_are_fingerprinted_and_never_exported() {
    for db in databases().await {
        let (sim, server) = simulator(SimOptions {
            sources: 5,
            seed: 89,
            ..SimOptions::default()
        })
        .await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        sim.edit(|l| {
            l[0]["crm"] =
                json!({"oauth": {"refreshToken": "RT-SECRET-1", "Password": "PW-SECRET-2"}});
            l[1]["bots"][0]["apiKey"] = json!("AK-SECRET-3");
        });
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.edit(|l| l[0]["crm"]["oauth"]["refreshToken"] = json!("RT-SECRET-4"));
        let report = m.sync().await;
        assert_eq!(
            report.counts.updated, 1,
            "a rotated nested token is a change"
        );
        for (table, rows) in snapshot(&m).await {
            let text = serde_json::to_string(&rows).unwrap();
            for secret in ["RT-SECRET-1", "PW-SECRET-2", "AK-SECRET-3", "RT-SECRET-4"] {
                assert!(
                    !text.contains(secret),
                    "{secret} in {table} ({})",
                    m.backend()
                );
            }
        }
        let changes = m
            .dump("SELECT field_path FROM source_changes WHERE change_type = 'updated'")
            .await;
        assert_eq!(changes[0]["field_path"], json!("crm.oauth.refreshToken"));
        let exported = serde_json::to_string(&exported(&m).await).unwrap();
        assert!(!exported.contains("sha256:") && !exported.contains("refreshToken"));
        assert!(exported.contains("\"oauth\":{}"), "{exported}");
    }
}

#[tokio::test]
async fn one_renamed_bot_among_forty_thousand_is_one_change() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(3, 97)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        let bots = |renamed: bool| {
            (0..40_000)
                .map(|i| {
                    let name = if renamed && i == 31_337 {
                        "renamed".to_string()
                    } else {
                        format!("bot {i}")
                    };
                    json!({"id": format!("bot-{i}"), "botName": name, "enabled": true})
                })
                .collect::<Vec<Value>>()
        };
        sim.edit(|l| l[1]["bots"] = json!(bots(false)));
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.edit(|l| l[1]["bots"] = json!(bots(true)));
        let report = m.sync().await;
        assert_eq!(report.counts.updated, 1);
        let changes = m
            .dump("SELECT field_path, new_value FROM source_changes WHERE change_type = 'updated'")
            .await;
        assert_eq!(changes.len(), 1, "{}", m.backend());
        assert_eq!(
            changes[0]["field_path"],
            json!("bots[id=bot-31337].botName")
        );
    }
}
