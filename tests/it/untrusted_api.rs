//! The API as a hostile or broken server would behave: redirects elsewhere, absurd totals,
//! pages that ignore paging, bodies without end, JSON a strict decoder refuses, and
//! terminal escapes in error bodies. The key must stay home, the run must end, and nothing
//! may be applied or deleted on the strength of such a page.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use closebot_sim::{FaultAction, FaultRule, Faults, RequestRecord, SimServer, Simulator};
use closebot_sync::closebot::MAX_REDIRECTS;
use closebot_sync::store::runs::RunStatus;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{databases, settings, sim_options, simulator, snapshot, Db, Mirror, KEY};

fn always(action: FaultAction) -> Faults {
    on_page(None, action)
}

fn on_page(page: Option<u32>, action: FaultAction) -> Faults {
    Faults {
        rules: vec![FaultRule {
            page,
            attempts: 1..=u32::MAX,
            action,
        }],
        ..Faults::default()
    }
}

/// A simulator of `sources` sources and a mirror of it in `db`, with default settings.
async fn mirror_of(db: &Db, sources: usize, seed: u64) -> (Simulator, SimServer, Mirror) {
    let (sim, server) = simulator(sim_options(sources, seed)).await;
    let m = Mirror::new(settings(&server.base_url(), db, &[])).await;
    (sim, server, m)
}

fn assert_succeeded(m: &Mirror, report: &closebot_sync::sync::RunReport) {
    let status = report.status;
    assert_eq!(
        status,
        RunStatus::Succeeded,
        "{}: {:?}",
        m.backend(),
        report.error
    );
}

/// How many of `requests` asked for `page`.
fn requests_for(requests: &[RequestRecord], page: u32) -> usize {
    let page = page.to_string();
    requests
        .iter()
        .filter(|r| r.query.iter().any(|(k, v)| k == "page" && *v == page))
        .count()
}

/// A server on another loopback port that counts what reaches it, and how much of it
/// carried the API key.
async fn catcher() -> (String, Arc<AtomicU64>, Arc<AtomicU64>) {
    let (all, keyed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (a, k) = (all.clone(), keyed.clone());
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let (a, k) = (a.clone(), k.clone());
        async move {
            a.fetch_add(1, Ordering::SeqCst);
            if headers.contains_key("x-cb-key") {
                k.fetch_add(1, Ordering::SeqCst);
            }
            axum::Json(serde_json::json!({"total": 0, "page": 0, "results": []}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("127.0.0.1:{}", addr.port()), all, keyed)
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_never_followed_and_no_other_server_receives_the_key() {
    let (elsewhere, reached, keyed) = catcher().await;
    for db in databases().await {
        let (sim, server, m) = mirror_of(&db, 150, 211).await;
        let sim_port = server.addr.port();
        let targets = [
            // Another port.
            format!("http://{elsewhere}/agency/source?page=1&token=leaked"),
            // Another host on the same port.
            format!("http://localhost:{sim_port}/agency/source?page=1&token=leaked"),
            // Another scheme on the same host and port.
            format!("https://127.0.0.1:{sim_port}/agency/source?token=leaked"),
        ];
        for code in [301u16, 302, 303, 307, 308] {
            for target in &targets {
                sim.set_faults(on_page(
                    Some(1),
                    FaultAction::Redirect {
                        code,
                        location: target.clone(),
                    },
                ));
                let before = sim.requests().len();
                let report = m.sync().await;
                let case = format!("{}: HTTP {code} to {target}", m.backend());
                assert_eq!(report.status, RunStatus::Failed, "{case}");
                let error = report.error.unwrap();
                let shown = target.split('?').next().unwrap();
                for part in [&format!("HTTP {code}"), "page 1", shown, "api.base_url"] {
                    assert!(error.contains(part), "{case}: should say {part:?}: {error}");
                }
                assert!(
                    !error.contains("leaked"),
                    "{case}: the query string is dropped: {error}"
                );
                assert_eq!(
                    requests_for(&sim.requests()[before..], 1),
                    1,
                    "{case}: a redirect is not retried"
                );
                assert_eq!(
                    m.count("SELECT COUNT(*) AS n FROM sources").await,
                    0,
                    "{case}: nothing of the failed run is applied"
                );
            }
        }
    }
    assert_eq!(
        keyed.load(Ordering::SeqCst),
        0,
        "the key reached another server"
    );
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "no request went elsewhere"
    );
}

/// A server that sends the key back in what the error shows (a redirect's target, a value
/// of the page) does not get it into the error, the run row or `status`: `***` stands in.
#[tokio::test]
async fn the_key_sent_back_in_a_location_or_a_value_is_never_shown() {
    for db in databases().await {
        let (sim, _server, m) = mirror_of(&db, 5, 229).await;
        for fault in [
            FaultAction::Redirect {
                code: 302,
                location: format!("https://elsewhere.invalid/{KEY}/agency/source"),
            },
            FaultAction::SetTotal(serde_json::json!(KEY)),
        ] {
            sim.set_faults(always(fault.clone()));
            let report = m.sync().await;
            let case = format!("{}: {fault:?}", m.backend());
            assert_eq!(report.status, RunStatus::Failed, "{case}");
            let error = report.error.unwrap();
            assert!(
                !error.contains(KEY) && error.contains("***"),
                "{case}: {error}"
            );
            let stored = m.dump("SELECT error FROM sync_runs").await;
            assert!(
                stored.iter().all(|r| !r["error"].to_string().contains(KEY)),
                "{case}: {stored:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_redirect_within_the_same_origin_is_followed_a_few_hops_at_most() {
    for db in databases().await {
        let (sim, _server, m) = mirror_of(&db, 150, 223).await;
        // Once, to the same listing with a trailing slash: followed, with the key.
        sim.set_faults(Faults {
            rules: vec![FaultRule {
                page: Some(1),
                attempts: 1..=1,
                action: FaultAction::Redirect {
                    code: 307,
                    location: "/agency/source/?page=1&pageSize=100&order=%2Bid".into(),
                },
            }],
            ..Faults::default()
        });
        let report = m.sync().await;
        assert_succeeded(&m, &report);
        assert_eq!(m.count("SELECT COUNT(*) AS n FROM sources").await, 150);
        let followed = sim.requests();
        assert!(
            followed
                .iter()
                .any(|r| r.path == "/agency/source/" && r.authorized && r.status == 200),
            "the redirect was followed with the key"
        );
        // Redirected without end: given up after a few hops, not followed forever.
        sim.set_faults(on_page(
            Some(1),
            FaultAction::Redirect {
                code: 302,
                location: "/agency/source/?page=1&pageSize=100&order=%2Bid".into(),
            },
        ));
        let before = sim.requests().len();
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Failed);
        let error = report.error.unwrap();
        assert!(
            error.contains("most redirects") && error.contains("page 1"),
            "{error}"
        );
        assert_eq!(
            requests_for(&sim.requests()[before..], 1),
            1 + MAX_REDIRECTS,
            "the first request and {MAX_REDIRECTS} hops"
        );
        // Within the origin, but to another query: the side-effect parameter, or another
        // page. Not followed: the server never chooses what is asked.
        for location in [
            "/agency/source?page=1&pageSize=100&order=%2Bid&forceTokenRefresh=true",
            "/agency/source?page=0&pageSize=100&order=%2Bid",
        ] {
            sim.set_faults(on_page(
                Some(1),
                FaultAction::Redirect {
                    code: 302,
                    location: location.into(),
                },
            ));
            let before = sim.requests().len();
            let report = m.sync().await;
            assert_eq!(report.status, RunStatus::Failed, "{location}");
            let error = report.error.unwrap();
            assert!(
                error.contains("changes the request's query"),
                "{location}: {error}"
            );
            let sent = &sim.requests()[before..];
            assert!(
                sent.iter()
                    .all(|r| r.query.iter().all(|(k, _)| k != "forceTokenRefresh")),
                "{location}: followed"
            );
            assert_eq!(
                requests_for(sent, 1),
                1,
                "{location}: not followed nor retried"
            );
        }
    }
}

/// A server that answers one page with a body of `size` bytes, written 64 KiB at a time
/// until the client stops reading; returns its URL and the bytes it managed to write.
async fn endless_body(size: u64, announce: bool) -> (String, Arc<AtomicU64>) {
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let _ = socket.read(&mut request).await;
                let length = if announce {
                    format!("Content-Length: {size}\r\n")
                } else {
                    String::new()
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n"
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let start = br#"{"total": 1, "page": 0, "pageSize": 100, "results": ["#;
                let mut block = vec![b' '; 64 * 1024];
                block[..start.len()].copy_from_slice(start);
                let mut sent = 0u64;
                while sent < size {
                    let n = block.len().min((size - sent) as usize);
                    if socket.write_all(&block[..n]).await.is_err() {
                        return;
                    }
                    block[..start.len()].fill(b' ');
                    sent += n as u64;
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                }
            });
        }
    });
    (format!("http://{addr}"), written)
}

#[tokio::test]
async fn a_body_far_larger_than_max_page_bytes_is_refused_while_it_streams_in() {
    const BODY: u64 = 512 << 20;
    for db in databases().await {
        for announce in [false, true] {
            let (url, written) = endless_body(BODY, announce).await;
            let m = Mirror::new(settings(
                &url,
                &db,
                &[("CLOSEBOT_SYNC_API__MAX_PAGE_BYTES", "65536")],
            ))
            .await;
            let report = m.sync().await;
            let case = format!("{}, Content-Length sent: {announce}", m.backend());
            assert_eq!(report.status, RunStatus::Failed, "{case}");
            let error = report.error.unwrap();
            assert!(
                error.contains("page 0") && error.contains("api.max_page_bytes (65536 bytes)"),
                "{case}: {error}"
            );
            assert_eq!(
                error.contains(&format!("announced {BODY} bytes")),
                announce,
                "{case}: {error}"
            );
            assert_eq!(report.counts.http_requests, 1, "{case}: not retried");
            // Give the server's writes time to fail against the closed connection.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let sent = written.load(Ordering::SeqCst);
            assert!(
                sent < BODY / 16,
                "{case}: the client kept reading: the server wrote {sent} of {BODY} bytes"
            );
        }
    }
}

#[tokio::test]
async fn an_absurd_total_is_refused_after_one_request_and_nothing_is_applied() {
    let cases: Vec<(Value, &[&str])> = vec![
        (
            serde_json::json!(1_000_000_000_000u64),
            &["int32", "1000000000000"],
        ),
        (serde_json::json!(-1), &["int32", "-1"]),
        (serde_json::from_str("1e12").unwrap(), &["int32", "1e+12"]),
        // Within int32, but 21 million pages of 100.
        (serde_json::json!(i32::MAX), &["21474837 pages", "100000"]),
    ];
    for db in databases().await {
        let (sim, _server, m) = mirror_of(&db, 5, 227).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        let before = snapshot(&m).await;
        sim.edit(|l| {
            l.remove(0);
        });
        for (total, expect) in &cases {
            sim.set_faults(always(FaultAction::SetTotal(total.clone())));
            let requests = sim.requests().len();
            let report = m.sync().await;
            let case = format!("{}: total {total}", m.backend());
            assert_eq!(report.status, RunStatus::Failed, "{case}");
            let error = report.error.unwrap();
            for e in expect.iter().chain(&["page 0", "total"]) {
                assert!(error.contains(e), "{case}: should say {e:?}: {error}");
            }
            assert_eq!(sim.requests().len() - requests, 1, "{case}");
            assert_eq!(snapshot(&m).await, before, "{case}: the data was changed");
        }
    }
}

#[tokio::test]
async fn empty_pages_before_the_total_end_the_walk_and_the_run_deletes_nothing() {
    for db in databases().await {
        let (sim, _server, m) = mirror_of(&db, 6, 229).await;
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        sim.edit(|l| {
            l.remove(0);
        });
        // 10,000 pages of 100 promised, 5 sources on page 0, nothing after it.
        sim.set_faults(always(FaultAction::SetTotal(1_000_000.into())));
        let requests = sim.requests().len();
        let report = m.sync().await;
        assert_eq!(
            report.status,
            RunStatus::Partial,
            "{}: {:?}",
            m.backend(),
            report.error
        );
        assert_eq!(report.counts.deleted, 0);
        let notes = report.notes.unwrap();
        assert!(
            notes.contains("was empty although the listing reported 1000000"),
            "{notes}"
        );
        let made = (sim.requests().len() - requests) as u64;
        let walks = m.settings.sync.max_walks as u64;
        let per_walk = 1 + 2 * m.settings.api.concurrency as u64;
        assert!(
            made <= walks * per_walk,
            "{made} requests: at most {per_walk} per walk, {walks} walks"
        );
        assert_eq!(report.counts.walks, walks);
        assert_eq!(
            m.count("SELECT COUNT(*) AS n FROM sources WHERE deleted_at IS NOT NULL")
                .await,
            0
        );
    }
}

#[tokio::test]
async fn a_server_that_ignores_paging_is_refused_on_the_first_page() {
    for db in databases().await {
        let (sim, _server, m) = mirror_of(&db, 250, 233).await;
        sim.set_faults(always(FaultAction::IgnorePaging));
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Failed, "{}", m.backend());
        let error = report.error.unwrap();
        assert!(
            error.contains("page 0")
                && error.contains("250 results")
                && error.contains("at most 100"),
            "{error}"
        );
        assert_eq!(sim.requests().len(), 1);
        assert_eq!(m.count("SELECT COUNT(*) AS n FROM sources").await, 0);
    }
}

/// A JSON number as (negative, significant digits, exponent), so that `1e400` and the
/// 401-digit integer PostgreSQL prints for it compare equal, and `1e400` and `1e401` do not.
fn decimal(text: &str) -> (bool, String, i64) {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.trim_start_matches('+').parse::<i64>().unwrap()),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let mut exponent = exponent - frac.len() as i64;
    let trimmed = digits.trim_start_matches('0');
    let significant = trimmed.trim_end_matches('0');
    exponent += (trimmed.len() - significant.len()) as i64;
    (negative, significant.to_string(), exponent)
}

#[test]
fn decimals_compare_by_value_not_by_spelling() {
    assert_eq!(decimal("1e400"), decimal(&format!("1{}", "0".repeat(400))));
    assert_eq!(decimal("0.1500"), decimal("15e-2"));
    assert_ne!(decimal("1e400"), decimal("1e401"));
    assert_ne!(decimal("-2"), decimal("2"));
}

#[tokio::test]
async fn a_lone_surrogate_reads_as_a_replacement_character_and_big_numbers_are_kept_exactly() {
    const NUMBERS: [(&str, &str); 3] = [
        ("huge", "1e400"),
        ("bigInteger", "123456789012345678901234567890"),
        (
            "precise",
            "0.10000000000000000555111512312578270211815834045",
        ),
    ];
    for db in databases().await {
        let (sim, _server, m) = mirror_of(&db, 30, 239).await;
        let mut id = String::new();
        sim.edit(|l| {
            id = l[3]["sourceId"].as_str().unwrap().to_string();
            l[3]["name"] = "Caf@LONE@".into();
            for (field, number) in NUMBERS {
                l[3][field] = serde_json::from_str(number).unwrap();
            }
        });
        sim.set_faults(always(FaultAction::ReplaceInBody {
            from: "@LONE@".into(),
            to: "\\ud83d".into(),
        }));
        let report = m.sync().await;
        assert_succeeded(&m, &report);
        let rows = m
            .dump(&format!(
                "SELECT name, raw_record FROM sources WHERE source_id = '{id}'"
            ))
            .await;
        assert_eq!(rows[0]["name"], "Caf\u{FFFD}", "{}", m.backend());
        let raw = match &rows[0]["raw_record"] {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            v => v.clone(),
        };
        let exported = crate::common::export(&m, None).await;
        let record = exported["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sourceId"] == id.as_str())
            .unwrap()
            .clone();
        for (place, value) in [("sources.raw_record", &raw), ("export", &record)] {
            for (field, number) in NUMBERS {
                let kept = value[field].to_string();
                assert_eq!(
                    decimal(&kept),
                    decimal(number),
                    "{}: {place}: {field} came back as {kept}",
                    m.backend()
                );
                if m.store.backend() == closebot_sync::store::Backend::Sqlite
                    && !number.contains('e')
                {
                    // serde_json spells an exponent with its sign (1e+400); digits stay.
                    assert_eq!(kept, number, "SQLite keeps the digits as sent");
                }
            }
            assert_eq!(value["name"], "Caf\u{FFFD}");
        }
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_located_and_only_a_short_one_is_called_cut_off() {
    let (sim, server) = simulator(sim_options(150, 241)).await;
    let db = crate::common::sqlite();
    let m = Mirror::new(settings(&server.base_url(), &db, &[])).await;
    sim.set_faults(on_page(Some(1), FaultAction::InvalidJson));
    let error = m.sync().await.error.unwrap();
    assert!(error.contains("line 1 column 1"), "{error}");
    assert!(!error.contains("cut off"), "{error}");
    sim.set_faults(on_page(Some(1), FaultAction::TruncatedBody));
    let error = m.sync().await.error.unwrap();
    assert!(
        error.contains("cut off") && error.contains("line 1 column"),
        "{error}"
    );
}

#[tokio::test]
async fn an_escape_sequence_in_an_error_body_is_shown_escaped() {
    for db in databases().await {
        let (sim, _server, m) = mirror_of(&db, 150, 251).await;
        sim.set_faults(on_page(
            Some(1),
            FaultAction::Status {
                code: 400,
                retry_after: None,
                body: Some("{\"title\": \"bad\u{1b}[2J\u{1b}]0;owned\u{7}request\"}".into()),
            },
        ));
        let report = m.sync().await;
        assert_eq!(report.status, RunStatus::Failed);
        let error = report.error.clone().unwrap();
        assert!(
            error.contains("bad\\u{1b}[2J\\u{1b}]0;owned\\u{7}request"),
            "{error}"
        );
        let summary = report.summary();
        let row = m
            .dump("SELECT error FROM sync_runs ORDER BY run_id DESC LIMIT 1")
            .await;
        let stored = row[0]["error"].as_str().unwrap().to_string();
        for (place, text) in [
            ("error", &error),
            ("summary", &summary),
            ("sync_runs.error", &stored),
        ] {
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "{}: {place} holds a control character: {text:?}",
                m.backend()
            );
        }
        assert!(stored.contains("\\u{1b}[2J"), "{stored}");
    }
}
