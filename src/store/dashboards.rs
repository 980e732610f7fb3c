//! The typed history that dashboards read: `source_bot_history` and
//! `source_wallet_history`, one row per interval in which a bot (or a wallet) stayed in one
//! state on a source. A run keeps them with a few set-based statements after it writes
//! sources and after it marks sources deleted; [`backfill`] rebuilds them from
//! `source_versions` once after the migration that created them.
//!
//! Every row carries the run that opened it and the run that closed it: undoing one run's
//! effect on a source is deleting the rows it opened and reopening the rows it closed.

use chrono::{DateTime, Utc};

use super::sql::Statements;
use super::{Backend, Conn, Doing, Store, StoreError};
use crate::closebot::wire::{RawSource, Source};
use crate::model::{prepare, windows, Row, Val};

/// The history tables, for undoing one run's effect on a source (see the module's opening).
pub(crate) const HISTORY_TABLES: [&str; 2] = ["source_bot_history", "source_wallet_history"];

/// A history table: its name, the columns whose change opens a new interval, the columns
/// copied along (derived from the state), and the current state of some sources
/// (`{ids}` is the id list) as rows of `source_id`, state, copied.
struct Tracked {
    table: &'static str,
    /// The state columns that tell one row of a source from another (a bot's id, or its
    /// position when it has none): lookups go by the source and these.
    key: &'static [&'static str],
    state: &'static [&'static str],
    copied: &'static [&'static str],
    current: fn(Backend) -> String,
}

const BOTS: Tracked = Tracked {
    table: "source_bot_history",
    key: &["bot_id", "bot_position"],
    state: &[
        "bot_id",
        "bot_position",
        "bot_name",
        "persona_name_override",
        "enabled",
        "channels",
    ],
    copied: &[],
    current: bots_now,
};

/// A bot with an id is known by it wherever it moves; one without is known by its position.
fn bots_now(b: Backend) -> String {
    let list = match b {
        Backend::Sqlite => "group_concat(ch.channel, ', ' ORDER BY ch.position)",
        Backend::Postgres => "string_agg(ch.channel, ', ' ORDER BY ch.position)",
    };
    format!(
        "SELECT b.source_id, b.bot_id, CASE WHEN b.bot_id IS NULL THEN b.position END AS bot_position, \
         b.bot_name, b.persona_name_override, b.enabled, \
         (SELECT {list} FROM source_bot_channels ch \
          WHERE ch.source_id = b.source_id AND ch.bot_position = b.position) AS channels \
         FROM source_bots b WHERE b.source_id IN ({{ids}})"
    )
}

const WALLET_STATE: [&str; 9] = [
    "re_billing",
    "auto_refill",
    "top_up_amount",
    "refill_threshold",
    "stripe_customer_id",
    "currency",
    "response_unit_cost_override_text",
    "storage_unit_cost_override_text",
    "user_unit_cost_override_text",
];
const WALLET_NUMBERS: [&str; 3] = [
    "response_unit_cost_override",
    "storage_unit_cost_override",
    "user_unit_cost_override",
];

const WALLETS: Tracked = Tracked {
    table: "source_wallet_history",
    key: &[],
    state: &WALLET_STATE,
    copied: &WALLET_NUMBERS,
    current: wallets_now,
};

fn wallets_now(_: Backend) -> String {
    format!(
        "SELECT source_id, {}, {} FROM source_wallets WHERE source_id IN ({{ids}})",
        WALLET_STATE.join(", "),
        WALLET_NUMBERS.join(", ")
    )
}

const TRACKED: [Tracked; 2] = [BOTS, WALLETS];

impl Tracked {
    /// `a` and `b` hold the same source in the same state (NULLs equal), written so that a
    /// lookup goes by the source and the key columns, whatever the planner knows:
    /// - SQLite: `IS` on the key (its indexes serve `IS`), and `+column` for the rest of the
    ///   state, which keeps the planner off their indexes (without statistics it chose
    ///   `bot_id`'s alone, and a bot shared by thousands of sources made a first sync of
    ///   10,000 take 9 s, not 2);
    /// - PostgreSQL: the key also as `COALESCE(column::text, '') =`, an equality it can
    ///   hash (`IS NOT DISTINCT FROM` is not), so one source's 40,000 bots are not each
    ///   compared with all the others.
    fn same(&self, backend: Backend, a: &str, b: &str) -> String {
        let mut text = format!("{a}.source_id = {b}.source_id");
        for c in self.state {
            let key = self.key.contains(c);
            text.push_str(&match backend {
                Backend::Sqlite if key => format!(" AND {a}.{c} IS {b}.{c}"),
                Backend::Sqlite => format!(" AND +{a}.{c} IS +{b}.{c}"),
                Backend::Postgres if key => format!(
                    " AND COALESCE({a}.{c}::text, '') = COALESCE({b}.{c}::text, '') \
                     AND {a}.{c} IS NOT DISTINCT FROM {b}.{c}"
                ),
                Backend::Postgres => format!(" AND {a}.{c} IS NOT DISTINCT FROM {b}.{c}"),
            });
        }
        text
    }

    /// The statements that open a row for each current state of `ids`: all of them for
    /// sources with no rows here yet (first seen by this run, and written once: nothing to
    /// compare with), else only the states without an open row.
    fn open<'a>(
        &self,
        b: Backend,
        ids: &'a [String],
        at: &Val,
        run: &Val,
        fresh: bool,
    ) -> Statements<'a> {
        let columns: Vec<&str> = self.state.iter().chain(self.copied).copied().collect();
        let mut sql = format!(
            "INSERT INTO {t} (source_id, {}, valid_from, opened_run_id) SELECT c.source_id, {}, $1, $2 FROM ({}) c",
            columns.join(", "),
            columns.iter().map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", "),
            (self.current)(b),
            t = self.table,
        );
        let doing = if fresh {
            "opening history rows of new sources"
        } else {
            sql.push_str(&format!(
                " WHERE NOT EXISTS (SELECT 1 FROM {} h WHERE h.valid_to IS NULL AND {})",
                self.table,
                self.same(b, "h", "c")
            ));
            "opening history rows of changed sources"
        };
        b.for_ids(&sql, vec![at.clone(), run.clone()], ids, doing)
    }

    /// The statements that bring the open rows of `ids` to the sources' current rows.
    fn after_write<'a>(
        &self,
        b: Backend,
        ids: &'a [String],
        at: &Val,
        run: &Val,
    ) -> Statements<'a> {
        let (t, current) = (self.table, (self.current)(b));
        let unmatched = format!(
            "NOT EXISTS (SELECT 1 FROM ({current}) c WHERE {})",
            self.same(b, t, "c")
        );
        // A source written twice in one run (listed again by a later walk): the rows this
        // run opened and no longer holds go, the rows it closed and holds again reopen, so
        // the run leaves one interval per state and no empty ones.
        let drop_own = b.for_ids(
            &format!("DELETE FROM {t} WHERE valid_to IS NULL AND opened_run_id = $1 AND source_id IN ({{ids}}) AND {unmatched}"),
            vec![run.clone()],
            ids,
            "dropping history rows this run opened and no longer holds",
        );
        let close = b.for_ids(
            &format!("UPDATE {t} SET valid_to = $1, closed_run_id = $2 WHERE valid_to IS NULL AND source_id IN ({{ids}}) AND {unmatched}"),
            vec![at.clone(), run.clone()],
            ids,
            "closing history rows of changed sources",
        );
        let reopen = b.for_ids(
            &format!(
                "UPDATE {t} SET valid_to = NULL, closed_run_id = NULL WHERE closed_run_id = $1 AND source_id IN ({{ids}}) \
                 AND EXISTS (SELECT 1 FROM ({current}) c WHERE {}) \
                 AND NOT EXISTS (SELECT 1 FROM {t} o WHERE o.valid_to IS NULL AND {})",
                self.same(b, t, "c"),
                self.same(b, "o", t)
            ),
            vec![run.clone()],
            ids,
            "reopening history rows this run closed",
        );
        let open = self.open(b, ids, at, run, false);
        Box::new(drop_own.chain(close).chain(reopen).chain(open))
    }
}

/// After the child rows of sources were written: for `known` ones (stored before, or
/// written before in this run), close the history rows whose state is gone and open rows
/// for the states that have none; for `fresh` ones, open a row per state. (The comparison
/// is what costs: sent for all 10,000 sources of a first sync, it was most of its time.)
pub(crate) fn after_write<'a>(
    b: Backend,
    fresh: &'a [String],
    known: &'a [String],
    at: &Val,
    run: &Val,
) -> Statements<'a> {
    let mut all: Statements<'a> = Box::new(std::iter::empty());
    for t in &TRACKED {
        all = Box::new(
            all.chain(t.after_write(b, known, at, run))
                .chain(t.open(b, fresh, at, run, true)),
        );
    }
    all
}

/// After `ids` were marked deleted: their open history rows close.
pub(crate) fn after_delete<'a>(
    b: Backend,
    ids: &'a [String],
    at: &Val,
    run: &Val,
) -> Statements<'a> {
    let mut all: Statements<'a> = Box::new(std::iter::empty());
    for t in &TRACKED {
        all = Box::new(all.chain(b.for_ids(
            &format!(
                "UPDATE {} SET valid_to = $1, closed_run_id = $2 WHERE valid_to IS NULL AND source_id IN ({{ids}})",
                t.table
            ),
            vec![at.clone(), run.clone()],
            ids,
            "closing the history rows of deleted sources",
        )));
    }
    all
}

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

/// The state rows of one version: per tracked table, `source_id`, state, copied.
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
    let children = &prepared.children;
    let sid = Val::Text(Some(source_id.to_string()));
    // The columns of `BOTS.state` and of `WALLET_STATE` then `WALLET_NUMBERS`, after the id.
    let bot_rows = children
        .bots
        .iter()
        .map(|bot| {
            let named: Vec<&str> = children
                .bot_channels
                .iter()
                .filter(|c| c.bot_position == bot.position)
                .filter_map(|c| c.channel.as_deref())
                .collect();
            let keyed_by_position = bot.bot_id.is_none().then_some(bot.position as i64);
            vec![
                sid.clone(),
                Val::Text(bot.bot_id.clone()),
                Val::Int(keyed_by_position),
                Val::Text(bot.bot_name.clone()),
                Val::Text(bot.persona_name_override.clone()),
                Val::Bool(bot.enabled),
                Val::Text((!named.is_empty()).then(|| named.join(", "))),
            ]
        })
        .collect();
    let wallet_rows = children
        .wallets
        .iter()
        .map(|w| {
            vec![
                sid.clone(),
                Val::Bool(w.re_billing),
                Val::Bool(w.auto_refill),
                Val::Int(w.top_up_amount),
                Val::Int(w.refill_threshold),
                Val::Text(w.stripe_customer_id.clone()),
                Val::Text(w.currency.clone()),
                Val::Text(w.response_unit_cost_override_text.clone()),
                Val::Text(w.storage_unit_cost_override_text.clone()),
                Val::Text(w.user_unit_cost_override_text.clone()),
                Val::Decimal(w.response_unit_cost_override.clone()),
                Val::Decimal(w.storage_unit_cost_override.clone()),
                Val::Decimal(w.user_unit_cost_override.clone()),
            ]
        })
        .collect();
    Ok([bot_rows, wallet_rows])
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
            let columns: Vec<&str> = ["source_id"]
                .iter()
                .chain(t.state)
                .chain(t.copied)
                .chain(&["valid_from", "valid_to", "opened_run_id", "closed_run_id"])
                .copied()
                .collect();
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
    _held: &super::WriterLock,
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
