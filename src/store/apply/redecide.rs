//! A source decided again, when a copy that wins by the duplicate rule arrives after
//! another copy was decided. Rare: only a listing that holds one id twice with different
//! content comes here.

use std::collections::HashMap;

use super::decide::{Outcome, Stored};
use super::write::Plan;
use super::{field_changes, read_records, Applier, STORED};
use crate::model::{Prepared, Val};
use crate::store::{dashboards, Doing, StoreError};

impl Applier {
    /// What the run wrote for the other copy is undone (its change rows, the version it
    /// opened, the version it closed), and the winner is decided against the state before
    /// the run.
    pub(super) async fn redecide(&mut self, prep: Prepared) -> Result<(), StoreError> {
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
        let (run, sid) = (self.run(), Val::Text(Some(id.clone())));
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
}
