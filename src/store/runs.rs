//! The `sync_runs` table: a row inserted as `running` before a run touches anything, and
//! finished in the run's own transaction, so the row says `succeeded` exactly when the
//! data committed.

use chrono::{DateTime, Utc};

use super::{Conn, Doing, StoreError};
use crate::model::Val;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Partial,
    Failed,
    Aborted,
    Abandoned,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
            RunStatus::Abandoned => "abandoned",
        }
    }
}

/// The counts a run records.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunCounts {
    pub walks: u64,
    pub pages: u64,
    pub http_requests: u64,
    pub retries: u64,
    pub api_total: Option<u64>,
    pub seen: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub restored: u64,
    /// Sources quarantined: their records could not be mirrored (see `source_rejects`).
    pub rejected: u64,
}

/// One row of `sync_runs`, as `status` shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RunRow {
    pub run_id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub trigger: String,
    pub pages: i64,
    pub sources_seen: i64,
    pub sources_created: i64,
    pub sources_updated: i64,
    pub sources_unchanged: i64,
    pub sources_deleted: i64,
    pub sources_restored: i64,
    pub sources_rejected: i64,
    pub notes: Option<String>,
    pub error: Option<String>,
}

fn int(n: u64) -> Val {
    Val::Int(Some(n as i64))
}

/// This machine's name, from gethostname(2): `/proc/sys/kernel/hostname` is hidden from a
/// service under systemd's `ProcSubset=pid`.
pub(crate) fn host_name() -> Option<String> {
    whoami::fallible::hostname()
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Inserts the `running` row; returns its id.
pub async fn start(
    conn: &mut Conn<'_>,
    at: DateTime<Utc>,
    trigger: &str,
) -> Result<i64, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Id {
        run_id: i64,
    }
    let host = host_name();
    let rows: Vec<Id> = conn
        .fetch_all(
            "INSERT INTO sync_runs (started_at, status, trigger, host, pid) VALUES ($1, 'running', $2, $3, $4) RETURNING run_id",
            vec![
                Val::Time(Some(at)),
                Val::Text(Some(trigger.to_string())),
                Val::Text(host),
                Val::Int(Some(i64::from(std::process::id()))),
            ],
        )
        .await
        .doing("recording the start of the run")?;
    Ok(rows[0].run_id)
}

/// Writes the run's outcome.
pub(crate) async fn finish(
    conn: &mut Conn<'_>,
    run_id: i64,
    status: RunStatus,
    counts: &RunCounts,
    notes: Option<&str>,
    error: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sync_runs SET finished_at = $1, status = $2, walks = $3, pages = $4, http_requests = $5, \
         retries = $6, api_total = $7, sources_seen = $8, sources_created = $9, sources_updated = $10, \
         sources_unchanged = $11, sources_deleted = $12, sources_restored = $13, notes = $14, error = $15, \
         sources_rejected = $17 WHERE run_id = $16",
        vec![
            Val::Time(Some(Utc::now())),
            Val::Text(Some(status.as_str().to_string())),
            int(counts.walks),
            int(counts.pages),
            int(counts.http_requests),
            int(counts.retries),
            Val::Int(counts.api_total.map(|t| t as i64)),
            int(counts.seen),
            int(counts.created),
            int(counts.updated),
            int(counts.unchanged),
            int(counts.deleted),
            int(counts.restored),
            Val::Text(notes.map(str::to_string)),
            Val::Text(error.map(str::to_string)),
            Val::Int(Some(run_id)),
            int(counts.rejected),
        ],
    )
    .await
    .doing("recording the end of the run")?;
    Ok(())
}

/// Marks rows left `running` as `abandoned`. Call only while holding the writer lock: then
/// no live process can own such a row.
pub(crate) async fn mark_abandoned(conn: &mut Conn<'_>) -> Result<u64, StoreError> {
    conn.execute(
        "UPDATE sync_runs SET status = 'abandoned', finished_at = $1, \
         error = 'the process running it stopped before it finished (crash, kill or power loss); nothing of it was applied' \
         WHERE status = 'running'",
        vec![Val::Time(Some(Utc::now()))],
    )
    .await
    .doing("marking runs left running as abandoned")
}

/// The last `n` runs, newest first.
pub(crate) async fn last(conn: &mut Conn<'_>, n: u32) -> Result<Vec<RunRow>, StoreError> {
    conn.fetch_all(
        "SELECT run_id, started_at, finished_at, status, trigger, pages, \
         sources_seen, sources_created, sources_updated, sources_unchanged, sources_deleted, sources_restored, sources_rejected, \
         notes, error FROM sync_runs ORDER BY run_id DESC LIMIT $1",
        vec![Val::Int(Some(i64::from(n)))],
    )
    .await
    .doing("reading the last runs")
}

/// Records a run that failed before it could write its own row (the database was down or
/// refused writes), once the database takes writes again.
pub(crate) async fn record_unrecorded(
    conn: &mut Conn<'_>,
    failure: &Unrecorded,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sync_runs (started_at, finished_at, status, trigger, pid, error) \
         VALUES ($1, $2, 'failed', $3, $4, $5)",
        vec![
            Val::Time(Some(failure.at)),
            Val::Time(Some(failure.at)),
            Val::Text(Some(failure.trigger.clone())),
            Val::Int(Some(i64::from(std::process::id()))),
            Val::Text(Some(format!(
                "the run could not start and is recorded late: {}",
                failure.error
            ))),
        ],
    )
    .await
    .doing("recording a run that could not start")?;
    Ok(())
}

/// A run that failed before its row existed.
#[derive(Debug, Clone)]
pub struct Unrecorded {
    pub at: DateTime<Utc>,
    pub trigger: String,
    pub error: String,
}

/// Failures waiting to be recorded; the oldest are dropped past `LIMIT` (the log has them).
#[derive(Debug, Default)]
pub struct Pending(Vec<Unrecorded>);

impl Pending {
    const LIMIT: usize = 100;

    pub fn push(&mut self, failure: Unrecorded) {
        if self.0.len() == Self::LIMIT {
            self.0.remove(0);
        }
        self.0.push(failure);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Writes what it can, oldest first; keeps the rest for the next try.
    pub async fn flush(&mut self, conn: &mut Conn<'_>) -> Result<usize, StoreError> {
        let mut written = 0;
        while let Some(first) = self.0.first() {
            record_unrecorded(conn, first).await?;
            self.0.remove(0);
            written += 1;
        }
        Ok(written)
    }
}

/// One open row of `source_rejects`, as `status` shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RejectRow {
    pub source_id: String,
    pub field_path: String,
    pub reason: String,
    pub first_seen_at: DateTime<Utc>,
}

/// The sources quarantined now (open rejects), the oldest first, at most `n`; and how many
/// there are in all.
pub async fn open_rejects(
    conn: &mut Conn<'_>,
    n: u32,
) -> Result<(Vec<RejectRow>, i64), StoreError> {
    #[derive(sqlx::FromRow)]
    struct Count {
        n: i64,
    }
    let rows = conn
        .fetch_all(
            "SELECT source_id, field_path, reason, first_seen_at FROM source_rejects \
             WHERE resolved_at IS NULL ORDER BY first_seen_at, source_id LIMIT $1",
            vec![Val::Int(Some(i64::from(n)))],
        )
        .await
        .doing("reading the quarantined sources")?;
    let count: Vec<Count> = conn
        .fetch_all(
            "SELECT COUNT(*) AS n FROM source_rejects WHERE resolved_at IS NULL",
            vec![],
        )
        .await
        .doing("counting the quarantined sources")?;
    Ok((rows, count.first().map_or(0, |c| c.n)))
}
