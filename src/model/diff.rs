//! Field-level comparison of two redacted records, for `source_changes`. Arrays whose
//! elements carry distinct ids (bots, tags) are matched by id, so a reorder is no change.
//! The work is linear in the records' size (ids are matched through hash maps, id-less
//! elements through their content hashes): a source with 80,000 bots is one more record.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::record::content_hash;

/// One changed field. `None` means the field was absent on that side (not JSON null).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// Every field that differs between `old` and `new`, as paths a person reads
/// (`wallet.autoRefill`, `bots[id=b1].tags[id=t9].approveDeny`).
pub fn diff(old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    compare("", Some(old), Some(new), &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn compare(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => compare_objects(path, a, b, out),
        (Some(Value::Array(a)), Some(Value::Array(b))) if a != b => match (keyed(a), keyed(b)) {
            (Some(ka), Some(kb)) => {
                compare_by_id(path, &ka, &kb, out);
                if !same_multiset(&ka.without_id, &kb.without_id) {
                    // Elements without an id cannot be matched: show the whole array.
                    push(path, old, new, out);
                }
            }
            _ => push(path, old, new, out),
        },
        (a, b) if a != b => push(path, a, b, out),
        _ => {}
    }
}

fn push(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<FieldChange>) {
    out.push(FieldChange {
        path: path.to_string(),
        old: old.cloned(),
        new: new.cloned(),
    });
}

fn compare_objects(
    path: &str,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    out: &mut Vec<FieldChange>,
) {
    for (k, va) in a {
        compare(&join(path, k), Some(va), b.get(k), out);
    }
    for (k, vb) in b {
        if !a.contains_key(k) {
            compare(&join(path, k), None, Some(vb), out);
        }
    }
}

/// An array of objects that carry an `id` field, split into those with a usable id (in
/// order, and by id) and those whose id is null.
struct Keyed<'a> {
    with_id: Vec<(&'a str, &'a Value)>,
    by_id: HashMap<&'a str, &'a Value>,
    without_id: Vec<&'a Value>,
}

/// `Some` when every element is an object with an `id` field (string or null) and the
/// string ids are distinct; such arrays are compared by id, not by position.
fn keyed(items: &[Value]) -> Option<Keyed<'_>> {
    let mut k = Keyed {
        with_id: Vec::with_capacity(items.len()),
        by_id: HashMap::with_capacity(items.len()),
        without_id: Vec::new(),
    };
    for item in items {
        match item.as_object()?.get("id")? {
            Value::String(id) => {
                if k.by_id.insert(id.as_str(), item).is_some() {
                    return None;
                }
                k.with_id.push((id.as_str(), item));
            }
            Value::Null => k.without_id.push(item),
            _ => return None,
        }
    }
    Some(k)
}

/// Equal as multisets of JSON values (object key order never matters): the sorted
/// content hashes of both sides agree.
fn same_multiset(a: &[&Value], b: &[&Value]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let hashes = |side: &[&Value]| {
        let mut h: Vec<String> = side.iter().map(|v| content_hash(v)).collect();
        h.sort_unstable();
        h
    };
    hashes(a) == hashes(b)
}

fn compare_by_id(path: &str, a: &Keyed<'_>, b: &Keyed<'_>, out: &mut Vec<FieldChange>) {
    for (id, item) in &a.with_id {
        let there = b.by_id.get(id).copied();
        compare(&format!("{path}[id={id}]"), Some(item), there, out);
    }
    let known: HashSet<&str> = a.with_id.iter().map(|(id, _)| *id).collect();
    for (id, item) in &b.with_id {
        if !known.contains(id) {
            compare(&format!("{path}[id={id}]"), None, Some(item), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_fields_are_named_by_path_and_arrays_with_ids_by_id() {
        let old = json!({"name": "a", "wallet": {"autoRefill": true},
            "bots": [{"id": "b1", "tags": [{"id": "t1", "approveDeny": true}]}]});
        let new = json!({"name": "b", "wallet": {"autoRefill": false},
            "bots": [{"id": "b1", "tags": [{"id": "t1", "approveDeny": false}, {"id": "t2"}]}]});
        let paths: Vec<String> = diff(&old, &new).into_iter().map(|c| c.path).collect();
        assert_eq!(
            paths,
            vec![
                "name",
                "wallet.autoRefill",
                "bots[id=b1].tags[id=t1].approveDeny",
                "bots[id=b1].tags[id=t2]"
            ]
        );
    }

    #[test]
    fn a_reorder_of_elements_with_ids_is_no_change() {
        let old = json!({"bots": [{"id": "b1", "tags": [{"id": "x"}, {"id": "y"}]}, {"id": "b2"}]});
        let new = json!({"bots": [{"id": "b2"}, {"id": "b1", "tags": [{"id": "y"}, {"id": "x"}]}]});
        assert!(diff(&old, &new).is_empty());
    }

    #[test]
    fn elements_without_an_id_are_matched_as_a_multiset() {
        let old =
            json!({"tags": [{"id": null, "name": "a"}, {"id": "t1"}, {"id": null, "name": "b"}]});
        let moved =
            json!({"tags": [{"id": null, "name": "b"}, {"id": "t1"}, {"id": null, "name": "a"}]});
        assert!(diff(&old, &moved).is_empty());
        let renamed =
            json!({"tags": [{"id": null, "name": "c"}, {"id": "t1"}, {"id": null, "name": "a"}]});
        let changes = diff(&old, &renamed);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "tags");
    }

    #[test]
    fn one_renamed_bot_among_many_is_one_change_named_by_its_id() {
        let bots = |renamed: &str| {
            let mut v: Vec<Value> = (0..20_000)
                .map(|i| json!({"id": format!("b{i}"), "botName": format!("bot {i}")}))
                .collect();
            v[12_345]["botName"] = json!(renamed);
            v.push(json!({"id": null, "botName": "no id"}));
            json!({ "bots": v })
        };
        let changes = diff(&bots("bot 12345"), &bots("renamed"));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "bots[id=b12345].botName");
        assert_eq!(changes[0].new, Some(json!("renamed")));
    }

    #[test]
    fn arrays_without_ids_and_missing_fields_are_whole_values() {
        let old = json!({"channels": ["SMS"], "gone": 1});
        let new = json!({"channels": ["SMS", "Email"], "added": null});
        let changes = diff(&old, &new);
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[0].new, Some(json!(["SMS", "Email"])));
        assert_eq!(
            (changes[1].path.as_str(), changes[1].new.clone()),
            ("gone", None)
        );
        assert_eq!(
            (changes[2].old.clone(), changes[2].new.clone()),
            (None, Some(Value::Null))
        );
    }
}
