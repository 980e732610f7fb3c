//! `closebot-sync bench`: the bundled simulator in this process, each sync in a child
//! process of its own (`closebot-sync sync --json`, so its peak memory is its own), on
//! SQLite and PostgreSQL, at several sizes; a Markdown table and the targets it meets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use super::exit::{CommandError, Ended};
use closebot_sim::{Faults, MutationPlan, SimServer, Simulator};
use serde_json::Value;

/// The default of `api.concurrency`, which the targets are stated for.
const CONCURRENCY: usize = 4;

mod table;

use table::{table, targets, Measured, LARGE_SCENARIO};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Listing sizes, in sources.
    pub sizes: Vec<usize>,
    /// A PostgreSQL URL to measure on too (each size gets a schema of its own, dropped after).
    pub postgres: Option<String>,
    /// How often to repeat the runs that leave the database as it was (the median counts).
    pub repeat: usize,
    /// Where the SQLite files go (a new folder in the system's temp folder by default).
    pub dir: Option<PathBuf>,
    /// The simulated latency per request of the latency-hiding run.
    pub latency: Duration,
    pub seed: u64,
}

/// A database to measure on, made anew for one size.
enum Db {
    Sqlite(PathBuf),
    Postgres { admin: String, schema: String },
}

impl Db {
    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "SQLite",
            Db::Postgres { .. } => "PostgreSQL",
        }
    }

    fn url(&self) -> String {
        match self {
            Db::Sqlite(path) => format!("sqlite://{}", path.display()),
            Db::Postgres { admin, schema } => {
                let sep = if admin.contains('?') { '&' } else { '?' };
                format!("{admin}{sep}options=-c%20search_path%3D{schema}")
            }
        }
    }

    async fn create(&self) -> anyhow::Result<()> {
        self.drop_all().await?;
        if let Db::Postgres { admin, schema } = self {
            admin_execute(admin, &format!("CREATE SCHEMA {schema}")).await?;
        }
        Ok(())
    }

    async fn drop_all(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(path) => Ok(super::demo::remove_database(path)?),
            Db::Postgres { admin, schema } => {
                admin_execute(admin, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await
            }
        }
    }
}

async fn admin_execute(url: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::{Connection, Executor};
    let mut c = sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("connecting to {}", crate::db_url::redact_url(url)))?;
    c.execute("SET client_min_messages TO warning").await?;
    c.execute(sql).await?;
    c.close().await?;
    Ok(())
}

/// 1% of the listing changed, as a mix of what changes on the live API.
fn one_percent(sources: usize) -> MutationPlan {
    let n = (sources / 100).max(1);
    let part = |tenths: usize| n * tenths / 10;
    let (wallet, tag, token, reorder, delete, add) =
        (part(2), part(2), part(1), part(1), part(1) / 2, part(1) / 2);
    MutationPlan {
        rename: n - wallet - tag - token - reorder - delete - add,
        flip_wallet: wallet,
        add_tag: tag,
        rotate_token: token,
        reorder,
        delete,
        add,
    }
}

/// Runs the bundled binary against the simulator and the database.
struct Runner {
    exe: PathBuf,
    workdir: PathBuf,
    base_url: String,
    key: String,
}

impl Runner {
    /// Runs `closebot-sync <args>`, with only the settings given here (no settings file,
    /// none of the caller's `CLOSEBOT_SYNC_*` variables), and returns its standard output.
    async fn run(&self, db: &Db, args: &[&str], concurrency: usize) -> anyhow::Result<String> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(args).current_dir(&self.workdir).kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CLOSEBOT_SYNC_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("CLOSEBOT_SYNC_API__BASE_URL", &self.base_url)
            .env("CLOSEBOT_SYNC_API__KEY", &self.key)
            .env("CLOSEBOT_SYNC_API__CONCURRENCY", concurrency.to_string())
            .env("CLOSEBOT_SYNC_DATABASE__URL", db.url())
            .env("CLOSEBOT_SYNC_LOG__LEVEL", "warn");
        let out = cmd.output().await.context("starting closebot-sync")?;
        if !out.status.success() {
            bail!(
                "`closebot-sync {}` on {} exited with {}: {}",
                args.join(" "),
                db.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// One sync (`dry` for `--dry-run`), measured.
    async fn sync(&self, db: &Db, dry: bool, concurrency: usize) -> anyhow::Result<Value> {
        let args: &[&str] = if dry {
            &["sync", "--json", "--dry-run"]
        } else {
            &["sync", "--json"]
        };
        let out = self.run(db, args, concurrency).await?;
        let report: Value = serde_json::from_str(out.trim()).context("reading `sync --json`")?;
        if report["status"] != "succeeded" {
            bail!("a benchmark run did not succeed: {report}");
        }
        Ok(report)
    }
}

fn measured(
    sources: usize,
    backend: &'static str,
    scenario: &'static str,
    reports: &[Value],
) -> Measured {
    // The median run by duration stands for all.
    let mut sorted: Vec<&Value> = reports.iter().collect();
    sorted.sort_by(|a, b| {
        let (x, y) = (
            a["duration_seconds"].as_f64(),
            b["duration_seconds"].as_f64(),
        );
        x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
    });
    let r = sorted[sorted.len() / 2];
    let c = &r["counts"];
    Measured {
        sources,
        backend,
        scenario,
        seconds: r["duration_seconds"].as_f64().unwrap_or(f64::NAN),
        rows: r["rows_written"].as_u64().unwrap_or(0),
        peak_rss: reports
            .iter()
            .filter_map(|r| r["peak_rss_bytes"].as_u64())
            .max(),
        floor: None,
        summary: format!(
            "{} created, {} updated, {} deleted",
            c["created"], c["updated"], c["deleted"]
        ),
    }
}

/// The scenarios on one database: a dry run over the empty database (the first sync's
/// floor), the first sync, no-op, dry runs, 1% changed.
async fn measure_size(
    runner: &Runner,
    sim: &Simulator,
    db: &Db,
    sources: usize,
    repeat: usize,
    seed: u64,
) -> anyhow::Result<Vec<Measured>> {
    let backend = db.name();
    let concurrency = CONCURRENCY;
    db.create().await?;
    runner.run(db, &["migrate"], concurrency).await?;
    let step = |what: &str| eprintln!("bench: {sources} sources, {backend}: {what}");
    let again = |dry: bool| async move {
        let mut reports = Vec::new();
        for _ in 0..repeat.max(1) {
            reports.push(runner.sync(db, dry, concurrency).await?);
        }
        anyhow::Ok(reports)
    };
    step("dry run, nothing stored");
    let dry_empty = again(true).await?;
    step("first sync");
    let first = runner.sync(db, false, concurrency).await?;
    step("no-op resync");
    let noop = again(false).await?;
    step("dry run, nothing changed");
    let dry = again(true).await?;
    sim.mutate(seed, &one_percent(sources));
    step("dry run, 1% changed");
    let dry_changed = again(true).await?;
    step("1% changed");
    let changed = runner.sync(db, false, concurrency).await?;

    let dry_empty = measured(sources, backend, "dry run, nothing stored", &dry_empty);
    let mut first = measured(sources, backend, "first sync", &[first]);
    first.floor = Some(dry_empty.seconds);
    let dry = measured(sources, backend, "dry run, nothing changed", &dry);
    let mut noop = measured(sources, backend, "no-op resync", &noop);
    let dry_changed = measured(sources, backend, "dry run, 1% changed", &dry_changed);
    let mut changed = measured(sources, backend, "1% changed", &[changed]);
    noop.floor = Some(dry.seconds);
    changed.floor = Some(dry_changed.seconds);
    db.drop_all().await?;
    Ok(vec![dry_empty, first, dry, noop, dry_changed, changed])
}

/// The latency-hiding run: `--dry-run` over 100 pages with `latency` per request, at the
/// default concurrency and at 1.
async fn measure_latency(
    runner: &Runner,
    sim: &Simulator,
    db: &Db,
    latency: Duration,
) -> anyhow::Result<Vec<Measured>> {
    db.create().await?;
    runner.run(db, &["migrate"], 1).await?;
    sim.set_faults(Faults {
        latency,
        ..Faults::default()
    });
    let mut out = Vec::new();
    for (concurrency, scenario) in [
        (CONCURRENCY, "walk, 50 ms latency, concurrency 4"),
        (1, "walk, 50 ms latency, concurrency 1"),
    ] {
        eprintln!("bench: {scenario}");
        let r = runner.sync(db, true, concurrency).await?;
        out.push(measured(sim.len(), db.name(), scenario, &[r]));
    }
    sim.set_faults(Faults::default());
    db.drop_all().await?;
    Ok(out)
}

/// Bots on the one large source of the large-record scenario.
const LARGE_BOTS: usize = 40_000;

/// A source with 40,000 bots, one of them renamed: the field diff of that one record (and
/// the rewrite of its rows) is what this run costs beyond its dry run.
async fn measure_large_source(
    runner: &Runner,
    sim: &Simulator,
    db: &Db,
) -> anyhow::Result<Vec<Measured>> {
    db.create().await?;
    runner.run(db, &["migrate"], 1).await?;
    let bots = |renamed: Option<usize>| {
        (0..LARGE_BOTS)
            .map(|i| {
                let name = if renamed == Some(i) {
                    "renamed".to_string()
                } else {
                    format!("bot {i}")
                };
                serde_json::json!({"id": format!("large-bot-{i}"), "botName": name, "enabled": true})
            })
            .collect::<Vec<Value>>()
    };
    sim.edit(|l| l[0]["bots"] = Value::Array(bots(None)));
    runner.sync(db, false, CONCURRENCY).await?;
    sim.edit(|l| l[0]["bots"] = Value::Array(bots(Some(LARGE_BOTS / 2))));
    eprintln!("bench: one of {LARGE_BOTS} bots renamed, {}", db.name());
    let dry = runner.sync(db, true, CONCURRENCY).await?;
    let changed = runner.sync(db, false, CONCURRENCY).await?;
    let dry = measured(
        sim.len(),
        db.name(),
        "dry run, one of 40,000 bots renamed",
        &[dry],
    );
    let mut changed = measured(sim.len(), db.name(), LARGE_SCENARIO, &[changed]);
    changed.floor = Some(dry.seconds);
    db.drop_all().await?;
    Ok(vec![dry, changed])
}

/// Runs the benchmark; prints the table and the targets to stdout. A missed target (of
/// those the measured sizes cover) is a reported failure (exit 1).
pub(super) async fn bench(options: &BenchOptions) -> Result<Ended, CommandError> {
    let exe = std::env::current_exe().context("finding the closebot-sync binary")?;
    let own_dir = options.dir.is_none();
    let dir = match &options.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("closebot-sync-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = measure_all(options, &exe, &dir).await;
    if own_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let rows = result?;
    print!("{}", table(&rows));
    let (lines, all_met) = targets(&rows, options.latency);
    println!("\n{lines}");
    Ok(if all_met {
        Ended::Done
    } else {
        Ended::Reported(crate::failure::Failure::Failed)
    })
}

async fn measure_all(
    options: &BenchOptions,
    exe: &Path,
    dir: &Path,
) -> anyhow::Result<Vec<Measured>> {
    let mut rows = Vec::new();
    let mut dbs: Vec<Db> = vec![Db::Sqlite(dir.join("bench.db"))];
    if let Some(admin) = &options.postgres {
        dbs.push(Db::Postgres {
            admin: admin.clone(),
            schema: format!("closebot_bench_{}", std::process::id()),
        });
    }
    for &sources in &options.sizes {
        for db in &dbs {
            let (sim, server, runner) = serve(options.seed, sources, exe, dir).await?;
            let measured =
                measure_size(&runner, &sim, db, sources, options.repeat, options.seed).await;
            server.shutdown().await;
            rows.extend(measured?);
        }
    }
    let (sim, server, runner) = serve(options.seed, 10_000, exe, dir).await?;
    let latency = measure_latency(&runner, &sim, &dbs[0], options.latency).await;
    server.shutdown().await;
    rows.extend(latency?);
    for db in &dbs {
        let (sim, server, runner) = serve(options.seed, 100, exe, dir).await?;
        let large = measure_large_source(&runner, &sim, db).await;
        server.shutdown().await;
        rows.extend(large?);
    }
    Ok(rows)
}

/// A simulator of `sources` sources on loopback, and a runner pointed at it.
async fn serve(
    seed: u64,
    sources: usize,
    exe: &Path,
    dir: &Path,
) -> anyhow::Result<(Simulator, SimServer, Runner)> {
    let (sim, server, key) = super::demo::local_simulator(seed, sources).await?;
    let runner = Runner {
        exe: exe.to_path_buf(),
        workdir: dir.to_path_buf(),
        base_url: server.base_url(),
        key,
    };
    Ok((sim, server, runner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_percent_is_one_percent_of_the_listing() {
        for n in [100, 1_000, 10_000, 100_000] {
            let p = one_percent(n);
            let total = p.rename
                + p.flip_wallet
                + p.add_tag
                + p.rotate_token
                + p.reorder
                + p.delete
                + p.add;
            assert_eq!(total, n / 100, "{n}");
        }
        let p = one_percent(10_000);
        assert!(p.delete > 0 && p.add > 0 && p.rename > 0, "{p:?}");
    }
}
