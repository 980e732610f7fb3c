//! `schedule.cron` as the program uses it: six fields, "sec min hour day-of-month month
//! day-of-week", both day fields must match, in UTC; refused at load unless it fires again.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{invalid, ConfigError};

/// The setting every error of this module names.
const KEY: &str = "schedule.cron";
/// The shape, repeated in each error so the operator can fix the expression without docs.
const SHAPE: &str = "write \"sec min hour day-of-month month day-of-week\" (UTC), e.g. \
                     \"0 */15 * * * *\" for every 15 minutes";

/// A cron expression that parsed and, when parsed, had a time in the future.
#[derive(Clone)]
pub struct Cron {
    text: String,
    cron: croner::Cron,
}

impl Cron {
    /// Parses `text` as the scheduler reads it; an expression with no future time is refused
    /// too, since `run` would then wait forever without a word.
    pub fn parse(text: &str) -> Result<Cron, ConfigError> {
        let fields = text.split_whitespace().count();
        if fields != 6 {
            return Err(invalid(
                KEY,
                format!("{text:?} has {fields} fields; {SHAPE}"),
            ));
        }
        let cron = croner::Cron::new(text)
            .with_seconds_required()
            .with_dom_and_dow()
            .parse()
            .map_err(|e| {
                invalid(
                    KEY,
                    format!("{text:?} is not a cron expression ({e}); {SHAPE}"),
                )
            })?;
        let parsed = Cron {
            text: text.to_string(),
            cron,
        };
        if parsed.next_after(Utc::now()).is_none() {
            return Err(invalid(
                KEY,
                format!(
                    "{text:?} names no time in the future (a date that never comes, such as \
                     30 February): `run` would never sync; name a day that exists, {SHAPE}"
                ),
            ));
        }
        Ok(parsed)
    }

    /// The expression as written, which the scheduler is given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time of the schedule after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The longest time between two ticks among the next hundred after `from`.
    pub fn longest_gap(&self, from: DateTime<Utc>) -> Duration {
        let mut longest = Duration::ZERO;
        let mut at = from;
        for _ in 0..100 {
            let Some(next) = self.next_after(at) else {
                break;
            };
            longest = longest.max((next - at).to_std().unwrap_or_default());
            at = next;
        }
        longest
    }
}

/// The expression only: croner's own form is its parsed fields, which no reader wants.
impl std::fmt::Debug for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cron").field(&self.text).finish()
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_toml;

    #[test]
    fn the_documented_examples_parse() {
        for ok in [
            "0 */15 * * * *",
            "0 0 3 * * *",
            "0 0 */6 * * Mon-Fri",
            "*/1 * * * * *",
        ] {
            assert!(Cron::parse(ok).is_ok(), "{ok}");
        }
        let weekdays = Cron::parse("0 0 */6 * * Mon-Fri").unwrap();
        // Saturday 2025-03-29 18:00 UTC: the next tick is on Monday.
        let sat = chrono::TimeZone::with_ymd_and_hms(&Utc, 2025, 3, 29, 18, 0, 0).unwrap();
        let next = weekdays.next_after(sat).unwrap();
        assert_eq!(next.to_rfc3339(), "2025-03-31T00:00:00+00:00");
    }

    #[test]
    fn a_bad_or_never_firing_expression_is_a_settings_error_at_load_naming_the_fix() {
        for (cron, says) in [
            ("*/15 * * * *", "has 5 fields"),
            ("0 61 * * * *", "is not a cron expression"),
            ("0 0 0 30 2 *", "never sync; name a day that exists"),
        ] {
            let e = load_toml(&format!("[schedule]\ncron = \"{cron}\"\n"), &[]).unwrap_err();
            assert_eq!(e.failure(), crate::failure::Failure::Settings);
            let e = e.to_string();
            assert!(e.contains(KEY) && e.contains(says), "{e}");
            assert!(e.contains("sec min hour") && e.contains("UTC"), "{e}");
        }
    }

    #[test]
    fn the_settings_carry_the_parsed_schedule() {
        let s = load_toml("[schedule]\ncron = \"0 0 3 * * *\"\n", &[]).unwrap();
        let midnight = chrono::TimeZone::with_ymd_and_hms(&Utc, 2025, 3, 29, 0, 0, 0).unwrap();
        let next = s.schedule.cron.next_after(midnight).unwrap();
        assert_eq!(next.to_rfc3339(), "2025-03-29T03:00:00+00:00");
        assert_eq!(s.schedule.cron.to_string(), "0 0 3 * * *");
        assert_eq!(format!("{:?}", s.schedule.cron), "Cron(\"0 0 3 * * *\")");
    }
}
