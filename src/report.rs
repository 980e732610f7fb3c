//! What the operator commands print: plain-text tables, no colour, one row per line.

use crate::store::runs::RunRow;

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
        "{:>6}  {:<20}  {:>8}  {:<9}  {:<8}  {:>5}  {:>7}  {:>7}  {:>7}  {:>9}  {:>7}  {:>8}  {}\n",
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
            "{:>6}  {:<20}  {:>8}  {:<9}  {:<8}  {:>5}  {:>7}  {:>7}  {:>7}  {:>9}  {:>7}  {:>8}  {}\n",
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
            cut(remark, 120)
        ));
    }
    out
}
