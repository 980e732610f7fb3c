//! Reading history back: a source's versions and field changes, and the listing as it
//! stood at a given time (from `source_versions`).

use chrono::{DateTime, Utc};

use super::{Conn, Doing, StoreError};
use crate::model::Val;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub version: i64,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
    pub opened_run_id: i64,
    pub closed_run_id: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangeRow {
    pub run_id: i64,
    pub change_type: String,
    pub field_path: Option<String>,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Record {
    pub source_id: String,
    pub record: String,
}

/// A source's versions, newest first.
pub async fn versions(conn: &mut Conn<'_>, source_id: &str) -> Result<Vec<VersionRow>, StoreError> {
    conn.fetch_all(
        "SELECT version, valid_from, valid_to, opened_run_id, closed_run_id FROM source_versions \
         WHERE source_id = $1 ORDER BY version DESC",
        vec![Val::Text(Some(source_id.to_string()))],
    )
    .await
    .doing("reading the versions of a source")
}

/// A source's changes, newest first.
pub async fn changes(conn: &mut Conn<'_>, source_id: &str) -> Result<Vec<ChangeRow>, StoreError> {
    let b = conn.backend();
    conn.fetch_all(
        &format!(
            "SELECT run_id, change_type, field_path, {} AS old_value, {} AS new_value, changed_at \
             FROM source_changes WHERE source_id = $1 ORDER BY changed_at DESC, change_id DESC",
            b.json_text("old_value"),
            b.json_text("new_value")
        ),
        vec![Val::Text(Some(source_id.to_string()))],
    )
    .await
    .doing("reading the changes of a source")
}

/// Up to `limit` records valid at `at` with ids after `after`, in id order.
pub async fn records_at(
    conn: &mut Conn<'_>,
    at: DateTime<Utc>,
    after: &str,
    limit: i64,
) -> Result<Vec<Record>, StoreError> {
    let b = conn.backend();
    conn.fetch_all(
        &format!(
            "SELECT source_id, {} AS record FROM source_versions \
             WHERE valid_from <= $1 AND (valid_to IS NULL OR valid_to > $2) AND source_id > $3 \
             ORDER BY source_id LIMIT $4",
            b.json_text("record")
        ),
        vec![
            Val::Time(Some(at)),
            Val::Time(Some(at)),
            Val::Text(Some(after.to_string())),
            Val::Int(Some(limit)),
        ],
    )
    .await
    .doing("reading the listing at a time")
}

/// The first run that committed (succeeded or partial): before it, the mirror knew nothing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FirstRun {
    pub run_id: i64,
    pub started_at: DateTime<Utc>,
}

pub async fn first_completed_run(conn: &mut Conn<'_>) -> Result<Option<FirstRun>, StoreError> {
    let rows: Vec<FirstRun> = conn
        .fetch_all(
            "SELECT run_id, started_at FROM sync_runs WHERE status IN ('succeeded', 'partial') \
             ORDER BY run_id LIMIT 1",
            vec![],
        )
        .await
        .doing("reading the first completed run")?;
    Ok(rows.into_iter().next())
}

/// The latest cut-off before which a run deleted history (`history.retain_days`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Horizon {
    pub run_id: i64,
    pub pruned_before: DateTime<Utc>,
}

/// The latest [`Horizon`], if any run deleted history by age: before it, a closed version
/// may be gone, so the listing of that time cannot be rebuilt whole.
pub async fn history_horizon(conn: &mut Conn<'_>) -> Result<Option<Horizon>, StoreError> {
    let rows: Vec<Horizon> = conn
        .fetch_all(
            "SELECT run_id, history_pruned_before AS pruned_before FROM sync_runs \
             WHERE history_pruned_before IS NOT NULL ORDER BY history_pruned_before DESC LIMIT 1",
            vec![],
        )
        .await
        .doing("reading the cut-off of history.retain_days")?;
    Ok(rows.into_iter().next())
}

/// The `name` of a source's newest version, as the API sent it.
pub async fn latest_name(
    conn: &mut Conn<'_>,
    source_id: &str,
) -> Result<Option<String>, StoreError> {
    let b = conn.backend();
    let rows: Vec<Record> = conn
        .fetch_all(
            &format!(
                "SELECT source_id, {} AS record FROM source_versions WHERE source_id = $1 \
                 ORDER BY version DESC LIMIT 1",
                b.json_text("record")
            ),
            vec![Val::Text(Some(source_id.to_string()))],
        )
        .await
        .doing("reading the newest version of a source")?;
    Ok(rows.into_iter().next().and_then(|r| {
        let record: serde_json::Value = serde_json::from_str(&r.record).ok()?;
        record.get("name")?.as_str().map(str::to_string)
    }))
}
