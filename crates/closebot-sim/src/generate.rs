//! Deterministic source records: a record is a pure function of (seed, slot, id, token
//! revision), so the simulator keeps only a sorted id index in memory and rebuilds each
//! record when it is served. That keeps 100,000 sources at a few megabytes.

use super::fields::{
    address, alnum, b64url, list, or_null, pick, random_name, random_secs, respond_windows, rng,
    script_fields, stamp, uuid, wallet, window,
};
use super::json::J;
use super::vocab::{BOT_NAMES, CHANNELS, DAYS, PERSONAS, TAG_NAMES};
use super::SchemaVersion;
use rand::seq::index;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

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
    pub fn access_token(&self, slot: u32, rev: u32) -> Option<String> {
        let r = &mut rng(self.seed, TOKEN ^ (u64::from(rev) << 32), slot.into());
        if rev == 0 && r.gen_bool(0.08) {
            return None;
        }
        Some(format!("eyJhbGciOiJSUzI1NiJ9.{}", b64url(r, 86)))
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
    pub fn record(&self, slot: u32, id: &str, token_rev: u32) -> J<'_> {
        let h = self.header(slot);
        let r = &mut rng(self.seed, BODY, slot.into());
        let newer = h.version != SchemaVersion::A;
        let mut m: Vec<(&'static str, J<'_>)> = Vec::with_capacity(31);
        let agency = or_null(r, 0.02, |_| self.agency_id.as_str());
        m.extend([
            ("agencyId", agency),
            ("sourceId", id.to_owned().into()),
            ("name", h.name.into()),
            ("category", h.category.into()),
            ("key", or_null(r, 0.06, |r| format!("rk_{}", alnum(r, 40)))),
            ("accessToken", self.access_token(slot, token_rev).into()),
            ("address", address(r, h.category)),
            ("connected", r.gen_bool(0.85).into()),
            ("autoShutoff", r.gen_bool(0.4).into()),
            ("gracefulGoodbye", r.gen_bool(0.4).into()),
            ("bots", self.bots(r, h.version)),
        ]);
        let accounts = if r.gen_bool(0.05) {
            J::Null
        } else {
            let n = r.gen_range(0..=5);
            let picked = index::sample(r, self.accounts.len(), n);
            picked
                .iter()
                .map(|i| self.accounts[i].as_str().into())
                .collect()
        };
        let dnr = list(r, 0.1, 3, |r| {
            let start = random_secs(r);
            let end = start + i64::from(r.gen_range(1..=72u32)) * 3600;
            J::Obj(vec![
                ("start", stamp(r, start).into()),
                ("end", stamp(r, end).into()),
            ])
        });
        m.extend([
            ("accountsWithAccess", accounts),
            ("isAvailabilityContactTimezone", r.gen_bool(0.3).into()),
            ("respondWindows", respond_windows(r)),
            ("doNotRespondWindows", dnr),
        ]);
        if newer {
            let brw = list(r, 0.1, 5, |r| {
                let day = or_null(r, 0.03, |r| pick(r, DAYS));
                let mut w = window(r, day);
                w.push(("channel", or_null(r, 0.05, |r| pick(r, CHANNELS))));
                J::Obj(w)
            });
            m.push(("botRespondWindows", brw));
            m.push(("isBotRespondWindowsQuietHours", r.gen_bool(0.2).into()));
        }
        let hook = if r.gen_bool(0.25) {
            format!("https://hooks.example.net/closebot/{}", alnum(r, 12)).into()
        } else {
            J::Null
        };
        m.extend([
            ("summarizeAttachments", r.gen_bool(0.5).into()),
            ("respondToReactions", r.gen_bool(0.4).into()),
            ("markConversationAsUnread", r.gen_bool(0.3).into()),
            ("webhookCallback", hook),
        ]);
        if newer {
            script_fields(r, &mut m);
        }
        m.push(("wallet", wallet(r)));
        if newer {
            let owner = if h.category == Some("HubSpot") || r.gen_bool(0.02) {
                or_null(r, 0.1, |r| {
                    r.gen_range(10_000_000..99_999_999u32).to_string()
                })
            } else {
                J::Null
            };
            m.push(("hubSpotOwnerId", owner));
        }
        if h.version == SchemaVersion::C {
            // Fields no published schema knows yet: a client must keep them, not choke.
            let model = pick(r, &["gpt-4o", "gpt-4.1-mini", "claude-3-5-sonnet"]);
            m.push(("aiModel", model.into()));
            if r.gen_bool(0.5) {
                let flags = vec![("x", true.into()), ("voice", false.into())];
                m.push(("newFeatureFlags", J::Obj(flags)));
            }
        }
        J::Obj(m)
    }

    fn bots(&self, r: &mut ChaCha8Rng, version: SchemaVersion) -> J<'_> {
        if r.gen_bool(0.04) {
            return J::Null;
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

    fn bot<'a>(&'a self, r: &mut ChaCha8Rng, pool: &'a PoolEntry, version: SchemaVersion) -> J<'a> {
        let mut b = Vec::with_capacity(8);
        b.push(("id", pool.id.as_deref().into()));
        b.push(("botName", pool.name.as_deref().into()));
        let tags = if r.gen_bool(0.05) {
            J::Null
        } else {
            let n = r.gen_range(0..=6);
            let picked = index::sample(r, self.tags.len(), n);
            let tag = |r: &mut ChaCha8Rng, t: &'a PoolEntry| {
                J::Obj(vec![
                    ("name", t.name.as_deref().into()),
                    ("approveDeny", r.gen_bool(0.7).into()),
                    ("id", t.id.as_deref().into()),
                ])
            };
            picked.iter().map(|i| tag(r, &self.tags[i])).collect()
        };
        b.push(("tags", tags));
        if version == SchemaVersion::C {
            b.push(("tagFilterConfig", self.tag_filter(r)));
        }
        let channels = if r.gen_bool(0.05) {
            J::Null
        } else {
            let n = r.gen_range(0..=5);
            let picked = index::sample(r, CHANNELS.len(), n);
            picked.iter().map(|i| CHANNELS[i].into()).collect()
        };
        b.push(("channels", channels));
        b.push((
            "personaNameOverride",
            or_null(r, 0.6, |r| pick(r, PERSONAS)),
        ));
        b.push(("enabled", r.gen_bool(0.85).into()));
        if version == SchemaVersion::C && r.gen_bool(0.2) {
            b.push(("newFeatureFlags", J::Obj(vec![("x", true.into())])));
        }
        J::Obj(b)
    }

    /// Version C only; its types are undocumented, so every part is sometimes null.
    fn tag_filter(&self, r: &mut ChaCha8Rng) -> J<'_> {
        if r.gen_bool(0.3) {
            return J::Null;
        }
        let op = |r: &mut ChaCha8Rng| or_null(r, 0.1, |r| pick(r, &["and", "or"]));
        let operator = op(r);
        let groups = list(r, 0.1, 2, |r| {
            let operator = op(r);
            let rules = list(r, 0.1, 3, |r| {
                let t = &self.tags[r.gen_range(0..self.tags.len())];
                let name = if r.gen_bool(0.08) {
                    None
                } else {
                    t.name.as_deref()
                };
                let id = if r.gen_bool(0.08) {
                    None
                } else {
                    t.id.as_deref()
                };
                let cond = or_null(r, 0.08, |r| pick(r, &["has", "doesNotHave"]));
                J::Obj(vec![
                    ("tagName", name.into()),
                    ("tagId", id.into()),
                    ("condition", cond),
                ])
            });
            J::Obj(vec![("operator", operator), ("rules", rules)])
        });
        J::Obj(vec![("operator", operator), ("groups", groups)])
    }
}
