//! The normalized rows a source turns into: pure functions, no I/O. A [`Prepared`] source
//! carries its rows for every table, its redacted record and its content hash.

pub mod diff;
pub mod record;
pub mod windows;

use chrono::{DateTime, Utc};

use crate::closebot::wire::{Defect, RawSource, Source};
pub use record::{clean_text, fingerprint, parse_time, redact};

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

pub type Row = Vec<Val>;

/// A table the apply writes: its name and the columns a row fills, in order.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
}

/// The content columns of `sources` (the store adds the bookkeeping ones).
pub const SOURCES: Table = Table {
    name: "sources",
    columns: &[
        "source_id",
        "agency_id",
        "name",
        "category",
        "address",
        "key",
        "key_sha256",
        "access_token",
        "access_token_sha256",
        "connected",
        "auto_shutoff",
        "graceful_goodbye",
        "is_availability_contact_timezone",
        "is_bot_respond_windows_quiet_hours",
        "summarize_attachments",
        "respond_to_reactions",
        "mark_conversation_as_unread",
        "webhook_callback",
        "script_installed",
        "script_last_seen_at",
        "script_last_seen_domain",
        "script_last_seen_endpoint",
        "hubspot_owner_id",
    ],
};

/// The tables whose rows belong to one source and are replaced with it, in write order.
pub const CHILD_TABLES: [Table; 11] = [
    Table {
        name: "source_wallets",
        columns: &[
            "source_id",
            "re_billing",
            "auto_refill",
            "top_up_amount",
            "refill_threshold",
            "stripe_customer_id",
            "currency",
            "response_unit_cost_override",
            "storage_unit_cost_override",
            "user_unit_cost_override",
            "response_unit_cost_override_text",
            "storage_unit_cost_override_text",
            "user_unit_cost_override_text",
        ],
    },
    Table {
        name: "source_bots",
        columns: &[
            "source_id",
            "position",
            "bot_id",
            "bot_name",
            "persona_name_override",
            "enabled",
            "tag_filter_operator",
        ],
    },
    Table {
        name: "source_bot_channels",
        columns: &["source_id", "bot_position", "position", "channel"],
    },
    Table {
        name: "source_bot_tags",
        columns: &[
            "source_id",
            "bot_position",
            "position",
            "tag_id",
            "name",
            "approve_deny",
        ],
    },
    Table {
        name: "source_bot_tag_filter_groups",
        columns: &["source_id", "bot_position", "position", "operator"],
    },
    Table {
        name: "source_bot_tag_filter_rules",
        columns: &[
            "source_id",
            "bot_position",
            "group_position",
            "position",
            "tag_name",
            "tag_id",
            "condition",
        ],
    },
    Table {
        name: "source_accounts_with_access",
        columns: &["source_id", "position", "account_id"],
    },
    Table {
        name: "source_respond_windows",
        columns: &[
            "source_id",
            "position",
            "day_of_week_utc",
            "start_time_utc",
            "duration",
            "day_of_week_iso",
            "start_seconds_utc",
            "duration_seconds",
        ],
    },
    Table {
        name: "source_do_not_respond_windows",
        columns: &["source_id", "position", "starts_at", "ends_at"],
    },
    Table {
        name: "source_bot_respond_windows",
        columns: &[
            "source_id",
            "position",
            "day_of_week_utc",
            "start_time_utc",
            "duration",
            "channel",
            "day_of_week_iso",
            "start_seconds_utc",
            "duration_seconds",
        ],
    },
    Table {
        name: "source_script_domains",
        columns: &["source_id", "position", "domain"],
    },
];

const WALLETS: usize = 0;
const BOTS: usize = 1;
const CHANNELS: usize = 2;
const TAGS: usize = 3;
const GROUPS: usize = 4;
const RULES: usize = 5;
const ACCOUNTS: usize = 6;
const RESPOND: usize = 7;
const DO_NOT_RESPOND: usize = 8;
const BOT_RESPOND: usize = 9;
const SCRIPT_DOMAINS: usize = 10;

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
    /// The `sources` row, columns as in [`SOURCES`].
    pub source_row: Row,
    /// Rows per child table, indexed like [`CHILD_TABLES`].
    pub children: [Vec<Row>; 11],
    /// `(bot_id, bot_name)` of every assigned bot with an id, for the `bots` dimension.
    pub bots: Vec<(String, Option<String>)>,
    /// Respond-window texts and cost overrides that did not parse: kept as text, their
    /// parsed columns NULL (the run notes how many).
    pub unparsed: usize,
}

/// Text for a typed column (a NUL becomes U+FFFD: see [`clean_text`]).
fn text(s: Option<String>) -> Val {
    Val::Text(s.map(clean_text))
}

fn int(i: usize) -> Val {
    Val::Int(Some(i as i64))
}

fn time(field: &str, s: Option<String>) -> Result<Val, Defect> {
    s.map(|s| {
        parse_time(&s).map_err(|problem| Defect {
            field: field.to_string(),
            problem: crate::closebot::printable(&problem).into_owned(),
        })
    })
    .transpose()
    .map(Val::Time)
}

/// An id no index can hold.
fn check_id(field: String, id: &str) -> Result<(), Defect> {
    if id.len() <= MAX_ID_BYTES {
        return Ok(());
    }
    Err(Defect {
        field,
        problem: format!(
            "the id is {} bytes long; ids longer than {MAX_ID_BYTES} bytes cannot be indexed",
            id.len()
        ),
    })
}

/// Turns one raw source into everything the store writes, or says why it cannot: a record
/// of the wrong shape, an id too long to index, a value no column can hold (a date-time
/// that does not parse). Such a source is quarantined, never the run failed.
pub fn prepare(raw: RawSource, store_credentials: bool) -> Result<Prepared, Rejected> {
    let RawSource { id, raw, typed } = raw;
    match typed
        .and_then(|typed| check_id("sourceId".into(), &id).map(|()| typed))
        .and_then(|typed| rows(&id, typed, store_credentials))
    {
        Ok((source_row, children, bots, unparsed)) => {
            let record = redact(raw);
            let record_json = serde_json::to_string(&record).expect("a JSON value serializes");
            let hash = record::content_hash(&record);
            Ok(Prepared {
                id,
                record_json,
                hash,
                source_row,
                children,
                bots,
                unparsed,
            })
        }
        Err(defect) => Err(Rejected { id, defect }),
    }
}

/// A source's `sources` row, its child rows, its bots, and how many of its values did not
/// parse into their typed columns.
type Rows = (Row, [Vec<Row>; 11], Vec<(String, Option<String>)>, usize);

/// The typed rows of one source, for every table.
fn rows(id: &str, typed: Source, store_credentials: bool) -> Result<Rows, Defect> {
    let Source {
        agency_id,
        name,
        category,
        key,
        access_token,
        address,
        connected,
        auto_shutoff,
        graceful_goodbye,
        bots,
        accounts_with_access,
        is_availability_contact_timezone,
        respond_windows,
        do_not_respond_windows,
        bot_respond_windows,
        is_bot_respond_windows_quiet_hours,
        summarize_attachments,
        respond_to_reactions,
        mark_conversation_as_unread,
        webhook_callback,
        script_installed,
        script_last_seen_at,
        script_last_seen_domain,
        script_last_seen_endpoint,
        script_domain_allow_list,
        wallet,
        hubspot_owner_id,
        source_id: _,
    } = typed;
    let sid = || Val::Text(Some(id.to_string()));
    let key_sha = key.as_deref().map(fingerprint);
    let token_sha = access_token.as_deref().map(fingerprint);
    let (key, access_token) = if store_credentials {
        (key, access_token)
    } else {
        (None, None)
    };
    let source_row = vec![
        sid(),
        text(agency_id),
        text(name),
        text(category),
        text(address),
        text(key),
        text(key_sha),
        text(access_token),
        text(token_sha),
        Val::Bool(connected),
        Val::Bool(auto_shutoff),
        Val::Bool(graceful_goodbye),
        Val::Bool(is_availability_contact_timezone),
        Val::Bool(is_bot_respond_windows_quiet_hours),
        Val::Bool(summarize_attachments),
        Val::Bool(respond_to_reactions),
        Val::Bool(mark_conversation_as_unread),
        text(webhook_callback),
        Val::Bool(script_installed),
        time("scriptLastSeenAt", script_last_seen_at)?,
        text(script_last_seen_domain),
        text(script_last_seen_endpoint),
        text(hubspot_owner_id),
    ];
    let mut children: [Vec<Row>; 11] = Default::default();
    let mut unparsed = 0;
    if let Some(w) = wallet {
        let mut row = vec![
            sid(),
            Val::Bool(w.re_billing),
            Val::Bool(w.auto_refill),
            Val::Int(w.top_up_amount),
            Val::Int(w.refill_threshold),
            text(w.stripe_customer_id),
            text(w.currency),
        ];
        let costs = [
            w.response_unit_cost_override,
            w.storage_unit_cost_override,
            w.user_unit_cost_override,
        ];
        for cost in &costs {
            let number = cost.as_deref().and_then(windows::decimal);
            unparsed += usize::from(cost.is_some() && number.is_none());
            row.push(Val::Decimal(number));
        }
        row.extend(costs.map(text));
        children[WALLETS].push(row);
    }
    let mut bot_dim = Vec::new();
    for (b, bot) in bots.unwrap_or_default().into_iter().enumerate() {
        if let Some(bot_id) = &bot.id {
            check_id(format!("bots[{b}].id"), bot_id)?;
            bot_dim.push((
                clean_text(bot_id.clone()),
                bot.bot_name.clone().map(clean_text),
            ));
        }
        let filter = bot.tag_filter_config.unwrap_or_default();
        children[BOTS].push(vec![
            sid(),
            int(b),
            text(bot.id),
            text(bot.bot_name),
            text(bot.persona_name_override),
            Val::Bool(bot.enabled),
            text(filter.operator),
        ]);
        for (p, channel) in bot.channels.unwrap_or_default().into_iter().enumerate() {
            children[CHANNELS].push(vec![sid(), int(b), int(p), text(channel)]);
        }
        for (p, tag) in bot.tags.unwrap_or_default().into_iter().enumerate() {
            children[TAGS].push(vec![
                sid(),
                int(b),
                int(p),
                text(tag.id),
                text(tag.name),
                Val::Bool(tag.approve_deny),
            ]);
        }
        for (g, group) in filter.groups.unwrap_or_default().into_iter().enumerate() {
            children[GROUPS].push(vec![sid(), int(b), int(g), text(group.operator)]);
            for (p, rule) in group.rules.unwrap_or_default().into_iter().enumerate() {
                children[RULES].push(vec![
                    sid(),
                    int(b),
                    int(g),
                    int(p),
                    text(rule.tag_name),
                    text(rule.tag_id),
                    text(rule.condition),
                ]);
            }
        }
    }
    for (p, account) in accounts_with_access
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        children[ACCOUNTS].push(vec![sid(), int(p), text(account)]);
    }
    for (p, w) in respond_windows.unwrap_or_default().into_iter().enumerate() {
        let mut row = vec![
            sid(),
            int(p),
            text(w.day_of_week_utc),
            text(w.start_time_utc),
            text(w.duration),
        ];
        unparsed += parsed_window(&mut row, 2);
        children[RESPOND].push(row);
    }
    for (p, w) in do_not_respond_windows
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        children[DO_NOT_RESPOND].push(vec![
            sid(),
            int(p),
            time(&format!("doNotRespondWindows[{p}].start"), w.start)?,
            time(&format!("doNotRespondWindows[{p}].end"), w.end)?,
        ]);
    }
    for (p, w) in bot_respond_windows
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let mut row = vec![
            sid(),
            int(p),
            text(w.day_of_week_utc),
            text(w.start_time_utc),
            text(w.duration),
            text(w.channel),
        ];
        unparsed += parsed_window(&mut row, 2);
        children[BOT_RESPOND].push(row);
    }
    for (p, domain) in script_domain_allow_list
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        children[SCRIPT_DOMAINS].push(vec![sid(), int(p), text(domain)]);
    }
    Ok((source_row, children, bot_dim, unparsed))
}

/// Appends the parsed day, start and duration of the window whose texts are the row's
/// columns `first..first + 3`; returns how many of them did not parse.
fn parsed_window(row: &mut Row, first: usize) -> usize {
    let texts: Vec<Option<&str>> = row[first..first + 3]
        .iter()
        .map(|v| match v {
            Val::Text(t) => t.as_deref(),
            _ => None,
        })
        .collect();
    let (d, s, l) = (texts[0], texts[1], texts[2]);
    let parsed = windows::ParsedWindow::parse(d, s, l);
    let failures = parsed.failures(d, s, l);
    row.extend([
        Val::Int(parsed.day),
        Val::Int(parsed.start),
        Val::Int(parsed.duration),
    ]);
    failures
}
