//! The normalized rows a source turns into: pure functions, no I/O. A [`Prepared`] source
//! carries its rows, typed per table ([`tables`]), its redacted record and its content hash.

pub(crate) mod diff;
mod prepare;
pub(crate) mod record;
pub(crate) mod tables;
pub(crate) mod windows;

use chrono::{DateTime, Utc};

use crate::closebot::wire::{Defect, RawSource};
pub use record::{clean_text, fingerprint, parse_time, redact, sqlite_time};
pub use tables::{Children, Columns, SourceRow, Table};

/// The longest id (`sourceId`, a bot's `id`) the mirror stores. Ids are keys of btree
/// indexes, which PostgreSQL limits to about 2,700 bytes a row; real ids are 20 to 40
/// characters. A source with a longer one is quarantined.
pub const MAX_ID_BYTES: usize = 512;

/// A source the run cannot mirror as the API sent it. It is quarantined: its stored state
/// stays as it was, and `source_rejects` says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub id: String,
    pub defect: Defect,
}

/// One SQL value, typed so that a NULL binds with the column's type on PostgreSQL.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Json(Option<String>),
    /// A decimal number as text (see [`windows::decimal`]), stored as `NUMERIC`.
    Decimal(Option<String>),
}

impl Val {
    pub fn is_null(&self) -> bool {
        matches!(
            self,
            Val::Text(None)
                | Val::Int(None)
                | Val::Bool(None)
                | Val::Time(None)
                | Val::Json(None)
                | Val::Decimal(None)
        )
    }
}

/// One row of SQL values, in the order of its table's columns (see [`tables::Columns`]).
pub type Row = Vec<Val>;

/// A source ready to be compared and written.
#[derive(Debug)]
pub struct Prepared {
    pub id: String,
    /// The redacted record (as the API sent it, `key` and `accessToken` replaced by
    /// fingerprints) serialized, in the API's field order. The parsed form is dropped here,
    /// in the page's task: the apply parses it again only for a source that changed.
    pub record_json: String,
    /// SHA-256 of the record in canonical form (keys sorted): equal hashes, equal content.
    pub hash: String,
    /// The content columns of its `sources` row.
    pub source_row: SourceRow,
    /// Its rows in the child tables.
    pub children: Children,
    /// `(bot_id, bot_name)` of every assigned bot with an id, for the `bots` dimension.
    pub bots: Vec<(String, Option<String>)>,
    /// Respond-window texts and cost overrides that did not parse: kept as text, their
    /// parsed columns NULL (the run notes how many).
    pub unparsed: usize,
}

/// Turns one raw source into everything the store writes, or says why it cannot: a record
/// of the wrong shape, an id too long to index, a value no column can hold (a date-time
/// that does not parse). Such a source is quarantined, never the run failed.
pub fn prepare(raw: RawSource, store_credentials: bool) -> Result<Prepared, Rejected> {
    let RawSource { id, raw, typed } = raw;
    match typed
        .and_then(|typed| prepare::check_id(|| "sourceId".into(), &id).map(|()| typed))
        .and_then(|typed| prepare::rows(&id, typed, store_credentials))
    {
        Ok(rows) => {
            let record = redact(raw);
            let record_json = serde_json::to_string(&record).expect("a JSON value serializes");
            let hash = record::content_hash(&record);
            Ok(Prepared {
                id,
                record_json,
                hash,
                source_row: rows.source,
                children: rows.children,
                bots: rows.bots,
                unparsed: rows.unparsed,
            })
        }
        Err(defect) => Err(Rejected { id, defect }),
    }
}
