//! The redacted record of a source: the JSON the API sent, with the credentials replaced by
//! SHA-256 fingerprints. It is what history stores, what diffs compare and what is hashed.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::closebot::untrusted::{clean_text, is_secret_name};

/// How a fingerprint starts in a redacted record, so nobody mistakes it for the credential.
pub const FINGERPRINT_PREFIX: &str = "sha256:";
/// Neither PostgreSQL's `text` nor its `jsonb` can hold a NUL character. In a stored record
/// a NUL is written as this private-use character followed by `0`, and the character itself
/// as two of it, so the record keeps every string exactly and `export` turns it back. Typed
/// columns hold U+FFFD (the replacement character) for a NUL instead: see [`clean_text`].
pub const NUL_ESCAPE: char = '\u{E000}';

/// SHA-256 of a credential, in lowercase hex.
pub fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A credential's stand-in: `sha256:<hex>` of the string, or of the compact JSON of a value
/// of another type (so a change of it still shows); null stays null.
fn fingerprinted(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(format!("{FINGERPRINT_PREFIX}{}", fingerprint(s))),
        other => Value::String(format!(
            "{FINGERPRINT_PREFIX}{}",
            fingerprint(&other.to_string())
        )),
    }
}

/// The record as it is stored: every credential (by [`SECRET_NAMES`](crate::closebot::untrusted::SECRET_NAMES), at any depth)
/// replaced by its fingerprint, and every NUL escaped (see [`NUL_ESCAPE`]).
pub fn redact(mut record: Value) -> Value {
    redact_in_place(&mut record);
    record
}

fn redact_in_place(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.keys().any(|k| needs_escape(k)) {
                let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                map.extend(entries.into_iter().map(|(k, v)| (escape_nul(&k), v)));
            }
            for (k, v) in map.iter_mut() {
                if is_secret_name(k) {
                    *v = fingerprinted(v);
                } else {
                    redact_in_place(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_in_place),
        Value::String(s) if needs_escape(s) => *s = escape_nul(s),
        _ => {}
    }
}

fn needs_escape(s: &str) -> bool {
    s.contains(['\0', NUL_ESCAPE])
}

fn escape_nul(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '\0' => out.extend([NUL_ESCAPE, '0']),
            NUL_ESCAPE => out.extend([NUL_ESCAPE, NUL_ESCAPE]),
            c => out.push(c),
        }
    }
    out
}

fn unescape_nul(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != NUL_ESCAPE {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some(NUL_ESCAPE) => out.push(NUL_ESCAPE),
            // Not written by this program: keep it as it is.
            Some(other) => out.extend([c, other]),
            None => out.push(c),
        }
    }
    out
}

/// A stored record as `export` gives it: as the API sent it (NULs back in place), with
/// every credential member left out.
pub fn for_export(mut record: Value) -> Value {
    export_in_place(&mut record);
    record
}

fn export_in_place(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !is_secret_name(k));
            if map.keys().any(|k| k.contains(NUL_ESCAPE)) {
                let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                map.extend(entries.into_iter().map(|(k, v)| (unescape_nul(&k), v)));
            }
            map.values_mut().for_each(export_in_place);
        }
        Value::Array(items) => items.iter_mut().for_each(export_in_place),
        Value::String(s) if s.contains(NUL_ESCAPE) => *s = unescape_nul(s),
        _ => {}
    }
}

/// SHA-256 of the record with every object's keys sorted, so the order in which the API
/// happens to write fields does not count as a change (the order of array elements does).
pub fn content_hash(record: &Value) -> String {
    let mut hasher = Sha256::new();
    feed(&mut hasher, record);
    hex::encode(hasher.finalize())
}

/// Feeds the canonical form: `{"k":v,...,}` with keys sorted, `[v,...,]`, and every key and
/// scalar as compact JSON, written straight into the hasher (an `io::Write`), with no
/// string built on the way.
fn feed(h: &mut Sha256, v: &Value) {
    const WRITE: &str = "writing into a hasher cannot fail";
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            h.update(b"{");
            for (k, v) in entries {
                serde_json::to_writer(&mut *h, k).expect(WRITE);
                h.update(b":");
                feed(h, v);
                h.update(b",");
            }
            h.update(b"}");
        }
        Value::Array(items) => {
            h.update(b"[");
            for item in items {
                feed(h, item);
                h.update(b",");
            }
            h.update(b"]");
        }
        scalar => serde_json::to_writer(&mut *h, scalar).expect(WRITE),
    }
}

/// Reads an API date-time. A time stamp without a zone is read as UTC, as the API means it.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "{:?} is not a date-time (expected e.g. 2024-05-01T10:00:00Z)",
        text.chars().take(40).collect::<String>()
    ))
}

/// The form time stamps take in SQLite: fixed width, UTC, so they sort and compare as text.
pub fn sqlite_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_fingerprint_is_the_sha256_of_the_secret() {
        // FIPS 180-2's test vector: stored fingerprints must be what anyone can recompute
        // from a known token, and nothing that gives the token back.
        assert_eq!(
            fingerprint("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn redaction_replaces_credentials_with_fingerprints_and_keeps_nulls() {
        let r = redact(json!({"key": "k1", "accessToken": null, "name": "n"}));
        assert_eq!(r["key"], json!(format!("sha256:{}", fingerprint("k1"))));
        assert_eq!(r["accessToken"], Value::Null);
        assert_eq!(r["name"], json!("n"));
        assert!(!r.to_string().contains("\"k1\""));
    }

    #[test]
    fn credentials_are_fingerprinted_by_name_at_any_depth_and_left_out_of_exports() {
        let r = redact(json!({
            "bots": [{"id": "b1", "auth": {"refreshToken": "rt-1", "ApiKey": 42}}],
            "extra": {"nested": [{"PASSWORD": "pw"}]},
            "keys": "not a credential name"
        }));
        let text = r.to_string();
        for secret in ["rt-1", "\"pw\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(
            r["bots"][0]["auth"]["refreshToken"],
            json!(format!("sha256:{}", fingerprint("rt-1")))
        );
        assert_eq!(
            r["bots"][0]["auth"]["ApiKey"],
            json!(format!("sha256:{}", fingerprint("42")))
        );
        assert_eq!(r["keys"], json!("not a credential name"));
        let exported = for_export(r);
        assert_eq!(exported["bots"][0]["auth"], json!({}));
        assert_eq!(exported["extra"]["nested"][0], json!({}));
        assert_eq!(exported["keys"], json!("not a credential name"));
    }

    #[test]
    fn a_nul_is_escaped_in_records_and_comes_back_in_exports() {
        let sent = json!({"name": "a\u{0}b", "k\u{0}": ["\u{E000}0", "\u{E000}"], "n": 1});
        let stored = redact(sent.clone());
        let text = stored.to_string();
        assert!(!text.contains("\\u0000"), "{text}");
        assert_eq!(stored["name"], json!("a\u{E000}0b"));
        assert_eq!(for_export(stored), sent);
        assert_eq!(clean_text("a\u{0}b".into()), "a\u{FFFD}b");
    }

    #[test]
    fn the_hash_ignores_field_order_but_not_array_order() {
        let a = json!({"a": 1, "b": [1, 2]});
        let b: Value = serde_json::from_str(r#"{"b": [1, 2], "a": 1}"#).unwrap();
        let c = json!({"a": 1, "b": [2, 1]});
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn the_hash_is_the_one_earlier_versions_stored() {
        // Stored hashes decide what a run rewrites: a change of the canonical form would
        // make the first run after an upgrade rewrite every source.
        let v: Value = serde_json::from_str(
            r#"{"name":"Zoë \"A\"","n":1.5,"b":[true,null,{"y":2,"x":"é"}],"e":{}}"#,
        )
        .unwrap();
        let canonical = r#"{"b":[true,null,{"x":"é","y":2,},],"e":{},"n":1.5,"name":"Zoë \"A\"",}"#;
        assert_eq!(
            content_hash(&v),
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
    }

    #[test]
    fn zone_less_time_stamps_are_read_as_utc() {
        let t = parse_time("2024-05-01T10:00:00").unwrap();
        assert_eq!(sqlite_time(&t), "2024-05-01T10:00:00.000000Z");
        let z = parse_time("2024-05-01T12:00:00+02:00").unwrap();
        assert_eq!(t, z);
        assert!(parse_time("yesterday").is_err());
    }
}
