//! The generated data: nulls in every nullable place, null and empty arrays, zone-less
//! time stamps, unicode, all three schema versions, realistic sizes, determinism.

use super::openapi::{is_date_time, Spec};
use super::{ids_of, options};
use closebot_sim::{SchemaVersion, SimOptions, Simulator};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

#[derive(Default, Debug)]
struct Seen {
    null: usize,
    empty: usize,
    full: usize,
}

/// Records, for every path such as `bots[].tags[].id`, how often it was null, an empty
/// array, or anything else.
fn observe(v: &Value, path: &str, seen: &mut BTreeMap<String, Seen>) {
    let s = seen.entry(path.to_owned()).or_default();
    match v {
        Value::Null => s.null += 1,
        Value::Array(items) if items.is_empty() => s.empty += 1,
        _ => s.full += 1,
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                observe(child, &p, seen);
            }
        }
        Value::Array(items) => {
            for item in items {
                observe(item, &format!("{path}[]"), seen);
            }
        }
        _ => {}
    }
}

/// The nullable paths the vendor's schema declares, found by walking it from SourceDto.
fn nullable_paths(spec: &Spec, schema: &Value, path: &str, out: &mut Vec<(String, bool)>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return nullable_paths(spec, spec.schema(name), path, out);
    }
    if schema["nullable"] == Value::Bool(true) {
        out.push((path.to_owned(), schema["type"] == "array"));
    }
    if let Some(props) = schema["properties"].as_object() {
        for (k, s) in props {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            nullable_paths(spec, s, &p, out);
        }
    }
    if schema["type"] == "array" {
        nullable_paths(spec, &schema["items"], &format!("{path}[]"), out);
    }
}

fn mixed_listing() -> Vec<Value> {
    Simulator::new(options(300, None)).listing()
}

#[test]
fn every_nullable_place_is_null_somewhere_and_set_somewhere() {
    let listing = mixed_listing();
    let mut seen = BTreeMap::new();
    for r in &listing {
        observe(r, "", &mut seen);
    }
    let spec = Spec::load();
    let mut expected = Vec::new();
    nullable_paths(&spec, spec.schema("SourceDto"), "", &mut expected);
    // Not nullable in the schema but null on the live API, and version C's undocumented parts.
    expected.push(("wallet".into(), false));
    let tfc = "bots[].tagFilterConfig";
    for (p, array) in [("", false), (".operator", false), (".groups", true)] {
        expected.push((format!("{tfc}{p}"), array));
    }
    for (p, array) in [("operator", false), ("rules", true)] {
        expected.push((format!("{tfc}.groups[].{p}"), array));
    }
    for p in ["tagName", "tagId", "condition"] {
        expected.push((format!("{tfc}.groups[].rules[].{p}"), false));
    }
    assert!(
        expected.len() > 40,
        "the schema walk found only {} paths",
        expected.len()
    );
    let mut missing = Vec::new();
    for (path, array) in &expected {
        // The identity of a source is never null: a mirror could not key such a record.
        if path == "sourceId" {
            continue;
        }
        let s = seen.get(path);
        let ok = s.is_some_and(|s| s.null > 0 && s.full > 0 && (!array || s.empty > 0));
        if !ok {
            missing.push(format!("{path}: {s:?}"));
        }
    }
    assert!(missing.is_empty(), "not covered: {missing:#?}");
    assert_eq!(seen["sourceId"].null, 0);
}

#[test]
fn booleans_and_integers_are_never_null() {
    let mut seen = BTreeMap::new();
    for r in mixed_listing() {
        observe(&r, "", &mut seen);
    }
    for path in [
        "connected",
        "bots[].enabled",
        "bots[].tags[].approveDeny",
        "wallet.topUpAmount",
        "scriptInstalled",
    ] {
        assert_eq!(seen[path].null, 0, "{path}");
        assert!(seen[path].full > 0, "{path}");
    }
}

#[test]
fn time_stamps_come_with_and_without_a_zone_and_fractions_of_any_length_and_all_parse() {
    let mut zoned = 0;
    let mut zoneless = 0;
    // How many fractional digits, as .NET writes them: none, or 1 to 7.
    let mut digits = std::collections::BTreeSet::new();
    let mut zoneless_fractions = 0;
    for r in mixed_listing() {
        let windows = r["doNotRespondWindows"].as_array().into_iter().flatten();
        let stamps = windows
            .flat_map(|w| [&w["start"], &w["end"]])
            .chain([&r["scriptLastSeenAt"]]);
        for s in stamps.filter_map(Value::as_str) {
            assert!(is_date_time(s), "{s}");
            let fraction = s
                .split_once('.')
                .map_or("", |(_, f)| f.trim_end_matches('Z'));
            digits.insert(fraction.len());
            if !fraction.is_empty() && !s.ends_with('Z') {
                zoneless_fractions += 1;
            }
            if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
                zoned += 1;
            } else {
                zoneless += 1;
            }
        }
    }
    assert!(
        zoned > 100 && zoneless > 5,
        "zoned {zoned}, zone-less {zoneless}"
    );
    assert!(
        digits.len() >= 5 && digits.contains(&7) && digits.iter().all(|d| *d <= 7),
        "fractional digits seen: {digits:?}"
    );
    assert!(
        zoneless_fractions > 0,
        "no zone-less time stamp with a fraction"
    );
}

#[test]
fn the_mix_holds_all_three_versions_and_unicode_names() {
    let listing = mixed_listing();
    let version = |r: &Value| {
        if r.get("hubSpotOwnerId").is_none() {
            SchemaVersion::A
        } else if r.get("aiModel").is_some() {
            SchemaVersion::C
        } else {
            SchemaVersion::B
        }
    };
    for v in [SchemaVersion::A, SchemaVersion::B, SchemaVersion::C] {
        assert!(
            listing.iter().filter(|r| version(r) == v).count() >= 30,
            "{v:?}"
        );
    }
    let names: Vec<&str> = listing.iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(names.iter().any(|n| n.is_ascii()));
    assert!(
        names
            .iter()
            .any(|n| n.chars().any(|c| ('\u{00C0}'..'\u{0250}').contains(&c))),
        "accents"
    );
    assert!(
        names
            .iter()
            .any(|n| n.chars().any(|c| ('\u{3040}'..'\u{9FFF}').contains(&c))),
        "CJK"
    );
    assert!(
        names.iter().any(|n| n.chars().any(|c| c >= '\u{1F300}')),
        "emoji"
    );
    let categories: HashSet<&str> = listing
        .iter()
        .filter_map(|r| r["category"].as_str())
        .collect();
    assert_eq!(categories, HashSet::from(["GHL", "HubSpot", "WebHook"]));
}

fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

fn child_rows(r: &Value) -> usize {
    let mut n = 0;
    for bot in r["bots"].as_array().into_iter().flatten() {
        n += 1 + len(&bot["channels"]) + len(&bot["tags"]);
        for g in bot["tagFilterConfig"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
        {
            n += 1 + len(&g["rules"]);
        }
    }
    let lists = [
        "accountsWithAccess",
        "respondWindows",
        "doNotRespondWindows",
        "botRespondWindows",
        "scriptDomainAllowList",
    ];
    n + lists.iter().map(|k| len(&r[*k])).sum::<usize>()
}

#[test]
fn a_source_averages_twenty_to_thirty_child_rows() {
    let listing = mixed_listing();
    let avg = listing.iter().map(child_rows).sum::<usize>() as f64 / listing.len() as f64;
    assert!((20.0..=30.0).contains(&avg), "average child rows {avg}");
}

#[test]
fn bots_are_shared_across_sources_and_secrets_are_distinct() {
    let listing = mixed_listing();
    let mut bot_uses = BTreeMap::new();
    for r in &listing {
        for bot in r["bots"].as_array().into_iter().flatten() {
            if let Some(id) = bot["id"].as_str() {
                *bot_uses.entry(id.to_owned()).or_insert(0) += 1;
            }
        }
    }
    assert!(
        bot_uses.values().any(|&n| n >= 5),
        "no bot is shared: {bot_uses:?}"
    );
    for field in ["key", "accessToken"] {
        let values: Vec<&str> = listing.iter().filter_map(|r| r[field].as_str()).collect();
        let distinct: HashSet<&&str> = values.iter().collect();
        assert_eq!(distinct.len(), values.len(), "{field} repeats");
        assert!(
            values.iter().all(|v| v.len() >= 40),
            "{field} does not look secret"
        );
    }
}

#[test]
fn the_same_options_give_the_same_listing_and_another_seed_does_not() {
    let a = Simulator::new(options(200, None)).listing();
    assert_eq!(a, Simulator::new(options(200, None)).listing());
    let other = Simulator::new(SimOptions {
        seed: 8,
        ..options(200, None)
    })
    .listing();
    assert_ne!(ids_of(&a), ids_of(&other));
}

#[test]
fn the_listing_is_in_ascending_unique_source_id_order() {
    let sim = Simulator::new(options(500, None));
    let ids = ids_of(&sim.listing());
    assert_eq!(ids.len(), 500);
    assert_eq!(sim.len(), 500);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "not strictly ascending"
    );
}
