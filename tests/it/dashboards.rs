//! Dashboards: the bot and wallet history, parsed respond windows, the views, and every
//! query of the schema document's "Dashboard questions", checked against a history of
//! known changes on both backends.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Timelike;
use closebot_sync::simulator::MutationPlan;
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
        let health =
            closebot_sync::health::Health::read(&m.store, std::time::Duration::from_secs(3600))
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
