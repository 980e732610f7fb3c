//! The HTTP contract: 0-based paging, the page-size clamp, filters and orders, auth and
//! its two kinds of 401, parameter errors, and the token-refresh side effect.

use super::{get, ids_of, send, start, KEY};
use closebot_sim::{SimOptions, Simulator};
use serde_json::Value;

#[tokio::test]
async fn pages_are_zero_based_clamped_to_one_hundred_and_cover_the_listing() {
    let (sim, server) = start(250).await;
    let expected = ids_of(&sim.listing());
    let mut walked = Vec::new();
    for (page, size) in [(0, 100), (1, 100), (2, 50)] {
        let reply = get(&server, &format!("pageSize=100&page={page}")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type(), "application/json; charset=utf-8");
        let body = reply.json();
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["total", "results", "page", "pageSize"]);
        assert_eq!(
            (body["total"].as_u64(), body["page"].as_u64()),
            (Some(250), Some(page))
        );
        assert_eq!(body["pageSize"], 100);
        assert_eq!(reply.ids().len(), size, "page {page}");
        walked.extend(reply.ids());
    }
    assert_eq!(walked, expected);
    let past = get(&server, "pageSize=100&page=3").await.json();
    assert_eq!(
        (
            past["total"].as_u64(),
            past["results"].as_array().map(Vec::len)
        ),
        (Some(250), Some(0))
    );
    let clamped = get(&server, "pageSize=500").await;
    assert_eq!(
        (clamped.json()["pageSize"].as_u64(), clamped.ids().len()),
        (Some(100), 100)
    );
    let default = get(&server, "").await;
    assert_eq!(
        (
            default.json()["pageSize"].as_u64(),
            default.json()["page"].as_u64()
        ),
        (Some(20), Some(0))
    );
    assert_eq!(default.ids(), expected[..20]);
    assert_eq!(get(&server, "page=1").await.ids(), expected[20..40]);
}

#[tokio::test]
async fn bad_parameters_get_a_problem_naming_the_parameter() {
    let (_sim, server) = start(10).await;
    for (query, param) in [
        ("pageSize=0", "pageSize"),
        ("pageSize=-5", "pageSize"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("pageSize=1.5", "pageSize"),
        ("page=99999999999", "page"),
        ("order=%2Bcolor", "order"),
        ("forceTokenRefresh=maybe", "forceTokenRefresh"),
    ] {
        let reply = get(&server, query).await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(
            reply.content_type().starts_with("application/problem+json"),
            "{query}"
        );
        let body = reply.json();
        assert_eq!(body["status"], 400);
        assert!(body["errors"][param].is_array(), "{query}: {body}");
        assert!(body["traceId"].is_string());
    }
}

#[tokio::test]
async fn filters_and_orders_follow_the_documented_keys() {
    let (sim, server) = start(300).await;
    let listing = sim.listing();
    let count = |f: &dyn Fn(&Value) -> bool| listing.iter().filter(|r| f(r)).count() as u64;
    let ghl = get(&server, "category=ghl&pageSize=100").await.json();
    assert_eq!(
        ghl["total"].as_u64(),
        Some(count(&|r| r["category"] == "GHL"))
    );
    assert!(ghl["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["category"] == "GHL"));
    let dental = get(&server, "query=DENTAL&pageSize=100").await.json();
    let expected = count(&|r| {
        r["name"]
            .as_str()
            .is_some_and(|n| n.to_lowercase().contains("dental"))
    });
    assert!(expected > 0);
    assert_eq!(dental["total"].as_u64(), Some(expected));
    let cafe = get(&server, "query=caf%C3%A9").await.json();
    assert_eq!(
        cafe["total"].as_u64(),
        Some(count(&|r| r["name"]
            .as_str()
            .is_some_and(|n| n.contains("Café"))))
    );

    let mut desc = ids_of(&listing);
    desc.reverse();
    assert_eq!(
        get(&server, "order=-id&pageSize=100").await.ids(),
        desc[..100]
    );
    assert_eq!(
        get(&server, "order=%2Bid&pageSize=100").await.ids(),
        ids_of(&listing)[..100]
    );
    let by_name = get(&server, "order=%2Bname&pageSize=100&page=1")
        .await
        .json();
    let names: Vec<String> = by_name["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").to_lowercase())
        .collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");
}

#[tokio::test]
async fn a_wrong_or_missing_key_gets_a_401_problem_and_the_authorization_header_works() {
    let (sim, server) = start(5).await;
    let url = format!("{}/agency/source", server.base_url());
    let client = reqwest::Client::new();
    for req in [
        client.get(&url),
        client.get(&url).header("X-CB-KEY", "nope"),
        client.get(&url).header("Authorization", "Bearer sim-key"),
    ] {
        let reply = send(req).await;
        assert_eq!(reply.status, 401);
        assert!(reply.content_type().starts_with("application/problem+json"));
        let body = reply.json();
        assert_eq!(
            (body["title"].as_str(), body["status"].as_u64()),
            (Some("Unauthorized"), Some(401))
        );
        assert!(
            body["type"].is_string() && body["detail"].is_string() && body["traceId"].is_string()
        );
    }
    assert_eq!(
        send(
            client
                .get(&url)
                .header("Authorization", format!("Key {KEY}"))
        )
        .await
        .status,
        200
    );
    sim.set_api_key("rotated");
    assert_eq!(
        send(client.get(&url).header("X-CB-KEY", KEY)).await.status,
        401
    );
    assert_eq!(
        send(client.get(&url).header("X-CB-KEY", "rotated"))
            .await
            .status,
        200
    );
    let log = sim.requests();
    assert_eq!(
        log.iter().map(|r| r.authorized).collect::<Vec<_>>(),
        [false, false, false, true, false, true]
    );
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        [401, 401, 401, 200, 401, 200]
    );
}

#[tokio::test]
async fn a_plan_limit_is_a_401_with_an_upgrade_body_and_other_paths_are_404() {
    let (sim, server) = start(5).await;
    sim.set_plan_limited(true);
    let reply = get(&server, "").await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "upgrade required"})
    );
    sim.set_plan_limited(false);
    assert_eq!(get(&server, "").await.status, 200);
    let url = format!("{}/agency/current", server.base_url());
    let missing = send(reqwest::Client::new().get(url).header("X-CB-KEY", KEY)).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["status"], 404);
}

#[tokio::test]
async fn force_token_refresh_really_rotates_the_tokens_it_returns() {
    let (sim, server) = start(30).await;
    let before = sim.listing();
    assert_eq!(
        get(&server, "pageSize=10").await.json(),
        get(&server, "pageSize=10").await.json(),
        "reads are side-effect free"
    );
    let refreshed = get(&server, "pageSize=10&forceTokenRefresh=true")
        .await
        .json();
    let after = sim.listing();
    for (i, (old, new)) in before.iter().zip(&after).enumerate() {
        if i < 10 {
            assert_ne!(
                old["accessToken"], new["accessToken"],
                "source {i} kept its token"
            );
            assert!(new["accessToken"].is_string());
            assert_eq!(refreshed["results"][i]["accessToken"], new["accessToken"]);
            let (mut a, mut b) = (old.clone(), new.clone());
            a["accessToken"] = Value::Null;
            b["accessToken"] = Value::Null;
            assert_eq!(a, b, "only the token changes");
        } else {
            assert_eq!(
                old, new,
                "source {i} was not returned, so it must not change"
            );
        }
    }
    let log = sim.requests();
    let sent: Vec<bool> = log
        .iter()
        .map(|r| {
            r.query
                .iter()
                .any(|(k, v)| k == "forceTokenRefresh" && v == "true")
        })
        .collect();
    assert_eq!(sent, [false, false, true]);
}

#[tokio::test]
async fn a_hundred_thousand_sources_page_from_the_index() {
    let sim = Simulator::new(SimOptions {
        sources: 100_000,
        ..SimOptions::default()
    });
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("{}/agency/source?pageSize=100&page=999", server.base_url());
    let reply = send(
        reqwest::Client::new()
            .get(url)
            .header("X-CB-KEY", "sim-key"),
    )
    .await;
    let body = reply.json();
    assert_eq!(
        (body["total"].as_u64(), reply.ids().len()),
        (Some(100_000), 100)
    );
    let ids = reply.ids();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(sim.len(), 100_000);
    server.shutdown().await;
}
