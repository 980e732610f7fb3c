//! Database URLs as they may be shown: every credential removed, in whatever form it came
//! (`user:password@`, `?password=`, a password that breaks URL parsing).

/// Query parameters whose value is a secret (`password`, `sslpassword`, ...).
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
}

/// The URL with its password and secret query parameters replaced by `***`. A URL that does
/// not parse faithfully (a password holding `#`, `/` or `?` turns it into something else)
/// is shown as its scheme and host only, or as `<unparsable URL>`.
pub fn redact_url(url: &str) -> String {
    // A SQLite URL names a file and holds no credential.
    if url.starts_with("sqlite:") {
        return url.to_string();
    }
    match url::Url::parse(url) {
        // PostgreSQL URLs have no fragment: one means a `#` in the password split the URL.
        Ok(mut u) if u.fragment().is_none() && u.has_host() => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query_pairs().any(|(k, _)| is_secret_param(&k)) {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if is_secret_param(&k) {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        _ => scheme_and_host(url),
    }
}

/// What can be shown of a URL that does not parse: the scheme, and the host after the last
/// `@` (a password may hold `@`, a host cannot).
fn scheme_and_host(url: &str) -> String {
    let unparsable = "<unparsable URL>".to_string();
    let Some((scheme, rest)) = url.split_once("://") else {
        return unparsable;
    };
    if !scheme
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        return unparsable;
    }
    let Some((_, after)) = rest.rsplit_once('@') else {
        return unparsable;
    };
    let host: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        .collect();
    if host.is_empty() {
        return unparsable;
    }
    format!("{scheme}://***@{host}/… (the URL does not parse; the rest is not shown)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_credential_is_removed_and_the_rest_is_kept() {
        for (url, shown) in [
            (
                "postgres://u:s3cret@db.internal:5433/closebot",
                "postgres://u:***@db.internal:5433/closebot",
            ),
            (
                "postgres://u@h/db?password=s3cret&sslmode=require",
                "postgres://u@h/db?password=***&sslmode=require",
            ),
            (
                "postgresql://u@h/db?sslpassword=s3cret",
                "postgresql://u@h/db?sslpassword=***",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "sqlite:///var/lib/x/db.sqlite",
                "sqlite:///var/lib/x/db.sqlite",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_password_that_breaks_parsing_never_shows() {
        // `#` starts a fragment: "u:p" then reads as host "u" and a port; with digits
        // around it, the URL even parses, as something else.
        for (url, secret) in [
            ("postgres://u:p#ss@db.internal/closebot", "p#ss"),
            ("postgres://u:12#34@db.internal/closebot", "12#34"),
            ("postgres://u:a/b?c@db.internal/closebot", "a/b?c"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} → {shown}");
            assert!(shown.starts_with("postgres://***@db.internal"), "{shown}");
        }
        assert_eq!(redact_url("postgres://u:p#ss"), "<unparsable URL>");
        assert_eq!(redact_url("not a url at all"), "<unparsable URL>");
    }
}
