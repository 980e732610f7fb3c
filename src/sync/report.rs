//! What a run did, as the commands and the service show it: one summary line, a dry run's
//! preview, or one JSON object (`sync --json`).

use std::time::Duration;

use crate::store::apply::Preview;
use crate::store::runs::{RunCounts, RunStatus};

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// `None` for a dry run.
    pub run_id: Option<i64>,
    pub status: RunStatus,
    pub counts: RunCounts,
    /// Why a run is partial, or other remarks.
    pub notes: Option<String>,
    /// The error of a failed or aborted run, with its causes.
    pub error: Option<String>,
    pub duration: Duration,
    /// Rows inserted, updated or deleted, the run's own row included; for a failed run,
    /// what it wrote before it was rolled back.
    pub rows_written: u64,
    /// For a dry run: the first sources (by id) it would create, update, restore, delete.
    pub preview: Option<Preview>,
}

impl RunReport {
    /// The one-line summary `sync` prints.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let what = match self.run_id {
            Some(id) => format!("run {id} {}", self.status.as_str()),
            None => "dry run (nothing written)".to_string(),
        };
        use crate::text::count;
        // A run that did not commit applied nothing: say what it saw, not what it would have kept.
        let applied = match self.status {
            RunStatus::Failed | RunStatus::Aborted if self.run_id.is_some() => {
                "nothing applied".to_string()
            }
            _ => format!(
                "{} created, {} updated, {} unchanged, {} deleted, {} restored",
                c.created, c.updated, c.unchanged, c.deleted, c.restored
            ),
        };
        let mut line = format!(
            "{what} in {:.1}s: {}, {} seen ({applied}), {}, {}",
            self.duration.as_secs_f64(),
            count(c.pages, "page", "pages"),
            count(c.seen, "source", "sources"),
            count(c.http_requests, "request", "requests"),
            count(c.retries, "retry", "retries"),
        );
        if let Some(n) = &self.notes {
            line.push_str(&format!("; {n}"));
        }
        if let Some(e) = &self.error {
            line.push_str(&format!("; error: {e}"));
        }
        line
    }
}

impl RunReport {
    /// What a dry run would do, a line per kind of change, naming the first few sources.
    pub fn preview_text(&self, shown: usize) -> String {
        let Some(p) = &self.preview else {
            return String::new();
        };
        let c = &self.counts;
        let mut text = String::new();
        for (verb, n, ids) in [
            ("create", c.created, &p.created),
            ("update", c.updated, &p.updated),
            ("restore", c.restored, &p.restored),
            ("mark deleted", c.deleted, &p.deleted),
        ] {
            if n == 0 {
                continue;
            }
            let noun = if n == 1 { "source" } else { "sources" };
            let list: Vec<&str> = ids.iter().take(shown).map(String::as_str).collect();
            let which = if (list.len() as u64) < n {
                format!(" (the first {} by id)", list.len())
            } else {
                String::new()
            };
            text.push_str(&format!(
                "would {verb} {n} {noun}{which}: {}\n",
                list.join(", ")
            ));
        }
        if text.is_empty() {
            text.push_str("nothing would change\n");
        }
        text
    }

    /// The report as one JSON object (`sync --json`), with the process's peak resident
    /// memory where the system tells it.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "run_id": self.run_id,
            "dry_run": self.run_id.is_none(),
            "status": self.status.as_str(),
            "duration_seconds": self.duration.as_secs_f64(),
            "counts": self.counts,
            "rows_written": self.rows_written,
            "notes": self.notes,
            "error": self.error,
            "would": self.preview,
            "peak_rss_bytes": peak_rss_bytes(),
        })
    }
}

/// This process's peak resident set size (`VmHWM`), on Linux.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
