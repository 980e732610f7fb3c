//! The end-to-end mirror: round trip, paging, idempotence, a refused key, secrets.

use closebot_sync::store::runs::RunStatus;
use serde_json::Value;

use crate::common::rebuild::assert_mirrors;
use crate::common::{databases, settings, sim_options, simulator, snapshot, Mirror};

fn secrets(listing: &[Value]) -> Vec<String> {
    listing
        .iter()
        .flat_map(|r| {
            ["key", "accessToken"].map(|f| r.get(f).and_then(Value::as_str).map(str::to_string))
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn every_source_rebuilt_from_the_tables_equals_what_the_simulator_served() {
    let (sim, server) = simulator(sim_options(320, 7)).await;
    for db in databases().await {
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        let report = m.sync().await;
        assert_eq!(
            report.status,
            RunStatus::Succeeded,
            "{}: {:?}",
            m.backend(),
            report.error
        );
        assert_eq!(
            (
                report.counts.created,
                report.counts.seen,
                report.counts.pages
            ),
            (320, 320, 4)
        );
        assert_mirrors(&m, &sim.listing()).await;
    }
}

#[tokio::test]
async fn the_raw_record_keeps_unknown_fields_and_nulls_but_not_credentials() {
    let (sim, server) = simulator(sim_options(150, 3)).await;
    for db in databases().await {
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let rows = m.dump("SELECT source_id, raw_record FROM sources").await;
        let stored: std::collections::HashMap<String, Value> = rows
            .into_iter()
            .map(|r| {
                (
                    r["source_id"].as_str().unwrap().to_string(),
                    r["raw_record"].clone(),
                )
            })
            .collect();
        let mut unknown_seen = false;
        for served in sim.listing() {
            let id = served["sourceId"].as_str().unwrap();
            let mut expected = served.clone();
            for f in ["key", "accessToken"] {
                if let Some(Value::String(s)) = expected.get(f) {
                    let fp = format!("sha256:{}", closebot_sync::model::fingerprint(s));
                    expected[f] = Value::String(fp);
                }
            }
            unknown_seen |= served.as_object().unwrap().contains_key("aiModel")
                || served
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|k| k.starts_with("newFeature"));
            assert_eq!(stored[id], expected, "{}: raw record of {id}", m.backend());
        }
        assert!(
            unknown_seen,
            "the simulator served no unknown field, so this test proved nothing"
        );
    }
}

#[tokio::test]
async fn paging_handles_an_empty_listing_one_full_page_and_a_ragged_last_page() {
    for (sources, page_size, pages) in [
        (0usize, "100", 1u64),
        (100, "100", 1),
        (250, "100", 3),
        (23, "7", 4),
    ] {
        let (sim, server) = simulator(sim_options(sources, 11)).await;
        for db in databases().await {
            let m = Mirror::new(settings(
                &server.base_url(),
                &db,
                &[("CLOSEBOT_SYNC_API__PAGE_SIZE", page_size)],
            ))
            .await;
            let report = m.sync().await;
            assert_eq!(
                report.status,
                RunStatus::Succeeded,
                "{sources}/{page_size}: {:?}",
                report.error
            );
            assert_eq!(
                report.counts.pages, pages,
                "{sources} sources, pages of {page_size}"
            );
            assert_eq!(report.counts.api_total, Some(sources as u64));
            assert_mirrors(&m, &sim.listing()).await;
        }
    }
}

#[tokio::test]
async fn a_page_size_setting_above_100_is_refused_with_the_key_named() {
    let db = crate::common::sqlite();
    let file = db.dir.path().join("c.toml");
    std::fs::write(&file, "[api]\npage_size = 150\n").unwrap();
    let err = closebot_sync::config::Settings::load_from(Some(&file), Vec::new()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("api.page_size") && text.contains("1 to 100"),
        "{text}"
    );
}

#[tokio::test]
async fn a_second_sync_over_unchanged_data_writes_no_source_rows() {
    let (_sim, server) = simulator(sim_options(180, 5)).await;
    for db in databases().await {
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let before = snapshot(&m).await;
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Succeeded);
        assert_eq!(
            (
                report.counts.unchanged,
                report.counts.created,
                report.counts.updated
            ),
            (180, 0, 0)
        );
        assert_eq!(
            snapshot(&m).await,
            before,
            "{}: a no-op run changed data tables",
            m.backend()
        );
        assert_eq!(m.count("SELECT COUNT(*) AS n FROM sync_runs").await, 2);
    }
}

#[tokio::test]
async fn a_refused_key_fails_the_run_says_so_and_leaves_the_data_untouched() {
    let (sim, server) = simulator(sim_options(60, 9)).await;
    for db in databases().await {
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let before = snapshot(&m).await;
        for plan_limited in [false, true] {
            if plan_limited {
                sim.set_api_key(crate::common::KEY);
                sim.set_plan_limited(true);
            } else {
                sim.set_api_key("another-key");
            }
            let report = m.sync().await;
            assert_eq!(report.status, RunStatus::Failed);
            let error = report.error.clone().unwrap();
            assert!(
                error.contains("refused the key") && error.contains("401"),
                "{error}"
            );
            if plan_limited {
                assert!(
                    error.contains("upgrade required"),
                    "the server's body is shown: {error}"
                );
            }
            assert!(
                !error.contains(crate::common::KEY),
                "the key leaked into the error: {error}"
            );
            assert_eq!(snapshot(&m).await, before);
            let run = m
                .dump("SELECT status, error FROM sync_runs ORDER BY run_id DESC LIMIT 1")
                .await;
            assert_eq!(run[0]["status"], "failed");
            assert!(run[0]["error"]
                .as_str()
                .unwrap()
                .contains("refused the key"));
        }
        sim.set_plan_limited(false);
    }
}

#[tokio::test]
async fn no_credential_is_stored_in_any_table_of_either_backend() {
    let (sim, server) = simulator(sim_options(200, 13)).await;
    let secrets = secrets(&sim.listing());
    assert!(
        secrets.len() > 100,
        "the simulator served too few credentials to prove anything"
    );
    for db in databases().await {
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.mutate(
            1,
            &closebot_sim::MutationPlan {
                rotate_token: 20,
                ..Default::default()
            },
        );
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let all = format!("{:?}", snapshot(&m).await);
        let secrets_now = crate::mirror::secrets(&sim.listing());
        for s in secrets.iter().chain(&secrets_now) {
            assert!(
                !all.contains(s.as_str()),
                "{}: a credential is stored in plain text",
                m.backend()
            );
        }
        let fingerprints = m
            .count("SELECT COUNT(*) AS n FROM sources WHERE access_token_sha256 IS NOT NULL")
            .await;
        assert!(fingerprints > 0);
    }
}

#[tokio::test]
async fn credentials_are_stored_only_when_the_operator_opts_in() {
    let (sim, server) = simulator(sim_options(40, 17)).await;
    for db in databases().await {
        let m = Mirror::new(settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_SYNC__STORE_CREDENTIALS", "true")],
        ))
        .await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let served = sim.listing();
        let with_token = served
            .iter()
            .find(|r| r["accessToken"].is_string())
            .unwrap();
        let id = with_token["sourceId"].as_str().unwrap();
        let row = m
            .dump(&format!(
                "SELECT access_token, raw_record FROM sources WHERE source_id = '{id}'"
            ))
            .await;
        assert_eq!(row[0]["access_token"], with_token["accessToken"]);
        assert!(!row[0]["raw_record"]
            .to_string()
            .contains(with_token["accessToken"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn the_client_never_sends_force_token_refresh_and_always_sends_the_key() {
    let (sim, server) = simulator(sim_options(230, 19)).await;
    let db = crate::common::sqlite();
    let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
    assert_eq!(m.sync().await.status, RunStatus::Succeeded);
    let requests = sim.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert!(r.authorized);
        // The key goes in the documented header, and only there.
        let names = &r.header_names;
        assert!(names.iter().any(|h| h == "x-cb-key"), "{names:?}");
        assert!(!names.iter().any(|h| h == "authorization"), "{names:?}");
        assert!(
            !r.query
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("forceTokenRefresh")),
            "{r:?}"
        );
    }
    let pages: Vec<&str> = requests
        .iter()
        .filter_map(|r| {
            r.query
                .iter()
                .find(|(k, _)| k == "page")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    let mut pages = pages;
    pages.sort();
    assert_eq!(pages, vec!["0", "1", "2"], "pages are 0-based");
}

/// A bulk insert of many rows (a `COPY` on PostgreSQL, `VALUES` lists on SQLite) stores
/// every value as given: the characters COPY's text format escapes, its NULL marker and
/// end-of-data marker written as text, JSON, numbers, booleans, time stamps and NULLs.
#[tokio::test]
async fn a_bulk_insert_stores_every_value_as_given() {
    use closebot_sync::model::Val;
    use closebot_sync::store::Backend;
    use serde_json::json;

    let tricky = [
        "tab\there",
        "new\nline",
        "cr\rlf\n",
        "back\\slash",
        "\\N",
        "\\.",
        "",
        "ünï 😀",
        "a\\tb",
        "\t",
        "end\\",
    ];
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-04T05:06:07.123456Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let rows: Vec<Vec<Val>> = (0..1500)
        .map(|i: i64| {
            let s = tricky[i as usize % tricky.len()];
            vec![
                Val::Text(Some(format!("k{i:05}"))),
                Val::Text((i % 13 != 0).then(|| s.to_string())),
                Val::Int((i % 7 != 0).then_some(i * 1_000_000_007)),
                Val::Bool((i % 5 != 0).then_some(i % 2 == 0)),
                Val::Time((i % 3 != 0).then_some(at)),
                Val::Json((i % 11 != 0).then(|| json!({"s": s, "i": i}).to_string())),
            ]
        })
        .collect();
    for db in databases().await {
        let store = closebot_sync::store::Store::connect(&db.url.parse().unwrap(), 2)
            .await
            .unwrap();
        let (time, json) = match store.backend() {
            Backend::Sqlite => ("TIMESTAMP", "TEXT"),
            Backend::Postgres => ("timestamptz", "jsonb"),
        };
        let mut c = store.acquire().await.unwrap();
        let mut conn = c.conn();
        conn.execute(
            &format!("CREATE TABLE bulk (k TEXT PRIMARY KEY, s TEXT, n BIGINT, b BOOLEAN, at {time}, j {json})"),
            vec![],
        )
        .await
        .unwrap();
        let b = conn.backend();
        let written = conn
            .send(b.insert(
                "bulk",
                &["k", "s", "n", "b", "at", "j"],
                rows.clone(),
                "",
                "testing",
            ))
            .await
            .unwrap();
        assert_eq!(written, 1500, "{}", b.name());
        drop(c);
        let got =
            crate::common::dump(&store, "SELECT k, s, n, b, at, j FROM bulk ORDER BY k").await;
        assert_eq!(got.len(), rows.len());
        for (row, want) in got.iter().zip(&rows) {
            let expect = |v: &Val| match v {
                Val::Text(s) => s.clone().map_or(Value::Null, Value::String),
                Val::Int(n) => n.map_or(Value::Null, Value::from),
                Val::Bool(x) => x.map_or(Value::Null, |x| Value::from(i64::from(x))),
                Val::Time(t) => t.map_or(Value::Null, |t| {
                    Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
                }),
                Val::Json(j) => j
                    .as_deref()
                    .map_or(Value::Null, |j| serde_json::from_str(j).unwrap()),
                Val::Decimal(_) => unreachable!(),
            };
            let want: Vec<Value> = want.iter().map(expect).collect();
            let have: Vec<Value> = ["k", "s", "n", "b", "at", "j"]
                .iter()
                .map(|c| row[*c].clone())
                .collect();
            assert_eq!(have, want, "{}", b.name());
        }
    }
}

/// PostgreSQL plans the next run's lookups by id with the statistics of the tables; a new
/// database has none until something runs `ANALYZE` (autovacuum may be off, or not yet come
/// round). The first run that writes gathers them; a dry run writes nothing, statistics
/// included.
#[tokio::test]
async fn the_first_run_leaves_postgresql_statistics_for_the_tables_it_wrote() {
    let (sim, server) = simulator(sim_options(60, 5)).await;
    for db in databases().await {
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        if m.store.backend() != closebot_sync::store::Backend::Postgres {
            continue;
        }
        let tuples = || async {
            m.dump(
                "SELECT c.relname::text AS name, c.reltuples::float8 AS tuples FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() \
                 AND c.relname IN ('sources', 'source_bots', 'source_bot_history', 'source_versions') \
                 ORDER BY 1",
            )
            .await
            .into_iter()
            .map(|r| (r["name"].as_str().unwrap().to_string(), r["tuples"].as_f64().unwrap()))
            .collect::<Vec<_>>()
        };
        let dry = m
            .sync_with(closebot_sync::sync::SyncOptions {
                trigger: "test".into(),
                dry_run: true,
                ..Default::default()
            })
            .await;
        assert_eq!(dry.status, RunStatus::Succeeded);
        let before = tuples().await;
        assert_eq!(before.len(), 4, "{before:?}");
        assert!(
            before.iter().all(|(_, t)| *t < 0.0),
            "a dry run analyzed: {before:?}"
        );
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let after = tuples().await;
        assert!(
            after.iter().all(|(_, t)| *t > 0.0),
            "tables without statistics after the first run: {after:?}"
        );
        assert!(
            after
                .iter()
                .any(|(n, t)| n == "sources" && *t == sim.listing().len() as f64),
            "{after:?}"
        );
    }
}
