//! Applying a snapshot, a page at a time, inside the run's one transaction: compare each
//! source with its stored content hash, and for the new, changed and restored ones rewrite
//! the rows, record the field changes and open a new version. Unchanged sources cost one
//! indexed read per page and no write. What a source's state means is decided by a pure
//! function ([`decide`]); [`write`] turns batches of decisions into statements.

mod decide;
mod finish;
mod read;
mod redecide;
mod write;

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{Doing, StoreError, Tx};
use crate::model::diff::FieldChange;
use crate::model::{Prepared, Rejected, Val};
use decide::{decide, hash_key, Outcome, Stored};
pub use finish::reject_key;
use read::{field_changes, read_records, STORED};
use write::Plan;

/// The most ids of one kind a preview keeps.
pub const PREVIEW_MAX: usize = 100;

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

/// What the run decided for a source so far: the outcome, and which copy (by the first 64
/// bits of its content hash) when the listing holds more than one.
#[derive(Debug, Clone, Copy)]
struct Decided {
    outcome: Outcome,
    hash: u64,
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
    /// Whether `sources` held any row when the run began (read with the first page): when
    /// it held none, no source has a stored state to read but those this run wrote, which
    /// it decides from memory.
    stored_before: Option<bool>,
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
            stored_before: None,
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

    /// Decides the sources this run meets for the first time, against their stored state.
    async fn decide_fresh(
        &mut self,
        mut by_id: HashMap<String, Prepared>,
        plan: &mut Plan,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = by_id.keys().cloned().collect();
        let anything_stored = self.stored_before().await?;
        let mut conn = self.tx.conn();
        let stored: HashMap<String, Stored> = if anything_stored {
            conn.fetch_for_ids::<Stored>(STORED, vec![], &ids)
                .await
                .doing("reading the stored content hashes")?
                .into_iter()
                .map(|s| (s.source_id.clone(), s))
                .collect()
        } else {
            HashMap::new()
        };
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

    /// Whether `sources` held any row before this run wrote (see `stored_before`). The
    /// first call comes with the first page, before any write of the run.
    async fn stored_before(&mut self) -> Result<bool, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Any {
            any: bool,
        }
        if let Some(any) = self.stored_before {
            return Ok(any);
        }
        let rows: Vec<Any> = self
            .tx
            .conn()
            .fetch_all("SELECT EXISTS (SELECT 1 FROM sources) AS any", vec![])
            .await
            .doing("reading whether the mirror holds any source")?;
        let any = rows.first().is_some_and(|r| r.any);
        self.stored_before = Some(any);
        Ok(any)
    }

    /// Decides one source (see [`decide::decide`]) and adds what it writes to `plan`.
    fn decide(
        &mut self,
        prep: Prepared,
        stored: Option<&Stored>,
        fields: Vec<FieldChange>,
        rewritten: bool,
        plan: &mut Plan,
    ) {
        let d = decide(stored, &prep.hash, fields, rewritten);
        let id = prep.id.clone();
        for change in d.changes {
            plan.changes
                .push(write::change(self.run_id, self.at, &id, change));
        }
        if let (Outcome::Updated | Outcome::Restored, Some(s)) = (d.outcome, stored) {
            self.before.entry(id.clone()).or_insert_with(|| s.clone());
        }
        let hash = hash_key(&prep.hash);
        self.outcomes.insert(
            id.clone(),
            Decided {
                outcome: d.outcome,
                hash,
            },
        );
        if d.close {
            plan.close.push(id.clone());
        }
        if d.replace {
            plan.replaced.push(id);
        }
        if let Some(book) = d.write {
            plan.written.push((prep, book));
        }
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
            .map(|(prep, _)| prep.children.len() + 1)
            .sum::<usize>();
        p.plan.append(plan);
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
        self.written += write::write(&mut self.tx.conn(), plan, self.run_id, self.at).await?;
        Ok(())
    }

    /// The run's transaction, to finish it (write the run row, then commit or roll back).
    /// Call [`Applier::flush`] first when the run is to be committed.
    pub fn into_tx(self) -> Tx {
        self.tx
    }
}
