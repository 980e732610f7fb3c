//! The end of a run's apply: the live sources it did not see, marking them deleted or
//! recording them as missed, the quarantined sources' rows, pruning old history, and the
//! planner's statistics of a new database.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::decide::Change;
use super::write::{change, insert};
use super::{Applier, Id, PREVIEW_MAX};
use crate::model::tables::columns;
use crate::model::{Children, Val};
use crate::store::{dashboards, Backend, Doing, StoreError};

/// The tables a run writes rows to, besides `sync_runs`.
fn written_tables() -> impl Iterator<Item = &'static str> {
    ["sources", "source_versions", "source_changes", "bots"]
        .into_iter()
        .chain(Children::TABLES.iter().copied())
        .chain(dashboards::HISTORY_TABLES)
        .chain(["source_misses", "source_rejects"])
}

columns! {
    pub struct Miss in "source_misses" {
        run_id: Id,
        source_id: Key,
    }
}

columns! {
    pub struct Reject in "source_rejects" {
        source_id: Key,
        field_path: Text,
        reason: Text,
        first_run_id: Int,
        last_run_id: Int,
        first_seen_at: Time,
        last_seen_at: Time,
    }
}

/// How a quarantined source is named in `source_rejects`: its id, or for an id too long to
/// index, its start and its fingerprint.
pub fn reject_key(id: &str) -> String {
    if id.len() <= crate::model::MAX_ID_BYTES {
        return id.to_string();
    }
    let start: String = id.chars().take(100).collect();
    format!(
        "{start}… ({} bytes, sha256:{})",
        id.len(),
        crate::model::fingerprint(id)
    )
}

impl Applier {
    /// Live sources that `seen` lacks, read in id order a slice at a time; and how many
    /// sources are live.
    pub async fn missing(
        &mut self,
        seen: &HashSet<String>,
    ) -> Result<(Vec<String>, u64), StoreError> {
        self.flush().await?;
        let mut missing = Vec::new();
        let mut live = 0u64;
        let mut after = String::new();
        let mut conn = self.tx.conn();
        loop {
            let slice: Vec<Id> = conn
                .fetch_all(
                    "SELECT source_id FROM sources WHERE deleted_at IS NULL AND source_id > $1 ORDER BY source_id LIMIT 5000",
                    vec![Val::Text(Some(after.clone()))],
                )
                .await
                .doing("listing the live sources")?;
            let Some(last) = slice.last() else { break };
            after = last.source_id.clone();
            live += slice.len() as u64;
            missing.extend(
                slice
                    .into_iter()
                    .map(|r| r.source_id)
                    .filter(|id| !seen.contains(id)),
            );
        }
        Ok((missing, live))
    }

    /// Marks sources deleted: `deleted_at` set, the open version closed, a `deleted` change.
    /// Their child rows stay, so a deleted source can still be inspected.
    pub async fn delete(&mut self, ids: &[String]) -> Result<(), StoreError> {
        self.deleted += ids.len() as u64;
        // `missing` lists them in id order.
        self.deleted_first.extend(
            ids.iter()
                .take(PREVIEW_MAX.saturating_sub(self.deleted_first.len()))
                .cloned(),
        );
        if self.dry_run {
            return Ok(());
        }
        let (at, run) = (self.time(), self.run());
        let changes: Vec<_> = ids
            .iter()
            .map(|id| change(self.run_id, self.at, id, Change::Deleted))
            .collect();
        let mut conn = self.tx.conn();
        let b = conn.backend();
        let statements = b
            .for_ids(
                "UPDATE sources SET deleted_at = $1, deleted_run_id = $2, last_changed_at = $1, last_changed_run_id = $2 \
                 WHERE source_id IN ({ids})",
                vec![at.clone(), run.clone()],
                ids,
                "marking sources deleted",
            )
            .chain(b.for_ids(
                "UPDATE source_versions SET valid_to = $1, closed_run_id = $2 WHERE valid_to IS NULL AND source_id IN ({ids})",
                vec![at.clone(), run.clone()],
                ids,
                "closing the versions of deleted sources",
            ))
            .chain(dashboards::after_delete(b, ids, &at, &run))
            .chain(insert(b, Box::new(changes), "", "writing source changes"));
        self.written += conn.send(Box::new(statements)).await?;
        Ok(())
    }

    /// Records live sources that an incomplete run did not see (so `last_seen` stays true).
    pub async fn record_misses(&mut self, ids: &[String]) -> Result<(), StoreError> {
        if self.dry_run {
            return Ok(());
        }
        let rows: Vec<Miss> = ids
            .iter()
            .map(|id| Miss {
                run_id: self.run_id,
                source_id: id.clone(),
            })
            .collect();
        let mut conn = self.tx.conn();
        let statements = insert(
            conn.backend(),
            Box::new(rows),
            "",
            "recording the sources a run did not see",
        );
        self.written += conn.send(statements).await?;
        Ok(())
    }

    /// Records this run's quarantined sources in `source_rejects` (one open row per
    /// source, carried from run to run while the record stays bad), and closes the open
    /// rows of sources this run mirrored, marked deleted, or (after a complete walk, in
    /// `seen`) no longer found.
    pub async fn settle_rejects(
        &mut self,
        seen: Option<&HashSet<String>>,
    ) -> Result<(), StoreError> {
        if self.dry_run {
            return Ok(());
        }
        let (at, run) = (self.time(), self.run());
        let rows: Vec<Reject> = self
            .rejected()
            .into_iter()
            .map(|r| Reject {
                source_id: reject_key(&r.id),
                field_path: Some(r.defect.field.clone()),
                reason: Some(r.defect.problem.clone()),
                first_run_id: Some(self.run_id),
                last_run_id: Some(self.run_id),
                first_seen_at: Some(self.at),
                last_seen_at: Some(self.at),
            })
            .collect();
        let rejected: HashSet<String> = rows.iter().map(|r| r.source_id.clone()).collect();
        let mut conn = self.tx.conn();
        let open: Vec<Id> = conn
            .fetch_all(
                "SELECT source_id FROM source_rejects WHERE resolved_at IS NULL",
                vec![],
            )
            .await
            .doing("reading the open rejects")?;
        let close: Vec<String> = open
            .into_iter()
            .map(|r| r.source_id)
            .filter(|id| {
                !rejected.contains(id)
                    && (self.outcomes.contains_key(id) || seen.is_some_and(|s| !s.contains(id)))
            })
            .collect();
        let b = conn.backend();
        let statements = insert(
            b,
            Box::new(rows),
            "ON CONFLICT (source_id) WHERE resolved_at IS NULL DO UPDATE SET \
             field_path = excluded.field_path, reason = excluded.reason, \
             last_run_id = excluded.last_run_id, last_seen_at = excluded.last_seen_at",
            "recording quarantined sources",
        )
        .chain(b.for_ids(
            "UPDATE source_rejects SET resolved_at = $1, resolved_run_id = $2 \
             WHERE resolved_at IS NULL AND source_id IN ({ids})",
            vec![at.clone(), run.clone()],
            &close,
            "closing the rejects of mirrored sources",
        ));
        self.written += conn.send(Box::new(statements)).await?;
        let deleted = conn
            .execute(
                "UPDATE source_rejects SET resolved_at = $1, resolved_run_id = $2 WHERE resolved_at IS NULL \
                 AND source_id IN (SELECT source_id FROM sources WHERE deleted_run_id = $2)",
                vec![at, run],
            )
            .await
            .doing("closing the rejects of deleted sources")?;
        self.written += deleted;
        Ok(())
    }

    /// Drops what `history.retain_days` lets go: change rows, and closed versions, history
    /// intervals and resolved rejects, from before `before`. Current versions, open
    /// intervals and open rejects stay, however old.
    pub async fn prune(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        if self.dry_run {
            return Ok(0);
        }
        let mut closed_at = vec![
            ("source_changes", "changed_at"),
            ("source_versions", "valid_to"),
        ];
        closed_at.extend(dashboards::HISTORY_TABLES.map(|table| (table, "valid_to")));
        closed_at.push(("source_rejects", "resolved_at"));
        let mut pruned = 0;
        for (table, column) in closed_at {
            pruned += self
                .tx
                .conn()
                .execute(
                    &format!("DELETE FROM {table} WHERE {column} IS NOT NULL AND {column} < $1"),
                    vec![Val::Time(Some(before))],
                )
                .await
                .doing("pruning history older than history.retain_days")?;
        }
        // The cut-off goes with the run, so a reader can tell which times are whole.
        self.tx
            .conn()
            .execute(
                "UPDATE sync_runs SET history_pruned_before = $1 WHERE run_id = $2",
                vec![Val::Time(Some(before)), Val::Int(Some(self.run_id))],
            )
            .await
            .doing("recording the cut-off of history.retain_days")?;
        self.written += pruned;
        Ok(pruned)
    }

    /// Gives PostgreSQL statistics for the tables this run wrote that have none yet (a new
    /// database: from PostgreSQL 14, `pg_class.reltuples` is -1 until the first `ANALYZE`;
    /// older servers say 0 and are left to autovacuum). Without them the planner takes an
    /// id list of a few hundred ids to match every row, and the next run's deletes and
    /// history statements scan whole tables: the first 1%-changed run after a first sync of
    /// 100,000 sources spent seconds so where autovacuum had not run yet, or is off
    /// (docs/performance.md, step 17). A small sample (`default_statistics_target` 10)
    /// serves lookups by id; autovacuum refines it later. Runs inside the run's
    /// transaction, so its time is the run's. SQLite's planner does without.
    pub async fn gather_statistics(&mut self) -> Result<(), StoreError> {
        #[derive(sqlx::FromRow)]
        struct Table {
            name: String,
        }
        let mut conn = self.tx.conn();
        if self.dry_run || conn.backend() != Backend::Postgres {
            return Ok(());
        }
        let without: Vec<Table> = conn
            .fetch_all(
                "SELECT c.relname::text AS name FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.reltuples < 0",
                vec![],
            )
            .await
            .doing("finding tables without planner statistics")?;
        let tables: Vec<&str> = written_tables()
            .filter(|t| without.iter().any(|w| w.name == *t))
            .collect();
        if tables.is_empty() {
            return Ok(());
        }
        conn.execute("SET LOCAL default_statistics_target = 10", vec![])
            .await
            .doing("sampling the new tables for the planner")?;
        conn.execute(&format!("ANALYZE {}", tables.join(", ")), vec![])
            .await
            .doing("sampling the new tables for the planner")?;
        tracing::debug!(
            tables = tables.len(),
            "gave the planner statistics of the new tables"
        );
        Ok(())
    }
}
