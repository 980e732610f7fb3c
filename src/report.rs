//! What the operator commands print: plain-text tables, no colour, one row per line.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::closebot::untrusted::printable;
use crate::store::history::{self, ChangeRow, VersionRow};
use crate::store::runs::{RejectRow, RunRow};
use crate::store::{Store, Tx};

/// `n` and its noun, singular or plural: "1 page", "2 pages".
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn cut(s: &str, n: usize) -> String {
    let mut t: String = s.chars().take(n).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

/// The last runs as a table, newest first.
pub fn runs_table(rows: &[RunRow]) -> String {
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

/// `history SOURCE_ID`: the source's name, versions and changes, read in one snapshot; an
/// id the mirror never held is an error.
pub async fn history(store: &Store, source_id: &str) -> anyhow::Result<String> {
    let mut tx = store.begin_read().await?;
    let read = async {
        let versions = history::versions(&mut tx.conn(), source_id).await?;
        let changes = history::changes(&mut tx.conn(), source_id).await?;
        let name = history::latest_name(&mut tx.conn(), source_id).await?;
        Ok::<_, crate::store::StoreError>((versions, changes, name))
    }
    .await;
    tx.rollback().await?;
    let (versions, changes, name) = read?;
    if versions.is_empty() && changes.is_empty() {
        anyhow::bail!(
            "unknown source {:?}: the mirror never held a source with this sourceId (check it: \
             `closebot-sync export` lists the ids)",
            printable(source_id)
        );
    }
    Ok(history_text(
        source_id,
        name.as_deref(),
        &versions,
        &changes,
    ))
}

/// A source's history as text: its name, its versions, then its field changes, newest first.
pub fn history_text(
    source_id: &str,
    name: Option<&str>,
    versions: &[VersionRow],
    changes: &[ChangeRow],
) -> String {
    let time = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let name = match name {
        Some(n) => format!("\"{}\"", printable(n)),
        None => "(no name)".to_string(),
    };
    let mut out = format!(
        "source {} {name}\n\nversions (newest first)\n",
        printable(source_id)
    );
    out.push_str(&format!(
        "{:>7}  {:<19}  {:<19}  {:>6}  {:>6}\n",
        "version", "valid from (UTC)", "valid to (UTC)", "opened", "closed"
    ));
    for v in versions {
        out.push_str(&format!(
            "{:>7}  {:<19}  {:<19}  {:>6}  {:>6}\n",
            v.version,
            time(&v.valid_from),
            v.valid_to
                .as_ref()
                .map(time)
                .unwrap_or_else(|| "(current)".into()),
            v.opened_run_id,
            v.closed_run_id.map(|r| r.to_string()).unwrap_or_default()
        ));
    }
    out.push_str("\nchanges (newest first)\n");
    for c in changes {
        let detail = match &c.field_path {
            Some(path) => format!(
                "{path}: {} → {}",
                c.old_value
                    .as_deref()
                    .map(|v| cut(v, 80))
                    .unwrap_or_else(|| "(absent)".into()),
                c.new_value
                    .as_deref()
                    .map(|v| cut(v, 80))
                    .unwrap_or_else(|| "(absent)".into())
            ),
            None => String::new(),
        };
        out.push_str(&format!(
            "{}  run {:>5}  {:<8}  {detail}\n",
            time(&c.changed_at),
            c.run_id,
            c.change_type
        ));
    }
    out
}

/// Reads `--as-of`: RFC 3339 (a time without a zone is UTC), or a plain date, meaning the
/// end of that day in UTC (the listing as it stood when the day was over).
pub fn parse_as_of(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        let end = d
            .and_hms_micro_opt(23, 59, 59, 999_999)
            .expect("a valid time of day");
        return Ok(end.and_utc());
    }
    crate::model::parse_time(text.trim()).map_err(|e| {
        format!("--as-of {e}; give an RFC 3339 time such as 2026-03-03T12:00:00Z, or a date such as 2026-03-03")
    })
}

/// Writes the listing as it stood at `at`: `{"asOf": ..., "sources": [...]}`, sorted by
/// sourceId, each record as the API sent it, credentials left out. Reads a slice at a time,
/// all in one read transaction, so a run that commits meanwhile is seen wholly or not at
/// all. A time before the mirror's first completed run is an error: the mirror does not
/// know the listing then, and an empty listing would say it was empty.
pub async fn export(
    store: &Store,
    at: DateTime<Utc>,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut tx = store.begin_read().await?;
    let written = export_in(&mut tx, at, out).await;
    // Ended on every path: a read transaction left open on a pooled PostgreSQL connection
    // would hold its locks (a DROP or a migration would wait on it).
    tx.rollback().await?;
    written
}

async fn export_in(tx: &mut Tx, at: DateTime<Utc>, out: &mut impl Write) -> anyhow::Result<usize> {
    let Some(first) = history::first_completed_run(&mut tx.conn()).await? else {
        anyhow::bail!(
            "the mirror holds no completed run yet, so there is no listing to export: run \
             `closebot-sync sync` first (or check that this is the service's database)"
        );
    };
    if at < first.started_at {
        anyhow::bail!(
            "--as-of {} is before the mirror's first completed run (run {}, started {}): the \
             mirror does not know the listing then; export a time from then on",
            at.to_rfc3339_opts(SecondsFormat::Secs, true),
            first.run_id,
            first
                .started_at
                .to_rfc3339_opts(SecondsFormat::Micros, true)
        );
    }
    let mut conn = tx.conn();
    let conn = &mut conn;
    write!(
        out,
        "{{\"asOf\":{},\"sources\":[",
        serde_json::to_string(&at.to_rfc3339_opts(SecondsFormat::Micros, true))?
    )?;
    let mut after = String::new();
    let mut n = 0;
    loop {
        let slice = history::records_at(conn, at, &after, 500).await?;
        let Some(last) = slice.last() else { break };
        after = last.source_id.clone();
        for r in slice {
            let record = crate::model::record::for_export(serde_json::from_str(&r.record)?);
            if n > 0 {
                out.write_all(b",")?;
            }
            out.write_all(b"\n")?;
            serde_json::to_writer(&mut *out, &record)?;
            n += 1;
        }
    }
    out.write_all(b"\n]}\n")?;
    out.flush()?;
    Ok(n)
}
