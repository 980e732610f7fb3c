//! What the apply reads besides the pages: the stored state and records of the sources a
//! page lists, and the field changes from those records to the new ones.

use std::collections::HashMap;

use crate::model::diff::{diff, FieldChange};
use crate::model::Prepared;
use crate::store::{Conn, Doing, StoreError};

/// The stored state ([`super::decide::Stored`]) of the sources in `{ids}`.
pub(super) const STORED: &str =
    "SELECT source_id, content_hash, version, deleted_at IS NOT NULL AS deleted, \
     last_changed_at, last_changed_run_id, deleted_at, deleted_run_id \
     FROM sources WHERE source_id IN ({ids})";

/// The stored records of `ids`, parsed, by id; `query` selects `source_id` and `record`.
pub(super) async fn read_records(
    conn: &mut Conn<'_>,
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
pub(super) async fn field_changes(
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
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _in_run = span.enter();
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

#[derive(sqlx::FromRow)]
struct StoredRecord {
    source_id: String,
    record: String,
}
