//! Seeded random mutations for sync tests. Each touched source is reported under exactly
//! one kind, so a test can check that a mirror picked up precisely these changes.

use super::fields::{random_name, rng};
use super::generate::Generator;
use super::{Body, Entry, MutationPlan, MutationReport, State};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

const MUTATE: u64 = 0x5EED;

#[derive(Clone, Copy)]
enum Kind {
    Rename,
    FlipWallet,
    AddTag,
    RotateToken,
    Reorder,
    Delete,
}

pub(crate) fn mutate(
    gen: &Generator,
    st: &mut State,
    seed: u64,
    plan: &MutationPlan,
) -> MutationReport {
    let r = &mut rng(seed, MUTATE, gen.seed);
    let mut order: Vec<usize> = (0..st.entries.len()).collect();
    order.shuffle(r);
    let mut used = HashSet::new();
    let mut report = MutationReport::default();
    let mut deleted = Vec::new();
    let kinds = [
        (Kind::Rename, plan.rename),
        (Kind::FlipWallet, plan.flip_wallet),
        (Kind::AddTag, plan.add_tag),
        (Kind::RotateToken, plan.rotate_token),
        (Kind::Reorder, plan.reorder),
        (Kind::Delete, plan.delete),
    ];
    for (kind, count) in kinds {
        let mut done = 0;
        for &i in &order {
            if done == count {
                break;
            }
            if used.contains(&i) {
                continue;
            }
            let mut value = st.entries[i].value(gen);
            if !eligible(kind, &value) {
                continue;
            }
            used.insert(i);
            done += 1;
            let id = st.entries[i].id.to_string();
            match kind {
                Kind::Rename => {
                    rename(r, &mut value);
                    report.renamed.push(id);
                }
                Kind::FlipWallet => {
                    flip_wallet(&mut value);
                    report.wallet_flipped.push(id);
                }
                Kind::AddTag => {
                    add_tag(r, gen, st, &mut value);
                    report.tag_added.push(id);
                }
                Kind::RotateToken => {
                    st.rotate_token(i, gen);
                    report.token_rotated.push(id);
                    continue;
                }
                Kind::Reorder => {
                    reorder(&mut value);
                    report.reordered.push(id);
                }
                Kind::Delete => {
                    deleted.push(i);
                    report.deleted.push(id);
                    continue;
                }
            }
            st.entries[i].body = Body::Explicit(Arc::new(value));
        }
    }
    // Removing from the back keeps the remaining indices valid.
    deleted.sort_unstable_by(|a, b| b.cmp(a));
    for i in deleted {
        st.entries.remove(i);
    }
    for _ in 0..plan.add {
        let slot = st.next_slot;
        st.next_slot += 1;
        let id = gen.source_id(slot);
        report.added.push(id.clone());
        st.insert_sorted(Entry {
            id: id.into(),
            body: Body::Generated { slot, token_rev: 0 },
        });
    }
    report
}

fn eligible(kind: Kind, value: &Value) -> bool {
    let bots = value.get("bots").and_then(Value::as_array);
    match kind {
        Kind::AddTag => bots.is_some_and(|b| b.iter().any(|bot| bot_id(bot).is_some())),
        Kind::Reorder => bots.is_some_and(|b| {
            let ids: HashSet<&str> = b.iter().filter_map(bot_id).collect();
            b.len() >= 2 && ids.len() >= 2
        }),
        _ => value.is_object(),
    }
}

fn bot_id(bot: &Value) -> Option<&str> {
    bot.get("id").and_then(Value::as_str)
}

fn rename(r: &mut ChaCha8Rng, value: &mut Value) {
    let old = value.get("name").and_then(Value::as_str).map(str::to_owned);
    let new = loop {
        match random_name(r) {
            Some(n) if Some(&n) != old.as_ref() => break n,
            _ => {}
        }
    };
    value["name"] = new.into();
}

fn flip_wallet(value: &mut Value) {
    match value.get_mut("wallet") {
        Some(Value::Object(w)) => {
            let on = w
                .get("autoRefill")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            w.insert("autoRefill".into(), (!on).into());
        }
        _ => {
            value["wallet"] = json!({
                "reBilling": false,
                "autoRefill": true,
                "topUpAmount": 50,
                "refillThreshold": 10,
                "stripeCustomerId": null,
                "currency": "usd",
                "responseUnitCostOverride": null,
                "storageUnitCostOverride": null,
                "userUnitCostOverride": null,
            });
        }
    }
}

fn add_tag(r: &mut ChaCha8Rng, gen: &Generator, st: &mut State, value: &mut Value) {
    let counter = st.next_fresh();
    let name = ["new lead", "nurture", "booked ✅", "follow up 2"][r.gen_range(0..4)];
    let tag = json!({"name": name, "approveDeny": r.gen_bool(0.5), "id": gen.fresh_uuid(counter)});
    let bots = value.get_mut("bots").and_then(Value::as_array_mut);
    let Some(bot) = bots.and_then(|b| b.iter_mut().find(|bot| bot_id(bot).is_some())) else {
        return;
    };
    match bot.get_mut("tags") {
        Some(Value::Array(tags)) => tags.push(tag),
        _ => bot["tags"] = json!([tag]),
    }
}

fn reorder(value: &mut Value) {
    if let Some(bots) = value.get_mut("bots").and_then(Value::as_array_mut) {
        bots.reverse();
        for bot in bots {
            if let Some(tags) = bot.get_mut("tags").and_then(Value::as_array_mut) {
                tags.reverse();
            }
        }
    }
}
