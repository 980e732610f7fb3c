//! The harness: a database per backend (SQLite always, PostgreSQL when TEST_DATABASE_URL is
//! set), the simulator on loopback, settings for both, and table dumps.

#![allow(dead_code)]

pub mod rebuild;

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use closebot_sim::{SimOptions, SimServer, Simulator};
use closebot_sync::closebot::Client;
use closebot_sync::config::Settings;
use closebot_sync::store::{Conn, Store};
use closebot_sync::sync::{run_once, RunReport, SyncOptions};
use serde_json::{Map, Value};
use sqlx::{Column, Connection, Row, TypeInfo, ValueRef};
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "sim-key";

/// One database for one test.
pub struct Db {
    pub url: String,
    pub backend: &'static str,
    pub dir: tempfile::TempDir,
    schema: Option<(String, String)>,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some((admin, schema)) = self.schema.take() {
            // Best effort: a left-over schema only costs space.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&mut c)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

impl Db {
    /// The administrator's URL this PostgreSQL database was made from, and its schema.
    pub fn postgres_schema(&self) -> Option<(&str, &str)> {
        self.schema
            .as_ref()
            .map(|(admin, schema)| (admin.as_str(), schema.as_str()))
    }

    /// The same database, opened so that every write fails (a database refusing writes).
    pub fn read_only_url(&self) -> String {
        if self.backend == "sqlite" {
            format!("{}?mode=ro", self.url)
        } else {
            format!("{}%20-c%20default_transaction_read_only%3Don", self.url)
        }
    }
}

static SKIP_NOTE: Once = Once::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Says on stderr, past the test harness's capture (which keeps a passing test's
/// `eprintln!` to itself), that a check was skipped, so a plain `cargo test` shows it.
pub fn note_skipped(text: &str) {
    let _ = std::io::stderr().write_all(format!("\nnote: {text}\n").as_bytes());
}

/// SQLite always; PostgreSQL too when TEST_DATABASE_URL is set (and then it must work).
pub async fn databases() -> Vec<Db> {
    let mut dbs = vec![sqlite()];
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => dbs.push(postgres(url.trim()).await),
        _ => SKIP_NOTE.call_once(|| {
            // Straight to stderr, past the test harness's capture, so a plain `cargo test` says it.
            let _ = std::io::stderr().write_all(
                b"\nnote: TEST_DATABASE_URL is not set: the PostgreSQL half of the storage tests is SKIPPED \
                  (.ci/run starts PostgreSQL and sets it)\n",
            );
        }),
    }
    dbs
}

pub fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("mirror.db").display());
    Db {
        url,
        backend: "sqlite",
        dir,
        schema: None,
    }
}

async fn postgres(admin: &str) -> Db {
    let schema = format!(
        "t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let mut c = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| {
            panic!("TEST_DATABASE_URL is set but PostgreSQL cannot be reached: {e}")
        });
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut c)
        .await
        .unwrap();
    let sep = if admin.contains('?') { '&' } else { '?' };
    let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
    Db {
        url,
        backend: "postgres",
        dir: tempfile::tempdir().unwrap(),
        schema: Some((admin.to_string(), schema)),
    }
}

/// Settings as an operator would give them through the environment; `extra` adds
/// `(VARIABLE, value)` pairs. No settings file is read.
pub fn settings(base_url: &str, db: &Db, extra: &[(&str, &str)]) -> Settings {
    let file = db.dir.path().join("empty.toml");
    std::fs::write(&file, "").unwrap();
    let mut env: Vec<(String, String)> = vec![
        ("CLOSEBOT_SYNC_API__BASE_URL".into(), base_url.into()),
        ("CLOSEBOT_SYNC_API__KEY".into(), KEY.into()),
        ("CLOSEBOT_SYNC_DATABASE__URL".into(), db.url.clone()),
        ("CLOSEBOT_SYNC_API__MAX_RETRY_WAIT".into(), "20ms".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load_from(Some(&file), env).expect("test settings are valid")
}

pub async fn simulator(opts: SimOptions) -> (Simulator, SimServer) {
    let sim = Simulator::new(opts);
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (sim, server)
}

/// Faults under which every request for `page` hangs for two minutes (a run waits there,
/// with the pages before it applied, until it is stopped).
pub fn page_hangs(page: u32) -> closebot_sim::Faults {
    use closebot_sim::{FaultAction, FaultRule, Faults};
    Faults {
        rules: vec![FaultRule {
            page: Some(page),
            attempts: 1..=1000,
            action: FaultAction::Delay(std::time::Duration::from_secs(120)),
        }],
        ..Faults::default()
    }
}

pub fn sim_options(sources: usize, seed: u64) -> SimOptions {
    SimOptions {
        seed,
        sources,
        ..SimOptions::default()
    }
}

/// Everything one test needs to run syncs against one database.
pub struct Mirror {
    pub settings: Settings,
    pub store: Store,
    pub client: Client,
}

impl Mirror {
    pub async fn new(settings: Settings) -> Mirror {
        let store = Store::connect(&settings.database.url, settings.database.max_connections)
            .await
            .unwrap();
        store.migrate_locked().await.unwrap();
        let client =
            Client::new(&settings.api, settings.api.require_key().unwrap().clone()).unwrap();
        Mirror {
            settings,
            store,
            client,
        }
    }

    pub async fn sync(&self) -> RunReport {
        self.sync_with(SyncOptions {
            trigger: "test".into(),
            ..SyncOptions::default()
        })
        .await
    }

    pub async fn sync_with(&self, options: SyncOptions) -> RunReport {
        run_once(
            &self.settings,
            &self.store,
            &self.client,
            &options,
            &CancellationToken::new(),
        )
        .await
        .expect("the run starts")
    }

    pub fn backend(&self) -> &'static str {
        self.store.backend().name()
    }

    /// Every row of a query, each column as JSON (booleans of SQLite stay 0/1; time stamps
    /// as `YYYY-MM-DDTHH:MM:SS.ffffffZ` on both backends; JSON columns parsed).
    pub async fn dump(&self, sql: &str) -> Vec<Map<String, Value>> {
        dump(&self.store, sql).await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let rows = self.dump(sql).await;
        rows[0]
            .values()
            .next()
            .and_then(Value::as_i64)
            .expect("a count")
    }
}

/// What `export` writes for the listing as of `at` (default now), parsed.
pub async fn export(m: &Mirror, at: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    let mut out = Vec::new();
    closebot_sync::cli::export(&m.store, at.unwrap_or_else(chrono::Utc::now), &mut out)
        .await
        .unwrap();
    serde_json::from_slice(&out).expect("export writes JSON")
}

pub async fn dump(store: &Store, sql: &str) -> Vec<Map<String, Value>> {
    let mut pooled = store.acquire().await.unwrap();
    match pooled.conn() {
        Conn::Sqlite(c) => {
            let rows = sqlx::query(sql)
                .fetch_all(&mut *c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .map(|row| {
                    let mut m = Map::new();
                    for (i, col) in row.columns().iter().enumerate() {
                        let raw = row.try_get_raw(i).unwrap();
                        let v = if raw.is_null() {
                            Value::Null
                        } else {
                            match raw.type_info().name() {
                                "INTEGER" | "BOOLEAN" => Value::from(row.get::<i64, _>(i)),
                                "REAL" => Value::from(row.get::<f64, _>(i)),
                                _ => {
                                    let s: String = row.get(i);
                                    match serde_json::from_str::<Value>(&s) {
                                        Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
                                        _ => Value::String(s),
                                    }
                                }
                            }
                        };
                        m.insert(col.name().to_string(), v);
                    }
                    m
                })
                .collect()
        }
        Conn::Postgres(c) => {
            let rows = sqlx::query(sql)
                .fetch_all(&mut *c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .map(|row| {
                    let mut m = Map::new();
                    for (i, col) in row.columns().iter().enumerate() {
                        let raw = row.try_get_raw(i).unwrap();
                        let v = if raw.is_null() {
                            Value::Null
                        } else {
                            match col.type_info().name() {
                                "INT8" => Value::from(row.get::<i64, _>(i)),
                                "INT4" => Value::from(row.get::<i32, _>(i)),
                                "FLOAT8" => Value::from(row.get::<f64, _>(i)),
                                // As its exact text, so snapshots see the cost overrides too.
                                "NUMERIC" => Value::String(numeric_text(raw.as_bytes().unwrap())),
                                "BOOL" => Value::from(i64::from(row.get::<bool, _>(i))),
                                "TIMESTAMPTZ" => Value::String(
                                    row.get::<chrono::DateTime<chrono::Utc>, _>(i)
                                        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                                        .to_string(),
                                ),
                                "JSONB" | "JSON" => row.get::<Value, _>(i),
                                other => Value::String(
                                    row.try_get::<String, _>(i)
                                        .unwrap_or_else(|_| format!("<{other}>")),
                                ),
                            }
                        };
                        m.insert(col.name().to_string(), v);
                    }
                    m
                })
                .collect()
        }
    }
}

/// Every table the mirror writes, for "nothing changed" checks.
pub const TABLES: [&str; 20] = [
    "sync_runs",
    "sources",
    "source_wallets",
    "source_bots",
    "source_bot_channels",
    "source_bot_tags",
    "source_bot_tag_filter_groups",
    "source_bot_tag_filter_rules",
    "source_accounts_with_access",
    "source_respond_windows",
    "source_do_not_respond_windows",
    "source_bot_respond_windows",
    "source_script_domains",
    "bots",
    "source_changes",
    "source_versions",
    "source_misses",
    "source_rejects",
    "source_bot_history",
    "source_wallet_history",
];

/// All data tables (runs aside), each sorted, for before/after comparisons.
pub async fn snapshot(m: &Mirror) -> Vec<(String, Vec<Map<String, Value>>)> {
    let mut out = Vec::new();
    for t in TABLES.iter().filter(|t| **t != "sync_runs") {
        let mut rows = m.dump(&format!("SELECT * FROM {t}")).await;
        rows.sort_by_key(|r| Value::Object(r.clone()).to_string());
        out.push((t.to_string(), rows));
    }
    out
}

/// PostgreSQL's binary NUMERIC as its decimal text (`0.0075`, `-12`, `NaN`): digits of base
/// 10,000, a weight (the power of 10,000 of the first), a sign and the display scale.
fn numeric_text(bytes: &[u8]) -> String {
    let word = |i: usize| u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]);
    let (ndigits, weight, sign, scale) =
        (word(0) as usize, word(1) as i16, word(2), word(3) as usize);
    if sign == 0xC000 {
        return "NaN".into();
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect();
    // Whole part: the digit groups of weight 0 and above.
    let mut whole = String::new();
    for w in (0..=weight.max(0)).rev() {
        let i = (weight - w) as usize;
        let d = if weight >= 0 {
            digits.get(i).copied().unwrap_or(0)
        } else {
            0
        };
        if whole.is_empty() {
            whole = d.to_string();
        } else {
            whole.push_str(&format!("{d:04}"));
        }
    }
    // Fraction: the groups of negative weight, cut to the display scale.
    let mut fraction = String::new();
    let mut w = -1i16;
    while fraction.len() < scale {
        let i = weight - w;
        let d = if i >= 0 {
            digits.get(i as usize).copied().unwrap_or(0)
        } else {
            0
        };
        fraction.push_str(&format!("{d:04}"));
        w -= 1;
    }
    fraction.truncate(scale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}
