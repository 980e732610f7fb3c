//! Text from the API is untrusted: before any of it reaches a terminal, a log line,
//! `/healthz` or a table cell, its control characters are escaped, so a server cannot move
//! the cursor, clear a screen or forge a log line; and text bound for a column loses the NUL
//! that no PostgreSQL text can hold.

use std::borrow::Cow;

/// Object members whose name (compared case-insensitively, at any depth of a record, in
/// known and unknown fields alike) marks a credential. Their values never reach a table in
/// clear, an error message or a log line: the stored record holds a fingerprint instead
/// (see `model::record::redact`), and `export` leaves them out.
pub const SECRET_NAMES: [&str; 11] = [
    "key",
    "accessToken",
    "refreshToken",
    "idToken",
    "token",
    "apiKey",
    "secret",
    "clientSecret",
    "password",
    "privateKey",
    "authorization",
];

/// Whether an object member of this name holds a credential.
pub fn is_secret_name(name: &str) -> bool {
    SECRET_NAMES.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// `text` with every control character (C0, DEL, C1, line breaks included) written as a
/// Rust-style escape (`\u{1b}`, `\n`); text without any is returned as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text for a typed column or a key: a NUL (which PostgreSQL cannot store, and at which
/// SQLite's text functions stop) becomes U+FFFD, on both backends alike.
pub fn clean_text(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_other_text_is_kept() {
        assert_eq!(
            printable("bad\u{1b}[2J\u{7}\nnext\u{9b}31m é ✓"),
            "bad\\u{1b}[2J\\u{7}\\nnext\\u{9b}31m é ✓"
        );
        assert!(matches!(printable("plain é ✓"), Cow::Borrowed("plain é ✓")));
    }
}
