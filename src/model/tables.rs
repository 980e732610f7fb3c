//! The tables a source's rows go to, one struct per table: a struct's fields are the
//! table's columns, in order, so its column list and its values come from one definition
//! and cannot disagree.

use super::Row;

/// Columns filled from one struct: their names, and the values in the same order.
pub trait Columns {
    const COLUMNS: &'static [&'static str];

    /// Appends the values, in the order of [`Columns::COLUMNS`].
    fn push_values(self, row: &mut Row);

    fn into_row(self) -> Row
    where
        Self: Sized,
    {
        let mut row = Vec::with_capacity(Self::COLUMNS.len());
        self.push_values(&mut row);
        row
    }
}

/// A whole row of one table.
pub trait Table: Columns {
    const NAME: &'static str;
}

/// The Rust type of a column of each kind.
macro_rules! column_type {
    (Key) => { String };
    (Id) => { i64 };
    (Pos) => { usize };
    (Text) => { Option<String> };
    (Int) => { Option<i64> };
    (Bool) => { Option<bool> };
    (Time) => { Option<::chrono::DateTime<::chrono::Utc>> };
    (Json) => { Option<String> };
    (Decimal) => { Option<String> };
}

/// The SQL value of a column of each kind. `Key`, `Id` and `Pos` are never NULL: they are (part
/// of) the key of every table written so.
macro_rules! column_value {
    (Key, $v:expr) => {
        $crate::model::Val::Text(Some($v))
    };
    (Id, $v:expr) => {
        $crate::model::Val::Int(Some($v))
    };
    (Pos, $v:expr) => {
        $crate::model::Val::Int(Some($v as i64))
    };
    // The others are `Val`'s variants of the same name (`Decimal`: a decimal number as
    // text, see `windows::decimal`, stored as `NUMERIC`).
    ($kind:ident, $v:expr) => {
        $crate::model::Val::$kind($v)
    };
}

/// Declares a struct whose fields are columns (`name: Kind`), and implements [`Columns`]
/// for it, and [`Table`] when a table name follows the struct's name (`in "table"`).
macro_rules! columns {
    ($(#[$doc:meta])* pub struct $name:ident $(in $table:literal)? {
        $($(#[$fdoc:meta])* $field:ident: $kind:ident),* $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $crate::model::tables::column_type!($kind),)*
        }

        impl $crate::model::tables::Columns for $name {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn push_values(self, row: &mut $crate::model::Row) {
                $(row.push($crate::model::tables::column_value!($kind, self.$field));)*
            }
        }

        $(impl $crate::model::tables::Table for $name {
            const NAME: &'static str = $table;
        })?
    };
}

pub(crate) use {column_type, column_value, columns};

columns! {
    /// The content columns of `sources` (the store adds the bookkeeping ones).
    pub struct SourceRow {
        source_id: Key,
        agency_id: Text,
        name: Text,
        category: Text,
        address: Text,
        key: Text,
        key_sha256: Text,
        access_token: Text,
        access_token_sha256: Text,
        connected: Bool,
        auto_shutoff: Bool,
        graceful_goodbye: Bool,
        is_availability_contact_timezone: Bool,
        is_bot_respond_windows_quiet_hours: Bool,
        summarize_attachments: Bool,
        respond_to_reactions: Bool,
        mark_conversation_as_unread: Bool,
        webhook_callback: Text,
        script_installed: Bool,
        script_last_seen_at: Time,
        script_last_seen_domain: Text,
        script_last_seen_endpoint: Text,
        hubspot_owner_id: Text,
    }
}

columns! {
    /// A source's wallet: the cost overrides as numbers where they parse, and as sent.
    pub struct WalletRow in "source_wallets" {
        source_id: Key,
        re_billing: Bool,
        auto_refill: Bool,
        top_up_amount: Int,
        refill_threshold: Int,
        stripe_customer_id: Text,
        currency: Text,
        response_unit_cost_override: Decimal,
        storage_unit_cost_override: Decimal,
        user_unit_cost_override: Decimal,
        response_unit_cost_override_text: Text,
        storage_unit_cost_override_text: Text,
        user_unit_cost_override_text: Text,
    }
}

columns! {
    pub struct BotRow in "source_bots" {
        source_id: Key,
        position: Pos,
        bot_id: Text,
        bot_name: Text,
        persona_name_override: Text,
        enabled: Bool,
        tag_filter_operator: Text,
    }
}

columns! {
    pub struct BotChannelRow in "source_bot_channels" {
        source_id: Key,
        bot_position: Pos,
        position: Pos,
        channel: Text,
    }
}

columns! {
    pub struct BotTagRow in "source_bot_tags" {
        source_id: Key,
        bot_position: Pos,
        position: Pos,
        tag_id: Text,
        name: Text,
        approve_deny: Bool,
    }
}

columns! {
    pub struct TagFilterGroupRow in "source_bot_tag_filter_groups" {
        source_id: Key,
        bot_position: Pos,
        position: Pos,
        operator: Text,
    }
}

columns! {
    pub struct TagFilterRuleRow in "source_bot_tag_filter_rules" {
        source_id: Key,
        bot_position: Pos,
        group_position: Pos,
        position: Pos,
        tag_name: Text,
        tag_id: Text,
        condition: Text,
    }
}

columns! {
    pub struct AccountRow in "source_accounts_with_access" {
        source_id: Key,
        position: Pos,
        account_id: Text,
    }
}

columns! {
    /// A respond window as sent, and as numbers where its texts parse.
    pub struct RespondWindowRow in "source_respond_windows" {
        source_id: Key,
        position: Pos,
        day_of_week_utc: Text,
        start_time_utc: Text,
        duration: Text,
        day_of_week_iso: Int,
        start_seconds_utc: Int,
        duration_seconds: Int,
    }
}

columns! {
    pub struct DoNotRespondWindowRow in "source_do_not_respond_windows" {
        source_id: Key,
        position: Pos,
        starts_at: Time,
        ends_at: Time,
    }
}

columns! {
    /// A bot respond window as sent, and as numbers where its texts parse.
    pub struct BotRespondWindowRow in "source_bot_respond_windows" {
        source_id: Key,
        position: Pos,
        day_of_week_utc: Text,
        start_time_utc: Text,
        duration: Text,
        channel: Text,
        day_of_week_iso: Int,
        start_seconds_utc: Int,
        duration_seconds: Int,
    }
}

columns! {
    pub struct ScriptDomainRow in "source_script_domains" {
        source_id: Key,
        position: Pos,
        domain: Text,
    }
}

/// One child table's rows, converted to SQL values only when they are written (see
/// [`Children::into_tables`]).
pub trait TableRows: Send {
    fn name(&self) -> &'static str;
    fn columns(&self) -> &'static [&'static str];
    fn into_rows(self: Box<Self>) -> Vec<Row>;
}

impl<T: Table + Send> TableRows for Vec<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn columns(&self) -> &'static [&'static str] {
        T::COLUMNS
    }

    fn into_rows(self: Box<Self>) -> Vec<Row> {
        self.into_iter().map(Columns::into_row).collect()
    }
}

/// Declares [`Children`]: a vector per child table, in the order they are written.
macro_rules! children {
    ($($(#[$doc:meta])* $field:ident: $row:ident),* $(,)?) => {
        /// The rows of the tables that belong to one source and are replaced with it.
        #[derive(Debug, Default, Clone, PartialEq)]
        pub struct Children {
            $($(#[$doc])* pub $field: Vec<$row>,)*
        }

        impl Children {
            /// The child tables, in write order.
            pub const TABLES: &'static [&'static str] = &[$(<$row as Table>::NAME),*];

            /// Rows in all the tables.
            pub fn len(&self) -> usize {
                0 $(+ self.$field.len())*
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Moves `other`'s rows to the end of these.
            pub fn append(&mut self, other: &mut Children) {
                $(self.$field.append(&mut other.$field);)*
            }

            /// Each table's rows, in the order of [`Children::TABLES`].
            pub fn into_tables(self) -> Vec<Box<dyn TableRows>> {
                vec![$(Box::new(self.$field) as Box<dyn TableRows>),*]
            }
        }
    };
}

children! {
    /// At most one: a source has one wallet or none.
    wallets: WalletRow,
    bots: BotRow,
    bot_channels: BotChannelRow,
    bot_tags: BotTagRow,
    tag_filter_groups: TagFilterGroupRow,
    tag_filter_rules: TagFilterRuleRow,
    accounts: AccountRow,
    respond_windows: RespondWindowRow,
    do_not_respond_windows: DoNotRespondWindowRow,
    bot_respond_windows: BotRespondWindowRow,
    script_domains: ScriptDomainRow,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Val;

    #[test]
    fn a_row_holds_its_values_in_the_order_of_its_columns() {
        let row = BotTagRow {
            source_id: "s1".into(),
            bot_position: 2,
            position: 5,
            tag_id: None,
            name: Some("vip".into()),
            approve_deny: Some(true),
        };
        let values = row.into_row();
        assert_eq!(values.len(), BotTagRow::COLUMNS.len());
        let by_name: Vec<(&str, Val)> = BotTagRow::COLUMNS.iter().copied().zip(values).collect();
        assert_eq!(
            by_name,
            vec![
                ("source_id", Val::Text(Some("s1".into()))),
                ("bot_position", Val::Int(Some(2))),
                ("position", Val::Int(Some(5))),
                ("tag_id", Val::Text(None)),
                ("name", Val::Text(Some("vip".into()))),
                ("approve_deny", Val::Bool(Some(true))),
            ]
        );
    }

    #[test]
    fn every_child_table_is_keyed_by_its_source_first() {
        let tables = Children::default().into_tables();
        let names: Vec<&str> = tables.iter().map(|t| t.name()).collect();
        assert_eq!(names, Children::TABLES);
        assert_eq!(names.len(), 11);
        for t in &tables {
            assert_eq!(t.columns()[0], "source_id", "{}", t.name());
        }
    }
}
