//! Applying a snapshot, a page at a time, inside the run's one transaction: compare each
//! source with its stored content hash, and for the new, changed and restored ones rewrite
//! the rows, record the field changes and open a new version. Unchanged sources cost one
//! indexed read per page and no write.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{dashboards, Doing, StoreError, Tx};
use crate::model::diff::{diff, FieldChange};
use crate::model::{Prepared, Row, Val, CHILD_TABLES, SOURCES};

/// The bookkeeping columns of `sources` that follow the content columns.
const SOURCE_BOOKKEEPING: [&str; 9] = [
    "raw_record",
    "content_hash",
    "version",
    "first_seen_at",
    "first_seen_run_id",
    "last_changed_at",
    "last_changed_run_id",
    "deleted_at",
    "deleted_run_id",
];

const VERSION_COLUMNS: [&str; 8] = [
    "source_id",
    "version",
    "valid_from",
    "valid_to",
    "opened_run_id",
    "closed_run_id",
    "content_hash",
    "record",
];

const CHANGE_COLUMNS: [&str; 7] = [
    "run_id",
    "source_id",
    "change_type",
    "field_path",
    "old_value",
    "new_value",
    "changed_at",
];

/// The most ids of one kind a preview keeps.
pub const PREVIEW_MAX: usize = 100;

/// What a run did to one source (the first thing counts; a later change in the same run
/// turns `Unchanged` into `Updated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    Updated,
    Unchanged,
    Restored,
}

/// Per-run counts of what the apply did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub restored: u64,
    pub deleted: u64,
    /// Rows inserted, updated or deleted (the run row not included).
    pub rows_written: u64,
    /// Values of written sources kept as text only (see `model::windows`).
    pub unparsed: u64,
}

/// The first sources by id of each kind of change, for a dry run's printout.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Preview {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub restored: Vec<String>,
    pub deleted: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct Stored {
    source_id: String,
    content_hash: String,
    version: i64,
    deleted: bool,
}

#[derive(sqlx::FromRow)]
struct StoredRecord {
    source_id: String,
    record: String,
}

#[derive(sqlx::FromRow)]
struct Id {
    source_id: String,
}

/// Writes of new and changed sources not yet sent, so that the statements are few and
/// large: several pages' worth go out at once.
#[derive(Default)]
struct Pending {
    written: Vec<(Prepared, i64)>,
    replaced: Vec<String>,
    close: Vec<String>,
    changes: Vec<Row>,
    /// Every source id above.
    ids: HashSet<String>,
    /// Child rows held.
    rows: usize,
}

/// Pending writes go out once they hold this many rows of child tables (or at the end of
/// the walk, or before a page that lists a pending source again).
const FLUSH_ROWS: usize = 5_000;

/// The run's transaction and what it has applied so far.
pub struct Applier {
    tx: Tx,
    run_id: i64,
    at: DateTime<Utc>,
    dry_run: bool,
    outcomes: HashMap<String, Outcome>,
    /// Sources whose open version this run opened (a later change in the run edits it).
    opened: HashSet<String>,
    deleted: u64,
    /// The first ids (by id) of the sources marked deleted, for [`Applier::preview`].
    deleted_first: Vec<String>,
    written: u64,
    unparsed: u64,
    pending: Pending,
}

fn text(s: &str) -> Val {
    Val::Text(Some(s.to_string()))
}

fn json_text(v: &Option<serde_json::Value>) -> Val {
    Val::Json(v.as_ref().map(|v| v.to_string()))
}

impl Applier {
    /// `at` stamps everything the run writes (`valid_from`, `changed_at`, ...). A dry run
    /// compares as a real one does and writes nothing.
    pub fn new(tx: Tx, run_id: i64, at: DateTime<Utc>, dry_run: bool) -> Applier {
        Applier {
            tx,
            run_id,
            at,
            dry_run,
            outcomes: HashMap::new(),
            opened: HashSet::new(),
            deleted: 0,
            deleted_first: Vec::new(),
            written: 0,
            unparsed: 0,
            pending: Pending::default(),
        }
    }

    pub fn counts(&self) -> Applied {
        let mut a = Applied {
            deleted: self.deleted,
            rows_written: self.written,
            unparsed: self.unparsed,
            ..Applied::default()
        };
        for o in self.outcomes.values() {
            match o {
                Outcome::Created => a.created += 1,
                Outcome::Updated => a.updated += 1,
                Outcome::Unchanged => a.unchanged += 1,
                Outcome::Restored => a.restored += 1,
            }
        }
        a
    }

    /// Up to `n` sources of each kind of change, the first by id.
    pub fn preview(&self, n: usize) -> Preview {
        let first = |kind: Outcome| {
            let mut ids: Vec<String> = self
                .outcomes
                .iter()
                .filter(|(_, o)| **o == kind)
                .map(|(id, _)| id.clone())
                .collect();
            ids.sort_unstable();
            ids.truncate(n);
            ids
        };
        let mut deleted = self.deleted_first.clone();
        deleted.truncate(n);
        Preview {
            created: first(Outcome::Created),
            updated: first(Outcome::Updated),
            restored: first(Outcome::Restored),
            deleted,
        }
    }

    fn time(&self) -> Val {
        Val::Time(Some(self.at))
    }

    fn run(&self) -> Val {
        Val::Int(Some(self.run_id))
    }

    /// Applies one page of sources.
    pub async fn apply(&mut self, batch: Vec<Prepared>) -> Result<(), StoreError> {
        // A page may list a source twice when the order moves: the last copy wins.
        let mut by_id: HashMap<String, Prepared> = HashMap::with_capacity(batch.len());
        for p in batch {
            by_id.insert(p.id.clone(), p);
        }
        // The stored hashes read below must include what this run decided for a source
        // that an earlier page listed too.
        if by_id.keys().any(|id| self.pending.ids.contains(id)) {
            self.flush().await?;
        }
        let ids: Vec<String> = by_id.keys().cloned().collect();
        let mut conn = self.tx.conn();
        let stored: HashMap<String, Stored> = conn
            .fetch_for_ids::<Stored>(
                "SELECT source_id, content_hash, version, deleted_at IS NOT NULL AS deleted \
                 FROM sources WHERE source_id IN ({ids})",
                vec![],
                &ids,
            )
            .await
            .doing("reading the stored content hashes")?
            .into_iter()
            .map(|s| (s.source_id.clone(), s))
            .collect();
        let differs: Vec<String> = ids
            .iter()
            .filter(|id| {
                stored
                    .get(*id)
                    .is_some_and(|s| s.deleted || s.content_hash != by_id[*id].hash)
            })
            .cloned()
            .collect();
        let old_records: HashMap<String, serde_json::Value> = conn
            .fetch_for_ids::<StoredRecord>(
                &format!(
                    "SELECT source_id, {} AS record FROM sources WHERE source_id IN ({{ids}})",
                    conn.backend().json_text("raw_record")
                ),
                vec![],
                &differs,
            )
            .await
            .doing("reading the stored records of changed sources")?
            .into_iter()
            .map(|r| match serde_json::from_str(&r.record) {
                Ok(v) => Ok((r.source_id, v)),
                Err(e) => Err(StoreError::Corrupt(format!(
                    "sources.raw_record of source {} is not JSON ({e}); restore it from source_versions \
                     or delete the row so that the next run inserts it again",
                    r.source_id
                ))),
            })
            .collect::<Result<_, _>>()?;

        let mut written: Vec<(Prepared, i64)> = Vec::new();
        let mut replaced: Vec<String> = Vec::new();
        let mut close: Vec<String> = Vec::new();
        let mut changes: Vec<Row> = Vec::new();
        for (id, prep) in by_id {
            let before = self.outcomes.get(&id).copied();
            let Some(s) = stored.get(&id) else {
                changes.push(self.change(&id, "created", None));
                self.outcomes.insert(id.clone(), Outcome::Created);
                self.opened.insert(id);
                written.push((prep, 1));
                continue;
            };
            if !s.deleted && s.content_hash == prep.hash {
                self.outcomes.entry(id).or_insert(Outcome::Unchanged);
                continue;
            }
            let fields = match old_records.get(&id) {
                Some(old) => {
                    let new: serde_json::Value = serde_json::from_str(&prep.record_json)
                        .expect("a record this run serialized parses");
                    diff(old, &new)
                }
                None => Vec::new(),
            };
            for f in &fields {
                changes.push(self.change(&id, "updated", Some(f)));
            }
            replaced.push(id.clone());
            let version = if s.deleted {
                changes.push(self.change(&id, "restored", None));
                self.outcomes.insert(id.clone(), Outcome::Restored);
                self.opened.insert(id.clone());
                s.version + 1
            } else if fields.is_empty() || self.opened.contains(&id) {
                // Only the order of bots or tags moved, or this run already opened the
                // version: the open version takes the new form in place.
                if before.is_none() || before == Some(Outcome::Unchanged) {
                    self.outcomes.insert(id.clone(), Outcome::Updated);
                }
                s.version
            } else {
                close.push(id.clone());
                self.opened.insert(id.clone());
                self.outcomes.insert(id.clone(), Outcome::Updated);
                s.version + 1
            };
            written.push((prep, version));
        }
        self.unparsed += written.iter().map(|(p, _)| p.unparsed as u64).sum::<u64>();
        if self.dry_run || written.is_empty() {
            return Ok(());
        }
        let p = &mut self.pending;
        p.ids
            .extend(written.iter().map(|(prep, _)| prep.id.clone()));
        p.rows += written
            .iter()
            .map(|(prep, _)| prep.children.iter().map(Vec::len).sum::<usize>() + 1)
            .sum::<usize>();
        p.written.extend(written);
        p.replaced.extend(replaced);
        p.close.extend(close);
        p.changes.extend(changes);
        if p.rows >= FLUSH_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the pending writes. The run calls it before it looks for missing sources and
    /// before it commits.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        let Pending {
            written,
            replaced,
            close,
            changes,
            ..
        } = std::mem::take(&mut self.pending);
        if written.is_empty() {
            return Ok(());
        }
        self.write(written, &replaced, &close, changes).await
    }

    fn change(&self, id: &str, kind: &str, field: Option<&FieldChange>) -> Row {
        vec![
            self.run(),
            text(id),
            text(kind),
            Val::Text(field.map(|f| f.path.clone())),
            field.map_or(Val::Json(None), |f| json_text(&f.old)),
            field.map_or(Val::Json(None), |f| json_text(&f.new)),
            self.time(),
        ]
    }

    async fn write(
        &mut self,
        written: Vec<(Prepared, i64)>,
        replaced: &[String],
        close: &[String],
        changes: Vec<Row>,
    ) -> Result<(), StoreError> {
        let (at, run) = (self.time(), self.run());
        let mut conn = self.tx.conn();
        let b = conn.backend();
        let mut source_rows = Vec::with_capacity(written.len());
        let mut version_rows = Vec::with_capacity(written.len());
        let mut child_rows: [Vec<Row>; 11] = Default::default();
        let mut bots: HashMap<String, Option<String>> = HashMap::new();
        let ids: Vec<String> = written.iter().map(|(p, _)| p.id.clone()).collect();
        for (prep, version) in written {
            let Prepared {
                id,
                record_json,
                hash,
                mut source_row,
                children,
                bots: assigned,
                ..
            } = prep;
            source_row.extend([
                Val::Json(Some(record_json.clone())),
                text(&hash),
                Val::Int(Some(version)),
                at.clone(),
                run.clone(),
                at.clone(),
                run.clone(),
                Val::Time(None),
                Val::Int(None),
            ]);
            source_rows.push(source_row);
            version_rows.push(vec![
                text(&id),
                Val::Int(Some(version)),
                at.clone(),
                Val::Time(None),
                run.clone(),
                Val::Int(None),
                text(&hash),
                Val::Json(Some(record_json)),
            ]);
            for (all, rows) in child_rows.iter_mut().zip(children) {
                all.extend(rows);
            }
            bots.extend(assigned);
        }
        let columns: Vec<&str> = SOURCES
            .columns
            .iter()
            .chain(&SOURCE_BOOKKEEPING)
            .copied()
            .collect();
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| !matches!(**c, "source_id" | "first_seen_at" | "first_seen_run_id"))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let bot_rows: Vec<Row> = bots
            .into_iter()
            .map(|(id, name)| {
                vec![
                    text(&id),
                    Val::Text(name),
                    at.clone(),
                    run.clone(),
                    at.clone(),
                    run.clone(),
                ]
            })
            .collect();
        // In this order: a changed source's old child rows go before its new ones, its
        // open version is closed before the next is written.
        let deletes = CHILD_TABLES.iter().flat_map(|table| {
            b.for_ids(
                &format!("DELETE FROM {} WHERE source_id IN ({{ids}})", table.name),
                vec![],
                replaced,
                "removing the child rows of changed sources",
            )
        });
        let sources = b.insert(
            SOURCES.name,
            &columns,
            source_rows,
            &format!(
                "ON CONFLICT (source_id) DO UPDATE SET {}",
                updates.join(", ")
            ),
            "writing sources",
        );
        let children = CHILD_TABLES
            .iter()
            .zip(child_rows)
            .flat_map(|(table, rows)| {
                b.insert(
                    table.name,
                    table.columns,
                    rows,
                    "",
                    "writing the child rows of sources",
                )
            });
        let bots = b.insert(
            "bots",
            &["bot_id", "bot_name", "first_seen_at", "first_seen_run_id", "updated_at", "updated_run_id"],
            bot_rows,
            "ON CONFLICT (bot_id) DO UPDATE SET bot_name = excluded.bot_name, updated_at = excluded.updated_at, \
             updated_run_id = excluded.updated_run_id WHERE bots.bot_name IS DISTINCT FROM excluded.bot_name",
            "writing bots",
        );
        let close = b.for_ids(
            "UPDATE source_versions SET valid_to = $1, closed_run_id = $2 WHERE valid_to IS NULL AND source_id IN ({ids})",
            vec![at.clone(), run.clone()],
            close,
            "closing the versions of changed sources",
        );
        let versions = b.insert(
            "source_versions",
            &VERSION_COLUMNS,
            version_rows,
            "ON CONFLICT (source_id, version) DO UPDATE SET content_hash = excluded.content_hash, record = excluded.record",
            "writing source versions",
        );
        let changes = b.insert(
            "source_changes",
            &CHANGE_COLUMNS,
            changes,
            "",
            "writing source changes",
        );
        self.written += conn
            .send(Box::new(
                deletes
                    .chain(sources)
                    .chain(children)
                    .chain(bots)
                    .chain(close)
                    .chain(versions)
                    .chain(changes)
                    .chain(dashboards::after_write(b, &ids, &at, &run)),
            ))
            .await?;
        Ok(())
    }

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
                    vec![text(&after)],
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
        let changes: Vec<Row> = ids
            .iter()
            .map(|id| self.change(id, "deleted", None))
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
            .chain(b.insert("source_changes", &CHANGE_COLUMNS, changes, "", "writing source changes"));
        self.written += conn.send(Box::new(statements)).await?;
        Ok(())
    }

    /// Records live sources that an incomplete run did not see (so `last_seen` stays true).
    pub async fn record_misses(&mut self, ids: &[String]) -> Result<(), StoreError> {
        if self.dry_run {
            return Ok(());
        }
        let rows = ids.iter().map(|id| vec![self.run(), text(id)]).collect();
        let mut conn = self.tx.conn();
        let statements = conn.backend().insert(
            "source_misses",
            &["run_id", "source_id"],
            rows,
            "",
            "recording the sources a run did not see",
        );
        self.written += conn.send(statements).await?;
        Ok(())
    }

    /// Drops change rows and closed versions older than `before`.
    pub async fn prune(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        if self.dry_run {
            return Ok(0);
        }
        let mut conn = self.tx.conn();
        let t = Val::Time(Some(before));
        let changes = conn
            .execute(
                "DELETE FROM source_changes WHERE changed_at < $1",
                vec![t.clone()],
            )
            .await
            .doing("pruning old changes")?;
        let versions = conn
            .execute(
                "DELETE FROM source_versions WHERE valid_to IS NOT NULL AND valid_to < $1",
                vec![t],
            )
            .await
            .doing("pruning old versions")?;
        self.written += changes + versions;
        Ok(changes + versions)
    }

    /// The run's transaction, to finish it (write the run row, then commit or roll back).
    /// Call [`Applier::flush`] first when the run is to be committed.
    pub fn into_tx(self) -> Tx {
        self.tx
    }

    pub fn tx(&mut self) -> &mut Tx {
        &mut self.tx
    }
}
