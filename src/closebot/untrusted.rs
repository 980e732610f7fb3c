//! Text from the API is untrusted: before any of it reaches a terminal, a log line,
//! `/healthz` or a table cell, its control characters are escaped, so a server cannot move
//! the cursor, clear a screen or forge a log line.

use std::borrow::Cow;

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
