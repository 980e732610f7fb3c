//! `mutate` touches exactly the reported sources in the reported way; `edit` replaces the
//! listing and the server serves the result.

use super::{get, ids_of, options, start};
use closebot_sim::{MutationPlan, MutationReport, Simulator};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

fn plan() -> MutationPlan {
    MutationPlan {
        rename: 4,
        flip_wallet: 4,
        add_tag: 4,
        rotate_token: 4,
        reorder: 4,
        delete: 4,
        add: 4,
    }
}

fn without(record: &Value, field: &str) -> Value {
    let mut r = record.clone();
    r.as_object_mut().unwrap().shift_remove(field);
    r
}

/// Undoes a reorder: bots and each bot's tags reversed back.
fn reversed(record: &Value) -> Value {
    let mut r = record.clone();
    if let Some(bots) = r["bots"].as_array_mut() {
        bots.reverse();
        for bot in bots {
            if let Some(tags) = bot["tags"].as_array_mut() {
                tags.reverse();
            }
        }
    }
    r
}

fn all_ids(v: &Value, out: &mut HashSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let (true, Some(s)) = (k == "id", x.as_str()) {
                    out.insert(s.to_owned());
                }
                all_ids(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| all_ids(x, out)),
        _ => {}
    }
}

#[test]
fn mutate_touches_exactly_the_reported_sources_in_the_reported_way() {
    let sim = Simulator::new(options(300, None));
    let before: HashMap<String, Value> = sim
        .listing()
        .into_iter()
        .map(|r| (r["sourceId"].as_str().unwrap().to_owned(), r))
        .collect();
    let report = sim.mutate(42, &plan());
    let after_list = sim.listing();
    let after: HashMap<String, Value> = after_list
        .iter()
        .map(|r| (r["sourceId"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    let MutationReport {
        renamed,
        wallet_flipped,
        tag_added,
        token_rotated,
        reordered,
        deleted,
        added,
    } = report;
    let kinds = [
        &renamed,
        &wallet_flipped,
        &tag_added,
        &token_rotated,
        &reordered,
        &deleted,
        &added,
    ];
    assert!(kinds.iter().all(|k| k.len() == 4), "{kinds:?}");
    let touched: HashSet<&String> = kinds.iter().flat_map(|k| k.iter()).collect();
    assert_eq!(touched.len(), 28, "a source appears in at most one list");

    for (id, old) in &before {
        if !touched.contains(id) {
            assert_eq!(
                Some(old),
                after.get(id),
                "{id} changed without being reported"
            );
        }
    }
    for id in &renamed {
        assert_ne!(before[id]["name"], after[id]["name"]);
        assert!(after[id]["name"].is_string());
        assert_eq!(without(&before[id], "name"), without(&after[id], "name"));
    }
    for id in &wallet_flipped {
        assert_eq!(
            without(&before[id], "wallet"),
            without(&after[id], "wallet")
        );
        let new = &after[id]["wallet"];
        match &before[id]["wallet"] {
            Value::Object(_) => {
                assert_ne!(before[id]["wallet"]["autoRefill"], new["autoRefill"]);
                assert_eq!(
                    without(&before[id]["wallet"], "autoRefill"),
                    without(new, "autoRefill")
                );
            }
            _ => assert_eq!(new["autoRefill"], true, "a wallet is created"),
        }
    }
    let mut known_ids = HashSet::new();
    before.values().for_each(|r| all_ids(r, &mut known_ids));
    for id in &tag_added {
        assert_eq!(without(&before[id], "bots"), without(&after[id], "bots"));
        let (old, new) = (
            before[id]["bots"].as_array().unwrap(),
            after[id]["bots"].as_array().unwrap(),
        );
        let at = old.iter().position(|b| b["id"].is_string()).unwrap();
        let (old_tags, new_tags) = (
            old[at]["tags"].as_array().cloned().unwrap_or_default(),
            new[at]["tags"].as_array().unwrap(),
        );
        assert_eq!(new_tags.len(), old_tags.len() + 1);
        assert_eq!(new_tags[..old_tags.len()], old_tags[..]);
        let fresh = new_tags.last().unwrap()["id"].as_str().unwrap();
        assert!(!known_ids.contains(fresh), "tag id {fresh} is not fresh");
        for (i, (a, b)) in old.iter().zip(new).enumerate() {
            if i != at {
                assert_eq!(a, b);
            }
        }
    }
    for id in &token_rotated {
        assert_ne!(before[id]["accessToken"], after[id]["accessToken"]);
        assert!(after[id]["accessToken"].is_string());
        assert_eq!(
            without(&before[id], "accessToken"),
            without(&after[id], "accessToken")
        );
    }
    for id in &reordered {
        assert_ne!(before[id], after[id]);
        assert_eq!(
            before[id],
            reversed(&after[id]),
            "a reorder changes no content"
        );
        let ids: HashSet<&str> = before[id]["bots"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["id"].as_str())
            .collect();
        assert!(ids.len() >= 2);
    }
    for id in &deleted {
        assert!(before.contains_key(id) && !after.contains_key(id));
    }
    for id in &added {
        assert!(!before.contains_key(id) && after.contains_key(id));
    }
    assert_eq!(after_list.len(), 300);
    let ids = ids_of(&after_list);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "still in +id order");
}

#[test]
fn the_same_mutation_seed_gives_the_same_report_and_listing() {
    let (a, b) = (
        Simulator::new(options(200, None)),
        Simulator::new(options(200, None)),
    );
    let (ra, rb) = (a.mutate(5, &plan()), b.mutate(5, &plan()));
    assert_eq!(format!("{ra:?}"), format!("{rb:?}"));
    assert_eq!(a.listing(), b.listing());
    let c = Simulator::new(options(200, None));
    assert_ne!(format!("{:?}", c.mutate(6, &plan())), format!("{ra:?}"));
}

#[tokio::test]
async fn an_edit_becomes_the_listing_the_server_serves() {
    let (sim, server) = start(20).await;
    let first = sim.listing()[0]["sourceId"].as_str().unwrap().to_owned();
    sim.edit(|records| {
        records.remove(0);
        records[0]["name"] = json!("Édité ✏️");
        records.push(json!({"sourceId": "00000000-aaaa-0000-0000-000000000000", "name": null, "bots": null, "futureField": 1}));
    });
    let listing = sim.listing();
    assert_eq!(sim.len(), 20);
    assert!(!ids_of(&listing).contains(&first));
    assert_eq!(listing[0]["futureField"], 1, "re-sorted by sourceId");
    assert_eq!(listing[1]["name"], "Édité ✏️");
    let served = get(&server, "pageSize=100").await.json();
    assert_eq!(served["results"].as_array().unwrap(), &listing);
}
