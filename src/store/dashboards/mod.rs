//! The typed history that dashboards read: `source_bot_history` and
//! `source_wallet_history`, one row per interval in which a bot (or a wallet) stayed in one
//! state on a source. A run keeps them with a few set-based statements after it writes
//! sources and after it marks sources deleted; [`backfill`] rebuilds them from
//! `source_versions` once after the migration that created them.
//!
//! Every row carries the run that opened it and the run that closed it: undoing one run's
//! effect on a source is deleting the rows it opened and reopening the rows it closed.

mod backfill;

use std::collections::{HashMap, HashSet};

use super::sql::Statements;
use super::Backend;
use crate::model::tables::{columns, WalletRow};
use crate::model::{Children, Columns, Row, Val};

pub(crate) use backfill::run_pending;
pub use backfill::{backfill, Backfilled};

/// The history tables, for undoing one run's effect on a source (see the module's opening).
pub(crate) const HISTORY_TABLES: [&str; 2] = [BOTS.table, WALLETS.table];

/// A history table: its name, the columns of a state row ([`states`]), and the current
/// state of some sources (`{ids}` is the id list) as such rows.
struct Tracked {
    table: &'static str,
    /// `source_id`, then the state's columns; a change in any but the `copied` ones opens a
    /// new interval.
    columns: &'static [&'static str],
    /// The state columns that tell one row of a source from another (a bot's id, or its
    /// position when it has none): lookups go by the source and these.
    key: &'static [&'static str],
    /// Columns copied along, derived from the others (a cost override as a number).
    copied: &'static [&'static str],
    current: fn(Backend) -> String,
}

const BOTS: Tracked = Tracked {
    table: "source_bot_history",
    columns: BotState::COLUMNS,
    key: &["bot_id", "bot_position"],
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

/// A wallet's state is its row of `source_wallets`.
const WALLETS: Tracked = Tracked {
    table: "source_wallet_history",
    columns: WalletRow::COLUMNS,
    key: &[],
    copied: &[
        "response_unit_cost_override",
        "storage_unit_cost_override",
        "user_unit_cost_override",
    ],
    current: wallets_now,
};

fn wallets_now(_: Backend) -> String {
    format!(
        "SELECT {} FROM source_wallets WHERE source_id IN ({{ids}})",
        WalletRow::COLUMNS.join(", ")
    )
}

const TRACKED: [Tracked; 2] = [BOTS, WALLETS];

columns! {
    /// A bot's state on a source.
    pub struct BotState {
        source_id: Key,
        bot_id: Text,
        /// The position of a bot without an id (it is known by it), else NULL.
        bot_position: Int,
        bot_name: Text,
        persona_name_override: Text,
        enabled: Bool,
        /// The bot's channels in order, `, `-joined (NULL when it has none).
        channels: Text,
    }
}

/// The states of one source's bots and wallet, per tracked table, as the `current` SQL of
/// [`BOTS`] and [`WALLETS`] reads them back from the written rows.
pub(crate) fn states(children: &Children) -> [Vec<Row>; 2] {
    // Each bot's channels in their order, gathered in one pass: a source may hold tens of
    // thousands of bots.
    let mut channels: HashMap<(&str, usize), Vec<(usize, &str)>> = HashMap::new();
    for c in &children.bot_channels {
        if let Some(name) = c.channel.as_deref() {
            channels
                .entry((c.source_id.as_str(), c.bot_position))
                .or_default()
                .push((c.position, name));
        }
    }
    let channels: HashMap<(&str, usize), String> = channels
        .into_iter()
        .map(|(bot, mut named)| {
            named.sort_unstable();
            let names: Vec<&str> = named.into_iter().map(|(_, name)| name).collect();
            (bot, names.join(", "))
        })
        .collect();
    // A bot listed twice on a source in one state is one state: one row, as the SQL that
    // opens and closes rows against the stored ones counts it. Borrowed, so the common case
    // (no id repeated) allocates nothing per bot.
    let mut taken = HashSet::new();
    let bots = children.bots.iter().filter_map(|bot| {
        let listed = channels.get(&(bot.source_id.as_str(), bot.position));
        if let Some(id) = bot.bot_id.as_deref() {
            let state = (
                bot.source_id.as_str(),
                id,
                bot.bot_name.as_deref(),
                bot.persona_name_override.as_deref(),
                bot.enabled,
                listed.map(String::as_str),
            );
            if !taken.insert(state) {
                return None;
            }
        }
        let state = BotState {
            source_id: bot.source_id.clone(),
            bot_id: bot.bot_id.clone(),
            bot_position: bot.bot_id.is_none().then_some(bot.position as i64),
            bot_name: bot.bot_name.clone(),
            persona_name_override: bot.persona_name_override.clone(),
            enabled: bot.enabled,
            channels: listed.cloned(),
        };
        Some(state.into_row())
    });
    let wallets = children.wallets.iter().map(|w| w.clone().into_row());
    [bots.collect(), wallets.collect()]
}

/// The history rows new sources open, one per state (see [`states`]), written as rows are
/// (a `COPY` on PostgreSQL when there are many): nothing stored to compare with. (Read back
/// from the tables just written instead, a first sync's history cost grew faster than the
/// listing on PostgreSQL, 28-33 x for 10 x the sources: docs/performance.md, steps 15-16.)
pub(crate) fn open_new(
    b: Backend,
    states: [Vec<Row>; 2],
    at: &Val,
    run: &Val,
) -> Statements<'static> {
    let (at, run) = (at.clone(), run.clone());
    Box::new(TRACKED.iter().zip(states).flat_map(move |(t, rows)| {
        let columns = t.columns(&["valid_from", "opened_run_id"]);
        let rows = rows
            .into_iter()
            .map(|mut row| {
                row.extend([at.clone(), run.clone()]);
                row
            })
            .collect();
        b.insert(
            t.table,
            &columns,
            rows,
            "",
            "opening history rows of new sources",
        )
    }))
}

impl Tracked {
    /// The columns of a state row, then `more`.
    fn columns<'a>(&self, more: &[&'a str]) -> Vec<&'a str> {
        self.columns.iter().chain(more).copied().collect()
    }

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
        for c in self.columns[1..]
            .iter()
            .filter(|c| !self.copied.contains(c))
        {
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

    /// The statements that open a row for each current state of `ids` without an open row
    /// (one for a state listed twice, as [`states`] gives it).
    /// (The open rows are read by the id list too: correlated with the current rows alone,
    /// PostgreSQL hashed every open row of the table, 120 ms a batch at 100,000 sources.)
    fn open<'a>(&self, b: Backend, ids: &'a [String], at: &Val, run: &Val) -> Statements<'a> {
        let columns = self.columns(&[]);
        let sql = format!(
            "INSERT INTO {t} ({}, valid_from, opened_run_id) SELECT DISTINCT {}, $1, $2 FROM ({}) c \
             WHERE NOT EXISTS (SELECT 1 FROM {t} h WHERE h.valid_to IS NULL \
             AND h.source_id IN ({{ids}}) AND {})",
            columns.join(", "),
            columns
                .iter()
                .map(|c| format!("c.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            (self.current)(b),
            self.same(b, "h", "c"),
            t = self.table,
        );
        b.for_ids(
            &sql,
            vec![at.clone(), run.clone()],
            ids,
            "opening history rows of changed sources",
        )
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
        let open = self.open(b, ids, at, run);
        Box::new(drop_own.chain(close).chain(reopen).chain(open))
    }
}

/// After the child rows of sources were written: for `known` ones (stored before, or
/// written before in this run), close the history rows whose state is gone and open rows
/// for the states that have none. (New sources' rows come from [`open_new`]: the
/// comparison is what costs, and sent for all 10,000 sources of a first sync, it was most
/// of its time.)
pub(crate) fn after_write<'a>(
    b: Backend,
    known: &'a [String],
    at: &Val,
    run: &Val,
) -> Statements<'a> {
    let (at, run) = (at.clone(), run.clone());
    Box::new(
        TRACKED
            .iter()
            .flat_map(move |t| t.after_write(b, known, &at, &run)),
    )
}

/// After `ids` were marked deleted: their open history rows close.
pub(crate) fn after_delete<'a>(
    b: Backend,
    ids: &'a [String],
    at: &Val,
    run: &Val,
) -> Statements<'a> {
    let (at, run) = (at.clone(), run.clone());
    Box::new(TRACKED.iter().flat_map(move |t| {
        b.for_ids(
            &format!(
                "UPDATE {} SET valid_to = $1, closed_run_id = $2 WHERE valid_to IS NULL AND source_id IN ({{ids}})",
                t.table
            ),
            vec![at.clone(), run.clone()],
            ids,
            "closing the history rows of deleted sources",
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tables::{BotChannelRow, BotRow};

    #[test]
    fn a_bots_state_holds_its_named_channels_in_their_order_and_an_id_less_bot_its_position() {
        let bot = |position, bot_id: Option<&str>| BotRow {
            source_id: "s1".into(),
            position,
            bot_id: bot_id.map(str::to_string),
            bot_name: Some(format!("bot {position}")),
            persona_name_override: None,
            enabled: Some(true),
            tag_filter_operator: None,
        };
        let channel = |bot_position, position, name: Option<&str>| BotChannelRow {
            source_id: "s1".into(),
            bot_position,
            position,
            channel: name.map(str::to_string),
        };
        let children = Children {
            bots: vec![bot(0, Some("b-1")), bot(1, None), bot(2, Some("b-3"))],
            // Out of order, a NULL among them, and none for the third bot.
            bot_channels: vec![
                channel(0, 2, Some("Email")),
                channel(1, 0, None),
                channel(0, 0, Some("SMS")),
                channel(0, 1, None),
            ],
            ..Children::default()
        };
        let [bots, wallets] = states(&children);
        assert!(wallets.is_empty());
        let column = |row: &Row, name: &str| {
            row[BotState::COLUMNS.iter().position(|c| *c == name).unwrap()].clone()
        };
        let text = |s: &str| Val::Text(Some(s.to_string()));
        assert_eq!(
            bots.iter()
                .map(|r| column(r, "channels"))
                .collect::<Vec<_>>(),
            vec![text("SMS, Email"), Val::Text(None), Val::Text(None)]
        );
        assert_eq!(
            bots.iter()
                .map(|r| column(r, "bot_position"))
                .collect::<Vec<_>>(),
            vec![Val::Int(None), Val::Int(Some(1)), Val::Int(None)]
        );
    }
}
