//! Faults, one at a time, on both backends: the outcome, the counts, and the tables (equal
//! to the simulator after success, equal to the state before after a failure).

use std::time::Duration;

use closebot_sim::{FaultAction, FaultRule, Faults, MidWalk};
use closebot_sync::store::runs::RunStatus;
use closebot_sync::sync::SyncOptions;

use crate::common::rebuild::assert_mirrors;
use crate::common::{databases, settings, sim_options, simulator, snapshot, Mirror};

/// How many sources the mirror holds as deleted.
async fn marked_deleted(m: &Mirror) -> i64 {
    m.count("SELECT COUNT(*) AS n FROM sources WHERE deleted_at IS NOT NULL")
        .await
}

fn rule(page: Option<u32>, attempts: std::ops::RangeInclusive<u32>, action: FaultAction) -> Faults {
    Faults {
        rules: vec![FaultRule {
            page,
            attempts,
            action,
        }],
        ..Faults::default()
    }
}

fn status(code: u16, retry_after: Option<&str>) -> FaultAction {
    FaultAction::Status {
        code,
        retry_after: retry_after.map(str::to_string),
        body: None,
    }
}

#[tokio::test]
async fn transient_errors_are_retried_counted_and_the_run_succeeds() {
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    let cases: Vec<(&str, Faults, u64)> = vec![
        (
            "429 with Retry-After seconds",
            rule(Some(1), 1..=2, status(429, Some("1"))),
            2,
        ),
        (
            "503 with Retry-After as a date",
            rule(Some(2), 1..=1, status(503, Some(&later))),
            1,
        ),
        ("500", rule(Some(0), 1..=3, status(500, None)), 3),
        (
            "502 without Retry-After",
            rule(Some(1), 1..=1, status(502, None)),
            1,
        ),
        (
            "a dropped connection",
            rule(Some(1), 1..=2, FaultAction::CloseConnection),
            2,
        ),
        (
            "a time-out",
            rule(
                Some(2),
                1..=1,
                FaultAction::Delay(Duration::from_millis(4000)),
            ),
            1,
        ),
    ];
    for db in databases().await {
        for (name, faults, retries) in cases.clone() {
            let (sim, server) = simulator(sim_options(250, 43)).await;
            // Room for the servers' Retry-After (up to 2 s), which is never cut short.
            let m = Mirror::new(settings(
                &server.base_url(),
                &db,
                &[
                    ("CLOSEBOT_SYNC_API__TIMEOUT", "2s"),
                    ("CLOSEBOT_SYNC_API__MAX_RETRY_WAIT", "3s"),
                ],
            ))
            .await;
            sim.set_faults(faults);
            let report = m.sync().await;
            assert_eq!(
                report.status,
                RunStatus::Succeeded,
                "{}: {name}: {:?}",
                m.backend(),
                report.error
            );
            assert_eq!(report.counts.retries, retries, "{name}");
            assert_eq!(report.counts.http_requests, 3 + retries, "{name}");
            let row = m
                .dump("SELECT retries, http_requests FROM sync_runs ORDER BY run_id DESC LIMIT 1")
                .await;
            assert_eq!(
                row[0]["retries"].as_u64(),
                Some(retries),
                "{name}: recorded in the run row"
            );
            assert_mirrors(&m, &sim.listing()).await;
            drop(m);
            db_reset(&db).await;
        }
    }
}

/// A `Retry-After` longer than `api.max_retry_wait` is not cut short: the run gives up
/// on it at once, saying so, instead of asking again before the server said to.
#[tokio::test]
async fn a_retry_after_longer_than_allowed_fails_the_run_at_once_saying_so() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(150, 45)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        sim.set_faults(rule(Some(1), 1..=100, status(429, Some("3600"))));
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Failed, "{}", m.backend());
        let error = report.error.unwrap();
        // Page 1's own words, or another page's that met the hold-off it left.
        assert!(
            error.contains("api.max_retry_wait")
                && (error.contains("asked to wait 3600 s")
                    || error.contains("asked not to be called for another 3")),
            "{error}"
        );
        assert_eq!(report.counts.retries, 0, "{error}");
        let page_1 = |sim: &closebot_sim::Simulator| {
            sim.requests()
                .iter()
                .filter(|r| r.query.iter().any(|(k, v)| k == "page" && v == "1"))
                .count()
        };
        assert_eq!(page_1(&sim), 1, "asked once, not again before the hour");
        // The next run of the same process sends nothing before the hour is out.
        let sent = sim.requests().len();
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Failed);
        let error = report.error.unwrap();
        assert!(error.contains("no request was sent"), "{error}");
        assert_eq!(sim.requests().len(), sent, "{error}");
        // A Retry-After past what a clock can hold is the same, not a crash.
        let (sim, server) = simulator(sim_options(150, 45)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        sim.set_faults(rule(
            Some(1),
            1..=100,
            status(429, Some("18446744073709551615")),
        ));
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Failed, "{}", m.backend());
        assert!(report.error.unwrap().contains("api.max_retry_wait"));
    }
}

/// Empties a test database between cases that share it.
async fn db_reset(db: &crate::common::Db) {
    let store = closebot_sync::store::Store::connect(&db.url.parse().unwrap(), 2)
        .await
        .unwrap();
    let mut c = store.acquire().await.unwrap();
    for t in crate::common::TABLES {
        c.conn()
            .execute(&format!("DELETE FROM {t}"), vec![])
            .await
            .unwrap();
    }
}

/// Runs a good sync, then one with `faults`, and checks it failed with `expect` in its
/// error and left every table as it was.
async fn fails_and_keeps_the_data(name: &str, faults: Faults, expect: &[&str], retried: bool) {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(250, 47)).await;
        let m = Mirror::new(settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_API__MAX_RETRIES", "2")],
        ))
        .await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let before = snapshot(&m).await;
        sim.mutate(
            1,
            &closebot_sim::MutationPlan {
                rename: 10,
                delete: 3,
                add: 3,
                ..Default::default()
            },
        );
        sim.set_faults(faults.clone());
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Failed, "{}: {name}", m.backend());
        let error = report.error.clone().unwrap();
        for e in expect {
            assert!(
                error.contains(e),
                "{name}: the error should say {e:?}: {error}"
            );
        }
        if !retried {
            assert_eq!(report.counts.retries, 0, "{name}: not retried");
        }
        assert_eq!(
            snapshot(&m).await,
            before,
            "{}: {name}: a failed run changed data",
            m.backend()
        );
        let row = m
            .dump("SELECT status, error FROM sync_runs ORDER BY run_id DESC LIMIT 1")
            .await;
        assert_eq!(row[0]["status"], "failed");
        assert_eq!(row[0]["error"].as_str(), Some(error.as_str()));
    }
}

#[tokio::test]
async fn client_errors_are_not_retried_and_fail_the_run_with_the_body_and_advice() {
    for (code, advice) in [
        (400, "api.page_size"),
        (403, "access"),
        (404, "api.base_url"),
    ] {
        let faults = rule(
            Some(1),
            1..=100,
            FaultAction::Status {
                code,
                retry_after: None,
                body: Some(format!("{{\"title\":\"nope {code}\"}}")),
            },
        );
        let code_text = code.to_string();
        fails_and_keeps_the_data(
            &format!("HTTP {code}"),
            faults,
            &[&code_text, &format!("nope {code}"), advice, "page 1"],
            false,
        )
        .await;
    }
}

#[tokio::test]
async fn a_server_error_that_persists_fails_the_run_after_the_retries() {
    fails_and_keeps_the_data(
        "HTTP 500 forever",
        rule(Some(2), 1..=100, status(500, None)),
        &["page 2", "3 attempts"],
        true,
    )
    .await;
}

#[tokio::test]
async fn malformed_pages_fail_the_run_naming_the_page_and_the_problem() {
    let cases: Vec<(&str, FaultAction, Vec<&str>)> = vec![
        (
            "a truncated body",
            FaultAction::TruncatedBody,
            vec!["page 1"],
        ),
        (
            "invalid JSON",
            FaultAction::InvalidJson,
            vec!["page 1", "JSON"],
        ),
        (
            "total of the wrong type",
            FaultAction::TotalWrongType,
            vec!["page 1", "total"],
        ),
        (
            "no total",
            FaultAction::MissingTotal,
            vec!["page 1", "total"],
        ),
        (
            "another page's number",
            FaultAction::WrongPageNumber,
            vec!["page 1"],
        ),
    ];
    for (name, action, expect) in cases {
        fails_and_keeps_the_data(name, rule(Some(1), 1..=100, action), &expect, true).await;
    }
}

/// The API documents the request's `page` as 0-based, not the number it echoes: a server
/// that echoes page 0 as 1 is walked as well, and a page that then comes back as another
/// page's still fails the run.
#[tokio::test]
async fn a_page_echo_counted_from_one_is_followed_and_still_checked() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(250, 79)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        sim.set_faults(Faults {
            echo_page_from_one: true,
            ..Faults::default()
        });
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
        assert_eq!((report.counts.created, report.counts.walks), (250, 1));
        assert_mirrors(&m, &sim.listing()).await;
        sim.set_faults(Faults {
            echo_page_from_one: true,
            ..rule(Some(2), 1..=100, FaultAction::WrongPageNumber)
        });
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Failed, "{}", m.backend());
        let error = report.error.unwrap();
        assert!(
            error.contains("page 2") && error.contains("page 3"),
            "{error}"
        );
        // Page 0 may echo 0 or 1, nothing else.
        sim.set_faults(Faults {
            echo_page_from_one: true,
            ..rule(Some(0), 1..=100, FaultAction::WrongPageNumber)
        });
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Failed, "{}", m.backend());
        let error = report.error.unwrap();
        assert!(error.contains("page 2 for page 0"), "{error}");
    }
}

#[tokio::test]
async fn a_source_field_of_the_wrong_type_quarantines_that_source_only() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(120, 53)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        sim.set_faults(rule(Some(1), 1..=100, FaultAction::SourceFieldWrongType));
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Partial, "{:?}", report.error);
        assert_eq!((report.counts.created, report.counts.rejected), (119, 1));
        let notes = report.notes.unwrap();
        assert!(
            notes.contains("connected") && notes.contains("quarantined"),
            "{notes}"
        );
        assert_eq!(
            m.count("SELECT COUNT(*) AS n FROM source_rejects WHERE resolved_at IS NULL")
                .await,
            1,
            "{}",
            m.backend()
        );
        // Once the server sends the record right, it is mirrored and the reject closed.
        sim.set_faults(Faults::default());
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.notes);
        assert_eq!(report.counts.created, 1);
        assert_mirrors(&m, &sim.listing()).await;
        assert_eq!(
            m.count("SELECT COUNT(*) AS n FROM source_rejects WHERE resolved_at IS NULL")
                .await,
            0
        );
    }
}

#[tokio::test]
async fn an_unstable_order_marks_nothing_deleted_unless_the_walks_together_saw_everything() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(250, 59)).await;
        let m = Mirror::new(settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_SYNC__MAX_WALKS", "1")],
        ))
        .await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.mutate(
            2,
            &closebot_sim::MutationPlan {
                rename: 20,
                ..Default::default()
            },
        );
        sim.set_faults(Faults {
            unstable_order: true,
            ..Faults::default()
        });
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Partial, "{}", m.backend());
        assert_eq!(report.counts.deleted, 0);
        assert!(
            report.notes.as_deref().unwrap().contains("distinct"),
            "{:?}",
            report.notes
        );
        assert!(report.counts.seen < 250);
        assert_eq!(marked_deleted(&m).await, 0);
        let misses = m.count("SELECT COUNT(*) AS n FROM source_misses").await;
        assert_eq!(
            misses as u64,
            250 - report.counts.seen,
            "the unseen sources are recorded as misses"
        );

        // Enough walks together see every source: the run is complete.
        let m = Mirror::new(settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_SYNC__MAX_WALKS", "10")],
        ))
        .await;
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.notes);
        assert!(report.counts.walks > 1);
        sim.set_faults(Faults::default());
        assert_mirrors(&m, &sim.listing()).await;
    }
}

#[tokio::test]
async fn a_listing_that_changes_mid_walk_is_walked_again_and_nothing_listed_is_deleted() {
    for db in databases().await {
        for change in [
            MidWalk::InsertFirst { after_page: 0 },
            MidWalk::DeleteFirst { after_page: 0 },
        ] {
            let (sim, server) = simulator(sim_options(250, 61)).await;
            let m = Mirror::new(settings(
                &server.base_url(),
                &db,
                &[("CLOSEBOT_SYNC_API__CONCURRENCY", "1")],
            ))
            .await;
            assert_eq!(m.sync().await.status, RunStatus::Succeeded);
            sim.set_faults(Faults {
                mid_walk: vec![change.clone()],
                ..Faults::default()
            });
            let report = m.sync().await;
            assert_eq!(
                report.status,
                RunStatus::Succeeded,
                "{}: {change:?}: {:?}",
                m.backend(),
                report.notes
            );
            // An insert moves the total: a second walk. A deletion does too, and the source
            // the second walk no longer lists takes a third, made to confirm it is gone.
            let (walks, deleted) = if matches!(change, MidWalk::DeleteFirst { .. }) {
                (3, 1)
            } else {
                (2, 0)
            };
            assert_eq!(
                (report.counts.walks, report.counts.deleted),
                (walks, deleted),
                "{change:?}"
            );
            assert_mirrors(&m, &sim.listing()).await;
            drop(m);
            db_reset(&db).await;
        }
    }
}

/// A source deleted from a page already read and one added at the end leave `total` as it
/// was, while every later source moves back one place: the walk skips the source at the
/// next page boundary, yet sees `total` distinct sources and nothing twice. Such a walk
/// looks complete; the source it skipped must not be marked deleted.
#[tokio::test]
async fn a_source_skipped_by_a_walk_that_looks_complete_is_not_marked_deleted() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(250, 63)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let before = crate::simulator_contract::ids_of(&sim.listing());
        sim.set_faults(Faults {
            mid_walk: vec![
                MidWalk::DeleteFirst { after_page: 0 },
                MidWalk::InsertLast { after_page: 0 },
            ],
            ..Faults::default()
        });
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.notes);
        let page = m.settings.api.page_size as usize;
        assert_eq!(
            (
                report.counts.walks,
                report.counts.deleted,
                report.counts.created
            ),
            (2, 0, 1),
            "{}: one walk that looked complete, one to confirm; {} was skipped, not deleted",
            m.backend(),
            before[page]
        );
        assert_eq!(marked_deleted(&m).await, 0);
        // The source really deleted (read on page 0 before it went) goes with the next run.
        let report = m.sync().await;
        assert_eq!(
            (report.status, report.counts.deleted),
            (RunStatus::Succeeded, 1)
        );
        assert_mirrors(&m, &sim.listing()).await;
    }
}

/// The walk made to confirm a deletion confirms nothing when it is itself incomplete: the
/// source the first walk skipped, and the confirming walk could not list, stays live.
#[tokio::test]
async fn a_confirming_walk_that_is_not_complete_marks_nothing_deleted() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(250, 64)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let before = crate::simulator_contract::ids_of(&sim.listing());
        let skipped = before[m.settings.api.page_size as usize].clone();
        sim.set_faults(Faults {
            mid_walk: vec![
                MidWalk::DeleteFirst { after_page: 0 },
                MidWalk::InsertLast { after_page: 0 },
            ],
            // Page 0's second request is the confirming walk's: it comes back empty.
            rules: vec![FaultRule {
                page: Some(0),
                attempts: 2..=2,
                action: FaultAction::NullResults,
            }],
            ..Faults::default()
        });
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Partial, "{}", m.backend());
        assert_eq!((report.counts.walks, report.counts.deleted), (2, 0));
        let notes = report.notes.unwrap_or_default();
        assert!(
            notes.contains("the walk made to confirm it could not be shown complete"),
            "{notes}"
        );
        assert_eq!(
            marked_deleted(&m).await,
            0,
            "{}: {skipped} was marked deleted",
            m.backend()
        );
        // With the API whole again, the next run mirrors the listing, the real deletion included.
        let report = m.sync().await;
        assert_eq!(
            (report.status, report.counts.deleted),
            (RunStatus::Succeeded, 1)
        );
        assert_mirrors(&m, &sim.listing()).await;
    }
}

/// The schema allows `"results": null` on any page, and requires no property, so a page
/// may come without `results` too. Either reads as a page with nothing on it: no error,
/// and the sources it should have held are not taken as deleted.
#[tokio::test]
async fn a_page_whose_results_are_null_or_missing_deletes_nothing_and_the_next_walk_reads_it() {
    for db in databases().await {
        for empty in [FaultAction::NullResults, FaultAction::MissingResults] {
            let (sim, server) = simulator(sim_options(250, 71)).await;
            let m = Mirror::new(settings(
                &server.base_url(),
                &db,
                &[("CLOSEBOT_SYNC_SYNC__MAX_WALKS", "1")],
            ))
            .await;
            let case = format!("{}: {empty:?}", m.backend());
            assert_eq!(m.sync().await.status, RunStatus::Succeeded, "{case}");
            sim.set_faults(rule(Some(1), 1..=100, empty.clone()));
            let report = m.sync().await;
            assert_eq!(report.status, RunStatus::Partial, "{case}");
            // The walk stops at the empty page; page 2 counts only if it came in before.
            assert!(
                report.counts.seen < 250 && report.counts.deleted == 0,
                "{case}"
            );
            let notes = report.notes.unwrap();
            assert!(notes.contains("page 1 was empty"), "{case}: {notes}");
            assert_eq!(marked_deleted(&m).await, 0, "{case}");
            // Empty on the first request for the page only: the second walk reads it.
            let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
            sim.set_faults(rule(Some(1), 1..=1, empty));
            let report = m.sync().await;
            assert_eq!(
                report.status,
                RunStatus::Succeeded,
                "{case}: {:?}",
                report.notes
            );
            assert_eq!(
                (report.counts.walks, report.counts.deleted),
                (2, 0),
                "{case}"
            );
            assert_mirrors(&m, &sim.listing()).await;
        }
    }
}

#[tokio::test]
async fn a_listing_that_suddenly_shrinks_is_not_taken_as_a_mass_deletion() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(200, 67)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.set_faults(Faults {
            shrink_to: Some(10),
            ..Faults::default()
        });
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Partial, "{}", m.backend());
        let notes = report.notes.unwrap();
        assert!(
            notes.contains("190 of 200") && notes.contains("--allow-mass-delete"),
            "{notes}"
        );
        assert_eq!(marked_deleted(&m).await, 0);
        let report = m
            .sync_with(SyncOptions {
                trigger: "test".into(),
                allow_mass_delete: true,
                ..SyncOptions::default()
            })
            .await;
        assert_eq!(
            (report.status, report.counts.deleted),
            (RunStatus::Succeeded, 190)
        );
    }
}

#[tokio::test]
async fn a_database_that_refuses_writes_fails_the_run_with_a_clear_error() {
    for db in databases().await {
        let (_sim, server) = simulator(sim_options(20, 71)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let read_only = db.read_only_url();
        let ro = settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_DATABASE__URL", &read_only)],
        );
        let store = closebot_sync::store::Store::connect(&ro.database.url, 2)
            .await
            .unwrap();
        let err = closebot_sync::sync::run_once(
            &ro,
            &store,
            &m.client,
            &SyncOptions::default(),
            &Default::default(),
        )
        .await
        .unwrap_err();
        let text = closebot_sync::text::chain(&err);
        assert!(
            text.contains("database error while") && text.contains("read"),
            "{}: {text}",
            db.backend
        );
        assert_eq!(
            m.count("SELECT COUNT(*) AS n FROM sync_runs").await,
            1,
            "nothing was recorded"
        );
    }
}

#[tokio::test]
async fn a_run_that_could_not_start_is_recorded_once_the_database_takes_writes_again() {
    use closebot_sync::store::runs::{Pending, Unrecorded};
    for db in databases().await {
        let (_sim, server) = simulator(sim_options(5, 73)).await;
        let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        let read_only = db.read_only_url();
        let down = closebot_sync::store::Store::connect(&read_only.parse().unwrap(), 2)
            .await
            .unwrap();
        let mut pending = Pending::default();
        pending.push(Unrecorded {
            at: chrono::Utc::now(),
            trigger: "schedule".into(),
            error: "database error while connecting: refused".into(),
        });
        let mut c = down.acquire().await.unwrap();
        assert!(pending.flush(&mut c.conn()).await.is_err());
        assert_eq!(pending.len(), 1, "{}: kept for the next try", db.backend);
        let mut c = m.store.acquire().await.unwrap();
        assert_eq!(pending.flush(&mut c.conn()).await.unwrap(), 1);
        assert!(pending.is_empty());
        let rows = m.dump("SELECT status, trigger, error FROM sync_runs").await;
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0]["status"].as_str(), rows[0]["trigger"].as_str()),
            (Some("failed"), Some("schedule"))
        );
        assert!(rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("recorded late: database error while connecting"));
    }
}

#[tokio::test]
async fn a_source_without_an_id_is_left_out_loudly_and_the_run_deletes_nothing() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(80, 97)).await;
        let m = Mirror::new(settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_SYNC__MAX_WALKS", "1")],
        ))
        .await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.edit(|l| {
            l[10]["sourceId"] = serde_json::Value::Null;
            l.remove(20);
        });
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Partial, "{}", m.backend());
        assert!(report.notes.unwrap().contains("1 sources had no sourceId"));
        assert_eq!(marked_deleted(&m).await, 0);
    }
}

/// A server that serves pages of 50 and does not say so (no `pageSize` in the body).
#[tokio::test]
async fn a_server_that_clamps_the_page_size_silently_is_still_walked_completely() {
    use axum::extract::Query;
    use axum::routing::get;
    use std::collections::HashMap;
    let (sim, _server) = simulator(sim_options(120, 101)).await;
    let listing = std::sync::Arc::new(sim.listing());
    let data = listing.clone();
    let app = axum::Router::new().route(
        "/agency/source",
        get(move |Query(q): Query<HashMap<String, String>>| {
            let data = data.clone();
            async move {
                let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
                let results: Vec<serde_json::Value> =
                    data.iter().skip(page * 50).take(50).cloned().collect();
                axum::Json(
                    serde_json::json!({"total": data.len(), "page": page, "results": results}),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let db = crate::common::sqlite();
    let m = Mirror::new(settings(&format!("http://{addr}"), &db, &[])).await;
    let report = m.sync().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.notes);
    assert_eq!(report.counts.pages, 3);
    assert_mirrors(&m, &listing).await;
}

/// A shutdown while the run waits for a database connection (the database down, or every
/// connection taken) stops it at once, as aborted before it began, instead of holding the
/// service past `schedule.shutdown_timeout` until the pool gives up.
#[tokio::test]
async fn a_shutdown_while_the_run_waits_for_the_database_stops_it_at_once() {
    for db in databases().await {
        let (_sim, server) = simulator(sim_options(5, 83)).await;
        let m = Mirror::new(settings(
            &server.base_url(),
            &db,
            &[("CLOSEBOT_SYNC_DATABASE__MAX_CONNECTIONS", "2")],
        ))
        .await;
        // Every connection of the pool taken: the run waits for one.
        let held = (
            m.store.acquire().await.unwrap(),
            m.store.acquire().await.unwrap(),
        );
        let cancel = tokio_util::sync::CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.cancel();
        });
        let options = SyncOptions {
            trigger: "test".into(),
            ..SyncOptions::default()
        };
        let outcome =
            closebot_sync::sync::run_once(&m.settings, &m.store, &m.client, &options, &cancel)
                .await;
        assert!(
            matches!(outcome, Err(closebot_sync::sync::SyncError::Cancelled)),
            "{}: {:?}",
            m.backend(),
            outcome.map(|r| r.status)
        );
        drop(held);
        assert_eq!(
            m.sync().await.status,
            RunStatus::Succeeded,
            "{}",
            m.backend()
        );
    }
}

/// A `Retry-After` holds every request of the client, not only the retry of its page: a
/// page asked for after the server said "come back in a second" waits for it too.
#[tokio::test]
async fn a_retry_after_holds_the_requests_of_every_page() {
    let (sim, server) = simulator(sim_options(250, 47)).await;
    let db = crate::common::sqlite();
    let m = Mirror::new(settings(
        &server.base_url(),
        &db,
        &[("CLOSEBOT_SYNC_API__MAX_RETRY_WAIT", "3s")],
    ))
    .await;
    sim.set_faults(rule(Some(1), 1..=1, status(429, Some("1"))));
    let client = m.client.clone();
    let page_1 = tokio::spawn(async move { client.fetch_page(1).await.map(|p| p.results.len()) });
    // The retry is counted once the hold-off is set.
    let waited = std::time::Instant::now();
    while m
        .client
        .counters
        .retries
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "page 1 was never refused"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = std::time::Instant::now();
    let page_2 = m.client.fetch_page(2).await.unwrap();
    let held = asked.elapsed();
    assert_eq!(page_2.results.len(), 50, "the last of 250 sources");
    assert!(
        held >= Duration::from_millis(800),
        "page 2 left after {held:?}"
    );
    assert_eq!(page_1.await.unwrap().unwrap(), 100);
}

/// A run is bounded in time: one still going after `sync.max_run_time` (a page that takes
/// for ever to come, here) is stopped, rolled back and recorded as failed, saying why.
#[tokio::test]
async fn a_run_longer_than_max_run_time_is_stopped_and_rolled_back() {
    for db in databases().await {
        let (sim, server) = simulator(sim_options(250, 85)).await;
        let mut m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        // The bound for the run under test only: the first sync of a debug build may need it.
        m.settings.sync.max_run_time = Duration::from_secs(1);
        let before = snapshot(&m).await;
        sim.mutate(
            3,
            &closebot_sim::MutationPlan {
                rename: 5,
                ..Default::default()
            },
        );
        sim.set_faults(crate::common::page_hangs(2));
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Failed, "{}", m.backend());
        let error = report.error.unwrap();
        assert!(error.contains("sync.max_run_time (1s)"), "{error}");
        assert_eq!(
            snapshot(&m).await,
            before,
            "{}: nothing applied",
            m.backend()
        );
        let row = m
            .dump("SELECT status FROM sync_runs ORDER BY run_id DESC LIMIT 1")
            .await;
        assert_eq!(row[0]["status"], "failed");
    }
}
