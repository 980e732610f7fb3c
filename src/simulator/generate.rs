//! Deterministic source records: a record is a pure function of (seed, slot, id, token
//! revision), so the simulator keeps only a sorted id index in memory and rebuilds each
//! record when it is served. That keeps 100,000 sources at a few megabytes.

use super::vocab::{
    BOT_NAMES, CHANNELS, COST_OVERRIDES, DAYS, DOMAINS, DURATIONS, PERSONAS, START_TIMES, TAG_NAMES,
};
use super::SchemaVersion;
use rand::seq::index;
use rand::{Rng, SeedableRng};
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

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random stream for one purpose and one stream number (slot, counter, ...).
pub(crate) fn rng(seed: u64, purpose: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(splitmix(seed ^ splitmix(purpose)));
    r.set_stream(stream);
    r
}

/// Lowercase GUID text. Its byte order equals the numeric order of `v`, which lets the
/// simulator make an id that sorts before a given one.
pub(crate) fn uuid_text(v: u128) -> String {
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub(crate) fn parse_uuid(s: &str) -> Option<u128> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32).then(|| u128::from_str_radix(&hex, 16).ok())?
}

fn uuid(r: &mut ChaCha8Rng) -> String {
    uuid_text(r.gen())
}

fn alnum(r: &mut ChaCha8Rng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n).map(|_| A[r.gen_range(0..A.len())] as char).collect()
}

fn b64url(r: &mut ChaCha8Rng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..n).map(|_| A[r.gen_range(0..A.len())] as char).collect()
}

fn pick<T: Copy>(r: &mut ChaCha8Rng, xs: &[T]) -> T {
    xs[r.gen_range(0..xs.len())]
}

/// `null` with probability `p`, else the string `f` makes.
fn or_null(r: &mut ChaCha8Rng, p: f64, f: impl FnOnce(&mut ChaCha8Rng) -> String) -> Value {
    if r.gen_bool(p) {
        Value::Null
    } else {
        Value::String(f(r))
    }
}

/// `null` with probability `p`, else an array of `0..=max` items (so empty arrays occur too).
fn list(
    r: &mut ChaCha8Rng,
    p: f64,
    max: usize,
    mut f: impl FnMut(&mut ChaCha8Rng) -> Value,
) -> Value {
    if r.gen_bool(p) {
        return Value::Null;
    }
    let n = r.gen_range(0..=max);
    Value::Array((0..n).map(|_| f(r)).collect())
}

/// A date-time as the live API writes them: mostly with `Z`, some without a zone, some
/// with .NET's seven fractional digits.
fn stamp(r: &mut ChaCha8Rng, secs: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    let base = t.format("%Y-%m-%dT%H:%M:%S");
    match r.gen_range(0..20) {
        0..=2 => base.to_string(),
        3 => format!("{base}.{:07}Z", r.gen_range(0..10_000_000)),
        _ => format!("{base}Z"),
    }
}

fn random_secs(r: &mut ChaCha8Rng) -> i64 {
    // 2023-01-01 plus up to three years, on a quarter hour.
    1_672_531_200 + i64::from(r.gen_range(0..105_120u32)) * 900
}

/// A source name: mostly ASCII, a quarter unicode (accents, CJK, Hangul, emoji), a few null.
pub(crate) fn random_name(r: &mut ChaCha8Rng) -> Option<String> {
    use super::vocab::{NAME_PREFIXES, NAME_SUFFIXES, NAME_TRADES, UNICODE_NAMES};
    match r.gen_range(0..100) {
        0..=1 => None,
        2..=26 => Some(pick(r, UNICODE_NAMES).to_owned()),
        _ => Some(format!(
            "{} {}{}",
            pick(r, NAME_PREFIXES),
            pick(r, NAME_TRADES),
            pick(r, NAME_SUFFIXES)
        )),
    }
}

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
            2..=6 => 1,
            7..=12 => 2,
            13..=16 => 3,
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
            let n = r.gen_range(0..=4);
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

fn address(r: &mut ChaCha8Rng, category: Option<&str>) -> Value {
    or_null(r, 0.08, |r| match category {
        Some("GHL") => alnum(r, 20),
        Some("HubSpot") => r.gen_range(1_000_000..99_999_999u32).to_string(),
        _ => format!("https://{}/closebot/{}", pick(r, DOMAINS), alnum(r, 10)),
    })
}

fn window(r: &mut ChaCha8Rng) -> Map<String, Value> {
    let day = or_null(r, 0.03, |r| pick(r, DAYS).to_owned());
    window_on(r, day)
}

fn window_on(r: &mut ChaCha8Rng, day: Value) -> Map<String, Value> {
    let mut w = Map::new();
    w.insert("dayOfWeekUtc".into(), day);
    let start = or_null(r, 0.03, |r| pick(r, START_TIMES).to_owned());
    w.insert("startTimeUtc".into(), start);
    w.insert(
        "duration".into(),
        or_null(r, 0.03, |r| pick(r, DURATIONS).to_owned()),
    );
    w
}

/// Business hours: usually the five weekdays or the whole week, sometimes none or a few.
fn respond_windows(r: &mut ChaCha8Rng) -> Value {
    if r.gen_bool(0.08) {
        return Value::Null;
    }
    let days: Vec<&str> = match r.gen_range(0..20) {
        0..=2 => vec![],
        3..=12 => DAYS[..5].to_vec(),
        13..=15 => DAYS.to_vec(),
        _ => {
            let n = r.gen_range(1..=7);
            index::sample(r, DAYS.len(), n)
                .iter()
                .map(|i| DAYS[i])
                .collect()
        }
    };
    days.into_iter()
        .map(|d| {
            let day = if r.gen_bool(0.03) {
                Value::Null
            } else {
                d.into()
            };
            Value::Object(window_on(r, day))
        })
        .collect()
}

fn script_fields(r: &mut ChaCha8Rng, m: &mut Map<String, Value>) {
    let installed = r.gen_bool(0.4);
    let seen = r.gen_bool(if installed { 0.9 } else { 0.1 });
    let domain = format!("www.{}", pick(r, DOMAINS));
    m.insert("scriptInstalled".into(), installed.into());
    let at = if seen {
        let secs = random_secs(r);
        stamp(r, secs).into()
    } else {
        Value::Null
    };
    m.insert("scriptLastSeenAt".into(), at);
    let d = if seen && r.gen_bool(0.95) {
        domain.clone().into()
    } else {
        Value::Null
    };
    m.insert("scriptLastSeenDomain".into(), d);
    let e = if seen && r.gen_bool(0.95) {
        format!(
            "https://{domain}/{}",
            pick(r, &["", "contact", "book-now", "pricing"])
        )
        .into()
    } else {
        Value::Null
    };
    m.insert("scriptLastSeenEndpoint".into(), e);
    let allow = list(r, 0.3, 3, |r| format!("www.{}", pick(r, DOMAINS)).into());
    m.insert("scriptDomainAllowList".into(), allow);
}

fn wallet(r: &mut ChaCha8Rng) -> Value {
    if r.gen_bool(0.25) {
        return Value::Null;
    }
    let cost = |r: &mut ChaCha8Rng| or_null(r, 0.6, |r| pick(r, COST_OVERRIDES).to_owned());
    json!({
        "reBilling": r.gen_bool(0.3),
        "autoRefill": r.gen_bool(0.5),
        "topUpAmount": pick(r, &[10, 25, 50, 100, 250, 500]),
        "refillThreshold": pick(r, &[5, 10, 20, 50]),
        "stripeCustomerId": or_null(r, 0.2, |r| format!("cus_{}", alnum(r, 14))),
        "currency": or_null(r, 0.1, |_| "usd".to_owned()),
        "responseUnitCostOverride": cost(r),
        "storageUnitCostOverride": cost(r),
        "userUnitCostOverride": cost(r),
    })
}
