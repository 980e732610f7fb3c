//! Respond windows and cost overrides read into numbers: the API sends day names, .NET
//! TimeSpans (`[d.]hh:mm:ss[.fffffff]`) and decimal strings, which SQL cannot read safely
//! (PostgreSQL's `::interval` misreads `0.12:00:00` without an error). Pure functions.

/// A respond window's day, start and duration as numbers; `None` where the text does
/// not parse (the text column keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParsedWindow {
    /// ISO day number, Monday = 1 ... Sunday = 7.
    pub day: Option<i64>,
    /// Seconds after midnight UTC (0 to 86,399).
    pub start: Option<i64>,
    /// Whole seconds (a fraction of a second is dropped).
    pub duration: Option<i64>,
}

impl ParsedWindow {
    /// Parses the three texts of a window. A missing text is no failure; a present one
    /// that does not parse counts in [`ParsedWindow::failures`].
    pub fn parse(day: Option<&str>, start: Option<&str>, duration: Option<&str>) -> ParsedWindow {
        ParsedWindow {
            day: day.and_then(iso_day),
            start: start.and_then(time_of_day),
            duration: duration.and_then(timespan_seconds),
        }
    }

    /// How many of the given texts did not parse.
    pub fn failures(
        &self,
        day: Option<&str>,
        start: Option<&str>,
        duration: Option<&str>,
    ) -> usize {
        [
            (day.is_some(), self.day.is_none()),
            (start.is_some(), self.start.is_none()),
            (duration.is_some(), self.duration.is_none()),
        ]
        .iter()
        .filter(|(given, missing)| *given && *missing)
        .count()
    }
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// An English day name (any case, as .NET's `DayOfWeek` writes it) as its ISO number.
pub fn iso_day(name: &str) -> Option<i64> {
    let name = name.trim();
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .map(|i| i as i64 + 1)
}

/// A start time (a TimeSpan under one day) as seconds after midnight.
pub fn time_of_day(text: &str) -> Option<i64> {
    timespan_seconds(text).filter(|s| *s < 86_400)
}

/// A .NET TimeSpan in its invariant form `[d.]hh:mm:ss[.fffffff]` as whole seconds.
/// Negative spans, hours over 23, minutes or seconds over 59 and anything else are `None`.
pub fn timespan_seconds(text: &str) -> Option<i64> {
    let text = text.trim();
    let (clock, fraction) = match text.split_once(':') {
        // The fraction follows the seconds: the last '.' after the first ':'.
        Some(_) => match text.rfind('.') {
            Some(dot) if dot > text.find(':')? => (&text[..dot], Some(&text[dot + 1..])),
            _ => (text, None),
        },
        None => return None,
    };
    if let Some(f) = fraction {
        if f.is_empty() || f.len() > 7 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let (days, hms) = match clock.split_once('.') {
        Some((d, rest)) => (number(d, 1, 8)?, rest),
        None => (0, clock),
    };
    let mut parts = hms.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (h, m, s) = (number(h, 1, 2)?, number(m, 2, 2)?, number(s, 2, 2)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

/// ASCII digits only, `min` to `max` of them.
fn number(text: &str, min: usize, max: usize) -> Option<i64> {
    if text.len() < min || text.len() > max || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A decimal string (`0.0125`, `-1`, `2.5e-3`) as the text both databases read into a
/// number; `None` for anything else, including `NaN`, infinities, and exponents or
/// lengths no column type holds exactly.
pub fn decimal(text: &str) -> Option<String> {
    let t = text.trim();
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let digits = mantissa.strip_prefix(['+', '-']).unwrap_or(mantissa);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0
        || int.len() + frac.len() > 38
        || !all_digits(int)
        || !all_digits(frac)
    {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || e.len() > 2 || !all_digits(e) {
            return None;
        }
    }
    Some(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timespans_in_the_forms_the_api_sends_are_read_as_seconds() {
        assert_eq!(timespan_seconds("08:00:00"), Some(8 * 3600));
        assert_eq!(timespan_seconds("00:45:00"), Some(45 * 60));
        assert_eq!(timespan_seconds("1.00:00:00"), Some(86_400));
        // PostgreSQL's `'0.12:00:00'::interval` gives 02:52:48: here it is twelve hours.
        assert_eq!(timespan_seconds("0.12:00:00"), Some(12 * 3600));
        assert_eq!(
            timespan_seconds("2.03:04:05.1234567"),
            Some(2 * 86_400 + 3 * 3600 + 4 * 60 + 5)
        );
        assert_eq!(timespan_seconds("9:30:00"), Some(9 * 3600 + 1800));
    }

    #[test]
    fn text_that_is_not_a_timespan_is_refused() {
        for bad in [
            "",
            "8",
            "08:00",
            "24:00:00",
            "08:60:00",
            "08:00:60",
            "-01:00:00",
            "1.2.03:00:00",
            "08:00:00.",
            "08:00:00.12345678",
            "eight",
            "08:00:00:00",
            "1 08:00:00",
            "08:0a:00",
        ] {
            assert_eq!(timespan_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_start_time_must_fall_within_one_day() {
        assert_eq!(time_of_day("22:00:00"), Some(79_200));
        assert_eq!(time_of_day("23:59:59.9"), Some(86_399));
        assert_eq!(time_of_day("1.00:00:00"), None);
    }

    #[test]
    fn day_names_become_iso_numbers_from_monday() {
        assert_eq!(iso_day("Monday"), Some(1));
        assert_eq!(iso_day("sunday"), Some(7));
        assert_eq!(iso_day(" Friday "), Some(5));
        assert_eq!(iso_day("Fri"), None);
        assert_eq!(iso_day("0"), None);
    }

    #[test]
    fn a_window_counts_the_texts_it_could_not_read_but_not_the_missing_ones() {
        let (d, s, l) = (Some("Funday"), None, Some("1.00:00:00"));
        let w = ParsedWindow::parse(d, s, l);
        assert_eq!(
            w,
            ParsedWindow {
                day: None,
                start: None,
                duration: Some(86_400)
            }
        );
        assert_eq!(w.failures(d, s, l), 1);
    }

    #[test]
    fn decimal_strings_are_kept_and_other_text_is_refused() {
        for good in ["0.0125", "1", "-2.5", ".5", "5.", "1e-3", "+3E2"] {
            assert_eq!(decimal(good).as_deref(), Some(good), "{good}");
        }
        for bad in [
            "", "abc", "NaN", "Infinity", "1,5", "1e", "1e999", "0x10", "1.2.3", ".",
        ] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn every_timespan_written_in_the_invariant_form_reads_back_as_its_seconds(
            days in 0i64..100_000, h in 0i64..24, m in 0i64..60, s in 0i64..60,
            fraction in proptest::option::of("[0-9]{1,7}"),
        ) {
            let mut text = if days > 0 { format!("{days}.{h:02}:{m:02}:{s:02}") } else { format!("{h:02}:{m:02}:{s:02}") };
            if let Some(f) = &fraction {
                text.push('.');
                text.push_str(f);
            }
            prop_assert_eq!(timespan_seconds(&text), Some(days * 86_400 + h * 3_600 + m * 60 + s));
        }

        #[test]
        fn any_text_parses_to_nothing_or_to_a_span_that_is_not_negative(
            // Near the shapes that parse (signs, big day counts, out-of-range fields, odd
            // fractions) as well as anything at all, so that the assertions run.
            text in prop_oneof![
                "-?[0-9]{0,12}\\.?[0-9]{1,3}:[0-9]{1,3}(:[0-9]{1,3})?(\\.[0-9]{0,9})?",
                ".{0,24}",
            ]
        ) {
            if let Some(secs) = timespan_seconds(&text) {
                prop_assert!(secs >= 0);
            }
            if let Some(secs) = time_of_day(&text) {
                prop_assert!((0..86_400).contains(&secs));
            }
        }
    }
}
