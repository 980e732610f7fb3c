//! `closebot-sync status`: the last runs, the sources in quarantine and the health, as
//! plain-text tables (no colour, one row per line). Reads only.

use super::exit::{CommandError, Ended};
use crate::closebot::untrusted::printable;
use crate::config::Settings;
use crate::service::health::Health;
use crate::store::runs::{self, RejectRow, RunRow};

pub(super) async fn status(settings: &Settings, n: u32) -> Result<Ended, CommandError> {
    let store = super::read_store(settings).await?;
    let mut c = store.acquire().await?;
    let rows = runs::last(&mut c.conn(), n).await?;
    print!("{}", runs_table(&rows));
    let (rejects, total) = runs::open_rejects(&mut c.conn(), 10).await?;
    print!("{}", rejects_text(&rejects, total));
    let health = Health::read(&store, settings.health_max_age).await?;
    println!("health: {}", health.describe());
    Ok(Ended::Done)
}

pub(super) fn cut(s: &str, n: usize) -> String {
    let mut t: String = s.chars().take(n).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

/// The last runs as a table, newest first.
fn runs_table(rows: &[RunRow]) -> String {
    if rows.is_empty() {
        return "no runs yet: run `closebot-sync sync`\n".to_string();
    }
    let mut out = format!(
        "{:>6}  {:<20}  {:>8}  {:<9}  {:<8}  {:>5}  {:>7}  {:>7}  {:>7}  {:>9}  {:>7}  {:>8}  {:>8}  {}\n",
        "run",
        "started (UTC)",
        "took",
        "status",
        "trigger",
        "pages",
        "seen",
        "created",
        "updated",
        "unchanged",
        "deleted",
        "restored",
        "rejected",
        "notes / error"
    );
    for r in rows {
        let took = r
            .finished_at
            .map(|f| {
                format!(
                    "{:.1}s",
                    (f - r.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_else(|| "-".to_string());
        let remark = r.error.as_deref().or(r.notes.as_deref()).unwrap_or("");
        out.push_str(&format!(
            "{:>6}  {:<20}  {:>8}  {:<9}  {:<8}  {:>5}  {:>7}  {:>7}  {:>7}  {:>9}  {:>7}  {:>8}  {:>8}  {}\n",
            r.run_id,
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            took,
            r.status,
            r.trigger,
            r.pages,
            r.sources_seen,
            r.sources_created,
            r.sources_updated,
            r.sources_unchanged,
            r.sources_deleted,
            r.sources_restored,
            r.sources_rejected,
            cut(&printable(remark), 120)
        ));
    }
    out
}

/// The sources quarantined now, for `status`: nothing when there are none.
pub fn rejects_text(rows: &[RejectRow], total: i64) -> String {
    if total == 0 {
        return String::new();
    }
    let noun = if total == 1 {
        "source is"
    } else {
        "sources are"
    };
    let mut out = format!(
        "quarantined: {total} {noun} kept at their last good state because the API sends a record the mirror cannot store (see source_rejects):\n"
    );
    for r in rows {
        out.push_str(&format!(
            "  {}  since {}  {}: {}\n",
            printable(&r.source_id),
            r.first_seen_at.format("%Y-%m-%d %H:%M:%S"),
            printable(&r.field_path),
            cut(&printable(&r.reason), 120)
        ));
    }
    if (rows.len() as i64) < total {
        out.push_str(&format!("  ... and {} more\n", total - rows.len() as i64));
    }
    out
}
