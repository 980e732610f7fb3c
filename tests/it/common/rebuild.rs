//! Rebuilds each source from the normalized tables alone, and puts a record the simulator
//! served into the same shape, so the two can be compared field by field. The shape keeps
//! every modelled field and drops only what the tables do not model on purpose: unknown
//! fields, null-versus-empty arrays, missing-versus-null fields (those live in raw_record).

use std::collections::BTreeMap;

use closebot_sync::model::{fingerprint, parse_time, sqlite_time};
use serde_json::{json, Map, Value};

use super::Mirror;

const STRINGS: [(&str, &str); 8] = [
    ("agencyId", "agency_id"),
    ("name", "name"),
    ("category", "category"),
    ("address", "address"),
    ("webhookCallback", "webhook_callback"),
    ("scriptLastSeenDomain", "script_last_seen_domain"),
    ("scriptLastSeenEndpoint", "script_last_seen_endpoint"),
    ("hubSpotOwnerId", "hubspot_owner_id"),
];
const BOOLS: [(&str, &str); 9] = [
    ("connected", "connected"),
    ("autoShutoff", "auto_shutoff"),
    ("gracefulGoodbye", "graceful_goodbye"),
    (
        "isAvailabilityContactTimezone",
        "is_availability_contact_timezone",
    ),
    (
        "isBotRespondWindowsQuietHours",
        "is_bot_respond_windows_quiet_hours",
    ),
    ("summarizeAttachments", "summarize_attachments"),
    ("respondToReactions", "respond_to_reactions"),
    ("markConversationAsUnread", "mark_conversation_as_unread"),
    ("scriptInstalled", "script_installed"),
];

/// A served time stamp as its typed column holds it: the API's "never" is NULL.
fn time(v: Option<&Value>) -> Value {
    match v.and_then(Value::as_str) {
        Some("0001-01-01T00:00:00") => Value::Null,
        Some(s) => Value::String(sqlite_time(
            &parse_time(s).expect("a served time stamp parses"),
        )),
        None => Value::Null,
    }
}

fn field(rec: &Value, name: &str) -> Value {
    rec.get(name).cloned().unwrap_or(Value::Null)
}

fn list(rec: &Value, name: &str) -> Vec<Value> {
    rec.get(name)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn pick(rec: &Value, names: &[&str]) -> Value {
    Value::Object(
        names
            .iter()
            .map(|n| (n.to_string(), field(rec, n)))
            .collect(),
    )
}

fn secret(rec: &Value, name: &str) -> Value {
    rec.get(name)
        .and_then(Value::as_str)
        .map_or(Value::Null, |s| Value::String(fingerprint(s)))
}

/// A served record in the comparable shape.
pub fn normalize(rec: &Value) -> Value {
    let mut out = Map::new();
    out.insert("sourceId".into(), field(rec, "sourceId"));
    for (f, _) in STRINGS.iter().chain(BOOLS.iter()) {
        out.insert(f.to_string(), field(rec, f));
    }
    out.insert("scriptLastSeenAt".into(), time(rec.get("scriptLastSeenAt")));
    out.insert("keySha256".into(), secret(rec, "key"));
    out.insert("accessTokenSha256".into(), secret(rec, "accessToken"));
    out.insert(
        "accountsWithAccess".into(),
        Value::Array(list(rec, "accountsWithAccess")),
    );
    out.insert(
        "scriptDomainAllowList".into(),
        Value::Array(list(rec, "scriptDomainAllowList")),
    );
    out.insert(
        "respondWindows".into(),
        list(rec, "respondWindows")
            .iter()
            .map(|w| pick(w, &["dayOfWeekUtc", "startTimeUtc", "duration"]))
            .collect(),
    );
    out.insert(
        "botRespondWindows".into(),
        list(rec, "botRespondWindows")
            .iter()
            .map(|w| pick(w, &["dayOfWeekUtc", "startTimeUtc", "duration", "channel"]))
            .collect(),
    );
    out.insert(
        "doNotRespondWindows".into(),
        list(rec, "doNotRespondWindows")
            .iter()
            .map(|w| json!({"start": time(w.get("start")), "end": time(w.get("end"))}))
            .collect(),
    );
    out.insert(
        "wallet".into(),
        match rec.get("wallet") {
            Some(w @ Value::Object(_)) => pick(
                w,
                &[
                    "reBilling",
                    "autoRefill",
                    "topUpAmount",
                    "refillThreshold",
                    "stripeCustomerId",
                    "currency",
                    "responseUnitCostOverride",
                    "storageUnitCostOverride",
                    "userUnitCostOverride",
                ],
            ),
            _ => Value::Null,
        },
    );
    let bots: Vec<Value> = list(rec, "bots")
        .iter()
        .map(|b| {
            let filter = b.get("tagFilterConfig").cloned().unwrap_or(Value::Null);
            json!({
                "id": field(b, "id"),
                "botName": field(b, "botName"),
                "personaNameOverride": field(b, "personaNameOverride"),
                "enabled": field(b, "enabled"),
                "channels": list(b, "channels"),
                "tags": list(b, "tags").iter().map(|t| pick(t, &["id", "name", "approveDeny"])).collect::<Vec<_>>(),
                "filterOperator": field(&filter, "operator"),
                "groups": list(&filter, "groups").iter().map(|g| json!({
                    "operator": field(g, "operator"),
                    "rules": list(g, "rules").iter().map(|r| pick(r, &["tagName", "tagId", "condition"])).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    out.insert("bots".into(), Value::Array(bots));
    Value::Object(out)
}

fn boolean(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(*b),
        other => Value::Bool(other.as_i64().expect("a 0/1 boolean") != 0),
    }
}

type Rows = Vec<Map<String, Value>>;

fn by_source(rows: Rows) -> BTreeMap<String, Rows> {
    let mut m: BTreeMap<String, Rows> = BTreeMap::new();
    for r in rows {
        m.entry(r["source_id"].as_str().unwrap().to_string())
            .or_default()
            .push(r);
    }
    m
}

fn col(r: &Map<String, Value>, c: &str) -> Value {
    r.get(c).cloned().unwrap_or_else(|| panic!("no column {c}"))
}

/// Every source whose `deleted_at` is NULL (or every source), rebuilt from the tables, by id.
pub async fn rebuild(m: &Mirror, live_only: bool) -> BTreeMap<String, Value> {
    let filter = if live_only {
        " WHERE deleted_at IS NULL"
    } else {
        ""
    };
    let sources = m.dump(&format!("SELECT * FROM sources{filter}")).await;
    let order = " ORDER BY source_id, position";
    let wallets = by_source(m.dump("SELECT * FROM source_wallets").await);
    let bots = by_source(m.dump(&format!("SELECT * FROM source_bots{order}")).await);
    let channels = by_source(
        m.dump("SELECT * FROM source_bot_channels ORDER BY source_id, bot_position, position")
            .await,
    );
    let tags = by_source(
        m.dump("SELECT * FROM source_bot_tags ORDER BY source_id, bot_position, position")
            .await,
    );
    let groups = by_source(
        m.dump(
            "SELECT * FROM source_bot_tag_filter_groups ORDER BY source_id, bot_position, position",
        )
        .await,
    );
    let rules = by_source(
        m.dump("SELECT * FROM source_bot_tag_filter_rules ORDER BY source_id, bot_position, group_position, position")
            .await,
    );
    let accounts = by_source(
        m.dump(&format!("SELECT * FROM source_accounts_with_access{order}"))
            .await,
    );
    let respond = by_source(
        m.dump(&format!("SELECT * FROM source_respond_windows{order}"))
            .await,
    );
    let dnr = by_source(
        m.dump(&format!(
            "SELECT * FROM source_do_not_respond_windows{order}"
        ))
        .await,
    );
    let bot_respond = by_source(
        m.dump(&format!("SELECT * FROM source_bot_respond_windows{order}"))
            .await,
    );
    let domains = by_source(
        m.dump(&format!("SELECT * FROM source_script_domains{order}"))
            .await,
    );
    let none: Rows = Vec::new();
    let mut out = BTreeMap::new();
    for s in sources {
        let id = s["source_id"].as_str().unwrap().to_string();
        let get = |m: &BTreeMap<String, Rows>| m.get(&id).cloned().unwrap_or_default();
        let mut rec = Map::new();
        rec.insert("sourceId".into(), Value::String(id.clone()));
        for (f, c) in STRINGS {
            rec.insert(f.into(), col(&s, c));
        }
        for (f, c) in BOOLS {
            rec.insert(f.into(), boolean(&col(&s, c)));
        }
        rec.insert("scriptLastSeenAt".into(), col(&s, "script_last_seen_at"));
        rec.insert("keySha256".into(), col(&s, "key_sha256"));
        rec.insert("accessTokenSha256".into(), col(&s, "access_token_sha256"));
        rec.insert(
            "accountsWithAccess".into(),
            get(&accounts)
                .iter()
                .map(|r| col(r, "account_id"))
                .collect(),
        );
        rec.insert(
            "scriptDomainAllowList".into(),
            get(&domains).iter().map(|r| col(r, "domain")).collect(),
        );
        rec.insert(
            "respondWindows".into(),
            get(&respond)
                .iter()
                .map(|r| json!({"dayOfWeekUtc": col(r, "day_of_week_utc"), "startTimeUtc": col(r, "start_time_utc"), "duration": col(r, "duration")}))
                .collect(),
        );
        rec.insert(
            "botRespondWindows".into(),
            get(&bot_respond)
                .iter()
                .map(|r| json!({"dayOfWeekUtc": col(r, "day_of_week_utc"), "startTimeUtc": col(r, "start_time_utc"), "duration": col(r, "duration"), "channel": col(r, "channel")}))
                .collect(),
        );
        rec.insert(
            "doNotRespondWindows".into(),
            get(&dnr)
                .iter()
                .map(|r| json!({"start": col(r, "starts_at"), "end": col(r, "ends_at")}))
                .collect(),
        );
        rec.insert(
            "wallet".into(),
            match get(&wallets).first() {
                Some(w) => json!({
                    "reBilling": boolean(&col(w, "re_billing")), "autoRefill": boolean(&col(w, "auto_refill")),
                    "topUpAmount": col(w, "top_up_amount"), "refillThreshold": col(w, "refill_threshold"),
                    "stripeCustomerId": col(w, "stripe_customer_id"), "currency": col(w, "currency"),
                    "responseUnitCostOverride": col(w, "response_unit_cost_override_text"),
                    "storageUnitCostOverride": col(w, "storage_unit_cost_override_text"),
                    "userUnitCostOverride": col(w, "user_unit_cost_override_text"),
                }),
                None => Value::Null,
            },
        );
        let (ch, tg, gr, ru) = (get(&channels), get(&tags), get(&groups), get(&rules));
        let of = |rows: &Rows, bot: &Value| -> Rows {
            rows.iter()
                .filter(|r| r["bot_position"] == *bot)
                .cloned()
                .collect()
        };
        let bots_rebuilt: Vec<Value> = bots
            .get(&id)
            .unwrap_or(&none)
            .iter()
            .map(|b| {
                let p = col(b, "position");
                json!({
                    "id": col(b, "bot_id"), "botName": col(b, "bot_name"),
                    "personaNameOverride": col(b, "persona_name_override"), "enabled": boolean(&col(b, "enabled")),
                    "channels": of(&ch, &p).iter().map(|r| col(r, "channel")).collect::<Vec<_>>(),
                    "tags": of(&tg, &p).iter().map(|r| json!({"id": col(r, "tag_id"), "name": col(r, "name"), "approveDeny": boolean(&col(r, "approve_deny"))})).collect::<Vec<_>>(),
                    "filterOperator": col(b, "tag_filter_operator"),
                    "groups": of(&gr, &p).iter().map(|g| {
                        let gp = col(g, "position");
                        json!({
                            "operator": col(g, "operator"),
                            "rules": of(&ru, &p).iter().filter(|r| r["group_position"] == gp)
                                .map(|r| json!({"tagName": col(r, "tag_name"), "tagId": col(r, "tag_id"), "condition": col(r, "condition")}))
                                .collect::<Vec<_>>(),
                        })
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        rec.insert("bots".into(), Value::Array(bots_rebuilt));
        out.insert(id, Value::Object(rec));
    }
    out
}

/// Asserts that the live sources in the tables are exactly the simulator's listing.
pub async fn assert_mirrors(m: &Mirror, listing: &[Value]) {
    let rebuilt = rebuild(m, true).await;
    let expected: BTreeMap<String, Value> = listing
        .iter()
        .map(|r| (r["sourceId"].as_str().unwrap().to_string(), normalize(r)))
        .collect();
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !rebuilt.contains_key(*k))
        .collect();
    let extra: Vec<&String> = rebuilt
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: missing {missing:?}, extra {extra:?}",
        m.backend()
    );
    for (id, want) in &expected {
        assert_eq!(&rebuilt[id], want, "{}: source {id} differs", m.backend());
    }
}
