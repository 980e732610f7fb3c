//! What the server answered, read and explained safely: bodies read up to a limit, error
//! bodies and URLs shown without secrets or control characters, advice per status, and
//! `Retry-After`.

use std::time::Duration;

use reqwest::StatusCode;

use super::untrusted::printable;

/// The most of an error body shown to the operator.
const BODY_SHOWN: usize = 600;

/// A URL as an error may show it: no user info, query string or fragment (they may hold
/// tokens), control characters escaped.
pub(super) fn shown_url(mut url: url::Url) -> String {
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut text = url.to_string();
    if text.chars().count() > 200 {
        text = text.chars().take(200).chain(['…']).collect();
    }
    printable(&text).into_owned()
}

/// A body as read: at most the limit; `complete` is false when there was more.
pub(super) struct Bounded {
    pub(super) bytes: Vec<u8>,
    pub(super) complete: bool,
}

/// Reads a body chunk by chunk and stops as soon as it holds more than `limit` bytes, so a
/// huge or endless body costs at most `limit` of memory (the connection is then dropped).
pub(super) async fn read_bounded(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Bounded, reqwest::Error> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let expected = response.content_length().unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0).min(limit));
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > limit {
            let room = limit - bytes.len();
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Bounded {
                bytes,
                complete: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bounded {
        bytes,
        complete: true,
    })
}

pub(super) fn advice_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::FORBIDDEN => {
            "The key may lack access to the agency's sources, or an edge proxy refused the \
             request: check the key's account in CloseBot, and lower api.concurrency if it \
             happens under load"
        }
        StatusCode::NOT_FOUND => {
            "The listing was not found at this address: check api.base_url \
             (it should be https://api.closebot.com)"
        }
        StatusCode::BAD_REQUEST => {
            "The API rejected the request's parameters: check api.page_size (1 to 100); \
             if it persists, the API may have changed and closebot-sync needs an update"
        }
        _ => "This is not an error a retry can fix: read the body above",
    }
}

/// Never shows reqwest's URL (harmless here, but an error text should not need auditing).
pub(super) fn describe_transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the body could not be read"
    } else {
        "the request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({cause})")
    }
}

/// `text` with the API key, should the server have sent it back (in a body, a `Location`,
/// a value of the page), replaced by `***`: as written, and as a URL, a form or a path
/// would carry it (percent-encoded with upper- or lower-case hex, a space as `+` or `%20`).
pub(super) fn without(text: String, key: &str) -> String {
    if key.is_empty() {
        return text;
    }
    let escaped = |hex: fn(u8) -> String, space: &str| -> String {
        key.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => space.to_string(),
                _ => hex(b),
            })
            .collect()
    };
    let forms = [
        key.to_string(),
        url::form_urlencoded::byte_serialize(key.as_bytes()).collect(),
        escaped(|b| format!("%{b:02X}"), "%20"),
        escaped(|b| format!("%{b:02x}"), "%20"),
        escaped(|b| format!("%{b:02X}"), "+"),
        escaped(|b| format!("%{b:02x}"), "+"),
    ];
    let mut text = text;
    for form in &forms {
        if text.contains(form.as_str()) {
            text = text.replace(form.as_str(), "***");
        }
    }
    text
}

/// The body of an error answer as the operator sees it: trimmed, cut at `BODY_SHOWN`
/// characters, control characters escaped, and the API key, should the server (or a proxy
/// that echoes requests) send it back, replaced by `***` before anything is cut.
pub(super) fn show_body(body: &[u8], key: &str) -> String {
    let text = without(String::from_utf8_lossy(body).into_owned(), key);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    let mut shown: String = text.chars().take(BODY_SHOWN).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    printable(&shown).into_owned()
}

/// `Retry-After` is either a number of seconds or an HTTP date.
pub(super) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_goes_before_the_body_is_cut_in_any_of_its_forms() {
        let key = "a+b/c=d".repeat(4);
        for form in [
            key.clone(),
            url::form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>(),
            key.replace('+', "%2b")
                .replace('/', "%2f")
                .replace('=', "%3d"),
        ] {
            // Astride the cut at BODY_SHOWN characters.
            let body = format!("{}{form} and more", "x".repeat(BODY_SHOWN - 5));
            let shown = show_body(body.as_bytes(), &key);
            assert!(
                !shown.contains("a+b") && !shown.contains("a%2") && !shown.contains("a%2b"),
                "{shown}"
            );
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date_and_nothing_else() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        let later = std::time::SystemTime::now() + Duration::from_secs(300);
        let wait = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        // HTTP dates count whole seconds.
        assert!(
            wait > Duration::from_secs(298) && wait <= Duration::from_secs(300),
            "{wait:?}"
        );
        let past = std::time::SystemTime::now() - Duration::from_secs(300);
        assert_eq!(
            parse_retry_after(&httpdate::fmt_http_date(past)),
            Some(Duration::ZERO)
        );
        for bad in ["soon", "-5", "1.5", ""] {
            assert_eq!(parse_retry_after(bad), None, "{bad}");
        }
    }
}
