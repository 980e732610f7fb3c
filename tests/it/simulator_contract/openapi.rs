//! Records checked against the vendor's own OpenAPI schema (version B), with a small
//! validator for the subset of OpenAPI 3.0 that document uses.

use super::{get, options, start};
use closebot_sim::{SchemaVersion, Simulator};
use serde_json::{json, Value};
use std::path::Path;

pub struct Spec {
    schemas: Value,
}

/// Keys the validator understands; any other key in the document fails loudly rather than
/// being silently ignored.
const KNOWN_KEYS: &[&str] = &[
    "type",
    "format",
    "nullable",
    "$ref",
    "items",
    "properties",
    "additionalProperties",
    "description",
    "default",
];

impl Spec {
    pub fn load() -> Spec {
        // Kept in the repository (origin and licence in tests/fixtures/README.md) so a fresh
        // clone tests with nothing beside it.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/closebot-openapi-sources.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the vendor's OpenAPI schema is needed at {} ({e}); it is part of the \
                 repository: restore it with `git checkout -- tests/fixtures`",
                path.display()
            )
        });
        let doc: Value = serde_json::from_str(&text).expect("the OpenAPI file is JSON");
        Spec {
            schemas: doc["components"]["schemas"].clone(),
        }
    }

    pub fn schema(&self, name: &str) -> &Value {
        let s = &self.schemas[name];
        assert!(s.is_object(), "no schema {name} in the OpenAPI document");
        s
    }

    /// Every violation of `value` against the named component schema.
    pub fn validate(&self, value: &Value, name: &str) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(value, self.schema(name), name, &mut errors);
        errors
    }

    fn check(&self, v: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
        for key in schema.as_object().expect("a schema is an object").keys() {
            assert!(
                KNOWN_KEYS.contains(&key.as_str()),
                "validator does not know `{key}`"
            );
        }
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r
                .strip_prefix("#/components/schemas/")
                .expect("a local $ref");
            // The one exception the API notes name: a $ref cannot carry `nullable` in
            // OpenAPI 3.0, yet the live API sends `"wallet": null`.
            if v.is_null() && name == "SourceWalletDto" && path.ends_with(".wallet") {
                return;
            }
            return self.check(v, self.schema(name), path, errors);
        }
        if v.is_null() {
            if schema["nullable"] != json!(true) {
                errors.push(format!("{path}: null where the schema does not allow it"));
            }
            return;
        }
        let ok = match schema["type"].as_str().expect("a type") {
            "object" => match v.as_object() {
                None => false,
                Some(obj) => {
                    let closed = schema["additionalProperties"] == json!(false);
                    for (k, field) in obj {
                        match schema["properties"].get(k) {
                            Some(s) => self.check(field, s, &format!("{path}.{k}"), errors),
                            None if closed => errors.push(format!("{path}.{k}: unknown field")),
                            None => {}
                        }
                    }
                    true
                }
            },
            "array" => match v.as_array() {
                None => false,
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, &schema["items"], &format!("{path}[{i}]"), errors);
                    }
                    true
                }
            },
            "string" => match (v.as_str(), schema["format"].as_str()) {
                (Some(s), Some("date-time")) => is_date_time(s),
                (Some(_), _) => true,
                (None, _) => false,
            },
            "integer" => match (v.as_i64(), schema["format"].as_str()) {
                (Some(n), Some("int32")) => i32::try_from(n).is_ok(),
                (n, _) => n.is_some(),
            },
            "boolean" => v.is_boolean(),
            other => panic!("validator does not know type {other}"),
        };
        if !ok {
            errors.push(format!("{path}: {v} does not match {schema}"));
        }
    }
}

/// RFC 3339, or the zone-less form the live API also writes (read as UTC, per the notes).
pub fn is_date_time(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
}

/// A version C record minus what version B does not have: `tagFilterConfig` and the
/// deliberate unknown fields.
pub fn strip_to_b(record: &Value) -> Value {
    let mut r = record.clone();
    let obj = r.as_object_mut().unwrap();
    obj.shift_remove("aiModel");
    obj.shift_remove("newFeatureFlags");
    if let Some(bots) = obj.get_mut("bots").and_then(Value::as_array_mut) {
        for bot in bots {
            let b = bot.as_object_mut().unwrap();
            b.shift_remove("tagFilterConfig");
            b.shift_remove("newFeatureFlags");
        }
    }
    r
}

fn assert_valid(spec: &Spec, value: &Value, name: &str) {
    let errors = spec.validate(value, name);
    assert!(
        errors.is_empty(),
        "{} violations, first: {:#?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    let spec = Spec::load();
    let record = Simulator::new(options(20, Some(SchemaVersion::B))).listing()[0].clone();
    assert!(spec.validate(&record, "SourceDto").is_empty());
    let broken = |f: &dyn Fn(&mut Value)| {
        let mut r = record.clone();
        f(&mut r);
        spec.validate(&r, "SourceDto")
    };
    assert!(!broken(&|r| r["connected"] = json!("yes")).is_empty());
    assert!(!broken(&|r| r["connected"] = Value::Null).is_empty());
    assert!(!broken(&|r| r["aiModel"] = json!("gpt-4o")).is_empty());
    assert!(!broken(&|r| r["bots"] = json!([{"id": "x", "tagFilterConfig": null}])).is_empty());
    assert!(!broken(&|r| r["doNotRespondWindows"] = json!([{"start": "soon"}])).is_empty());
    assert!(!broken(&|r| r["wallet"] = json!({"topUpAmount": 5_000_000_000i64})).is_empty());
    assert!(
        broken(&|r| r["wallet"] = Value::Null).is_empty(),
        "the null-wallet exception"
    );
    assert!(broken(&|r| r["scriptLastSeenAt"] = json!("2024-05-01T10:00:00")).is_empty());
}

#[test]
fn every_listed_record_of_versions_a_and_b_validates_and_c_does_once_stripped() {
    let spec = Spec::load();
    for schema in [Some(SchemaVersion::A), Some(SchemaVersion::B), None] {
        for record in Simulator::new(options(300, schema)).listing() {
            let c = record["bots"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|b| b.get("tagFilterConfig").is_some())
                || record.get("aiModel").is_some();
            assert!(
                schema.is_none() || !c,
                "version {schema:?} served a version C record"
            );
            if c {
                assert!(
                    !spec.validate(&record, "SourceDto").is_empty(),
                    "C must differ from B"
                );
            }
            assert_valid(&spec, &strip_to_b(&record), "SourceDto");
        }
    }
}

#[test]
fn version_a_has_twenty_fields_and_version_b_twenty_eight() {
    let a = Simulator::new(options(50, Some(SchemaVersion::A))).listing();
    let b = Simulator::new(options(50, Some(SchemaVersion::B))).listing();
    assert!(a.iter().all(|r| r.as_object().unwrap().len() == 20));
    assert!(b.iter().all(|r| r.as_object().unwrap().len() == 28));
    let spec = Spec::load();
    let documented: Vec<&String> = spec.schema("SourceDto")["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    let mut served: Vec<&String> = b[0].as_object().unwrap().keys().collect();
    let mut expected = documented.clone();
    served.sort();
    expected.sort();
    assert_eq!(served, expected);
}

#[tokio::test]
async fn every_page_served_in_versions_a_and_b_validates_as_a_whole() {
    let spec = Spec::load();
    for schema in [SchemaVersion::A, SchemaVersion::B] {
        let sim = Simulator::new(options(230, Some(schema)));
        let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        for page in 0..3 {
            let reply = get(&server, &format!("pageSize=100&page={page}")).await;
            assert_eq!(reply.status, 200);
            assert_valid(&spec, &reply.json(), "SourceDtoPaginated");
        }
    }
    // The default mix, stripped of version C's additions, validates page by page too.
    let (_sim, server) = start(120).await;
    let mut page = get(&server, "pageSize=100&page=1").await.json();
    for r in page["results"].as_array_mut().unwrap() {
        *r = strip_to_b(r);
    }
    assert_valid(&spec, &page, "SourceDtoPaginated");
}
