//! What a source's new state means, decided from its stored state alone: created, updated,
//! restored or unchanged, the version it is written as, whether its open version closes,
//! and its change rows. Pure; the writer ([`super::write`]) carries a decision out.

use chrono::{DateTime, Utc};

use crate::model::diff::FieldChange;

/// A source's stored state as the run found it, before the run wrote anything to it.
#[derive(sqlx::FromRow, Clone, Debug)]
pub(super) struct Stored {
    pub source_id: String,
    pub content_hash: String,
    pub version: i64,
    pub deleted: bool,
    pub last_changed_at: DateTime<Utc>,
    pub last_changed_run_id: i64,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_run_id: Option<i64>,
}

/// What a run did to one source (the first thing counts; a later change in the same run
/// turns `Unchanged` into `Updated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Created,
    Updated,
    Unchanged,
    Restored,
}

/// The bookkeeping a written `sources` row takes.
#[derive(Debug, Clone)]
pub(super) enum Book {
    /// The run changed the source: this version, stamped with the run.
    New { version: i64 },
    /// The run rewrote the source back to the state it had before the run (a duplicate
    /// decided after another copy was written): that state's bookkeeping, and no new version.
    Kept(Stored),
}

/// One change row of a source, before it is stamped with the run.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Change {
    Created,
    Updated(FieldChange),
    Restored,
    Deleted,
}

/// What to write for one source.
#[derive(Debug)]
pub(super) struct Decision {
    pub outcome: Outcome,
    /// Its rows are written with this bookkeeping; `None`: nothing of it is written.
    pub write: Option<Book>,
    /// Its stored child rows go before the new ones are written.
    pub replace: bool,
    /// Its open version is closed (a new one follows).
    pub close: bool,
    pub changes: Vec<Change>,
}

/// Decides one source with content hash `hash` against `stored`, its state before the run
/// (`None`: new), given `fields`, the field changes from that state's record. `rewritten`:
/// the run already wrote another copy of it, so even an unchanged source is written back.
pub(super) fn decide(
    stored: Option<&Stored>,
    hash: &str,
    fields: Vec<FieldChange>,
    rewritten: bool,
) -> Decision {
    let Some(s) = stored else {
        return Decision {
            outcome: Outcome::Created,
            write: Some(Book::New { version: 1 }),
            replace: rewritten,
            close: false,
            changes: vec![Change::Created],
        };
    };
    if !s.deleted && s.content_hash == hash {
        return Decision {
            outcome: Outcome::Unchanged,
            write: rewritten.then(|| Book::Kept(s.clone())),
            replace: rewritten,
            close: false,
            changes: Vec::new(),
        };
    }
    // Only the order of bots or tags moved (no field changed): the open version takes the
    // new form in place.
    let new_version = s.deleted || !fields.is_empty();
    let mut changes: Vec<Change> = fields.into_iter().map(Change::Updated).collect();
    let outcome = if s.deleted {
        changes.push(Change::Restored);
        Outcome::Restored
    } else {
        Outcome::Updated
    };
    Decision {
        outcome,
        write: Some(Book::New {
            version: s.version + i64::from(new_version),
        }),
        replace: true,
        // A deleted source's version was closed when it was marked deleted.
        close: new_version && !s.deleted,
        changes,
    }
}

/// The first 64 bits of a content hash, which tell the copies of one source apart.
pub(super) fn hash_key(hash: &str) -> u64 {
    u64::from_str_radix(&hash[..16.min(hash.len())], 16).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::model::diff::diff;
    use crate::model::record::content_hash;

    /// A small record: a name and bots by id (both drawn from few values, so that two draws
    /// are often equal), listed in either order.
    fn record() -> impl Strategy<Value = Value> {
        (
            0..3u8,
            prop::collection::btree_map(0..4u8, 0..2u8, 0..4),
            any::<bool>(),
        )
            .prop_map(|(name, bots, reversed)| {
                let mut bots: Vec<Value> = bots
                    .into_iter()
                    .map(|(id, n)| json!({"id": format!("b{id}"), "botName": format!("bot {n}")}))
                    .collect();
                if reversed {
                    bots.reverse();
                }
                json!({"name": format!("source {name}"), "bots": bots})
            })
    }

    /// The record after `old`, by `how`: the same, reordered (no field changed, another
    /// content hash), renamed, or `other`, drawn anew.
    fn edit(old: &Value, how: u8, other: Value) -> Value {
        let mut new = old.clone();
        match how {
            0 => {}
            1 => new["bots"].as_array_mut().unwrap().reverse(),
            2 => new["name"] = json!("renamed"),
            _ => new = other,
        }
        new
    }

    fn old_and_new() -> impl Strategy<Value = (Value, Value)> {
        (record(), record(), 0..4u8).prop_map(|(old, other, how)| {
            let new = edit(&old, how, other);
            (old, new)
        })
    }

    fn stored(record: &Value, version: i64, deleted: bool) -> Stored {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Stored {
            source_id: "s1".into(),
            content_hash: content_hash(record),
            version,
            deleted,
            last_changed_at: at,
            last_changed_run_id: 7,
            deleted_at: deleted.then_some(at),
            deleted_run_id: deleted.then_some(7),
        }
    }

    /// Decides `new` against `stored` the way the apply does: field changes only for a
    /// source whose stored state differs.
    fn decide_record(stored: Option<(&Stored, &Value)>, new: &Value, rewritten: bool) -> Decision {
        let hash = content_hash(new);
        let fields = match stored {
            Some((s, old)) if s.deleted || s.content_hash != hash => diff(old, new),
            _ => Vec::new(),
        };
        decide(stored.map(|(s, _)| s), &hash, fields, rewritten)
    }

    fn written_version(d: &Decision) -> Option<i64> {
        match &d.write {
            Some(Book::New { version }) => Some(*version),
            Some(Book::Kept(s)) => Some(s.version),
            None => None,
        }
    }

    proptest! {
        #[test]
        fn a_decision_follows_the_stored_state_and_the_field_diff(
            (old, new) in old_and_new(),
            present in any::<bool>(),
            deleted in any::<bool>(),
            version in 1i64..1_000,
            rewritten in any::<bool>(),
        ) {
            let s = stored(&old, version, deleted);
            let d = decide_record(present.then_some((&s, &old)), &new, rewritten);
            let fields = diff(&old, &new);
            let updates: Vec<Change> = fields.iter().cloned().map(Change::Updated).collect();
            // Never both a new source and a version closed; a closed version is followed
            // by the next, and only a live source has one open to close.
            prop_assert!(!(d.outcome == Outcome::Created && d.close));
            if d.close {
                prop_assert!(present && !deleted);
                prop_assert_eq!(written_version(&d), Some(version + 1));
            }
            if !present {
                prop_assert_eq!(d.outcome, Outcome::Created);
                prop_assert_eq!(written_version(&d), Some(1));
                prop_assert_eq!(&d.changes, &vec![Change::Created]);
                prop_assert_eq!(d.replace, rewritten);
                return Ok(());
            }
            // Restored exactly when the stored source is deleted, always as a new version.
            prop_assert_eq!(d.outcome == Outcome::Restored, deleted);
            let written = written_version(&d);
            prop_assert!(written.is_none_or(|v| v == version || v == version + 1));
            match d.outcome {
                Outcome::Restored => {
                    prop_assert_eq!(written, Some(version + 1));
                    let mut expected = updates;
                    expected.push(Change::Restored);
                    prop_assert_eq!(&d.changes, &expected);
                }
                Outcome::Unchanged => {
                    prop_assert_eq!(content_hash(&old), content_hash(&new));
                    prop_assert!(d.changes.is_empty() && !d.close);
                    // Written back (with the stored bookkeeping) only over another copy.
                    prop_assert_eq!(d.write.is_some(), rewritten);
                    prop_assert!(d.write.as_ref().is_none_or(|b| matches!(b, Book::Kept(_))));
                    prop_assert_eq!(d.replace, rewritten);
                }
                Outcome::Updated => {
                    prop_assert_ne!(content_hash(&old), content_hash(&new));
                    prop_assert_eq!(&d.changes, &updates);
                    // A new version exactly when a field changed; a reorder alone keeps it.
                    prop_assert_eq!(written, Some(version + i64::from(!fields.is_empty())));
                    prop_assert_eq!(d.close, !fields.is_empty());
                    prop_assert!(d.replace);
                }
                Outcome::Created => prop_assert!(false, "a stored source is never created"),
            }
        }

        /// The versions a source's history holds after any sequence of runs that list it
        /// (with some content) or not (it is marked deleted), written as the writer does:
        /// numbered 1, 2, 3, ... without a gap, one open while it is live, none once
        /// deleted, and the open one holds the stored content.
        #[test]
        fn a_source_keeps_one_open_version_and_numbers_its_versions_without_gaps(
            runs in prop::collection::vec(prop::option::weighted(0.8, (0..4u8, record())), 1..12),
        ) {
            // (version, open, content hash) rows of `source_versions`.
            let mut versions: Vec<(i64, bool, String)> = Vec::new();
            let mut state: Option<(Stored, Value)> = None;
            for listed in runs {
                let listed = listed.map(|(how, other)| match &state {
                    Some((_, old)) => edit(old, how, other),
                    None => other,
                });
                if let Some(new) = listed {
                    let d = decide_record(state.as_ref().map(|(s, v)| (s, v)), &new, false);
                    let hash = content_hash(&new);
                    if d.close {
                        versions.iter_mut().for_each(|v| v.1 = false);
                    }
                    if let Some(Book::New { version }) = d.write {
                        match versions.iter_mut().find(|v| v.0 == version) {
                            // ON CONFLICT (source_id, version) DO UPDATE of the content.
                            Some(v) => v.2 = hash,
                            None => versions.push((version, true, hash)),
                        }
                        state = Some((stored(&new, version, false), new));
                    }
                } else if let Some((s, _)) = state.as_mut().filter(|(s, _)| !s.deleted) {
                    // `Applier::delete`: marked deleted, the open version closed.
                    s.deleted = true;
                    versions.iter_mut().for_each(|v| v.1 = false);
                }
                let numbers: Vec<i64> = versions.iter().map(|v| v.0).collect();
                prop_assert_eq!(numbers, (1..=versions.len() as i64).collect::<Vec<_>>());
                let open: Vec<&(i64, bool, String)> = versions.iter().filter(|v| v.1).collect();
                match &state {
                    Some((s, _)) if !s.deleted => {
                        prop_assert_eq!(open.len(), 1);
                        prop_assert_eq!(open[0].0, s.version);
                        prop_assert_eq!(&open[0].2, &s.content_hash);
                    }
                    _ => prop_assert!(open.is_empty()),
                }
            }
        }
    }
}
