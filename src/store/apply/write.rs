//! The writer: a batch of decisions as one chain of statements (old child rows deleted,
//! sources upserted, child rows and bots inserted, versions closed and opened (copied from
//! the sources just written), change rows, the dashboards' history), and the tables the
//! store adds rows of, typed like the model's.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::decide::{Book, Change};
use crate::model::tables::{columns, TableRows};
use crate::model::{Children, Columns, Prepared, Row, SourceRow, Val};
use crate::store::sql::Statements;
use crate::store::{dashboards, Backend, Conn, StoreError};

columns! {
    /// The bookkeeping columns of `sources`, after the content columns ([`SourceRow`]).
    pub struct SourceBook {
        raw_record: Json,
        content_hash: Key,
        version: Int,
        first_seen_at: Time,
        first_seen_run_id: Int,
        last_changed_at: Time,
        last_changed_run_id: Int,
        deleted_at: Time,
        deleted_run_id: Int,
    }
}

columns! {
    pub struct NewChange in "source_changes" {
        run_id: Id,
        source_id: Key,
        change_type: Text,
        field_path: Text,
        old_value: Json,
        new_value: Json,
        changed_at: Time,
    }
}

columns! {
    /// A row of the `bots` dimension: a bot's latest name.
    pub struct BotName in "bots" {
        bot_id: Key,
        bot_name: Text,
        first_seen_at: Time,
        first_seen_run_id: Int,
        updated_at: Time,
        updated_run_id: Int,
    }
}

/// The change row of `id`, stamped with the run.
pub(super) fn change(run_id: i64, at: DateTime<Utc>, id: &str, change: Change) -> NewChange {
    let (kind, field) = match change {
        Change::Created => ("created", None),
        Change::Updated(f) => ("updated", Some(f)),
        Change::Restored => ("restored", None),
        Change::Deleted => ("deleted", None),
    };
    let json = |v: Option<serde_json::Value>| v.map(|v| v.to_string());
    let (field_path, old_value, new_value) = match field {
        Some(f) => (Some(f.path), json(f.old), json(f.new)),
        None => (None, None, None),
    };
    NewChange {
        run_id,
        source_id: id.to_string(),
        change_type: Some(kind.to_string()),
        field_path,
        old_value,
        new_value,
        changed_at: Some(at),
    }
}

/// The writes one batch of decisions makes.
#[derive(Default)]
pub(super) struct Plan {
    pub written: Vec<(Prepared, Book)>,
    /// Sources whose stored child rows go first.
    pub replaced: Vec<String>,
    /// Sources whose open version closes.
    pub close: Vec<String>,
    pub changes: Vec<NewChange>,
}

impl Plan {
    /// Moves `other`'s writes to the end of these.
    pub fn append(&mut self, other: Plan) {
        self.written.extend(other.written);
        self.replaced.extend(other.replaced);
        self.close.extend(other.close);
        self.changes.extend(other.changes);
    }
}

/// The statements that insert `rows`, which become SQL values only when the chain
/// reaches them (while the statement before runs).
pub(super) fn insert(
    b: Backend,
    rows: Box<dyn TableRows>,
    conflict: &'static str,
    doing: &'static str,
) -> Statements<'static> {
    Box::new(
        std::iter::once_with(move || {
            let (name, columns) = (rows.name(), rows.columns());
            b.insert(name, columns, rows.into_rows(), conflict, doing)
        })
        .flatten(),
    )
}

/// Sends the writes of `plan`; returns the rows they affected.
pub(super) async fn write(
    conn: &mut Conn<'_>,
    plan: Plan,
    run_id: i64,
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let Plan {
        written,
        replaced,
        close,
        changes,
    } = plan;
    let (replaced, close) = (&replaced[..], &close[..]);
    let (at_val, run) = (Val::Time(Some(at)), Val::Int(Some(run_id)));
    let b = conn.backend();
    let width = SourceRow::COLUMNS.len() + SourceBook::COLUMNS.len();
    let mut source_rows = Vec::with_capacity(written.len());
    let mut ids = Vec::with_capacity(written.len());
    let mut children = Children::default();
    let mut bots: HashMap<String, Option<String>> = HashMap::new();
    // Written and not replaced: first seen by this run, and written once, so their history
    // rows are their states (nothing stored to compare with).
    let known: HashSet<&String> = replaced.iter().collect();
    let mut new_states: [Vec<Row>; 2] = Default::default();
    for (prep, book) in written {
        let Prepared {
            id,
            record_json,
            hash,
            source_row,
            children: mut own,
            bots: assigned,
            ..
        } = prep;
        if !known.contains(&id) {
            for (all, rows) in new_states.iter_mut().zip(dashboards::states(&own)) {
                all.extend(rows);
            }
        }
        let (version, last_changed_at, last_changed_run_id, deleted_at, deleted_run_id) = match book
        {
            Book::New { version } => (version, at, run_id, None, None),
            Book::Kept(s) => (
                s.version,
                s.last_changed_at,
                s.last_changed_run_id,
                s.deleted_at,
                s.deleted_run_id,
            ),
        };
        let mut row = Vec::with_capacity(width);
        source_row.push_values(&mut row);
        SourceBook {
            raw_record: Some(record_json),
            content_hash: hash,
            version: Some(version),
            first_seen_at: Some(at),
            first_seen_run_id: Some(run_id),
            last_changed_at: Some(last_changed_at),
            last_changed_run_id: Some(last_changed_run_id),
            deleted_at,
            deleted_run_id,
        }
        .push_values(&mut row);
        source_rows.push(row);
        ids.push(id);
        children.append(&mut own);
        bots.extend(assigned);
    }
    let columns: Vec<&str> = SourceRow::COLUMNS
        .iter()
        .chain(SourceBook::COLUMNS)
        .copied()
        .collect();
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !matches!(**c, "source_id" | "first_seen_at" | "first_seen_run_id"))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let bots: Vec<BotName> = bots
        .into_iter()
        .map(|(bot_id, bot_name)| BotName {
            bot_id,
            bot_name,
            first_seen_at: Some(at),
            first_seen_run_id: Some(run_id),
            updated_at: Some(at),
            updated_run_id: Some(run_id),
        })
        .collect();
    // In this order: a changed source's old child rows go before its new ones, its
    // open version is closed before the next is written.
    let deletes = Children::TABLES.iter().flat_map(|table| {
        b.for_ids(
            &format!("DELETE FROM {table} WHERE source_id IN ({{ids}})"),
            vec![],
            replaced,
            "removing the child rows of changed sources",
        )
    });
    let sources = b.insert(
        "sources",
        &columns,
        source_rows,
        &format!(
            "ON CONFLICT (source_id) DO UPDATE SET {}",
            updates.join(", ")
        ),
        "writing sources",
    );
    let children = children
        .into_tables()
        .into_iter()
        .flat_map(move |rows| insert(b, rows, "", "writing the child rows of sources"));
    let bots = insert(
        b,
        Box::new(bots),
        "ON CONFLICT (bot_id) DO UPDATE SET bot_name = excluded.bot_name, updated_at = excluded.updated_at, \
         updated_run_id = excluded.updated_run_id WHERE bots.bot_name IS DISTINCT FROM excluded.bot_name",
        "writing bots",
    );
    let close = b.for_ids(
        "UPDATE source_versions SET valid_to = $1, closed_run_id = $2 WHERE valid_to IS NULL AND source_id IN ({ids})",
        vec![at_val.clone(), run.clone()],
        close,
        "closing the versions of changed sources",
    );
    // A version's record is its source's: copied from the row just written, so the
    // record is sent and (on PostgreSQL) parsed once (docs/performance.md, step 16).
    let versions = b.for_ids(
        "INSERT INTO source_versions (source_id, version, valid_from, valid_to, opened_run_id, \
         closed_run_id, content_hash, record) \
         SELECT source_id, version, $1, NULL, $2, NULL, content_hash, raw_record FROM sources \
         WHERE source_id IN ({ids}) \
         ON CONFLICT (source_id, version) DO UPDATE SET content_hash = excluded.content_hash, record = excluded.record",
        vec![at_val.clone(), run.clone()],
        &ids,
        "writing source versions",
    );
    let changes = insert(b, Box::new(changes), "", "writing source changes");
    conn.send(Box::new(
        deletes
            .chain(sources)
            .chain(children)
            .chain(bots)
            .chain(close)
            .chain(versions)
            .chain(changes)
            .chain(dashboards::open_new(b, new_states, &at_val, &run))
            .chain(dashboards::after_write(b, replaced, &at_val, &run)),
    ))
    .await
}
