//! Applying a snapshot, a page at a time, inside the run's one transaction: compare each
//! source with its stored content hash, and for the new, changed and restored ones rewrite
//! the rows, record the field changes and open a new version. Unchanged sources cost one
//! indexed read per page and no write.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{dashboards, Doing, StoreError, Tx};
use crate::model::diff::{diff, FieldChange};
use crate::model::{Prepared, Rejected, Row, Val, CHILD_TABLES, SOURCES};

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

/// A source's stored state as the run found it, before the run wrote anything to it.
#[derive(sqlx::FromRow, Clone)]
struct Stored {
    source_id: String,
    content_hash: String,
    version: i64,
    deleted: bool,
    last_changed_at: DateTime<Utc>,
    last_changed_run_id: i64,
    deleted_at: Option<DateTime<Utc>>,
    deleted_run_id: Option<i64>,
}

const STORED: &str = "SELECT source_id, content_hash, version, deleted_at IS NOT NULL AS deleted, \
     last_changed_at, last_changed_run_id, deleted_at, deleted_run_id \
     FROM sources WHERE source_id IN ({ids})";

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

/// The stored records of `ids`, parsed, by id; `query` selects `source_id` and `record`.
async fn read_records(
    conn: &mut super::Conn<'_>,
    query: &str,
    ids: &[String],
    column: &str,
) -> Result<HashMap<String, serde_json::Value>, StoreError> {
    conn.fetch_for_ids::<StoredRecord>(query, vec![], ids)
        .await
        .doing("reading the stored records of changed sources")?
        .into_iter()
        .map(|r| match serde_json::from_str(&r.record) {
            Ok(v) => Ok((r.source_id, v)),
            Err(e) => Err(StoreError::Corrupt(format!(
                "{column} of source {} is not JSON ({e}); restore it from source_versions \
                 or delete the row so that the next run inserts it again",
                r.source_id
            ))),
        })
        .collect()
}

/// The field changes of each source in `ids` from its old record to its new one,
/// computed on a thread of the blocking pool: a record may be large, and the runtime's
/// threads must stay free to serve timers and signals.
async fn field_changes(
    mut old: HashMap<String, serde_json::Value>,
    ids: &[String],
    new: &HashMap<String, Prepared>,
) -> HashMap<String, Vec<FieldChange>> {
    let work: Vec<(String, serde_json::Value, String)> = ids
        .iter()
        .filter_map(|id| Some((id.clone(), old.remove(id)?, new[id].record_json.clone())))
        .collect();
    if work.is_empty() {
        return HashMap::new();
    }
    tokio::task::spawn_blocking(move || {
        work.into_iter()
            .map(|(id, old, new)| {
                let new: serde_json::Value =
                    serde_json::from_str(&new).expect("a record this run serialized parses");
                let changes = diff(&old, &new);
                (id, changes)
            })
            .collect()
    })
    .await
    .expect("the field diff does not panic")
}

/// The bookkeeping a written `sources` row takes.
enum Book {
    /// The run changed the source: this version, stamped with the run.
    New { version: i64 },
    /// The run rewrote the source back to the state it had before the run (a duplicate
    /// decided after another copy was written): that state's bookkeeping, and no new version.
    Kept(Stored),
}

/// What the run decided for a source so far: the outcome, and which copy (by the first 64
/// bits of its content hash) when the listing holds more than one.
#[derive(Debug, Clone, Copy)]
struct Decided {
    outcome: Outcome,
    hash: u64,
}

fn hash_key(hash: &str) -> u64 {
    u64::from_str_radix(&hash[..16.min(hash.len())], 16).unwrap_or(0)
}

/// The writes one batch of decisions makes.
#[derive(Default)]
struct Plan {
    written: Vec<(Prepared, Book)>,
    replaced: Vec<String>,
    close: Vec<String>,
    changes: Vec<Row>,
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
    plan: Plan,
    /// Child rows held.
    rows: usize,
}

/// Pending writes go out once they hold this many rows of child tables (or at the end of
/// the walk, or before a duplicate of a written source is decided).
const FLUSH_ROWS: usize = 5_000;

/// The run's transaction and what it has applied so far.
pub struct Applier {
    tx: Tx,
    run_id: i64,
    at: DateTime<Utc>,
    dry_run: bool,
    outcomes: HashMap<String, Decided>,
    /// The state before the run of each existing source the run wrote, so that a duplicate
    /// decided later is compared with it, not with the copy the run wrote first.
    before: HashMap<String, Stored>,
    /// Sources the listing held more than once with different content, by id.
    duplicates: BTreeSet<String>,
    /// Sources quarantined by this run.
    rejected: Vec<Rejected>,
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
            before: HashMap::new(),
            duplicates: BTreeSet::new(),
            rejected: Vec::new(),
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
        for d in self.outcomes.values() {
            match d.outcome {
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
                .filter(|(_, d)| d.outcome == kind)
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

    /// Applies one page of sources. A source the listing holds more than once with
    /// different content is decided by a rule that does not depend on the order of the
    /// pages: the copy with the smallest content hash is kept, and the run says so by id.
    pub async fn apply(&mut self, batch: Vec<Prepared>) -> Result<(), StoreError> {
        let mut by_id: HashMap<String, Prepared> = HashMap::with_capacity(batch.len());
        for p in batch {
            match by_id.get(&p.id) {
                Some(kept) if kept.hash == p.hash => {}
                Some(kept) => {
                    self.duplicates.insert(p.id.clone());
                    if p.hash < kept.hash {
                        by_id.insert(p.id.clone(), p);
                    }
                }
                None => {
                    by_id.insert(p.id.clone(), p);
                }
            }
        }
        let mut again = Vec::new();
        let mut by_id_again = HashMap::new();
        for (id, p) in std::mem::take(&mut by_id) {
            match self.outcomes.get(&id) {
                None => {
                    by_id.insert(id, p);
                }
                Some(d) => {
                    let key = hash_key(&p.hash);
                    if key != d.hash {
                        self.duplicates.insert(id.clone());
                        if key < d.hash {
                            again.push(id.clone());
                            by_id_again.insert(id, p);
                        }
                    }
                }
            }
        }
        let mut plan = Plan::default();
        self.decide_fresh(by_id, &mut plan).await?;
        self.queue(plan).await?;
        for id in again {
            let prep = by_id_again
                .remove(&id)
                .expect("a duplicate kept its source");
            self.redecide(prep).await?;
        }
        Ok(())
    }

    /// Decides a source again when a copy that wins by the rule arrives after another copy
    /// was decided: what the run wrote for the other copy is undone (its change rows, the
    /// version it opened, the version it closed), and the winner is decided against the
    /// state before the run. Rare: only a listing that holds one id twice with different
    /// content comes here.
    async fn redecide(&mut self, prep: Prepared) -> Result<(), StoreError> {
        let id = prep.id.clone();
        let previous = self
            .outcomes
            .remove(&id)
            .expect("only a decided source is decided again");
        self.flush().await?;
        let (stored, rewritten) = match previous.outcome {
            Outcome::Created => (None, true),
            Outcome::Updated | Outcome::Restored => (self.before.get(&id).cloned(), true),
            // Nothing of it was written, or only its state before the run was written back.
            Outcome::Unchanged => (self.stored(&id).await?, false),
        };
        let (run, sid) = (self.run(), text(&id));
        let dry_run = self.dry_run;
        let mut conn = self.tx.conn();
        let b = conn.backend();
        if rewritten && !dry_run {
            for (sql, doing) in [
                (
                    "DELETE FROM source_changes WHERE run_id = $1 AND source_id = $2",
                    "undoing the changes of a duplicate",
                ),
                (
                    "DELETE FROM source_versions WHERE opened_run_id = $1 AND source_id = $2",
                    "undoing the version of a duplicate",
                ),
                (
                    "UPDATE source_versions SET valid_to = NULL, closed_run_id = NULL \
                     WHERE closed_run_id = $1 AND source_id = $2",
                    "reopening the version a duplicate closed",
                ),
            ] {
                conn.execute(sql, vec![run.clone(), sid.clone()])
                    .await
                    .doing(doing)?;
            }
            for table in dashboards::HISTORY_TABLES {
                for sql in [
                    format!("DELETE FROM {table} WHERE opened_run_id = $1 AND source_id = $2"),
                    format!(
                        "UPDATE {table} SET valid_to = NULL, closed_run_id = NULL \
                         WHERE closed_run_id = $1 AND source_id = $2"
                    ),
                ] {
                    conn.execute(&sql, vec![run.clone(), sid.clone()])
                        .await
                        .doing("undoing the history a duplicate wrote")?;
                }
            }
        }
        let changed: Vec<String> = match &stored {
            Some(s) if s.deleted || s.content_hash != prep.hash => vec![id.clone()],
            _ => Vec::new(),
        };
        let old = read_records(
            &mut conn,
            &format!(
                "SELECT source_id, {} AS record FROM source_versions WHERE version = {} AND source_id IN ({{ids}})",
                b.json_text("record"),
                stored.as_ref().map_or(0, |s| s.version)
            ),
            &changed,
            "source_versions.record",
        )
        .await?;
        let mut by_id = HashMap::from([(id.clone(), prep)]);
        let fields = field_changes(old, &changed, &by_id)
            .await
            .remove(&id)
            .unwrap_or_default();
        let mut plan = Plan::default();
        let prep = by_id.remove(&id).expect("the source is there");
        self.decide(prep, stored.as_ref(), fields, rewritten, &mut plan);
        self.queue(plan).await
    }

    /// One source's stored state.
    async fn stored(&mut self, id: &str) -> Result<Option<Stored>, StoreError> {
        Ok(self
            .tx
            .conn()
            .fetch_for_ids::<Stored>(STORED, vec![], &[id.to_string()])
            .await
            .doing("reading the stored state of a duplicate")?
            .pop())
    }

    /// Quarantines sources whose records the run cannot mirror: their stored state stays
    /// as it is (they count as seen, so they are not marked deleted), and
    /// [`Applier::settle_rejects`] records them. A source with a valid copy elsewhere in
    /// the listing is mirrored from that copy.
    pub fn reject(&mut self, rejected: Vec<Rejected>) {
        self.rejected.extend(rejected);
    }

    /// The sources quarantined by this run (those with no valid copy in the listing).
    pub fn rejected(&self) -> Vec<&Rejected> {
        let mut ids = HashSet::new();
        self.rejected
            .iter()
            .filter(|r| !self.outcomes.contains_key(&r.id) && ids.insert(r.id.as_str()))
            .collect()
    }

    /// Sources the listing held more than once with different content.
    pub fn duplicates(&self) -> &BTreeSet<String> {
        &self.duplicates
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
        let rows: Vec<Row> = self
            .rejected()
            .into_iter()
            .map(|r| {
                vec![
                    text(&reject_key(&r.id)),
                    text(&r.defect.field),
                    text(&r.defect.problem),
                    run.clone(),
                    run.clone(),
                    at.clone(),
                    at.clone(),
                ]
            })
            .collect();
        let rejected: HashSet<String> = rows
            .iter()
            .filter_map(|r| match &r[0] {
                Val::Text(Some(id)) => Some(id.clone()),
                _ => None,
            })
            .collect();
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
        let statements = b
            .insert(
                "source_rejects",
                &[
                    "source_id",
                    "field_path",
                    "reason",
                    "first_run_id",
                    "last_run_id",
                    "first_seen_at",
                    "last_seen_at",
                ],
                rows,
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

    /// Decides the sources this run meets for the first time, against their stored state.
    async fn decide_fresh(
        &mut self,
        mut by_id: HashMap<String, Prepared>,
        plan: &mut Plan,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = by_id.keys().cloned().collect();
        let mut conn = self.tx.conn();
        let stored: HashMap<String, Stored> = conn
            .fetch_for_ids::<Stored>(STORED, vec![], &ids)
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
        let b = conn.backend();
        let old_records = read_records(
            &mut conn,
            &format!(
                "SELECT source_id, {} AS record FROM sources WHERE source_id IN ({{ids}})",
                b.json_text("raw_record")
            ),
            &differs,
            "sources.raw_record",
        )
        .await?;
        let mut fields = field_changes(old_records, &differs, &by_id).await;
        for id in ids {
            let prep = by_id.remove(&id).expect("every id has its source");
            let changes = fields.remove(&id).unwrap_or_default();
            self.decide(prep, stored.get(&id), changes, false, plan);
        }
        Ok(())
    }

    /// Decides one source against `stored`, its state before the run (`None`: new), with
    /// the field changes from that state. `rewritten`: the run already wrote another copy
    /// of it, so even an unchanged source must be written back.
    fn decide(
        &mut self,
        prep: Prepared,
        stored: Option<&Stored>,
        fields: Vec<FieldChange>,
        rewritten: bool,
        plan: &mut Plan,
    ) {
        let id = prep.id.clone();
        let hash = hash_key(&prep.hash);
        let decided = |outcome| Decided { outcome, hash };
        let Some(s) = stored else {
            plan.changes.push(self.change(&id, "created", None));
            self.outcomes.insert(id.clone(), decided(Outcome::Created));
            if rewritten {
                plan.replaced.push(id);
            }
            plan.written.push((prep, Book::New { version: 1 }));
            return;
        };
        if !s.deleted && s.content_hash == prep.hash {
            self.outcomes
                .insert(id.clone(), decided(Outcome::Unchanged));
            if rewritten {
                plan.replaced.push(id);
                plan.written.push((prep, Book::Kept(s.clone())));
            }
            return;
        }
        for f in &fields {
            plan.changes.push(self.change(&id, "updated", Some(f)));
        }
        plan.replaced.push(id.clone());
        self.before.entry(id.clone()).or_insert_with(|| s.clone());
        let outcome = if s.deleted {
            plan.changes.push(self.change(&id, "restored", None));
            Outcome::Restored
        } else {
            Outcome::Updated
        };
        self.outcomes.insert(id.clone(), decided(outcome));
        let version = if !s.deleted && fields.is_empty() {
            // Only the order of bots or tags moved: the open version takes the new form
            // in place.
            s.version
        } else {
            if !s.deleted {
                plan.close.push(id.clone());
            }
            s.version + 1
        };
        plan.written.push((prep, Book::New { version }));
    }

    /// Holds a batch's writes until enough have gathered.
    async fn queue(&mut self, plan: Plan) -> Result<(), StoreError> {
        self.unparsed += plan
            .written
            .iter()
            .map(|(p, _)| p.unparsed as u64)
            .sum::<u64>();
        if self.dry_run || plan.written.is_empty() {
            return Ok(());
        }
        let p = &mut self.pending;
        p.rows += plan
            .written
            .iter()
            .map(|(prep, _)| prep.children.iter().map(Vec::len).sum::<usize>() + 1)
            .sum::<usize>();
        p.plan.written.extend(plan.written);
        p.plan.replaced.extend(plan.replaced);
        p.plan.close.extend(plan.close);
        p.plan.changes.extend(plan.changes);
        if p.rows >= FLUSH_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the pending writes. The run calls it before it looks for missing sources and
    /// before it commits.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        let Pending { plan, .. } = std::mem::take(&mut self.pending);
        if plan.written.is_empty() {
            return Ok(());
        }
        self.write(plan).await
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

    async fn write(&mut self, plan: Plan) -> Result<(), StoreError> {
        let Plan {
            written,
            replaced,
            close,
            changes,
        } = plan;
        let (replaced, close) = (&replaced[..], &close[..]);
        let (at, run) = (self.time(), self.run());
        let mut conn = self.tx.conn();
        let b = conn.backend();
        let mut source_rows = Vec::with_capacity(written.len());
        let mut version_rows = Vec::with_capacity(written.len());
        let mut child_rows: [Vec<Row>; 11] = Default::default();
        let mut bots: HashMap<String, Option<String>> = HashMap::new();
        // Written and not replaced: first seen by this run, and written once.
        let fresh: Vec<String> = {
            let replaced: HashSet<&String> = replaced.iter().collect();
            written
                .iter()
                .map(|(p, _)| &p.id)
                .filter(|id| !replaced.contains(id))
                .cloned()
                .collect()
        };
        for (prep, book) in written {
            let Prepared {
                id,
                record_json,
                hash,
                mut source_row,
                children,
                bots: assigned,
                ..
            } = prep;
            let (version, changed, deleted) = match book {
                Book::New { version } => (
                    version,
                    [at.clone(), run.clone()],
                    [Val::Time(None), Val::Int(None)],
                ),
                Book::Kept(s) => (
                    s.version,
                    [
                        Val::Time(Some(s.last_changed_at)),
                        Val::Int(Some(s.last_changed_run_id)),
                    ],
                    [Val::Time(s.deleted_at), Val::Int(s.deleted_run_id)],
                ),
            };
            source_row.extend([
                Val::Json(Some(record_json.clone())),
                text(&hash),
                Val::Int(Some(version)),
                at.clone(),
                run.clone(),
            ]);
            source_row.extend(changed);
            source_row.extend(deleted);
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
                    .chain(dashboards::after_write(b, &fresh, replaced, &at, &run)),
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
        self.written += pruned;
        Ok(pruned)
    }

    /// The run's transaction, to finish it (write the run row, then commit or roll back).
    /// Call [`Applier::flush`] first when the run is to be committed.
    pub fn into_tx(self) -> Tx {
        self.tx
    }
}
