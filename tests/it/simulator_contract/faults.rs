//! Fault injection: each action does what it says, rules match by page and attempt,
//! and the listing-level faults (unstable order, shrink, mid-walk) shift pages.

use super::{get, start};
use closebot_sim::{FaultAction, FaultRule, Faults, MidWalk};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn on_first(page: u32, action: FaultAction) -> Faults {
    Faults {
        rules: vec![FaultRule {
            page: Some(page),
            attempts: 1..=1,
            action,
        }],
        ..Faults::default()
    }
}

#[tokio::test]
async fn a_status_rule_answers_with_its_code_and_retry_after_for_the_chosen_attempts() {
    let (sim, server) = start(50).await;
    let action = FaultAction::Status {
        code: 429,
        retry_after: Some("2".into()),
        body: None,
    };
    sim.set_faults(Faults {
        rules: vec![FaultRule {
            page: Some(0),
            attempts: 1..=2,
            action,
        }],
        ..Faults::default()
    });
    for _ in 0..2 {
        let reply = get(&server, "page=0").await;
        assert_eq!(reply.status, 429);
        assert_eq!(reply.headers["retry-after"], "2");
        assert!(reply.content_type().starts_with("application/problem+json"));
        assert_eq!(reply.json()["status"], 429);
    }
    assert_eq!(
        get(&server, "page=1").await.status,
        200,
        "another page is not affected"
    );
    assert_eq!(
        get(&server, "page=0").await.status,
        200,
        "the third attempt succeeds"
    );

    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    let action = FaultAction::Status {
        code: 503,
        retry_after: Some(date.into()),
        body: Some("busy".into()),
    };
    sim.set_faults(on_first(0, action));
    let reply = get(&server, "").await;
    assert_eq!((reply.status, reply.body.as_str()), (503, "busy"));
    assert_eq!(reply.headers["retry-after"], date);
    assert_eq!(get(&server, "").await.status, 200);
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200, 200, 503, 200]);
}

#[tokio::test]
async fn set_faults_restarts_the_attempt_count_and_a_later_attempt_can_fail() {
    let (sim, server) = start(10).await;
    let fail_second = Faults {
        rules: vec![FaultRule {
            page: None,
            attempts: 2..=2,
            action: FaultAction::Status {
                code: 500,
                retry_after: None,
                body: None,
            },
        }],
        ..Faults::default()
    };
    sim.set_faults(fail_second.clone());
    assert_eq!(get(&server, "page=0").await.status, 200);
    assert_eq!(get(&server, "page=0").await.status, 500);
    assert_eq!(
        get(&server, "page=1").await.status,
        200,
        "counted per page number"
    );
    sim.set_faults(fail_second);
    assert_eq!(
        get(&server, "page=0").await.status,
        200,
        "the count restarted"
    );
}

#[tokio::test]
async fn delays_and_latency_slow_the_answer_down() {
    let (sim, server) = start(10).await;
    sim.set_faults(on_first(0, FaultAction::Delay(Duration::from_millis(300))));
    let t = Instant::now();
    assert_eq!(get(&server, "").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    sim.set_faults(Faults {
        latency: Duration::from_millis(200),
        ..Faults::default()
    });
    let t = Instant::now();
    assert_eq!(get(&server, "").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn body_faults_break_the_document_in_the_named_way() {
    let (sim, server) = start(40).await;
    let normal = get(&server, "pageSize=10").await;
    let whole = normal.json();

    sim.set_faults(on_first(0, FaultAction::TruncatedBody));
    let cut = get(&server, "pageSize=10").await;
    assert_eq!(cut.status, 200);
    assert!(serde_json::from_str::<Value>(&cut.body).is_err());
    assert!(
        !cut.body.is_empty() && normal.body.starts_with(&cut.body),
        "a prefix of the real page"
    );

    sim.set_faults(on_first(0, FaultAction::InvalidJson));
    let html = get(&server, "pageSize=10").await;
    assert_eq!(html.status, 200);
    assert!(html.body.starts_with("<html>") && serde_json::from_str::<Value>(&html.body).is_err());

    let shaped = [
        (FaultAction::TotalWrongType, "total"),
        (FaultAction::SourceFieldWrongType, "connected"),
        (FaultAction::MissingResults, "results"),
        (FaultAction::NullResults, "results-null"),
        (FaultAction::MissingTotal, "total-missing"),
        (FaultAction::WrongPageNumber, "page"),
    ];
    for (action, what) in shaped {
        sim.set_faults(on_first(0, action));
        let body = get(&server, "pageSize=10").await.json();
        match what {
            "total" => assert_eq!(body["total"], Value::String("40".into())),
            "connected" => {
                assert_eq!(body["results"][0]["connected"], "yes");
                assert!(body["results"][1]["connected"].is_boolean());
            }
            "results" => assert!(body.get("results").is_none() && body["total"] == 40),
            "results-null" => {
                assert!(body.get("results") == Some(&Value::Null) && body["total"] == 40)
            }
            "total-missing" => assert!(body.get("total").is_none() && body["results"].is_array()),
            _ => assert_ne!(body["page"], 0),
        }
        let mut rest = body.clone();
        if what == "page" {
            rest["page"] = whole["page"].clone();
            assert_eq!(rest, whole, "only the page number is wrong");
        }
    }
}

#[tokio::test]
async fn a_page_echo_counted_from_one_shifts_only_the_echo() {
    let (sim, server) = start(25).await;
    let zero_based = get(&server, "pageSize=10&page=2").await.json();
    sim.set_faults(Faults {
        echo_page_from_one: true,
        ..Faults::default()
    });
    for page in 0..3 {
        let body = get(&server, &format!("pageSize=10&page={page}"))
            .await
            .json();
        assert_eq!(body["page"], page + 1);
        if page == 2 {
            assert_eq!(body["results"], zero_based["results"], "the same sources");
        }
    }
}

#[tokio::test]
async fn close_connection_drops_the_request_without_an_answer() {
    let (sim, server) = start(10).await;
    sim.set_faults(on_first(0, FaultAction::CloseConnection));
    let url = format!("{}/agency/source", server.base_url());
    let client = reqwest::Client::new();
    let err = client.get(&url).header("X-CB-KEY", "sim-key").send().await;
    assert!(err.is_err(), "expected a transport error, got {err:?}");
    assert_eq!(get(&server, "").await.status, 200);
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [0, 200]);
}

#[tokio::test]
async fn an_unstable_order_makes_one_pass_see_duplicates_and_misses() {
    let (sim, server) = start(300).await;
    sim.set_faults(Faults {
        unstable_order: true,
        ..Faults::default()
    });
    let mut seen = Vec::new();
    for page in 0..3 {
        let reply = get(&server, &format!("pageSize=100&page={page}")).await;
        assert_eq!(reply.json()["total"], 300);
        seen.extend(reply.ids());
    }
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 300);
    assert!(distinct.len() < 300, "no duplicate across pages");
    let first_two: Vec<Vec<String>> = [
        get(&server, "pageSize=100").await.ids(),
        get(&server, "pageSize=100").await.ids(),
    ]
    .into();
    assert_ne!(first_two[0], first_two[1], "a fresh order per request");
}

#[tokio::test]
async fn shrink_to_hides_sources_without_deleting_them() {
    let (sim, server) = start(60).await;
    sim.set_faults(Faults {
        shrink_to: Some(3),
        ..Faults::default()
    });
    let reply = get(&server, "pageSize=100").await;
    assert_eq!(
        (reply.json()["total"].as_u64(), reply.ids().len()),
        (Some(3), 3)
    );
    assert_eq!(sim.len(), 60);
    sim.set_faults(Faults::default());
    assert_eq!(get(&server, "").await.json()["total"], 60);
}

#[tokio::test]
async fn a_source_inserted_mid_walk_repeats_the_last_row_of_the_previous_page() {
    let (sim, server) = start(30).await;
    sim.set_faults(Faults {
        mid_walk: vec![MidWalk::InsertFirst { after_page: 0 }],
        ..Faults::default()
    });
    let p0 = get(&server, "pageSize=10&page=0").await.ids();
    let p1 = get(&server, "pageSize=10&page=1").await;
    assert_eq!(p1.json()["total"], 31);
    assert_eq!(p1.ids()[0], p0[9]);
    let again = get(&server, "pageSize=10&page=0").await.ids();
    assert!(again[0] < p0[0], "the new source sorts first");
    assert_eq!(again[1..], p0[..9]);
    assert_eq!(
        get(&server, "pageSize=10&page=1").await.json()["total"],
        31,
        "only after the first serve"
    );
}

#[tokio::test]
async fn a_deletion_and_an_insert_at_the_end_mid_walk_keep_the_total_and_skip_one() {
    let (sim, server) = start(30).await;
    let before = super::ids_of(&sim.listing());
    sim.set_faults(Faults {
        mid_walk: vec![
            MidWalk::DeleteFirst { after_page: 0 },
            MidWalk::InsertLast { after_page: 0 },
        ],
        ..Faults::default()
    });
    let p0 = get(&server, "pageSize=10&page=0").await.ids();
    assert_eq!(p0, before[..10]);
    let p1 = get(&server, "pageSize=10&page=1").await;
    assert_eq!(p1.json()["total"], 30, "the total did not move");
    assert_eq!(p1.ids()[0], before[11], "before[10] was skipped");
    let p2 = get(&server, "pageSize=10&page=2").await.ids();
    assert_eq!(p2[..9], before[21..]);
    assert!(
        !before.contains(&p2[9]) && p2[9] > before[29],
        "the new source sorts last"
    );
}

#[tokio::test]
async fn a_source_deleted_mid_walk_makes_the_walk_skip_one() {
    let (sim, server) = start(30).await;
    let before = super::ids_of(&sim.listing());
    sim.set_faults(Faults {
        mid_walk: vec![MidWalk::DeleteFirst { after_page: 0 }],
        ..Faults::default()
    });
    let p0 = get(&server, "pageSize=10&page=0").await.ids();
    assert_eq!(p0, before[..10]);
    let p1 = get(&server, "pageSize=10&page=1").await;
    assert_eq!(p1.json()["total"], 29);
    assert_eq!(p1.ids()[0], before[11], "before[10] was skipped");
    assert_eq!(sim.len(), 29);
}
