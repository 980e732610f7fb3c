//! Words every layer's messages share: an error with all its causes on one line, and a
//! counted noun. Here, below the pipeline, so that the front ends need not reach into it.

/// Every cause of an error, joined, so one log line or one table cell tells the whole story.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// `n` and its noun, singular or plural: "1 page", "2 pages".
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
