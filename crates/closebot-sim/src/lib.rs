//! A faithful fake of CloseBot's `GET /agency/source` for tests, the benchmark and the
//! demo: deterministic records in schema versions A, B and C, fault injection, mutations.
//! A crate of its own so the daemon can be built without it; it imports nothing from it.
//!
//! Records are generated on demand from (seed, slot); only a sorted id index and explicit
//! overrides live in memory, so 100,000 sources stay in a few megabytes.

mod faults;
mod fields;
mod generate;
mod json;
mod mutate;
mod page;
mod server;
mod vocab;

use generate::Generator;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use server::SimServer;

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub sources: usize,
    pub api_key: String,
    /// None = a mix of A, B and C per source; Some(v) = every source in version v.
    pub schema: Option<SchemaVersion>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 1,
            sources: 250,
            api_key: "sim-key".into(),
            schema: None,
        }
    }
}

/// The three documented shapes of a source (see the API notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaVersion {
    A,
    B,
    C,
}

#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub path: String,
    /// Decoded query pairs in the order sent.
    pub query: Vec<(String, String)>,
    pub authorized: bool,
    /// The name of each header sent, once, lower-case; never the values
    /// (one carries the key).
    pub header_names: Vec<String>,
    /// 0 when the connection was closed without a response.
    pub status: u16,
}

#[derive(Clone, Debug, Default)]
pub struct MutationPlan {
    pub rename: usize,
    pub flip_wallet: usize,
    pub add_tag: usize,
    pub rotate_token: usize,
    pub reorder: usize,
    pub delete: usize,
    pub add: usize,
}

#[derive(Clone, Debug, Default)]
pub struct MutationReport {
    pub renamed: Vec<String>,
    pub wallet_flipped: Vec<String>,
    pub tag_added: Vec<String>,
    pub token_rotated: Vec<String>,
    pub reordered: Vec<String>,
    pub deleted: Vec<String>,
    pub added: Vec<String>,
}

/// Fault injection. Default = no faults.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub latency: Duration,
    pub rules: Vec<FaultRule>,
    pub unstable_order: bool,
    pub shrink_to: Option<usize>,
    pub mid_walk: Vec<MidWalk>,
    /// Echoes `page` counted from 1 (the API documents the request's `page` as 0-based but
    /// not the echo): page 0 is answered as page 1.
    pub echo_page_from_one: bool,
}

#[derive(Clone, Debug)]
pub struct FaultRule {
    pub page: Option<u32>,
    pub attempts: std::ops::RangeInclusive<u32>,
    pub action: FaultAction,
}

#[derive(Clone, Debug)]
pub enum FaultAction {
    Status {
        code: u16,
        retry_after: Option<String>,
        body: Option<String>,
    },
    Delay(Duration),
    TruncatedBody,
    InvalidJson,
    TotalWrongType,
    SourceFieldWrongType,
    MissingResults,
    /// `"results": null`, which the schema allows: an empty page, not an error.
    NullResults,
    MissingTotal,
    WrongPageNumber,
    CloseConnection,
    /// Answers with this redirect status and `Location` instead of the page.
    Redirect {
        code: u16,
        location: String,
    },
    /// Reports this value as `total` (any JSON: 10^12, a negative number, ...).
    SetTotal(Value),
    /// Serves every source on every page, as a server that ignores `page` and
    /// `pageSize` would, while reporting the page and page size asked for.
    IgnorePaging,
    /// Replaces every `from` in the serialized body by `to` (text no JSON value can
    /// hold, such as a lone surrogate escape `\ud83d`).
    ReplaceInBody {
        from: String,
        to: String,
    },
}

#[derive(Clone, Debug)]
pub enum MidWalk {
    InsertFirst {
        after_page: u32,
    },
    DeleteFirst {
        after_page: u32,
    },
    /// A brand-new source whose id sorts after every current one. With `DeleteFirst` at the
    /// same page, `total` stays the same while every later source moves back one place, so
    /// a walk skips one source yet sees `total` distinct ones.
    InsertLast {
        after_page: u32,
    },
}

/// How one listed source is held: a generated slot (cheap) or an explicit record.
#[derive(Clone)]
pub(crate) enum Body {
    Generated { slot: u32, token_rev: u32 },
    Explicit(Arc<Value>),
}

#[derive(Clone)]
pub(crate) struct Entry {
    /// The sourceId, or "" when the record has none (possible after `edit`).
    pub id: Box<str>,
    pub body: Body,
}

impl Entry {
    pub fn value(&self, gen: &Generator) -> Value {
        match &self.body {
            Body::Generated { slot, token_rev } => {
                gen.record(*slot, &self.id, *token_rev).to_value()
            }
            Body::Explicit(v) => Value::clone(v),
        }
    }

    /// The record in the cheap form the server serializes directly.
    pub fn render<'a>(&'a self, gen: &'a Generator) -> Rendered<'a> {
        match &self.body {
            Body::Generated { slot, token_rev } => {
                Rendered::Generated(gen.record(*slot, &self.id, *token_rev))
            }
            Body::Explicit(v) => Rendered::Explicit(v),
        }
    }

    pub fn name(&self, gen: &Generator) -> Option<String> {
        match &self.body {
            Body::Generated { slot, .. } => gen.header(*slot).name,
            Body::Explicit(v) => v.get("name").and_then(Value::as_str).map(str::to_owned),
        }
    }

    pub fn category(&self, gen: &Generator) -> Option<String> {
        match &self.body {
            Body::Generated { slot, .. } => gen.header(*slot).category.map(str::to_owned),
            Body::Explicit(v) => v.get("category").and_then(Value::as_str).map(str::to_owned),
        }
    }
}

/// A record ready to serialize: generated records never become serde_json values on the
/// serving path.
pub(crate) enum Rendered<'a> {
    Generated(json::J<'a>),
    Explicit(&'a Value),
}

impl serde::Serialize for Rendered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rendered::Generated(j) => j.serialize(s),
            Rendered::Explicit(v) => v.serialize(s),
        }
    }
}

pub(crate) struct State {
    /// Sorted by id (byte order): the `+id` order.
    pub entries: Vec<Entry>,
    pub next_slot: u32,
    /// Counter for the explicit random streams (fresh tokens, ids, request orders).
    pub fresh: u64,
    pub api_key: String,
    pub plan_limited: bool,
    pub faults: Faults,
    /// Requests per page number since the faults were set.
    pub attempts: HashMap<u32, u32>,
    /// Pages served at least once since the faults were set (for `mid_walk`).
    pub served: HashSet<u32>,
    pub requests: Vec<RequestRecord>,
}

impl State {
    pub fn next_fresh(&mut self) -> u64 {
        self.fresh += 1;
        self.fresh
    }

    pub fn insert_sorted(&mut self, entry: Entry) {
        let at = self.entries.partition_point(|e| e.id <= entry.id);
        self.entries.insert(at, entry);
    }

    /// Gives the source a new access token, as a forced refresh does on the live API.
    pub fn rotate_token(&mut self, index: usize, gen: &Generator) {
        let counter = self.next_fresh();
        match &mut self.entries[index].body {
            Body::Generated { token_rev, .. } => *token_rev += 1,
            Body::Explicit(v) => {
                if let Some(obj) = Arc::make_mut(v).as_object_mut() {
                    obj.insert("accessToken".into(), gen.fresh_token(counter).into());
                }
            }
        }
    }
}

/// The simulated API. Cloning is cheap; all clones share one listing.
#[derive(Clone)]
pub struct Simulator {
    gen: Arc<Generator>,
    state: Arc<Mutex<State>>,
}

impl Simulator {
    pub fn new(opts: SimOptions) -> Simulator {
        let gen = Generator::new(opts.seed, opts.schema);
        let slots = u32::try_from(opts.sources).expect("at most u32::MAX sources");
        let mut entries: Vec<Entry> = (0..slots)
            .map(|slot| Entry {
                id: gen.source_id(slot).into_boxed_str(),
                body: Body::Generated { slot, token_rev: 0 },
            })
            .collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        let state = State {
            entries,
            next_slot: slots,
            fresh: 0,
            api_key: opts.api_key,
            plan_limited: false,
            faults: Faults::default(),
            attempts: HashMap::new(),
            served: HashSet::new(),
            requests: Vec::new(),
        };
        Simulator {
            gen: Arc::new(gen),
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not take every later request down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds (use 127.0.0.1:0 in tests) and serves in a background tokio task.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<SimServer> {
        server::start(self.clone(), addr).await
    }

    /// Every current source as the server would serve it, in `+id` order.
    pub fn listing(&self) -> Vec<Value> {
        let entries = self.lock().entries.clone();
        entries.iter().map(|e| e.value(&self.gen)).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Direct edit for tests: the closure may change, add or remove records; the result,
    /// re-sorted by sourceId, becomes the listing. Unchanged records stay generated.
    pub fn edit(&self, f: impl FnOnce(&mut Vec<Value>)) {
        let before = self.lock().entries.clone();
        let mut records: Vec<Value> = before.iter().map(|e| e.value(&self.gen)).collect();
        f(&mut records);
        let mut generated: HashMap<&str, &Entry> = HashMap::new();
        for e in &before {
            if matches!(e.body, Body::Generated { .. }) {
                generated.insert(&e.id, e);
            }
        }
        let mut entries: Vec<Entry> = records
            .into_iter()
            .map(|v| {
                let id = v.get("sourceId").and_then(Value::as_str).unwrap_or("");
                match generated.get(id) {
                    Some(old) if old.value(&self.gen) == v => Entry::clone(old),
                    _ => Entry {
                        id: id.into(),
                        body: Body::Explicit(Arc::new(v)),
                    },
                }
            })
            .collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        self.lock().entries = entries;
    }

    /// Seeded random mutations; returns exactly which sourceIds were touched how.
    pub fn mutate(&self, seed: u64, plan: &MutationPlan) -> MutationReport {
        mutate::mutate(&self.gen, &mut self.lock(), seed, plan)
    }

    /// Replaces the faults and restarts the per-page attempt and first-serve counters.
    pub fn set_faults(&self, faults: Faults) {
        let mut st = self.lock();
        st.faults = faults;
        st.attempts.clear();
        st.served.clear();
    }

    pub fn set_api_key(&self, key: &str) {
        self.lock().api_key = key.to_owned();
    }

    /// When true, every authorized request gets 401 `{"error": "upgrade required"}`.
    pub fn set_plan_limited(&self, limited: bool) {
        self.lock().plan_limited = limited;
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }
}

/// For closebot-sync's `simulate` subcommand: serve until `shutdown` resolves.
pub async fn serve_until(
    opts: SimOptions,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sources = opts.sources;
    let sim = Simulator::new(opts);
    let server = sim.serve(addr).await?;
    tracing::info!(addr = %server.addr, sources, "simulator listening");
    shutdown.await;
    server.shutdown().await;
    Ok(())
}
