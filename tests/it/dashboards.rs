//! Dashboards: the bot and wallet history, parsed respond windows, the views, and every
//! query of the schema document's "Dashboard questions", checked against a history of
//! known changes on both backends.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Timelike;
use closebot_sim::MutationPlan;
use closebot_sync::store::dashboards;
use closebot_sync::store::runs::RunStatus;
use closebot_sync::sync::SyncOptions;
use serde_json::{json, Map, Value};

use crate::common::{databases, settings, sim_options, simulator, Mirror};
use crate::history::documented_queries;

/// The documented dashboard query titled `title`, for this mirror's backend.
fn question(m: &Mirror, title: &str) -> String {
    let backend = match m.store.backend() {
        closebot_sync::store::Backend::Sqlite => "sqlite",
        closebot_sync::store::Backend::Postgres => "postgres",
    };
    documented_queries("Dashboard questions")
        .into_iter()
        .find(|(t, only, _)| t == title && only.as_deref().is_none_or(|b| b == backend))
        .unwrap_or_else(|| panic!("docs/schema.md has no dashboard question \"{title}\""))
        .2
}

fn s(row: &Map<String, Value>, column: &str) -> String {
    match &row[column] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bots(record: &Value) -> Vec<Value> {
    record["bots"].as_array().cloned().unwrap_or_default()
}

/// A source whose bots all have distinct ids and one of them is enabled.
fn plain_bots(record: &Value) -> bool {
    let b = bots(record);
    let ids: BTreeSet<&str> = b.iter().filter_map(|x| x["id"].as_str()).collect();
    !b.is_empty() && ids.len() == b.len() && b.iter().any(|x| x["enabled"] == json!(true))
}

/// The day name and `hh:mm:ss` of `now + offset_secs`, UTC.
fn at(now: chrono::DateTime<chrono::Utc>, offset_secs: i64) -> (String, String) {
    let t = now + chrono::Duration::seconds(offset_secs);
    (
        t.format("%A").to_string(),
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    )
}

fn window(now: chrono::DateTime<chrono::Utc>, offset_secs: i64, duration: &str) -> Value {
    let (day, start) = at(now, offset_secs);
    json!({"dayOfWeekUtc": day, "startTimeUtc": start, "duration": duration})
}

fn new_bot(enabled: bool, channels: &[&str]) -> Value {
    json!({"id": "bot-dash-new", "botName": "Dash Bot", "personaNameOverride": null,
           "enabled": enabled, "channels": channels, "tags": []})
}

fn edit_source(records: &mut [Value], id: &str, f: impl FnOnce(&mut Value)) {
    f(records
        .iter_mut()
        .find(|r| r["sourceId"] == json!(id))
        .expect("the source is listed"));
}

/// Both history tables, rows sorted, without their ids (which a rebuild renumbers).
async fn history_rows(m: &Mirror) -> Vec<Vec<Map<String, Value>>> {
    let mut out = Vec::new();
    for t in ["source_bot_history", "source_wallet_history"] {
        let mut rows = m.dump(&format!("SELECT * FROM {t}")).await;
        for r in &mut rows {
            r.remove("history_id");
        }
        rows.sort_by_key(|r| Value::Object(r.clone()).to_string());
        out.push(rows);
    }
    out
}

#[tokio::test]
async fn dashboard_questions_give_the_answers_the_known_changes_imply() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(40, 14)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        let first = m.sync().await;
        assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);

        let report = sim.mutate(
            5,
            &MutationPlan {
                rename: 3,
                delete: 2,
                add: 2,
                add_tag: 2,
                ..MutationPlan::default()
            },
        );
        let touched: BTreeSet<String> = [
            &report.renamed,
            &report.deleted,
            &report.added,
            &report.tag_added,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        let before = sim.listing();
        let free: Vec<&Value> = before
            .iter()
            .filter(|r| !touched.contains(r["sourceId"].as_str().unwrap()))
            .collect();
        let id = |r: &Value| r["sourceId"].as_str().unwrap().to_string();
        let with_bots: Vec<String> = free
            .iter()
            .filter(|r| plain_bots(r))
            .map(|r| id(r))
            .collect();
        let with_wallet: Vec<String> = free
            .iter()
            .filter(|r| r["wallet"].is_object() && !with_bots[..5].contains(&id(r)))
            .map(|r| id(r))
            .collect();
        let [a, b, e, g, h] = [0, 1, 2, 3, 4].map(|i| with_bots[i].clone());
        let (c, d) = (with_wallet[0].clone(), with_wallet[1].clone());
        let f = free
            .iter()
            .map(|r| id(r))
            .find(|x| ![&a, &b, &c, &d, &e, &g, &h].contains(&x))
            .unwrap();
        let lost_bot = bots(before.iter().find(|r| id(r) == a).unwrap())[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let c_cost_before = before.iter().find(|r| id(r) == c).unwrap()["wallet"]
            ["responseUnitCostOverride"]
            .clone();
        let now = chrono::Utc::now();
        sim.edit(|records| {
            for r in records.iter_mut() {
                r["respondWindows"] = json!([]);
                r["botRespondWindows"] = json!([]);
            }
            edit_source(records, &a, |r| {
                r["bots"].as_array_mut().unwrap().remove(0);
            });
            edit_source(records, &b, |r| {
                r["bots"]
                    .as_array_mut()
                    .unwrap()
                    .push(new_bot(true, &["SMS", "Email"]))
            });
            edit_source(records, &c, |r| {
                r["wallet"]["responseUnitCostOverride"] = json!("0.5055")
            });
            edit_source(records, &d, |r| {
                r["wallet"]["userUnitCostOverride"] = json!("n/a")
            });
            edit_source(records, &e, |r| {
                r["isAvailabilityContactTimezone"] = json!(false);
                r["respondWindows"] = json!([
                    window(now, -3600, "02:00:00"),
                    // Began last week (seen from the week's numbering): open across the wrap.
                    window(now, 7200, "6.23:00:00"),
                    window(now, 3600, "01:00:00"),
                    window(now, -3 * 3600, "01:00:00"),
                    {"dayOfWeekUtc": "Funday", "startTimeUtc": "08:00:00", "duration": "08:00:00"},
                ]);
                let mut w = window(now, -60, "00:30:00");
                w["channel"] = json!("SMS");
                r["botRespondWindows"] = json!([w]);
            });
            edit_source(records, &f, |r| {
                r["isAvailabilityContactTimezone"] = json!(true);
                r["respondWindows"] = json!([window(now, -3600, "02:00:00")]);
            });
            edit_source(records, &g, |r| {
                let on = r["bots"][0]["enabled"] == json!(true);
                r["bots"][0]["enabled"] = json!(!on);
            });
        });
        let window_changes = before
            .iter()
            .zip(sim.listing())
            // A source the mutation added is created by run 2, not updated.
            .filter(|(x, _)| !report.added.contains(&id(x)))
            .filter(|(x, y)| x.get("respondWindows") != y.get("respondWindows"))
            .count();
        let second = m.sync().await;
        assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
        assert!(
            second
                .notes
                .as_deref()
                .unwrap_or("")
                .starts_with("2 respond-window or cost-override values did not parse"),
            "{}: {:?}",
            m.backend(),
            second.notes
        );
        sim.edit(|records| {
            edit_source(records, &c, |r| {
                r["wallet"]["responseUnitCostOverride"] = json!("0.7575")
            });
            edit_source(records, &b, |r| {
                let bots = r["bots"].as_array_mut().unwrap();
                *bots.last_mut().unwrap() = new_bot(false, &["SMS", "Email"]);
            });
            edit_source(records, &h, |r| {
                r["bots"]
                    .as_array_mut()
                    .unwrap()
                    .push(new_bot(true, &["SMS"]))
            });
        });
        let third = m.sync().await;
        assert_eq!(third.status, RunStatus::Succeeded, "{:?}", third.error);
        let listing = sim.listing();
        let started: Vec<String> = m
            .dump("SELECT started_at FROM sync_runs ORDER BY run_id")
            .await
            .iter()
            .map(|r| s(r, "started_at"))
            .collect();
        let backend = m.backend();

        // Sources per CRM type.
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for r in &listing {
            *expected
                .entry(r["category"].as_str().unwrap_or("(none)").to_string())
                .or_default() += 1;
        }
        let got: BTreeMap<String, i64> = m
            .dump(&question(&m, "Sources per CRM type"))
            .await
            .iter()
            .map(|r| (s(r, "crm"), r["sources"].as_i64().unwrap()))
            .collect();
        assert_eq!(got, expected, "{backend}: sources per CRM type");

        // Lost and gained bots: the edits, not the renames, tags, deletions, new sources or
        // state changes (G's enabled flag, B's bot disabled).
        let pairs = |rows: Vec<Map<String, Value>>| -> BTreeSet<(String, String)> {
            rows.iter()
                .map(|r| (s(r, "source_id"), s(r, "bot_id")))
                .collect()
        };
        let lost = pairs(
            m.dump(&question(&m, "Sources that lost a bot in the last 7 days"))
                .await,
        );
        assert_eq!(
            lost,
            BTreeSet::from([(a.clone(), lost_bot.clone())]),
            "{backend}: lost"
        );
        let gained = pairs(
            m.dump(&question(
                &m,
                "Sources that gained a bot in the last 7 days",
            ))
            .await,
        );
        assert_eq!(
            gained,
            BTreeSet::from([
                (b.clone(), "bot-dash-new".to_string()),
                (h.clone(), "bot-dash-new".to_string())
            ]),
            "{backend}: gained"
        );

        // The new bot's timeline.
        let timeline: BTreeSet<(String, i64, String, String, String)> = m
            .dump(&question(&m, "A bot's assignment timeline").replace(":bot_id", "'bot-dash-new'"))
            .await
            .iter()
            .map(|r| {
                (
                    s(r, "source_id"),
                    r["enabled"].as_i64().unwrap(),
                    s(r, "channels"),
                    s(r, "valid_from"),
                    s(r, "valid_to"),
                )
            })
            .collect();
        assert_eq!(
            timeline,
            BTreeSet::from([
                (
                    b.clone(),
                    1,
                    "SMS, Email".into(),
                    started[1].clone(),
                    started[2].clone()
                ),
                (
                    b.clone(),
                    0,
                    "SMS, Email".into(),
                    started[2].clone(),
                    "null".into()
                ),
                (
                    h.clone(),
                    1,
                    "SMS".into(),
                    started[2].clone(),
                    "null".into()
                ),
            ]),
            "{backend}: timeline"
        );

        // C's wallet over time: three intervals, end to end, the cost as sent and as a number.
        let wallet = m
            .dump(
                &question(&m, "Wallet settings over time for one source")
                    .replace(":source_id", &format!("'{c}'")),
            )
            .await;
        let texts: Vec<Value> = wallet
            .iter()
            .map(|r| r["response_unit_cost_override_text"].clone())
            .collect();
        assert_eq!(
            texts,
            vec![c_cost_before.clone(), json!("0.5055"), json!("0.7575")],
            "{backend}"
        );
        let bounds: Vec<(String, String)> = wallet
            .iter()
            .map(|r| (s(r, "valid_from"), s(r, "valid_to")))
            .collect();
        assert_eq!(
            bounds,
            vec![
                (started[0].clone(), started[1].clone()),
                (started[1].clone(), started[2].clone()),
                (started[2].clone(), "null".into())
            ]
        );
        let numbers: Vec<Value> = m
            .dump(&format!(
                "SELECT CAST(response_unit_cost_override AS DOUBLE PRECISION) AS n FROM source_wallet_history \
                 WHERE source_id = '{c}' ORDER BY valid_from"
            ))
            .await
            .iter()
            .map(|r| r["n"].clone())
            .collect();
        let first_number = c_cost_before
            .as_str()
            .map_or(Value::Null, |t| json!(t.parse::<f64>().unwrap()));
        assert_eq!(
            numbers,
            vec![first_number, json!(0.5055), json!(0.7575)],
            "{backend}"
        );
        let bad = m
            .dump(&format!(
                "SELECT user_unit_cost_override_text AS t, user_unit_cost_override IS NULL AS no_number \
                 FROM source_wallets WHERE source_id = '{d}'"
            ))
            .await;
        assert_eq!(
            (s(&bad[0], "t"), bad[0]["no_number"].as_i64()),
            ("n/a".into(), Some(1)),
            "{backend}"
        );

        // Windows open now: E's first two respond windows and its bot window; not F (contact
        // time zone), not the closed ones, not the one whose day did not parse.
        let open: BTreeSet<(String, String, i64)> = m
            .dump("SELECT source_id, window_table, position FROM respond_windows_open_now")
            .await
            .iter()
            .map(|r| {
                (
                    s(r, "source_id"),
                    s(r, "window_table"),
                    r["position"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            open,
            BTreeSet::from([
                (e.clone(), "respond".into(), 0),
                (e.clone(), "respond".into(), 1),
                (e.clone(), "bot_respond".into(), 0)
            ]),
            "{backend}: open windows"
        );
        let e_record = listing.iter().find(|r| id(r) == e).unwrap();
        let may_respond: BTreeSet<(String, String)> = bots(e_record)
            .iter()
            .filter(|x| x["enabled"] == json!(true))
            .map(|x| (e.clone(), x["id"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            pairs(m.dump(&question(&m, "Bots that may respond now")).await),
            may_respond,
            "{backend}"
        );

        // Changes by kind: the mirror's first run, the mutation report and the window edits.
        let mut per_kind: BTreeMap<(String, String), i64> = BTreeMap::new();
        for r in m
            .dump(&question(&m, "Changes per day by kind, last 7 days"))
            .await
        {
            *per_kind
                .entry((s(&r, "change_type"), s(&r, "field")))
                .or_default() += r["changes"].as_i64().unwrap();
        }
        assert_eq!(
            per_kind[&("created".into(), "null".into())],
            40 + 2,
            "{backend}"
        );
        assert_eq!(per_kind[&("deleted".into(), "null".into())], 2, "{backend}");
        assert_eq!(per_kind[&("updated".into(), "name".into())], 3, "{backend}");
        assert_eq!(
            per_kind[&("updated".into(), "respondWindows".into())],
            window_changes as i64,
            "{backend}"
        );

        // Success rate and duration.
        let runs = &m
            .dump(&question(
                &m,
                "Sync success rate and run duration, last 7 days",
            ))
            .await[0];
        assert_eq!(
            (
                runs["runs"].as_i64(),
                runs["succeeded"].as_i64(),
                runs["partial"].as_i64(),
                runs["success_rate"].as_f64()
            ),
            (Some(3), Some(3), Some(0), Some(1.0)),
            "{backend}"
        );
        let (avg, max) = (
            runs["avg_duration_seconds"].as_f64().unwrap(),
            runs["max_duration_seconds"].as_f64().unwrap(),
        );
        let longest = [&first, &second, &third]
            .iter()
            .map(|r| r.duration.as_secs_f64())
            .fold(0.0, f64::max);
        assert!(
            0.0 < avg && avg <= max && max <= longest + 0.01,
            "{backend}: avg {avg}, max {max}, longest {longest}"
        );

        // The backfill rebuilds from source_versions exactly what the runs kept.
        let kept = history_rows(&m).await;
        assert!(
            kept[0].len() > 40 && kept[1].len() > 20,
            "{backend}: {} bot rows",
            kept[0].len()
        );
        let mut tx = m.store.begin().await.unwrap();
        dashboards::backfill(&mut tx.conn()).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            history_rows(&m).await,
            kept,
            "{backend}: the backfill differs from what the runs kept"
        );
    }
}

/// A first sync writes new sources' history rows from memory, a later run compares the
/// stored ones in SQL: the two must agree on every state (id-less bots, bots with no
/// channel or several, wallets), or a run that touches a source elsewhere would close and
/// reopen all its rows.
#[tokio::test]
async fn history_rows_of_new_sources_are_what_a_later_run_compares_with() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(300, 21)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let backend = m.backend();
        let first = history_rows(&m).await;
        let shapes = &m
            .dump(
                "SELECT SUM(CASE WHEN bot_id IS NULL THEN 1 ELSE 0 END) AS idless, \
                 SUM(CASE WHEN channels IS NULL THEN 1 ELSE 0 END) AS no_channels, \
                 SUM(CASE WHEN channels LIKE '%,%' THEN 1 ELSE 0 END) AS many_channels \
                 FROM source_bot_history",
            )
            .await[0];
        for shape in ["idless", "no_channels", "many_channels"] {
            assert!(
                shapes[shape].as_i64().unwrap_or(0) > 0,
                "{backend}: the listing has no bot of the shape {shape}: {shapes:?}"
            );
        }
        sim.edit(|records| {
            for r in records.iter_mut() {
                r["name"] = json!(format!("{} (renamed)", r["name"].as_str().unwrap_or("")));
            }
        });
        let second = m.sync().await;
        assert_eq!(second.status, RunStatus::Succeeded, "{backend}");
        assert_eq!(
            second.counts.updated, 300,
            "{backend}: every source changed"
        );
        assert_eq!(
            history_rows(&m).await,
            first,
            "{backend}: a run that changed only names closed or opened history rows"
        );
    }
}

/// A bot listed twice on one source in one state is one state: one open history row
/// whether the source is new or known, whether the copy comes or goes, and none once
/// neither copy is listed. (The first sync's rows came from memory one per copy, the
/// later runs' from SQL one per state; a copy removed left its row open.)
#[tokio::test]
async fn a_bot_listed_twice_on_a_source_has_one_history_row() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(40, 27)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let backend = m.backend();
        let records = sim.listing();
        let (known, bot) = records
            .iter()
            .find_map(|r| {
                let bot = r["bots"].as_array()?.first()?;
                bot["id"]
                    .is_string()
                    .then(|| (r["sourceId"].clone(), bot.clone()))
            })
            .expect("a source with a bot that has an id");
        let fresh = json!("zzzz-two-copies");
        sim.edit(|records| {
            let mut new = records[0].clone();
            new["sourceId"] = fresh.clone();
            new["bots"] = json!([bot.clone(), bot.clone()]);
            for r in records.iter_mut() {
                if r["sourceId"] == known {
                    r["bots"].as_array_mut().unwrap().push(bot.clone());
                }
            }
            records.push(new);
        });
        assert_eq!(m.sync().await.status, RunStatus::Succeeded, "{backend}");
        let rows = |source: &Value, open: bool| {
            format!(
                "SELECT COUNT(*) FROM source_bot_history WHERE source_id = '{}' AND bot_id = '{}'{}",
                source.as_str().unwrap(),
                bot["id"].as_str().unwrap(),
                if open { " AND valid_to IS NULL" } else { "" }
            )
        };
        for source in [&known, &fresh] {
            assert_eq!(
                m.count(&rows(source, true)).await,
                1,
                "{backend}: {source} open"
            );
        }
        // Renamed on both copies: one row closes, one opens.
        sim.edit(|records| {
            for r in records.iter_mut() {
                if r["sourceId"] == known || r["sourceId"] == fresh {
                    for b in r["bots"].as_array_mut().unwrap() {
                        if b["id"] == bot["id"] {
                            b["botName"] = json!("renamed twice");
                        }
                    }
                }
            }
        });
        assert_eq!(m.sync().await.status, RunStatus::Succeeded, "{backend}");
        for source in [&known, &fresh] {
            assert_eq!(
                m.count(&rows(source, true)).await,
                1,
                "{backend}: {source} renamed"
            );
        }
        let total_fresh = m.count(&rows(&fresh, false)).await;
        assert_eq!(total_fresh, 2, "{backend}: one closed, one open");
        // One copy taken off: the state is still listed, nothing moves.
        let drop_copy = |keep: usize| {
            let fresh = fresh.clone();
            move |records: &mut Vec<Value>| {
                for r in records.iter_mut().filter(|r| r["sourceId"] == fresh) {
                    r["bots"].as_array_mut().unwrap().truncate(keep);
                }
            }
        };
        sim.edit(drop_copy(1));
        assert_eq!(m.sync().await.status, RunStatus::Succeeded, "{backend}");
        assert_eq!(
            m.count(&rows(&fresh, true)).await,
            1,
            "{backend}: one copy left"
        );
        assert_eq!(
            m.count(&rows(&fresh, false)).await,
            total_fresh,
            "{backend}"
        );
        sim.edit(drop_copy(0));
        assert_eq!(m.sync().await.status, RunStatus::Succeeded, "{backend}");
        assert_eq!(
            m.count(&rows(&fresh, true)).await,
            0,
            "{backend}: no copy left"
        );
    }
}

#[tokio::test]
async fn sync_health_tells_partial_runs_from_full_successes() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(30, 3)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let all = sim.listing();
        sim.edit(|records| records.truncate(10));
        assert_eq!(m.sync().await.status, RunStatus::Partial);
        assert_eq!(m.sync().await.status, RunStatus::Partial);
        let h = &m.dump("SELECT * FROM sync_health").await[0];
        let backend = m.backend();
        assert_eq!(
            (
                h["last_success_run_id"].as_i64(),
                h["last_applied_run_id"].as_i64(),
                s(h, "last_applied_status"),
                h["partial_runs_in_a_row"].as_i64()
            ),
            (Some(1), Some(3), "partial".to_string(), Some(2)),
            "{backend}"
        );
        assert!(
            s(h, "last_partial_notes").contains("max_delete_fraction"),
            "{backend}: {h:?}"
        );
        let health = closebot_sync::service::health::Health::read(
            &m.store,
            std::time::Duration::from_secs(3600),
        )
        .await
        .unwrap();
        assert!(health.is_healthy(), "{backend}");
        let text = health.describe();
        assert!(
            text.contains("run 3, partial") && text.contains("2 runs in a row were partial"),
            "{backend}: {text}"
        );

        sim.edit(|records| *records = all);
        let r = m
            .sync_with(SyncOptions {
                trigger: "test".into(),
                ..SyncOptions::default()
            })
            .await;
        assert_eq!(r.status, RunStatus::Succeeded);
        let h = &m.dump("SELECT * FROM sync_health").await[0];
        assert_eq!(
            (
                h["last_success_run_id"].as_i64(),
                h["partial_runs_in_a_row"].as_i64()
            ),
            (Some(4), Some(0)),
            "{backend}"
        );
        assert_eq!(h["last_partial_notes"], Value::Null);
    }
}

/// A record as an older closebot-sync stored it in `source_versions`.
fn old_record(channels: &[&str], auto_refill: bool, cost: &str) -> String {
    json!({"sourceId": "s1", "name": "Acme", "category": "GHL",
        "bots": [
            {"id": "b1", "botName": "Ann", "enabled": true, "channels": channels},
            {"id": null, "botName": "Anon", "enabled": false, "channels": []}
        ],
        "wallet": {"autoRefill": auto_refill, "responseUnitCostOverride": cost, "storageUnitCostOverride": "n/a"}})
    .to_string()
}

/// A store over the test's database, opened as the commands open it.
async fn store_of(db: &crate::common::Db) -> closebot_sync::store::Store {
    closebot_sync::store::Store::connect(&db.url.parse().unwrap(), 2)
        .await
        .unwrap()
}

/// Applies the migrations numbered before `version`, as an older closebot-sync did.
async fn migrate_as_before(store: &closebot_sync::store::Store, version: &str) {
    let flavour = match store.backend() {
        closebot_sync::store::Backend::Sqlite => "sqlite",
        closebot_sync::store::Backend::Postgres => "postgres",
    };
    let older = tempfile::tempdir().unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(flavour);
    for f in std::fs::read_dir(&all).unwrap() {
        let f = f.unwrap();
        let name = f.file_name().into_string().unwrap();
        if name.as_str() < version {
            std::fs::copy(f.path(), older.path().join(name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(older.path()).await.unwrap();
    match store.acquire().await.unwrap().conn() {
        closebot_sync::store::Conn::Sqlite(c) => migrator.run(c).await.unwrap(),
        closebot_sync::store::Conn::Postgres(c) => migrator.run(c).await.unwrap(),
    }
}

/// A database that a newer closebot-sync upgraded, or whose applied migrations are not this
/// build's, is refused with what it means for the operator, and nothing is changed.
#[tokio::test]
async fn a_database_from_a_newer_or_another_build_is_refused_saying_which_and_left_as_it_was() {
    for db in databases().await {
        let store = store_of(&db).await;
        let backend = store.backend().name();
        // Every migration but the last: one is pending when the database is refused.
        migrate_as_before(&store, "0005").await;
        let known = std::fs::read_dir(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"),
        )
        .unwrap()
        .map(|f| {
            f.unwrap().file_name().into_string().unwrap()[..4]
                .parse::<u32>()
                .unwrap()
        })
        .max()
        .unwrap();
        let mut c = store.acquire().await.unwrap();
        let checksum = match store.backend() {
            closebot_sync::store::Backend::Sqlite => "x'00'",
            closebot_sync::store::Backend::Postgres => "'\\x00'::bytea",
        };
        let future = format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from a newer closebot-sync', TRUE, {checksum}, 1)"
        );
        c.conn().execute(&future, vec![]).await.unwrap();
        drop(c);
        let before = crate::common::dump(
            &store,
            "SELECT version FROM _sqlx_migrations ORDER BY version",
        )
        .await;
        let e = store.migrate_locked().await.unwrap_err().to_string();
        assert!(
            e.contains("upgraded by a newer closebot-sync")
                && e.contains("migration 9999")
                && e.contains(&format!("up to {known}")),
            "{backend}: {e}"
        );
        // Every command that opens the database refuses it too: those that only read rather
        // than read what they do not know, `check` as a failed check, the daemon at start.
        for args in [
            &["status"][..],
            &["export"],
            &["history", "x"],
            &["check"],
            &["sync"],
            &["migrate"],
            &["run"],
        ] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_closebot-sync"))
                .env_clear()
                .env("CLOSEBOT_SYNC_DATABASE__URL", &db.url)
                .env("CLOSEBOT_SYNC_API__KEY", "k")
                // Nothing listens there: `check` fails its API line either way, not this one.
                .env("CLOSEBOT_SYNC_API__BASE_URL", "http://127.0.0.1:9")
                .env("CLOSEBOT_SYNC_SCHEDULE__RUN_ON_START", "false")
                .args(args)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{backend} {args:?}: {text}");
            assert!(
                text.contains("upgraded by a newer closebot-sync"),
                "{backend} {args:?}: {text}"
            );
        }
        let mut c = store.acquire().await.unwrap();
        for sql in [
            "DELETE FROM _sqlx_migrations WHERE version = 9999",
            &format!("UPDATE _sqlx_migrations SET checksum = {checksum} WHERE version = 1"),
        ] {
            c.conn().execute(sql, vec![]).await.unwrap();
        }
        drop(c);
        let e = store.migrate_locked().await.unwrap_err().to_string();
        assert!(
            e.contains("does not match this closebot-sync's migrations")
                && e.contains("migration 1"),
            "{backend}: {e}"
        );
        assert_eq!(
            crate::common::dump(
                &store,
                "SELECT version FROM _sqlx_migrations ORDER BY version"
            )
            .await
            .len(),
            before.len() - 1,
            "{backend}: the pending migration was not applied"
        );
        store.close().await;
    }
}

/// A database that already holds a table of one of closebot-sync's names, made by
/// something else, is refused with the fix, and none of closebot-sync's tables is made.
#[tokio::test]
async fn a_database_holding_someone_elses_table_of_the_same_name_is_refused_with_the_fix() {
    for db in databases().await {
        let store = store_of(&db).await;
        let backend = store.backend().name();
        let mut c = store.acquire().await.unwrap();
        c.conn()
            .execute("CREATE TABLE sources (id INTEGER)", vec![])
            .await
            .unwrap();
        drop(c);
        let e = store.migrate_locked().await.unwrap_err().to_string();
        assert!(
            e.contains("\"sources\" already exists") || e.contains("table sources already exists"),
            "{backend}: {e}"
        );
        assert!(e.contains("an empty database of its own"), "{backend}: {e}");
        let mut c = store.acquire().await.unwrap();
        let made = c.conn().execute("SELECT 1 FROM sync_runs", vec![]).await;
        assert!(made.is_err(), "{backend}: sync_runs was made");
        drop(c);
        store.close().await;
    }
}

/// A PostgreSQL database that does not exist is named, with how to create it: `sync` can
/// make a SQLite file but not a PostgreSQL database, so "run sync first" would go round.
#[tokio::test]
async fn a_postgres_database_that_does_not_exist_is_named_with_how_to_create_it() {
    for db in databases().await {
        if db.backend != "postgres" {
            continue;
        }
        let mut url: url::Url = db.url.parse().unwrap();
        url.set_path("/closebot_test_no_such_database");
        let url = url.to_string().parse().unwrap();
        for e in [
            closebot_sync::store::Store::connect(&url, 2)
                .await
                .unwrap_err(),
            closebot_sync::store::Store::open_read_only(&url)
                .await
                .unwrap_err(),
        ] {
            let e = e.to_string();
            assert!(
                e.contains("does not exist") && e.contains("CREATE DATABASE"),
                "{e}"
            );
            assert!(!e.contains("run `closebot-sync sync` first"), "{e}");
        }
    }
}

/// PostgreSQL 15 no longer lets every user create tables in schema public: a user that may
/// not create tables gets the reason and the ways out, not just "permission denied".
#[tokio::test]
async fn a_postgres_user_that_may_not_create_tables_is_told_how_to_let_it() {
    for db in databases().await {
        if db.backend != "postgres" {
            continue;
        }
        let admin = store_of(&db).await;
        let mut c = admin.acquire().await.unwrap();
        // A role of this test's own; it may exist from an earlier run.
        let made = c
            .conn()
            .execute("CREATE ROLE closebot_test_cannot_create NOLOGIN", vec![])
            .await;
        if let Err(e) = made {
            // Made by an earlier run, or by another suite at the same moment.
            let e = e.to_string();
            assert!(
                e.contains("already exists") || e.contains("duplicate key"),
                "{e}"
            );
        }
        drop(c);
        // The test's schema belongs to the administrator; the session acts as the role.
        let url = format!("{}%20-c%20role%3Dclosebot_test_cannot_create", db.url);
        let store = closebot_sync::store::Store::connect(&url.parse().unwrap(), 2)
            .await
            .unwrap();
        // Not even USAGE on the schema: PostgreSQL's current schema is NULL.
        let e = store.migrate_locked().await.unwrap_err().to_string();
        assert!(e.contains("may use no schema of its search_path"), "{e}");
        let (_, schema) = db.postgres_schema().unwrap();
        let mut c = admin.acquire().await.unwrap();
        c.conn()
            .execute(
                &format!("GRANT USAGE ON SCHEMA {schema} TO closebot_test_cannot_create"),
                vec![],
            )
            .await
            .unwrap();
        drop(c);
        // USAGE, not CREATE.
        let e = store.migrate_locked().await.unwrap_err().to_string();
        assert!(
            e.contains("permission denied")
                && e.contains("may not create tables")
                && e.contains("GRANT CREATE"),
            "{e}"
        );
        store.close().await;
        admin.close().await;
    }
}

/// Mirrors written before the API's "never" (0001-01-01T00:00:00) was read as NULL hold
/// year 1 in their time columns: the upgrade turns those into NULL and leaves other times.
#[tokio::test]
async fn an_upgrade_turns_the_apis_never_stored_as_year_one_into_null() {
    for db in databases().await {
        let store = store_of(&db).await;
        let backend = store.backend().name();
        migrate_as_before(&store, "0005").await;
        let mut c = store.acquire().await.unwrap();
        for sql in [
            "INSERT INTO sources (source_id, script_last_seen_at, raw_record, content_hash, version, first_seen_at, \
             first_seen_run_id, last_changed_at, last_changed_run_id) VALUES \
             ('never', '0001-01-01T00:00:00.000000Z', '{}', 'h', 1, '2026-01-05T10:00:00.000000Z', 1, '2026-01-05T10:00:00.000000Z', 1), \
             ('seen', '2026-01-01T00:00:00.000000Z', '{}', 'h', 1, '2026-01-05T10:00:00.000000Z', 1, '2026-01-05T10:00:00.000000Z', 1)",
            "INSERT INTO source_do_not_respond_windows (source_id, position, starts_at, ends_at) VALUES \
             ('never', 0, '0001-01-01T00:00:00.000000Z', '2026-02-01T00:00:00.000000Z')",
        ] {
            c.conn().execute(sql, vec![]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        drop(c);
        // 0005 and those after it.
        let pending = std::fs::read_dir(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"),
        )
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .file_name()
                .into_string()
                .unwrap()
                .as_str()
                >= "0005"
        })
        .count();
        assert_eq!(store.migrate_locked().await.unwrap(), pending, "{backend}");
        let rows = crate::common::dump(
            &store,
            "SELECT s.source_id, s.script_last_seen_at, w.starts_at, w.ends_at FROM sources s \
             LEFT JOIN source_do_not_respond_windows w ON w.source_id = s.source_id ORDER BY s.source_id",
        )
        .await;
        let times: Vec<(Option<String>, Option<String>, Option<String>)> = rows
            .iter()
            .map(|r| {
                let t = |c: &str| r[c].as_str().map(|t| t[..10].to_string());
                (t("script_last_seen_at"), t("starts_at"), t("ends_at"))
            })
            .collect();
        assert_eq!(
            times,
            vec![
                (None, None, Some("2026-02-01".into())),
                (Some("2026-01-01".into()), None, None),
            ],
            "{backend}: never, then seen"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn an_upgrade_keeps_every_stored_value_and_fills_the_history_from_the_versions() {
    for db in databases().await {
        let store = store_of(&db).await;
        let backend = store.backend().name();
        migrate_as_before(&store, "0004").await;
        let (v1, v2) = (
            old_record(&["SMS"], false, "0.40"),
            old_record(&["SMS", "Email"], true, "0.50"),
        );
        let mut c = store.acquire().await.unwrap();
        for sql in [
            "INSERT INTO sync_runs (started_at, finished_at, status, trigger) VALUES \
             ('2026-01-05T10:00:00.000000Z', '2026-01-05T10:00:02.500000Z', 'succeeded', 'manual'), \
             ('2026-01-06T10:00:00.000000Z', '2026-01-06T10:00:01.000000Z', 'succeeded', 'manual'), \
             ('2026-01-07T10:00:00.000000Z', '2026-01-07T10:00:01.000000Z', 'failed', 'manual')"
                .to_string(),
            // Run 3 was pruned by retention: its id is never given out again.
            "DELETE FROM sync_runs WHERE run_id = 3".to_string(),
            "INSERT INTO source_rejects (source_id, field_path, reason, first_run_id, last_run_id, first_seen_at, last_seen_at) \
             VALUES ('s9', 'bots', 'not an array', 2, 2, '2026-01-06T10:00:00.000000Z', '2026-01-06T10:00:00.000000Z')"
                .to_string(),
            format!(
                "INSERT INTO sources (source_id, name, category, connected, script_last_seen_at, raw_record, content_hash, \
                 version, first_seen_at, first_seen_run_id, last_changed_at, last_changed_run_id) VALUES ('s1', 'Acme', 'GHL', \
                 TRUE, '2026-01-01T00:00:00.123456Z', '{v2}', 'h2', 2, '2026-01-05T10:00:00.000000Z', 1, \
                 '2026-01-06T10:00:00.000000Z', 2)"
            ),
            "INSERT INTO source_wallets (source_id, auto_refill, response_unit_cost_override, storage_unit_cost_override) \
             VALUES ('s1', TRUE, '0.50', 'n/a')"
                .to_string(),
            "INSERT INTO source_respond_windows (source_id, position, day_of_week_utc, start_time_utc, duration) \
             VALUES ('s1', 0, 'Sunday', '22:00:00', '0.12:00:00')"
                .to_string(),
            format!(
                "INSERT INTO source_versions (source_id, version, valid_from, valid_to, opened_run_id, closed_run_id, \
                 content_hash, record) VALUES ('s1', 1, '2026-01-05T10:00:00.000000Z', '2026-01-06T10:00:00.000000Z', 1, 2, \
                 'h1', '{v1}'), ('s1', 2, '2026-01-06T10:00:00.000000Z', NULL, 2, NULL, 'h2', '{v2}')"
            ),
        ] {
            c.conn().execute(&sql, vec![]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        drop(c);
        assert!(store.migrate_locked().await.unwrap() >= 1, "{backend}");
        let one = |sql: &'static str| {
            let store = &store;
            async move { crate::common::dump(store, sql).await.remove(0) }
        };
        assert_eq!(
            crate::common::dump(&store, "SELECT name FROM pending_backfills")
                .await
                .len(),
            0,
            "{backend}: the backfill ran"
        );
        // Stored values unchanged, now under declared types.
        let r = one(
            "SELECT started_at, finished_at, duration_seconds FROM sync_run_log WHERE run_id = 1",
        )
        .await;
        assert_eq!(
            (
                s(&r, "started_at"),
                s(&r, "finished_at"),
                r["duration_seconds"].as_f64()
            ),
            (
                "2026-01-05T10:00:00.000000Z".into(),
                "2026-01-05T10:00:02.500000Z".into(),
                Some(2.5)
            ),
            "{backend}"
        );
        let r = one("SELECT connected, script_last_seen_at, first_seen_at FROM sources").await;
        assert_eq!(
            (
                r["connected"].as_i64(),
                s(&r, "script_last_seen_at"),
                s(&r, "first_seen_at")
            ),
            (
                Some(1),
                "2026-01-01T00:00:00.123456Z".into(),
                "2026-01-05T10:00:00.000000Z".into()
            ),
            "{backend}"
        );
        let r = one(
            "SELECT response_unit_cost_override_text AS t, CAST(response_unit_cost_override AS DOUBLE PRECISION) AS n, \
             storage_unit_cost_override_text AS bad, storage_unit_cost_override IS NULL AS no_number FROM source_wallets",
        )
        .await;
        assert_eq!(
            (
                s(&r, "t"),
                r["n"].as_f64(),
                s(&r, "bad"),
                r["no_number"].as_i64()
            ),
            ("0.50".into(), Some(0.5), "n/a".into(), Some(1)),
            "{backend}"
        );
        let r = one("SELECT day_of_week_iso, start_seconds_utc, duration_seconds FROM source_respond_windows").await;
        assert_eq!(
            (
                r["day_of_week_iso"].as_i64(),
                r["start_seconds_utc"].as_i64(),
                r["duration_seconds"].as_i64()
            ),
            (Some(7), Some(79_200), Some(12 * 3600)),
            "{backend}"
        );
        if store.backend() == closebot_sync::store::Backend::Sqlite {
            let r = one(
                "SELECT typeof(s.first_seen_at) AS t, typeof(s.connected) AS b, typeof(w.response_unit_cost_override_text) AS x, \
                 (SELECT type FROM pragma_table_info('sources') WHERE name = 'first_seen_at') AS declared_time, \
                 (SELECT type FROM pragma_table_info('sources') WHERE name = 'connected') AS declared_bool \
                 FROM sources s JOIN source_wallets w ON w.source_id = s.source_id",
            )
            .await;
            assert_eq!(
                [
                    s(&r, "t"),
                    s(&r, "b"),
                    s(&r, "x"),
                    s(&r, "declared_time"),
                    s(&r, "declared_bool")
                ],
                ["text", "integer", "text", "TIMESTAMP", "BOOLEAN"].map(String::from)
            );
            // Every time column of every table, the run log and the quarantine included.
            let untyped: Vec<String> = crate::common::dump(
                &store,
                "SELECT m.name || '.' || c.name AS col, c.type AS declared FROM sqlite_master m, \
                 pragma_table_info(m.name) c WHERE m.type = 'table' \
                 AND (c.name LIKE '%\\_at' ESCAPE '\\' OR c.name IN ('valid_from', 'valid_to')) \
                 AND c.type <> 'TIMESTAMP'",
            )
            .await
            .iter()
            .map(|r| format!("{} {}", s(r, "col"), s(r, "declared")))
            .collect();
            assert_eq!(untyped, Vec::<String>::new());
            let r = one("SELECT typeof(started_at) AS t FROM sync_runs WHERE run_id = 1").await;
            assert_eq!(s(&r, "t"), "text", "time stamps stay text");
        }
        let r = one("SELECT first_seen_at, reason FROM source_rejects").await;
        assert_eq!(
            (s(&r, "first_seen_at"), s(&r, "reason")),
            ("2026-01-06T10:00:00.000000Z".into(), "not an array".into()),
            "{backend}"
        );
        let mut c = store.acquire().await.unwrap();
        c.conn()
            .execute(
                "INSERT INTO sync_runs (started_at, status, trigger) \
                 VALUES ('2026-01-08T10:00:00.000000Z', 'running', 'manual')",
                vec![],
            )
            .await
            .unwrap();
        drop(c);
        let r = one("SELECT MAX(run_id) AS id FROM sync_runs").await;
        assert_eq!(
            r["id"].as_i64(),
            Some(4),
            "{backend}: a pruned run's id came back"
        );
        // The history, from the two versions: b1 changed channels, the id-less bot and
        // its position stayed, the wallet changed.
        let bots: BTreeSet<(String, String, String, i64, String)> = crate::common::dump(
            &store,
            "SELECT bot_id, bot_position, channels, opened_run_id, closed_run_id FROM source_bot_history",
        )
        .await
        .iter()
        .map(|r| (s(r, "bot_id"), s(r, "bot_position"), s(r, "channels"), r["opened_run_id"].as_i64().unwrap(), s(r, "closed_run_id")))
        .collect();
        assert_eq!(
            bots,
            BTreeSet::from([
                ("b1".into(), "null".into(), "SMS".into(), 1, "2".into()),
                (
                    "b1".into(),
                    "null".into(),
                    "SMS, Email".into(),
                    2,
                    "null".into()
                ),
                ("null".into(), "1".into(), "null".into(), 1, "null".into()),
            ]),
            "{backend}"
        );
        let wallets: Vec<(String, Option<f64>, i64)> = crate::common::dump(
            &store,
            "SELECT response_unit_cost_override_text AS t, CAST(response_unit_cost_override AS DOUBLE PRECISION) AS n, \
             opened_run_id FROM source_wallet_history ORDER BY valid_from",
        )
        .await
        .iter()
        .map(|r| (s(r, "t"), r["n"].as_f64(), r["opened_run_id"].as_i64().unwrap()))
        .collect();
        assert_eq!(
            wallets,
            vec![("0.40".into(), Some(0.4), 1), ("0.50".into(), Some(0.5), 2)],
            "{backend}"
        );
    }
}

/// The tests' dump reads PostgreSQL's NUMERIC exactly as PostgreSQL writes it, so the
/// snapshots that compare a mirror before and after a run see the cost overrides.
#[tokio::test]
async fn the_tests_read_postgres_numerics_as_postgres_writes_them() {
    for db in databases().await {
        if db.backend != "postgres" {
            continue;
        }
        let store = store_of(&db).await;
        let rows = crate::common::dump(
            &store,
            "SELECT x::numeric AS n, x::numeric::text AS t FROM (VALUES ('0.0075'), ('-12'), \
             ('123456789.123'), ('0'), ('10000'), ('0.00001'), ('1e-20'), ('-0.5'), \
             ('99999999999999999999.5'), ('1.50'), ('NaN'), ('20000.0001')) v(x)",
        )
        .await;
        assert_eq!(rows.len(), 12);
        for r in rows {
            assert_eq!(r["n"], r["t"]);
        }
    }
}
