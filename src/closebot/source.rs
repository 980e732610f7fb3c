//! The typed view of one source record: every field optional (nulls, and older API
//! versions without the newer fields), unknown fields left to the raw record. A record that
//! does not fit is a [`Defect`] naming the field, never showing a credential.

use serde::Deserialize;
use serde_json::Value;

use super::untrusted::{is_secret_name, printable};
use super::wire::Defect;

/// A source as the mirror models it. Every field is optional: strings and arrays may be
/// null, so may the elements of an array (the schema cannot mark a `$ref` item nullable,
/// and says nothing of it), and older API versions lack the newer fields. Unknown fields are ignored here and
/// kept in the raw record.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub source_id: Option<String>,
    pub agency_id: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    pub key: Option<String>,
    pub access_token: Option<String>,
    pub address: Option<String>,
    pub connected: Option<bool>,
    pub auto_shutoff: Option<bool>,
    pub graceful_goodbye: Option<bool>,
    pub bots: Option<Vec<Option<Bot>>>,
    pub accounts_with_access: Option<Vec<Option<String>>>,
    pub is_availability_contact_timezone: Option<bool>,
    pub respond_windows: Option<Vec<Option<RespondWindow>>>,
    pub do_not_respond_windows: Option<Vec<Option<DoNotRespondWindow>>>,
    pub bot_respond_windows: Option<Vec<Option<BotRespondWindow>>>,
    pub is_bot_respond_windows_quiet_hours: Option<bool>,
    pub summarize_attachments: Option<bool>,
    pub respond_to_reactions: Option<bool>,
    pub mark_conversation_as_unread: Option<bool>,
    pub webhook_callback: Option<String>,
    pub script_installed: Option<bool>,
    pub script_last_seen_at: Option<String>,
    pub script_last_seen_domain: Option<String>,
    pub script_last_seen_endpoint: Option<String>,
    pub script_domain_allow_list: Option<Vec<Option<String>>>,
    pub wallet: Option<Wallet>,
    #[serde(rename = "hubSpotOwnerId")]
    pub hubspot_owner_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bot {
    pub id: Option<String>,
    pub bot_name: Option<String>,
    pub persona_name_override: Option<String>,
    pub enabled: Option<bool>,
    pub channels: Option<Vec<Option<String>>>,
    pub tags: Option<Vec<Option<Tag>>>,
    pub tag_filter_config: Option<TagFilterConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    pub id: Option<String>,
    pub name: Option<String>,
    pub approve_deny: Option<bool>,
}

/// The tag filter's parts have no documented types (the seed shows strings; a .NET enum
/// may as well come as its number), so each scalar is taken as its text.
#[derive(Debug, Default, Deserialize)]
pub struct TagFilterConfig {
    #[serde(default, deserialize_with = "scalar_text")]
    pub operator: Option<String>,
    pub groups: Option<Vec<Option<TagFilterGroup>>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TagFilterGroup {
    #[serde(default, deserialize_with = "scalar_text")]
    pub operator: Option<String>,
    pub rules: Option<Vec<Option<TagFilterRule>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagFilterRule {
    #[serde(default, deserialize_with = "scalar_text")]
    pub tag_name: Option<String>,
    #[serde(default, deserialize_with = "scalar_text")]
    pub tag_id: Option<String>,
    #[serde(default, deserialize_with = "scalar_text")]
    pub condition: Option<String>,
}

/// A string, number or boolean as text (a number exactly as the API wrote it: `1e3`,
/// `1.50`, a 30-digit integer), null as `None`; a list or an object is not a scalar and
/// stays an error.
fn scalar_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Bool(b) => Ok(Some(b.to_string())),
        // With serde_json's arbitrary_precision, a number keeps the text it came as.
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::invalid_type(
            match other {
                Value::Array(_) => serde::de::Unexpected::Seq,
                _ => serde::de::Unexpected::Map,
            },
            &"a string, a number, a boolean or null",
        )),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RespondWindow {
    pub day_of_week_utc: Option<String>,
    pub start_time_utc: Option<String>,
    pub duration: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DoNotRespondWindow {
    pub start: Option<String>,
    pub end: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotRespondWindow {
    pub day_of_week_utc: Option<String>,
    pub start_time_utc: Option<String>,
    pub duration: Option<String>,
    pub channel: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wallet {
    pub re_billing: Option<bool>,
    pub auto_refill: Option<bool>,
    /// int32, as the API documents its integers: a larger value quarantines the source.
    pub top_up_amount: Option<i32>,
    pub refill_threshold: Option<i32>,
    pub stripe_customer_id: Option<String>,
    pub currency: Option<String>,
    pub response_unit_cost_override: Option<String>,
    pub storage_unit_cost_override: Option<String>,
    pub user_unit_cost_override: Option<String>,
}

impl Source {
    /// Reads a raw record; the error names the field path and what was found there.
    pub fn from_value(value: &Value) -> Result<Source, Defect> {
        // The plain deserializer first; only a record that fails it is read again with
        // the path tracking that names the field (which costs a third more on every record).
        if let Ok(source) = Source::deserialize(value) {
            return Ok(source);
        }
        match serde_path_to_error::deserialize::<_, Source>(value) {
            Ok(source) => Ok(source),
            Err(e) => {
                let field = printable(&e.path().to_string()).into_owned();
                let last = field.rsplit(['.', '[']).next().unwrap_or_default();
                let problem = if is_secret_name(last) {
                    // The value may be the credential itself: never echo it.
                    "not of the expected type (value not shown: it is a credential)".to_string()
                } else {
                    printable(&e.into_inner().to_string()).into_owned()
                };
                Err(Defect { field, problem })
            }
        }
    }
}
