//! How one source's typed record becomes its rows: a small function per table, each
//! filling that table's struct by column name.

use super::tables::{
    AccountRow, BotChannelRow, BotRespondWindowRow, BotRow, BotTagRow, Children,
    DoNotRespondWindowRow, RespondWindowRow, ScriptDomainRow, SourceRow, TagFilterGroupRow,
    TagFilterRuleRow, WalletRow,
};
use super::{clean_text, fingerprint, parse_time, windows, MAX_ID_BYTES};
use crate::closebot::source::{
    Bot, BotRespondWindow, DoNotRespondWindow, RespondWindow, Source, Wallet,
};
use crate::closebot::wire::Defect;

/// A source's `sources` row, its child rows, its bots (`(bot_id, bot_name)` of each with
/// an id), and how many of its values did not parse into their typed columns.
pub(super) struct Rows {
    pub source: SourceRow,
    pub children: Children,
    pub bots: Vec<(String, Option<String>)>,
    pub unparsed: usize,
}

/// Text for a typed column (a NUL becomes U+FFFD: see [`clean_text`]).
fn text(s: Option<String>) -> Option<String> {
    s.map(clean_text)
}

/// A time stamp for a typed column. The API writes "never" as .NET's smallest date-time,
/// `0001-01-01T00:00:00`: that is NULL here (the stored record keeps it as sent).
fn time(
    field: impl FnOnce() -> String,
    s: Option<String>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Defect> {
    let parsed = s
        .map(|s| {
            parse_time(&s).map_err(|problem| Defect {
                field: field(),
                problem: crate::closebot::printable(&problem).into_owned(),
            })
        })
        .transpose()?;
    Ok(parsed.filter(|t| *t != dotnet_never()))
}

/// `0001-01-01T00:00:00Z`, .NET's `DateTime.MinValue`.
fn dotnet_never() -> chrono::DateTime<chrono::Utc> {
    chrono::NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a valid date-time")
        .and_utc()
}

/// The elements of a list the API may send as null or leave out, with their positions.
fn listed<T>(list: Option<Vec<T>>) -> impl Iterator<Item = (usize, T)> {
    list.unwrap_or_default().into_iter().enumerate()
}

/// The objects of such a list, a null element read as an object whose fields are all
/// null: its row holds NULLs at its position, as a null text of a list of texts does.
fn listed_objects<T: Default>(list: Option<Vec<Option<T>>>) -> impl Iterator<Item = (usize, T)> {
    listed(list).map(|(p, object)| (p, object.unwrap_or_default()))
}

/// An id no index can hold.
pub(super) fn check_id(field: impl FnOnce() -> String, id: &str) -> Result<(), Defect> {
    if id.len() <= MAX_ID_BYTES {
        return Ok(());
    }
    Err(Defect {
        field: field(),
        problem: format!(
            "the id is {} bytes long; ids longer than {MAX_ID_BYTES} bytes cannot be indexed",
            id.len()
        ),
    })
}

/// The typed rows of one source, for every table. The defects are looked for in the
/// order of the tables, so a record with several names the same one every time.
pub(super) fn rows(id: &str, mut typed: Source, store_credentials: bool) -> Result<Rows, Defect> {
    let source = source_row(id, &mut typed, store_credentials)?;
    let mut children = Children::default();
    let mut unparsed = 0;
    if let Some(wallet) = typed.wallet.take() {
        let (row, failed) = wallet_row(id, wallet);
        children.wallets.push(row);
        unparsed += failed;
    }
    let mut bots = Vec::new();
    for (b, bot) in listed_objects(typed.bots.take()) {
        if let Some(bot_id) = &bot.id {
            check_id(|| format!("bots[{b}].id"), bot_id)?;
            bots.push((
                clean_text(bot_id.clone()),
                bot.bot_name.clone().map(clean_text),
            ));
        }
        bot_rows(id, b, bot, &mut children);
    }
    children.accounts = account_rows(id, typed.accounts_with_access.take());
    for (p, w) in listed_objects(typed.respond_windows.take()) {
        let (row, failed) = respond_window_row(id, p, w);
        children.respond_windows.push(row);
        unparsed += failed;
    }
    for (p, w) in listed_objects(typed.do_not_respond_windows.take()) {
        children
            .do_not_respond_windows
            .push(do_not_respond_window_row(id, p, w)?);
    }
    for (p, w) in listed_objects(typed.bot_respond_windows.take()) {
        let (row, failed) = bot_respond_window_row(id, p, w);
        children.bot_respond_windows.push(row);
        unparsed += failed;
    }
    children.script_domains = script_domain_rows(id, typed.script_domain_allow_list.take());
    Ok(Rows {
        source,
        children,
        bots,
        unparsed,
    })
}

/// The scalar fields of the record (taken out of it); credentials only as fingerprints
/// unless `store_credentials`.
fn source_row(id: &str, s: &mut Source, store_credentials: bool) -> Result<SourceRow, Defect> {
    let key = s.key.take();
    let access_token = s.access_token.take();
    let key_sha256 = key.as_deref().map(fingerprint);
    let access_token_sha256 = access_token.as_deref().map(fingerprint);
    let (key, access_token) = if store_credentials {
        (key, access_token)
    } else {
        (None, None)
    };
    Ok(SourceRow {
        source_id: id.to_string(),
        agency_id: text(s.agency_id.take()),
        name: text(s.name.take()),
        category: text(s.category.take()),
        address: text(s.address.take()),
        key: text(key),
        key_sha256,
        access_token: text(access_token),
        access_token_sha256,
        connected: s.connected,
        auto_shutoff: s.auto_shutoff,
        graceful_goodbye: s.graceful_goodbye,
        is_availability_contact_timezone: s.is_availability_contact_timezone,
        is_bot_respond_windows_quiet_hours: s.is_bot_respond_windows_quiet_hours,
        summarize_attachments: s.summarize_attachments,
        respond_to_reactions: s.respond_to_reactions,
        mark_conversation_as_unread: s.mark_conversation_as_unread,
        webhook_callback: text(s.webhook_callback.take()),
        script_installed: s.script_installed,
        script_last_seen_at: time(|| "scriptLastSeenAt".into(), s.script_last_seen_at.take())?,
        script_last_seen_domain: text(s.script_last_seen_domain.take()),
        script_last_seen_endpoint: text(s.script_last_seen_endpoint.take()),
        hubspot_owner_id: text(s.hubspot_owner_id.take()),
    })
}

/// The wallet, and how many of its cost overrides did not parse as numbers.
fn wallet_row(id: &str, w: Wallet) -> (WalletRow, usize) {
    let mut failed = 0;
    let mut number = |cost: &Option<String>| {
        let n = cost.as_deref().and_then(windows::decimal);
        failed += usize::from(cost.is_some() && n.is_none());
        n
    };
    let response = number(&w.response_unit_cost_override);
    let storage = number(&w.storage_unit_cost_override);
    let user = number(&w.user_unit_cost_override);
    let row = WalletRow {
        source_id: id.to_string(),
        re_billing: w.re_billing,
        auto_refill: w.auto_refill,
        top_up_amount: w.top_up_amount.map(i64::from),
        refill_threshold: w.refill_threshold.map(i64::from),
        stripe_customer_id: text(w.stripe_customer_id),
        currency: text(w.currency),
        response_unit_cost_override: response,
        storage_unit_cost_override: storage,
        user_unit_cost_override: user,
        response_unit_cost_override_text: text(w.response_unit_cost_override),
        storage_unit_cost_override_text: text(w.storage_unit_cost_override),
        user_unit_cost_override_text: text(w.user_unit_cost_override),
    };
    (row, failed)
}

/// The bot at position `b`, with its channels, tags and tag filter.
fn bot_rows(id: &str, b: usize, bot: Bot, out: &mut Children) {
    let filter = bot.tag_filter_config.unwrap_or_default();
    out.bots.push(BotRow {
        source_id: id.to_string(),
        position: b,
        bot_id: text(bot.id),
        bot_name: text(bot.bot_name),
        persona_name_override: text(bot.persona_name_override),
        enabled: bot.enabled,
        tag_filter_operator: text(filter.operator),
    });
    for (p, channel) in listed(bot.channels) {
        out.bot_channels.push(BotChannelRow {
            source_id: id.to_string(),
            bot_position: b,
            position: p,
            channel: text(channel),
        });
    }
    for (p, tag) in listed_objects(bot.tags) {
        out.bot_tags.push(BotTagRow {
            source_id: id.to_string(),
            bot_position: b,
            position: p,
            tag_id: text(tag.id),
            name: text(tag.name),
            approve_deny: tag.approve_deny,
        });
    }
    for (g, group) in listed_objects(filter.groups) {
        out.tag_filter_groups.push(TagFilterGroupRow {
            source_id: id.to_string(),
            bot_position: b,
            position: g,
            operator: text(group.operator),
        });
        for (p, rule) in listed_objects(group.rules) {
            out.tag_filter_rules.push(TagFilterRuleRow {
                source_id: id.to_string(),
                bot_position: b,
                group_position: g,
                position: p,
                tag_name: text(rule.tag_name),
                tag_id: text(rule.tag_id),
                condition: text(rule.condition),
            });
        }
    }
}

fn account_rows(id: &str, accounts: Option<Vec<Option<String>>>) -> Vec<AccountRow> {
    listed(accounts)
        .map(|(p, account)| AccountRow {
            source_id: id.to_string(),
            position: p,
            account_id: text(account),
        })
        .collect()
}

/// A respond window as sent (cleaned), its numbers where it parses, and how many of its
/// texts did not.
fn respond_window_row(id: &str, p: usize, w: RespondWindow) -> (RespondWindowRow, usize) {
    let (day, start, duration) = (
        text(w.day_of_week_utc),
        text(w.start_time_utc),
        text(w.duration),
    );
    let (d, s, l) = (day.as_deref(), start.as_deref(), duration.as_deref());
    let n = windows::ParsedWindow::parse(d, s, l);
    let failed = n.failures(d, s, l);
    let row = RespondWindowRow {
        source_id: id.to_string(),
        position: p,
        day_of_week_utc: day,
        start_time_utc: start,
        duration,
        day_of_week_iso: n.day,
        start_seconds_utc: n.start,
        duration_seconds: n.duration,
    };
    (row, failed)
}

fn do_not_respond_window_row(
    id: &str,
    p: usize,
    w: DoNotRespondWindow,
) -> Result<DoNotRespondWindowRow, Defect> {
    Ok(DoNotRespondWindowRow {
        source_id: id.to_string(),
        position: p,
        starts_at: time(|| format!("doNotRespondWindows[{p}].start"), w.start)?,
        ends_at: time(|| format!("doNotRespondWindows[{p}].end"), w.end)?,
    })
}

/// A respond window of one channel: its texts and numbers as [`respond_window_row`]'s.
fn bot_respond_window_row(id: &str, p: usize, w: BotRespondWindow) -> (BotRespondWindowRow, usize) {
    let window = RespondWindow {
        day_of_week_utc: w.day_of_week_utc,
        start_time_utc: w.start_time_utc,
        duration: w.duration,
    };
    let (r, failed) = respond_window_row(id, p, window);
    let row = BotRespondWindowRow {
        source_id: r.source_id,
        position: p,
        day_of_week_utc: r.day_of_week_utc,
        start_time_utc: r.start_time_utc,
        duration: r.duration,
        channel: text(w.channel),
        day_of_week_iso: r.day_of_week_iso,
        start_seconds_utc: r.start_seconds_utc,
        duration_seconds: r.duration_seconds,
    };
    (row, failed)
}

fn script_domain_rows(id: &str, domains: Option<Vec<Option<String>>>) -> Vec<ScriptDomainRow> {
    listed(domains)
        .map(|(p, domain)| ScriptDomainRow {
            source_id: id.to_string(),
            position: p,
            domain: text(domain),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::closebot::wire::{RawSource, Source};
    use crate::model::{prepare, Prepared, Rejected};

    fn prepared(record: Value) -> Result<Prepared, Rejected> {
        let typed = Source::from_value(&record);
        let raw = RawSource {
            id: record["sourceId"].as_str().unwrap().to_string(),
            raw: record,
            typed,
        };
        prepare(raw, false)
    }

    #[test]
    fn the_apis_never_is_null_in_a_typed_column_and_any_other_time_is_kept() {
        let t = |s: &str| super::time(|| "field".into(), Some(s.to_string())).unwrap();
        for never in [
            "0001-01-01T00:00:00",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00.0000000",
        ] {
            assert_eq!(t(never), None, "{never}");
        }
        assert_eq!(
            t("0001-01-01T00:00:01").map(|t| t.to_rfc3339()),
            Some("0001-01-01T00:00:01+00:00".to_string())
        );
        assert!(t("2024-05-01T10:00:00").is_some());
        assert_eq!(super::time(|| "field".into(), None).unwrap(), None);
    }

    #[test]
    fn each_table_gets_its_rows_with_the_values_under_their_columns() {
        let p = prepared(json!({
            "sourceId": "s1", "name": "Acme\u{0}", "key": "secret",
            "wallet": {"autoRefill": true, "responseUnitCostOverride": "0.25",
                "userUnitCostOverride": "cheap"},
            "bots": [
                {"id": "b1", "botName": "Ann", "channels": ["SMS", null],
                 "tags": [{"id": "t1", "name": "vip", "approveDeny": true}],
                 "tagFilterConfig": {"operator": "and",
                    "groups": [{"operator": "or", "rules": [{"tagName": "x", "condition": "has"}]}]}},
                {"botName": "no id"}
            ],
            "accountsWithAccess": ["a1"],
            "respondWindows": [{"dayOfWeekUtc": "Monday", "startTimeUtc": "09:00:00", "duration": "soon"}],
            "doNotRespondWindows": [{"start": "2026-01-01T00:00:00Z"}],
            "botRespondWindows": [{"dayOfWeekUtc": "Sunday", "channel": "SMS"}],
            "scriptDomainAllowList": ["example.com"]
        }))
        .unwrap();
        assert_eq!(p.source_row.name.as_deref(), Some("Acme\u{FFFD}"));
        assert_eq!(
            p.source_row.key, None,
            "credentials are kept only as fingerprints"
        );
        assert!(p.source_row.key_sha256.is_some());
        let c = &p.children;
        let wallet = &c.wallets[0];
        assert_eq!(wallet.response_unit_cost_override.as_deref(), Some("0.25"));
        assert_eq!(wallet.user_unit_cost_override, None);
        assert_eq!(
            wallet.user_unit_cost_override_text.as_deref(),
            Some("cheap")
        );
        let bots: Vec<(usize, Option<&str>)> = c
            .bots
            .iter()
            .map(|b| (b.position, b.bot_id.as_deref()))
            .collect();
        assert_eq!(bots, [(0, Some("b1")), (1, None)]);
        assert_eq!(c.bots[0].tag_filter_operator.as_deref(), Some("and"));
        assert_eq!(c.bot_channels.len(), 2);
        assert_eq!(c.bot_channels[1].channel, None);
        assert_eq!(c.bot_tags[0].name.as_deref(), Some("vip"));
        let rule = &c.tag_filter_rules[0];
        assert_eq!(
            (rule.bot_position, rule.group_position, rule.position),
            (0, 0, 0)
        );
        assert_eq!(rule.condition.as_deref(), Some("has"));
        assert_eq!(c.accounts[0].account_id.as_deref(), Some("a1"));
        let window = &c.respond_windows[0];
        assert_eq!(window.day_of_week_iso, Some(1));
        assert_eq!(window.start_seconds_utc, Some(9 * 3600));
        assert_eq!(window.duration_seconds, None);
        assert!(c.do_not_respond_windows[0].starts_at.is_some());
        assert_eq!(c.do_not_respond_windows[0].ends_at, None);
        assert_eq!(c.bot_respond_windows[0].day_of_week_iso, Some(7));
        assert_eq!(c.script_domains[0].domain.as_deref(), Some("example.com"));
        assert_eq!(c.len(), 13);
        assert_eq!(p.bots, [("b1".to_string(), Some("Ann".to_string()))]);
        // "cheap" and "soon".
        assert_eq!(p.unparsed, 2);
    }

    #[test]
    fn a_wallet_amount_outside_int32_quarantines_the_source_naming_the_field() {
        let at_most = prepared(json!({"sourceId": "s1", "wallet": {"topUpAmount": i32::MAX, "refillThreshold": i32::MIN}}))
            .unwrap();
        assert_eq!(
            at_most.children.wallets[0].top_up_amount,
            Some(i64::from(i32::MAX))
        );
        for (field, value) in [
            ("topUpAmount", 99_999_999_999i64),
            ("refillThreshold", -2_147_483_649),
        ] {
            let e = prepared(json!({"sourceId": "s1", "wallet": {field: value}})).unwrap_err();
            assert_eq!(e.defect.field, format!("wallet.{field}"));
        }
    }

    #[test]
    fn a_null_element_of_a_list_of_objects_is_a_row_of_nulls_at_its_place() {
        let p = prepared(json!({
            "sourceId": "s1",
            "bots": [null, {"id": "b1", "tags": [null, {"id": "t1"}],
                "tagFilterConfig": {"groups": [null, {"rules": [null]}]}}],
            "respondWindows": [null],
            "doNotRespondWindows": [null],
            "botRespondWindows": [null]
        }))
        .expect("null elements do not quarantine the source");
        let c = &p.children;
        let bots: Vec<_> = c
            .bots
            .iter()
            .map(|b| (b.position, b.bot_id.as_deref(), b.bot_name.as_deref()))
            .collect();
        assert_eq!(bots, [(0, None, None), (1, Some("b1"), None)]);
        let tags: Vec<_> = c
            .bot_tags
            .iter()
            .map(|t| (t.position, t.tag_id.as_deref()))
            .collect();
        assert_eq!(tags, [(0, None), (1, Some("t1"))]);
        assert_eq!(c.tag_filter_groups.len(), 2);
        assert_eq!(c.tag_filter_rules.len(), 1);
        assert_eq!(c.tag_filter_rules[0].tag_name, None);
        assert_eq!(c.respond_windows.len(), 1);
        assert_eq!(c.respond_windows[0].day_of_week_utc, None);
        assert_eq!(
            (c.do_not_respond_windows.len(), c.bot_respond_windows.len()),
            (1, 1)
        );
    }

    #[test]
    fn a_tag_filter_written_with_numbers_or_booleans_is_kept_as_their_text() {
        // The filter's types are undocumented: an enum sent as its number must not
        // quarantine the source. Read from text, as a page is, so that a number keeps the
        // text it came as.
        let record = serde_json::from_str(
            r#"{"sourceId": "s1",
            "bots": [{"tagFilterConfig": {"operator": 1,
                "groups": [{"operator": null, "rules": [
                    {"tagName": "vip", "tagId": 42, "condition": 0},
                    {"tagName": true, "condition": 2.5},
                    {"tagName": 1.50, "tagId": 123456789012345678901234567890, "condition": 1e3}
                ]}]}}]}"#,
        )
        .unwrap();
        let p = prepared(record).unwrap();
        let c = &p.children;
        assert_eq!(c.bots[0].tag_filter_operator.as_deref(), Some("1"));
        assert_eq!(c.tag_filter_groups[0].operator, None);
        let rules: Vec<_> = c
            .tag_filter_rules
            .iter()
            .map(|r| {
                (
                    r.tag_name.as_deref(),
                    r.tag_id.as_deref(),
                    r.condition.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rules,
            [
                (Some("vip"), Some("42"), Some("0")),
                (Some("true"), None, Some("2.5")),
                // As written, not as a float would print it (serde_json signs the exponent).
                (
                    Some("1.50"),
                    Some("123456789012345678901234567890"),
                    Some("1e+3")
                )
            ]
        );
        // A list or an object is not a scalar: the source is quarantined, naming the field.
        let rejected = prepared(json!({
            "sourceId": "s1",
            "bots": [{"tagFilterConfig": {"groups": [{"rules": [{"condition": ["has"]}]}]}}]
        }))
        .map(|_| ())
        .unwrap_err();
        let field = &rejected.defect.field;
        assert_eq!(
            field,
            "bots[0].tagFilterConfig.groups[0].rules[0].condition"
        );
    }

    #[test]
    fn a_record_with_several_defects_is_rejected_for_the_first_in_table_order() {
        let long = "b".repeat(600);
        let r = prepared(json!({
            "sourceId": "s1", "scriptLastSeenAt": "yesterday",
            "bots": [{"id": long}],
            "doNotRespondWindows": [{"start": "never"}]
        }))
        .unwrap_err();
        assert_eq!(r.defect.field, "scriptLastSeenAt");
        let r = prepared(json!({
            "sourceId": "s1", "bots": [{"id": "b0"}, {"id": long}],
            "doNotRespondWindows": [{"start": "never"}]
        }))
        .unwrap_err();
        assert_eq!(r.defect.field, "bots[1].id");
    }
}
