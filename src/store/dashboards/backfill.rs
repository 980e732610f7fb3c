//! Filling the history tables from `source_versions`: once, after the migration that
//! created them, under the writer lock (`run_pending`), each stored version read back
//! through the same `prepare` a run uses.

use chrono::{DateTime, Utc};

use super::TRACKED;
use crate::closebot::wire::{RawSource, Source};
use crate::model::{prepare, windows, Row, Val};
use crate::store::{Conn, Doing, Store, StoreError};

#[derive(sqlx::FromRow)]
struct Version {
    source_id: String,
    valid_from: DateTime<Utc>,
    valid_to: Option<DateTime<Utc>>,
    opened_run_id: i64,
    closed_run_id: Option<i64>,
    record: String,
}

#[derive(sqlx::FromRow)]
struct Id {
    source_id: String,
}

#[derive(sqlx::FromRow)]
struct Text {
    t: Option<String>,
}

/// What a backfill did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backfilled {
    pub sources: u64,
    pub rows: u64,
    /// Stored texts (windows, cost overrides) that did not parse: their numbers stay NULL.
    pub unparsed: u64,
}

/// The state rows of one version, per tracked table (see [`super::states`]).
fn states(source_id: &str, record: &str) -> Result<[Vec<Row>; 2], StoreError> {
    let corrupt = |e: String| {
        StoreError::Corrupt(format!(
            "a stored version of source {source_id} cannot be read ({e}); the history tables were not filled"
        ))
    };
    let raw: serde_json::Value =
        serde_json::from_str(record).map_err(|e| corrupt(e.to_string()))?;
    // The stored form escapes NULs: read the text as sent, so typed columns follow the rule.
    let raw = crate::model::record::for_export(raw);
    let typed = Source::from_value(&raw);
    let prepared = prepare(
        RawSource {
            id: source_id.to_string(),
            raw,
            typed,
        },
        false,
    )
    .map_err(|r| corrupt(r.defect.to_string()))?;
    Ok(super::states(&prepared.children))
}

/// Interval bookkeeping of one source in one table, as [`after_write`] does it in SQL.
#[derive(Default)]
struct Intervals {
    open: Vec<(Row, DateTime<Utc>, i64)>,
    done: Vec<Row>,
}

impl Intervals {
    fn close(&mut self, keep: impl Fn(&Row) -> bool, at: DateTime<Utc>, run: Option<i64>) {
        let (kept, closed): (Vec<_>, Vec<_>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|(state, ..)| keep(state));
        self.open = kept;
        for (mut state, from, opened) in closed {
            state.extend([
                Val::Time(Some(from)),
                Val::Time(Some(at)),
                Val::Int(Some(opened)),
                Val::Int(run),
            ]);
            self.done.push(state);
        }
    }

    fn apply(&mut self, current: Vec<Row>, at: DateTime<Utc>, run: i64) {
        self.close(|s| current.contains(s), at, Some(run));
        let new: Vec<Row> = current
            .into_iter()
            .filter(|c| !self.open.iter().any(|(s, ..)| s == c))
            .collect();
        self.open.extend(new.into_iter().map(|s| (s, at, run)));
    }

    fn finish(mut self) -> Vec<Row> {
        for (mut state, from, opened) in std::mem::take(&mut self.open) {
            state.extend([
                Val::Time(Some(from)),
                Val::Time(None),
                Val::Int(Some(opened)),
                Val::Int(None),
            ]);
            self.done.push(state);
        }
        self.done
    }
}

/// Rebuilds the history tables from `source_versions` (their rows are replaced) and fills
/// the parsed columns of the rows stored before they existed.
pub async fn backfill(conn: &mut Conn<'_>) -> Result<Backfilled, StoreError> {
    let b = conn.backend();
    let mut done = Backfilled::default();
    for t in &TRACKED {
        conn.execute(&format!("DELETE FROM {}", t.table), vec![])
            .await
            .doing("emptying a history table before the backfill")?;
    }
    let mut after = String::new();
    loop {
        let ids: Vec<String> = conn
            .fetch_all::<Id>(
                "SELECT source_id FROM sources WHERE source_id > $1 ORDER BY source_id LIMIT 500",
                vec![Val::Text(Some(after.clone()))],
            )
            .await
            .doing("listing sources for the history backfill")?
            .into_iter()
            .map(|r| r.source_id)
            .collect();
        let Some(last) = ids.last() else { break };
        after = last.clone();
        let versions: Vec<Version> = conn
            .fetch_for_ids(
                &format!(
                    "SELECT source_id, valid_from, valid_to, opened_run_id, closed_run_id, {} AS record \
                     FROM source_versions WHERE source_id IN ({{ids}}) ORDER BY source_id, version",
                    b.json_text("record")
                ),
                vec![],
                &ids,
            )
            .await
            .doing("reading versions for the history backfill")?;
        let mut rows: [Vec<Row>; 2] = Default::default();
        for one in versions.chunk_by(|a, b| a.source_id == b.source_id) {
            done.sources += 1;
            let mut tables: [Intervals; 2] = Default::default();
            let mut previous_end: Option<(Option<DateTime<Utc>>, Option<i64>)> = None;
            for v in one {
                // A version closed by another run than the one that opened this one: the
                // source was deleted then, and everything closed with it.
                if let Some((Some(end), run)) = previous_end {
                    if run != Some(v.opened_run_id) {
                        for t in &mut tables {
                            t.close(|_| false, end, run);
                        }
                    }
                }
                let current = states(&v.source_id, &v.record)?;
                for (t, now) in tables.iter_mut().zip(current) {
                    t.apply(now, v.valid_from, v.opened_run_id);
                }
                previous_end = Some((v.valid_to, v.closed_run_id));
            }
            if let Some((Some(end), run)) = previous_end {
                for t in &mut tables {
                    t.close(|_| false, end, run);
                }
            }
            for (all, t) in rows.iter_mut().zip(tables) {
                all.extend(t.finish());
            }
        }
        for (t, rows) in TRACKED.iter().zip(rows) {
            let columns = t.columns(&["valid_from", "valid_to", "opened_run_id", "closed_run_id"]);
            done.rows += conn
                .send(b.insert(t.table, &columns, rows, "", "writing the history backfill"))
                .await?;
        }
    }
    done.unparsed = parse_stored(conn).await?;
    Ok(done)
}

/// Fills the parsed columns from the texts stored before they existed, a distinct text at
/// a time; returns how many distinct texts did not parse.
async fn parse_stored(conn: &mut Conn<'_>) -> Result<u64, StoreError> {
    type Parser = fn(&str) -> Option<Val>;
    let day: Parser = |t| windows::iso_day(t).map(|d| Val::Int(Some(d)));
    let start: Parser = |t| windows::time_of_day(t).map(|s| Val::Int(Some(s)));
    let span: Parser = |t| windows::timespan_seconds(t).map(|s| Val::Int(Some(s)));
    let number: Parser = |t| windows::decimal(t).map(|d| Val::Decimal(Some(d)));
    let mut columns: Vec<(&str, &str, &str, Parser)> = Vec::new();
    for table in ["source_respond_windows", "source_bot_respond_windows"] {
        columns.push((table, "day_of_week_utc", "day_of_week_iso", day));
        columns.push((table, "start_time_utc", "start_seconds_utc", start));
        columns.push((table, "duration", "duration_seconds", span));
    }
    for (n, t) in [
        (
            "response_unit_cost_override",
            "response_unit_cost_override_text",
        ),
        (
            "storage_unit_cost_override",
            "storage_unit_cost_override_text",
        ),
        ("user_unit_cost_override", "user_unit_cost_override_text"),
    ] {
        columns.push(("source_wallets", t, n, number));
    }
    let mut unparsed = 0;
    for (table, text, parsed, parse) in columns {
        let texts: Vec<Text> = conn
            .fetch_all(
                &format!("SELECT DISTINCT {text} AS t FROM {table} WHERE {text} IS NOT NULL"),
                vec![],
            )
            .await
            .doing("reading stored texts to parse")?;
        for t in texts.into_iter().filter_map(|t| t.t) {
            let Some(value) = parse(&t) else {
                unparsed += 1;
                continue;
            };
            let target = match value {
                Val::Decimal(_) => "CAST($1 AS NUMERIC)",
                _ => "$1",
            };
            conn.execute(
                &format!("UPDATE {table} SET {parsed} = {target} WHERE {text} = $2"),
                vec![value, Val::Text(Some(t))],
            )
            .await
            .doing("filling parsed columns")?;
        }
    }
    Ok(unparsed)
}

/// The backfill the migration asked for, if it is still to do: run it in one transaction
/// with the removal of its `pending_backfills` row. The caller holds the writer lock (the
/// argument says so), as for the migrations themselves.
pub(crate) async fn run_pending(
    store: &Store,
    _held: &crate::store::WriterLock,
) -> Result<Option<Backfilled>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Name {
        name: String,
    }
    let mut tx = store.begin().await?;
    let pending: Vec<Name> = tx
        .conn()
        .fetch_all(
            "SELECT name FROM pending_backfills WHERE name = 'dashboards_0004'",
            vec![],
        )
        .await
        .doing("reading the pending backfills")?;
    let Some(name) = pending.into_iter().next() else {
        tx.rollback().await?;
        return Ok(None);
    };
    let done = backfill(&mut tx.conn()).await?;
    tx.conn()
        .execute(
            "DELETE FROM pending_backfills WHERE name = $1",
            vec![Val::Text(Some(name.name))],
        )
        .await
        .doing("recording the backfill done")?;
    tx.commit().await?;
    tracing::info!(
        sources = done.sources,
        rows = done.rows,
        unparsed = done.unparsed,
        "filled the bot and wallet history from the stored versions"
    );
    Ok(Some(done))
}
