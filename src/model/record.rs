//! The redacted record of a source: the JSON the API sent, with the credentials replaced by
//! SHA-256 fingerprints. It is what history stores, what diffs compare and what is hashed.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The fields of a source that hold CRM credentials.
pub const SECRET_FIELDS: [&str; 2] = ["key", "accessToken"];
/// How a fingerprint starts in a redacted record, so nobody mistakes it for the credential.
pub const FINGERPRINT_PREFIX: &str = "sha256:";

/// SHA-256 of a credential, in lowercase hex.
pub fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Replaces each credential string by `sha256:<hex>`; a null or missing credential stays so.
/// A credential of another type (never seen; the wire check refuses it) becomes null.
pub fn redact(mut record: Value) -> Value {
    if let Value::Object(map) = &mut record {
        for field in SECRET_FIELDS {
            if let Some(v) = map.get_mut(field) {
                *v = match v {
                    Value::String(s) => {
                        Value::String(format!("{FINGERPRINT_PREFIX}{}", fingerprint(s)))
                    }
                    _ => Value::Null,
                };
            }
        }
    }
    record
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
    fn redaction_replaces_credentials_with_fingerprints_and_keeps_nulls() {
        let r = redact(json!({"key": "k1", "accessToken": null, "name": "n"}));
        assert_eq!(r["key"], json!(format!("sha256:{}", fingerprint("k1"))));
        assert_eq!(r["accessToken"], Value::Null);
        assert_eq!(r["name"], json!("n"));
        assert!(!r.to_string().contains("\"k1\""));
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
