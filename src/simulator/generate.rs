//! Deterministic source records: a record is a pure function of (seed, slot, id, token
//! revision), so the simulator keeps only a sorted id index in memory and rebuilds each
//! record when it is served. That keeps 100,000 sources at a few megabytes.

use super::fields::{
    address, alnum, b64url, list, or_null, pick, random_name, random_secs, respond_windows, rng,
    script_fields, stamp, uuid, wallet, window,
};
use super::vocab::{BOT_NAMES, CHANNELS, PERSONAS, TAG_NAMES};
use super::SchemaVersion;
use rand::seq::index;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

// Separate random streams per purpose, so that e.g. a name can be computed for filtering
// without generating the whole record, and a token rotation changes nothing else.
const AGENCY: u64 = 0xA6E0;
const ID: u64 = 0x1D00;
const HEADER: u64 = 0x4EAD;
const BODY: u64 = 0xB0D7;
const TOKEN: u64 = 0x70CE;
const FRESH: u64 = 0xF4E5;
struct PoolEntry {
    id: Option<String>,
    name: Option<String>,
}

/// What filtering and sorting need, computed without building the record.
pub(crate) struct Header {
    pub version: SchemaVersion,
    pub name: Option<String>,
    pub category: Option<&'static str>,
}

/// Agency-wide data shared by every source: one agency id, and pools of bots, tags and
/// accounts so the same bot (with the same id and name) appears on many sources.
pub(crate) struct Generator {
    pub seed: u64,
    schema: Option<SchemaVersion>,
    agency_id: String,
    bots: Vec<PoolEntry>,
    tags: Vec<PoolEntry>,
    accounts: Vec<String>,
}

impl Generator {
    pub fn new(seed: u64, schema: Option<SchemaVersion>) -> Generator {
        let r = &mut rng(seed, AGENCY, 0);
        let agency_id = uuid(r);
        // A couple of pool entries have a null id or name, as the schema allows.
        let bots = (0..24)
            .map(|i| PoolEntry {
                id: (i != 5 && i != 17).then(|| uuid(r)),
                name: (i != 9).then(|| {
                    let base = BOT_NAMES[i % BOT_NAMES.len()];
                    if i < BOT_NAMES.len() {
                        base.to_owned()
                    } else {
                        format!("{base} 2")
                    }
                }),
            })
            .collect();
        let tags = (0..TAG_NAMES.len() + 1)
            .map(|i| PoolEntry {
                id: (i != 3 && i != 17).then(|| uuid(r)),
                name: TAG_NAMES.get(i).map(|s| (*s).to_owned()),
            })
            .collect();
        let accounts = (0..10).map(|_| uuid(r)).collect();
        Generator {
            seed,
            schema,
            agency_id,
            bots,
            tags,
            accounts,
        }
    }

    /// The id a generated slot gets unless it is placed explicitly.
    pub fn source_id(&self, slot: u32) -> String {
        uuid(&mut rng(self.seed, ID, slot.into()))
    }

    pub fn header(&self, slot: u32) -> Header {
        let r = &mut rng(self.seed, HEADER, slot.into());
        // Drawn even when the version is fixed, so names do not depend on `schema`.
        let roll = r.gen_range(0..10);
        let version = self.schema.unwrap_or(match roll {
            0..=1 => SchemaVersion::A,
            2..=4 => SchemaVersion::B,
            _ => SchemaVersion::C,
        });
        let name = random_name(r);
        let category = match r.gen_range(0..100) {
            0..=1 => None,
            2..=79 => Some("GHL"),
            80..=89 => Some("HubSpot"),
            _ => Some("WebHook"),
        };
        Header {
            version,
            name,
            category,
        }
    }

    /// The access token of a generated slot after `rev` refreshes; only the original
    /// (rev 0) may be null, a refresh always yields a token.
    pub fn access_token(&self, slot: u32, rev: u32) -> Value {
        let r = &mut rng(self.seed, TOKEN ^ (u64::from(rev) << 32), slot.into());
        if rev == 0 && r.gen_bool(0.08) {
            return Value::Null;
        }
        format!("eyJhbGciOiJSUzI1NiJ9.{}", b64url(r, 86)).into()
    }

    /// A fresh random stream for explicit edits (new tokens, tag ids, added sources).
    pub fn fresh(&self, counter: u64) -> ChaCha8Rng {
        rng(self.seed, FRESH, counter)
    }

    pub fn fresh_token(&self, counter: u64) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}",
            b64url(&mut self.fresh(counter), 86)
        )
    }

    pub fn fresh_uuid(&self, counter: u64) -> String {
        uuid(&mut self.fresh(counter))
    }

    /// The whole record for a slot, in the field order of the vendor's documentation.
    pub fn record(&self, slot: u32, id: &str, token_rev: u32) -> Value {
        let h = self.header(slot);
        let r = &mut rng(self.seed, BODY, slot.into());
        let newer = h.version != SchemaVersion::A;
        let mut m = Map::new();
        let agency = or_null(r, 0.02, |_| self.agency_id.clone());
        m.insert("agencyId".into(), agency);
        m.insert("sourceId".into(), id.into());
        m.insert("name".into(), h.name.map_or(Value::Null, Value::from));
        m.insert(
            "category".into(),
            h.category.map_or(Value::Null, Value::from),
        );
        m.insert(
            "key".into(),
            or_null(r, 0.06, |r| format!("rk_{}", alnum(r, 40))),
        );
        m.insert("accessToken".into(), self.access_token(slot, token_rev));
        m.insert("address".into(), address(r, h.category));
        for field in ["connected", "autoShutoff", "gracefulGoodbye"] {
            let p = if field == "connected" { 0.85 } else { 0.4 };
            m.insert(field.into(), r.gen_bool(p).into());
        }
        m.insert("bots".into(), self.bots(r, h.version));
        let accounts = if r.gen_bool(0.05) {
            Value::Null
        } else {
            let n = r.gen_range(0..=5);
            let picked = index::sample(r, self.accounts.len(), n);
            picked
                .iter()
                .map(|i| Value::from(self.accounts[i].as_str()))
                .collect()
        };
        m.insert("accountsWithAccess".into(), accounts);
        m.insert(
            "isAvailabilityContactTimezone".into(),
            r.gen_bool(0.3).into(),
        );
        m.insert("respondWindows".into(), respond_windows(r));
        let dnr = list(r, 0.1, 3, |r| {
            let start = random_secs(r);
            let end = start + i64::from(r.gen_range(1..=72u32)) * 3600;
            json!({"start": stamp(r, start), "end": stamp(r, end)})
        });
        m.insert("doNotRespondWindows".into(), dnr);
        if newer {
            let brw = list(r, 0.1, 5, |r| {
                let mut w = window(r);
                let channel = or_null(r, 0.05, |r| pick(r, CHANNELS).to_owned());
                w.insert("channel".into(), channel);
                Value::Object(w)
            });
            m.insert("botRespondWindows".into(), brw);
            m.insert(
                "isBotRespondWindowsQuietHours".into(),
                r.gen_bool(0.2).into(),
            );
        }
        m.insert("summarizeAttachments".into(), r.gen_bool(0.5).into());
        m.insert("respondToReactions".into(), r.gen_bool(0.4).into());
        m.insert("markConversationAsUnread".into(), r.gen_bool(0.3).into());
        let hook = if r.gen_bool(0.25) {
            format!("https://hooks.example.net/closebot/{}", alnum(r, 12)).into()
        } else {
            Value::Null
        };
        m.insert("webhookCallback".into(), hook);
        if newer {
            script_fields(r, &mut m);
        }
        m.insert("wallet".into(), wallet(r));
        if newer {
            let owner = if h.category == Some("HubSpot") || r.gen_bool(0.02) {
                or_null(r, 0.1, |r| {
                    r.gen_range(10_000_000..99_999_999u32).to_string()
                })
            } else {
                Value::Null
            };
            m.insert("hubSpotOwnerId".into(), owner);
        }
        if h.version == SchemaVersion::C {
            // Fields no published schema knows yet: a client must keep them, not choke.
            let model = pick(r, &["gpt-4o", "gpt-4.1-mini", "claude-3-5-sonnet"]);
            m.insert("aiModel".into(), model.into());
            if r.gen_bool(0.5) {
                m.insert("newFeatureFlags".into(), json!({"x": true, "voice": false}));
            }
        }
        Value::Object(m)
    }

    fn bots(&self, r: &mut ChaCha8Rng, version: SchemaVersion) -> Value {
        if r.gen_bool(0.04) {
            return Value::Null;
        }
        let n = match r.gen_range(0..20) {
            0..=1 => 0,
            2..=5 => 1,
            6..=11 => 2,
            12..=15 => 3,
            _ => 4,
        };
        let picked = index::sample(r, self.bots.len(), n);
        picked
            .iter()
            .map(|i| self.bot(r, &self.bots[i], version))
            .collect()
    }

    fn bot(&self, r: &mut ChaCha8Rng, pool: &PoolEntry, version: SchemaVersion) -> Value {
        let mut b = Map::new();
        b.insert(
            "id".into(),
            pool.id.clone().map_or(Value::Null, Value::from),
        );
        b.insert(
            "botName".into(),
            pool.name.clone().map_or(Value::Null, Value::from),
        );
        let tags = if r.gen_bool(0.05) {
            Value::Null
        } else {
            let n = r.gen_range(0..=6);
            let picked = index::sample(r, self.tags.len(), n);
            let tag = |r: &mut ChaCha8Rng, t: &PoolEntry| json!({"name": t.name, "approveDeny": r.gen_bool(0.7), "id": t.id});
            picked.iter().map(|i| tag(r, &self.tags[i])).collect()
        };
        b.insert("tags".into(), tags);
        if version == SchemaVersion::C {
            b.insert("tagFilterConfig".into(), self.tag_filter(r));
        }
        let channels = if r.gen_bool(0.05) {
            Value::Null
        } else {
            let n = r.gen_range(0..=5);
            let picked = index::sample(r, CHANNELS.len(), n);
            picked.iter().map(|i| Value::from(CHANNELS[i])).collect()
        };
        b.insert("channels".into(), channels);
        let persona = or_null(r, 0.6, |r| pick(r, PERSONAS).to_owned());
        b.insert("personaNameOverride".into(), persona);
        b.insert("enabled".into(), r.gen_bool(0.85).into());
        if version == SchemaVersion::C && r.gen_bool(0.2) {
            b.insert("newFeatureFlags".into(), json!({"x": true}));
        }
        Value::Object(b)
    }

    /// Version C only; its types are undocumented, so every part is sometimes null.
    fn tag_filter(&self, r: &mut ChaCha8Rng) -> Value {
        if r.gen_bool(0.3) {
            return Value::Null;
        }
        let op = |r: &mut ChaCha8Rng| or_null(r, 0.1, |r| pick(r, &["and", "or"]).to_owned());
        let operator = op(r);
        let groups = list(r, 0.1, 2, |r| {
            let operator = op(r);
            let rules = list(r, 0.1, 3, |r| {
                let t = &self.tags[r.gen_range(0..self.tags.len())];
                let name = if r.gen_bool(0.08) {
                    None
                } else {
                    t.name.clone()
                };
                let id = if r.gen_bool(0.08) { None } else { t.id.clone() };
                let cond = or_null(r, 0.08, |r| pick(r, &["has", "doesNotHave"]).to_owned());
                json!({"tagName": name, "tagId": id, "condition": cond})
            });
            json!({"operator": operator, "rules": rules})
        });
        json!({"operator": operator, "groups": groups})
    }
}
