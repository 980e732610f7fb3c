//! Wire types of `GET /agency/source`: tolerant of null and missing fields, and the page
//! checks that turn a malformed response into an error naming the page and the problem.
//! (About 400 lines of code; the rest are the tests of each check, kept beside it.)

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

pub use super::source::Source;
use super::untrusted::{clean_text, printable};

/// One page as the API sent it. Sources stay raw JSON (so unknown fields survive) until
/// the model turns them into rows.
#[derive(Debug)]
pub struct Page {
    /// The number of sources in the whole listing, as reported by this page.
    pub total: u64,
    /// The page number the server says it answered with, if it did.
    pub echoed_page: Option<i64>,
    /// The effective page size the server reports (it clamps to 100).
    pub page_size: Option<u64>,
    /// `results`; a `null` results array is an empty page.
    pub results: Vec<RawSource>,
    /// Results without a usable `sourceId` (null, missing, empty or not a string): they
    /// cannot be mirrored and are left out, and the walk that met them cannot be shown
    /// complete.
    pub unidentified: usize,
}

/// One source of a page: its id, the record exactly as sent, and the typed view of it, or
/// why the record does not fit the typed view (the source is then quarantined, not the page
/// failed).
#[derive(Debug)]
pub struct RawSource {
    /// The `sourceId`, a NUL in it replaced (see [`clean_text`]).
    pub id: String,
    pub raw: Value,
    pub typed: Result<Source, Defect>,
}

/// What is wrong with one source's record: the field (a path such as `wallet.topUpAmount`)
/// and the problem, in words with any quoted server text already escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.problem)
    }
}

/// What was wrong with a page the server sent.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("the body is not valid JSON ({detail}){}", if *cut_off { "; the response may have been cut off" } else { "" })]
    Json {
        /// serde_json's message, which names the line and column.
        detail: String,
        /// The body ended in the middle of a value.
        cut_off: bool,
    },
    #[error(
        "the body is larger than api.max_page_bytes ({limit} bytes){}: raise api.max_page_bytes \
         if the API's pages really are this large, or lower api.page_size",
        match declared { Some(n) => format!(" (it announced {n} bytes)"), None => String::new() }
    )]
    TooLarge {
        limit: u64,
        /// The size the server announced in Content-Length, when it did.
        declared: Option<u64>,
    },
    #[error("the body is not a JSON object")]
    NotObject,
    #[error("the body has no `{0}` field")]
    Missing(&'static str),
    #[error("`{field}` has the wrong type: {found}")]
    WrongType { field: &'static str, found: String },
    #[error(
        "`total` is {found}, outside the API's int32 range (0 to {})",
        i32::MAX
    )]
    TotalOutOfRange { found: String },
    #[error(
        "`total` is {total}: at {page_size} sources a page that is {pages} pages, more than the \
         {MAX_PAGES} a walk may request; the server's count cannot be right"
    )]
    TooManyPages {
        total: u64,
        page_size: u64,
        pages: u64,
    },
    #[error(
        "the page holds {got} results where at most {limit} were asked for: the server seems \
         to ignore `page` or `pageSize`"
    )]
    TooManyResults { got: usize, limit: u64 },
    #[error("the server answered with page {got} for page {asked}")]
    WrongPage { asked: u32, got: i64 },
    #[error("result #{index} is not an object")]
    ResultNotObject { index: usize },
}

/// The most pages one walk requests: 10 million sources at the API's 100 a page. A `total`
/// that needs more is refused rather than walked (see the README).
pub const MAX_PAGES: u64 = 100_000;

/// An optional int32 member of the page (as the API documents its integers), at least
/// `min`: anything else is not what the field means.
fn int32(
    map: &serde_json::Map<String, Value>,
    field: &'static str,
    min: i64,
) -> Result<Option<i64>, PageError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= min && i32::try_from(*n).is_ok())
            .map(Some)
            .ok_or_else(|| PageError::WrongType {
                field,
                found: type_name(v),
            }),
    }
}

pub(crate) fn type_name(v: &Value) -> String {
    let t = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    // Shown whole or not at all: the client takes the API key out of what a server sent
    // back, and a key cut in two would no longer be found.
    let full = v.to_string();
    let chars = full.chars().count();
    if chars <= 40 {
        format!("{t} ({})", printable(&full))
    } else {
        format!("{t} of {chars} characters")
    }
}

/// A number written as an integer too big for 64 bits (`1e12` stays an integer).
fn looks_integral(n: &serde_json::Number) -> bool {
    n.as_f64()
        .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

/// Decodes a body as JSON with `decode`. A lone UTF-16 surrogate escape (`"Caf\ud83d"`,
/// which string truncation on the vendor's side can emit) is read as U+FFFD, as lenient
/// decoders do: only when serde_json reports one is the body repaired and read again, so a
/// normal body is read once.
fn decode_with<T>(
    body: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, serde_json::Error>,
) -> Result<T, PageError> {
    let first = match decode(body) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let surrogate = {
        let text = first.to_string();
        text.starts_with("lone leading surrogate")
            || text.starts_with("unexpected end of hex escape")
    };
    let error = match surrogate.then(|| repair_lone_surrogates(body)).flatten() {
        Some(repaired) => match decode(&repaired) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        },
        None => first,
    };
    Err(PageError::Json {
        detail: printable(&error.to_string()).into_owned(),
        cut_off: error.classify() == serde_json::error::Category::Eof,
    })
}

/// How deep serde_json nests values before it stops (its recursion limit).
const MAX_DEPTH: usize = 128;

/// A page's document, and the positions in its `results` of the records nested deeper
/// than serde_json reads. Such a record would fail its whole page, and so every run, as
/// long as the API sends it: it stands in the document as an object holding only its
/// `sourceId`, so that the source is quarantined alone and the others mirrored.
fn decode_page(body: &[u8]) -> Result<(Value, Vec<usize>), PageError> {
    decode_with(body, |bytes| match serde_json::from_slice(bytes) {
        Ok(v) => Ok((v, Vec::new())),
        Err(e) if is_too_deep(&e) => around_deep_records(bytes),
        Err(e) => Err(e),
    })
}

fn is_too_deep(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("recursion limit exceeded")
}

/// The page read member by member: serde_json skips over a raw value without nesting
/// limit, so each result can be tried alone.
fn around_deep_records(bytes: &[u8]) -> Result<(Value, Vec<usize>), serde_json::Error> {
    let members = serde_json::from_slice::<BTreeMap<String, &RawValue>>(bytes)?;
    let mut doc = serde_json::Map::new();
    let mut deep = Vec::new();
    for (key, raw) in members {
        let items = (key == "results")
            .then(|| serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok())
            .flatten();
        let value = match items {
            Some(items) => {
                let mut results = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    results.push(match serde_json::from_str(item.get()) {
                        Ok(v) => v,
                        Err(e) if is_too_deep(&e) => {
                            deep.push(index);
                            stand_in(item)
                        }
                        Err(e) => return Err(e),
                    });
                }
                Value::Array(results)
            }
            // `results` null or not a list, and the other members, as they come: a member
            // too deep here still fails the page.
            None => serde_json::from_str(raw.get())?,
        };
        doc.insert(key, value);
    }
    Ok((Value::Object(doc), deep))
}

/// What stands for a record too deep to read: an object with its `sourceId` if that is
/// text (else none, so the record counts as one without an id, as at any depth), or, for
/// a result that is not an object, an empty list (the page's own check refuses it).
fn stand_in(item: &RawValue) -> Value {
    // A map of raw values reads any object, whatever its depth (a key sent twice: the last).
    match serde_json::from_str::<BTreeMap<String, &RawValue>>(item.get()) {
        Ok(members) => {
            let id = members
                .get("sourceId")
                .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
            match id {
                Some(id) => serde_json::json!({ "sourceId": id }),
                None => Value::Object(serde_json::Map::new()),
            }
        }
        Err(_) => Value::Array(Vec::new()),
    }
}

/// The value of the four hex digits at `at`, if there are four.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    u16::from_str_radix(digits, 16).ok()
}

/// `body` with every unpaired `\uD800`-`\uDFFF` escape inside a string replaced by
/// `\ufffd` (the same length, so line and column numbers stay right); `None` when there
/// was none.
fn repair_lone_surrogates(body: &[u8]) -> Option<Vec<u8>> {
    const HIGH: std::ops::RangeInclusive<u16> = 0xD800..=0xDBFF;
    const LOW: std::ops::RangeInclusive<u16> = 0xDC00..=0xDFFF;
    let mut out = body.to_vec();
    let mut changed = false;
    let (mut i, mut in_string) = (0, false);
    while i < out.len() {
        match (in_string, out[i]) {
            (false, b'"') => in_string = true,
            (false, _) => {}
            (true, b'"') => in_string = false,
            (true, b'\\') => {
                let unit = (out.get(i + 1) == Some(&b'u'))
                    .then(|| hex4(&out, i + 2))
                    .flatten();
                match unit {
                    Some(n) if HIGH.contains(&n) => {
                        let paired = out.get(i + 6..i + 8) == Some(b"\\u".as_slice())
                            && hex4(&out, i + 8).is_some_and(|m| LOW.contains(&m));
                        if paired {
                            i += 12;
                            continue;
                        }
                        out[i..i + 6].copy_from_slice(b"\\ufffd");
                        changed = true;
                        i += 6;
                        continue;
                    }
                    Some(n) if LOW.contains(&n) => {
                        out[i..i + 6].copy_from_slice(b"\\ufffd");
                        changed = true;
                        i += 6;
                        continue;
                    }
                    Some(_) => {
                        i += 6;
                        continue;
                    }
                    // Any other escape is two bytes; skipping both keeps `\"` inside.
                    None => i += 1,
                }
            }
            (true, _) => {}
        }
        i += 1;
    }
    changed.then_some(out)
}

/// Parses and checks one page body, asked for with `page_size` sources.
/// Every source is also checked against [`Source`], so a record of the wrong shape fails
/// the page here, named by its `sourceId`.
pub fn parse_page(body: &[u8], page_size: u32) -> Result<Page, PageError> {
    let (value, too_deep) = decode_page(body)?;
    let Value::Object(mut map) = value else {
        return Err(PageError::NotObject);
    };
    let total = match map.get("total") {
        None => return Err(PageError::Missing("total")),
        Some(v @ Value::Number(n)) => match n.as_i64() {
            Some(t) if (0..=i64::from(i32::MAX)).contains(&t) => t as u64,
            _ if n.is_i64() || n.is_u64() || looks_integral(n) => {
                return Err(PageError::TotalOutOfRange {
                    found: printable(&n.to_string()).into_owned(),
                })
            }
            _ => {
                return Err(PageError::WrongType {
                    field: "total",
                    found: type_name(v),
                })
            }
        },
        Some(v) => {
            return Err(PageError::WrongType {
                field: "total",
                found: type_name(v),
            })
        }
    };
    // Checked against the page asked for by the walk, which knows how the server numbers
    // its echo (page 0 tells).
    let echoed_page = int32(&map, "page", i64::from(i32::MIN))?;
    let reported_size = int32(&map, "pageSize", 0)?.map(|n| n as u64);
    // The schema requires no property: a serializer that leaves out nulls sends no
    // `results` where another sends `null`. Either is a page with nothing on it, which the
    // walk does not take as the end of a listing that `total` says goes on.
    let results = match map.swap_remove("results") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(PageError::WrongType {
                field: "results",
                found: type_name(&other),
            })
        }
    };
    // Checked before any record is read: a server that ignores `page` would otherwise cost
    // the whole listing's work on every page.
    let limit = reported_size
        .filter(|&s| s > 0)
        .map_or(u64::from(page_size), |s| s.min(u64::from(page_size)));
    if results.len() as u64 > limit {
        return Err(PageError::TooManyResults {
            got: results.len(),
            limit,
        });
    }
    let page_size = reported_size;
    let mut sources = Vec::with_capacity(results.len());
    let mut unidentified = 0;
    for (index, item) in results.into_iter().enumerate() {
        let Value::Object(obj) = &item else {
            return Err(PageError::ResultNotObject { index });
        };
        // A result without a usable id cannot be mirrored, nor quarantined by id: it is
        // left out, and the walk that met it cannot be shown complete.
        let source_id = match obj.get("sourceId") {
            Some(Value::String(s)) if !s.is_empty() => clean_text(s.clone()),
            _ => {
                unidentified += 1;
                continue;
            }
        };
        let typed = if too_deep.contains(&index) {
            Err(Defect {
                field: "(the record)".into(),
                problem: format!(
                    "nested more than {MAX_DEPTH} levels deep: the record cannot be read"
                ),
            })
        } else {
            Source::from_value(&item)
        };
        sources.push(RawSource {
            id: source_id,
            raw: item,
            typed,
        });
    }
    Ok(Page {
        total,
        echoed_page,
        page_size,
        results: sources,
        unidentified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A body read as one JSON value, as a page is when nothing in it is too deep.
    fn decode_json(body: &[u8]) -> Result<Value, PageError> {
        decode_with(body, |bytes| serde_json::from_slice(bytes))
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("total".to_string()),
                            Just("results".to_string()),
                            Just("page".to_string()),
                            Just("sourceId".to_string()),
                            Just("bots".to_string()),
                            Just("wallet".to_string()),
                            Just("key".to_string()),
                            "[a-zA-Z]{1,8}",
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_page_parser(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_page(&bytes, 100);
        }

        #[test]
        fn arbitrary_json_never_panics_the_page_parser(v in json_value(), total in any::<u32>()) {
            let _ = parse_page(v.to_string().as_bytes(), 100);
            // And shaped like a page, so the source checks are reached too.
            let page = json!({"total": total, "page": 0, "pageSize": 100, "results": [v]});
            let _ = parse_page(page.to_string().as_bytes(), 100);
        }
    }

    #[test]
    fn a_credential_of_the_wrong_type_is_named_but_never_shown() {
        let body = json!({"total": 1, "page": 0, "results": [{"sourceId": "s1", "accessToken": 123456789}]});
        let page = parse_page(body.to_string().as_bytes(), 100).unwrap();
        let defect = page.results[0].typed.as_ref().unwrap_err();
        assert_eq!(defect.field, "accessToken");
        assert!(!defect.to_string().contains("123456789"), "{defect}");
    }

    #[test]
    fn a_record_of_the_wrong_shape_is_kept_with_its_defect_and_the_page_goes_on() {
        let body = json!({"total": 3, "page": 0, "results": [
            {"sourceId": "s1", "wallet": {"topUpAmount": 1.5}},
            {"sourceId": "s\u{0}2", "name": "fine"},
            {"sourceId": 7}
        ]});
        let page = parse_page(body.to_string().as_bytes(), 100).unwrap();
        assert_eq!((page.results.len(), page.unidentified), (2, 1));
        let defect = page.results[0].typed.as_ref().unwrap_err();
        assert_eq!(defect.field, "wallet.topUpAmount");
        assert_eq!(page.results[1].id, "s\u{FFFD}2");
        assert!(page.results[1].typed.is_ok());
    }

    #[test]
    fn a_record_nested_too_deep_to_read_is_a_defect_of_its_own_and_the_page_is_read() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let body = format!(
            r#"{{"total": 6, "page": 0, "results": [{{"sourceId": "s1", "name": "a"}},
            {{"sourceId": "s2", "futureField": {deep}}}, {{"futureField": {deep}}},
            {{"sourceId": 7, "futureField": {deep}}},
            {{"sourceId": "s5", "futureField": {deep}, "sourceId": null}},
            {{"sourceId": "s\ud83d", "name": "b"}}]}}"#
        );
        assert!(
            decode_json(body.as_bytes()).is_err(),
            "too deep for one read"
        );
        let page = parse_page(body.as_bytes(), 100).unwrap();
        assert_eq!(
            (page.total, page.echoed_page, page.unidentified),
            (6, Some(0), 3),
            "without a sourceId, with one that is not text, with the last of two null"
        );
        let ids: Vec<&str> = page.results.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["s1", "s2", "s\u{FFFD}"]);
        assert_eq!(page.results[0].raw["name"], "a");
        let defect = page.results[1].typed.as_ref().unwrap_err();
        assert!(defect.problem.contains("nested more than 128"), "{defect}");
        assert!(page.results[2].typed.is_ok());
        // A result that is not an object stays the page's error, as at any depth.
        let body = format!(r#"{{"total": 1, "results": [{deep}]}}"#);
        let e = parse_page(body.as_bytes(), 100).unwrap_err();
        assert!(matches!(e, PageError::ResultNotObject { index: 0 }), "{e}");
    }

    #[test]
    fn a_result_without_a_source_id_is_counted_not_mirrored() {
        let body = json!({"total": 3, "page": 0, "results": [{"sourceId": null}, {"name": "x"}, {"sourceId": "s1"}]});
        let page = parse_page(body.to_string().as_bytes(), 100).unwrap();
        assert_eq!((page.results.len(), page.unidentified), (1, 2));
        assert_eq!(page.results[0].id, "s1");
    }

    #[test]
    fn null_or_missing_results_are_an_empty_page_and_the_echoed_page_is_read() {
        for body in [
            r#"{"total": 7, "results": null, "page": 0}"#,
            r#"{"total": 7, "page": 0}"#,
        ] {
            let page = parse_page(body.as_bytes(), 100).unwrap();
            assert!(page.results.is_empty() && page.total == 7, "{body}");
        }
        let e = parse_page(br#"{"total": 7, "results": {}, "page": 0}"#, 100).unwrap_err();
        assert!(
            matches!(
                e,
                PageError::WrongType {
                    field: "results",
                    ..
                }
            ),
            "{e}"
        );
        let echoed = parse_page(br#"{"total": 3, "results": [], "page": 2}"#, 100).unwrap();
        assert_eq!(echoed.echoed_page, Some(2));
        let e = parse_page(
            br#"{"total": 3, "results": [], "pageSize": 2147483648}"#,
            100,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                PageError::WrongType {
                    field: "pageSize",
                    ..
                }
            ),
            "{e}"
        );
        for page in ["\"2\"", "-9223372036854775808", "2147483648"] {
            let body = format!(r#"{{"total": 3, "results": [], "page": {page}}}"#);
            let e = parse_page(body.as_bytes(), 100).unwrap_err();
            assert!(
                matches!(e, PageError::WrongType { field: "page", .. }),
                "{page}: {e}"
            );
        }
    }

    #[test]
    fn a_lone_surrogate_escape_reads_as_the_replacement_character_and_pairs_are_kept() {
        let body = br#"{"a": "Caf\ud83d", "b": "\udc00x", "c": "\ud83d\ude00", "d": "\\ud83d", "e": "\ud83d\u0041"}"#;
        let v = decode_json(body).unwrap();
        assert_eq!(v["a"], "Caf\u{FFFD}");
        assert_eq!(v["b"], "\u{FFFD}x");
        assert_eq!(v["c"], "😀");
        // An escaped backslash followed by `ud83d` is text, not an escape.
        assert_eq!(v["d"], "\\ud83d");
        assert_eq!(v["e"], "\u{FFFD}A");
        assert!(repair_lone_surrogates(br#"{"c": "\ud83d\ude00"}"#).is_none());
    }

    #[test]
    fn a_body_that_is_not_json_is_located_and_called_cut_off_only_when_it_ended_early() {
        let e = decode_json(b"<html>502</html>").unwrap_err().to_string();
        assert!(
            e.contains("line 1 column 1") && !e.contains("cut off"),
            "{e}"
        );
        let e = decode_json(b"{\"total\": 3,\n \"results\": [{\"sourceId\": \"s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("cut off"), "{e}");
        // A surrogate error that is really a syntax error elsewhere keeps its location.
        let e = decode_json(br#"{"a": "\ud83d", "b": nope}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1 column 23") && !e.contains("cut off"),
            "{e}"
        );
    }

    #[test]
    fn numbers_of_any_size_are_kept_as_written() {
        // serde_json writes an exponent with its sign: `1e400` is kept as `1e+400`.
        let body = br#"{"a": 1e400, "b": 123456789012345678901234567890, "c": 0.1000000000000000055511151231257827, "d": 1.50}"#;
        let v = decode_json(body).unwrap();
        assert_eq!(
            v.to_string(),
            r#"{"a":1e+400,"b":123456789012345678901234567890,"c":0.1000000000000000055511151231257827,"d":1.50}"#
        );
    }

    #[test]
    fn a_total_outside_int32_or_of_the_wrong_type_is_refused() {
        for (total, expect) in [
            ("2147483648", "outside the API's int32 range"),
            ("-1", "outside the API's int32 range"),
            ("1e12", "outside the API's int32 range"),
            ("3.5", "wrong type"),
            ("\"12\"", "wrong type"),
        ] {
            let body = format!(r#"{{"total": {total}, "page": 0, "results": []}}"#);
            let e = parse_page(body.as_bytes(), 100).unwrap_err().to_string();
            assert!(e.contains(expect) && e.contains("total"), "{total}: {e}");
        }
        let ok = parse_page(br#"{"total": 2147483647, "page": 0, "results": []}"#, 100);
        assert_eq!(ok.unwrap().total, 2_147_483_647);
    }

    #[test]
    fn a_page_with_more_results_than_asked_or_reported_is_refused() {
        let results: Vec<Value> = (0..5)
            .map(|i| json!({"sourceId": format!("s{i}")}))
            .collect();
        let body = json!({"total": 50, "page": 0, "results": results}).to_string();
        let e = parse_page(body.as_bytes(), 4).unwrap_err();
        assert!(
            matches!(e, PageError::TooManyResults { got: 5, limit: 4 }),
            "{e}"
        );
        let body = json!({"total": 50, "page": 0, "pageSize": 3, "results": results}).to_string();
        let e = parse_page(body.as_bytes(), 100).unwrap_err();
        assert!(
            matches!(e, PageError::TooManyResults { got: 5, limit: 3 }),
            "{e}"
        );
        let body = json!({"total": 50, "page": 0, "pageSize": 5, "results": results}).to_string();
        assert_eq!(parse_page(body.as_bytes(), 5).unwrap().results.len(), 5);
    }

    #[test]
    fn control_characters_in_what_the_server_sent_are_escaped_in_messages() {
        // JSON text escapes C0 controls itself, but not DEL or the C1 controls (CSI here).
        let e = parse_page(b"{\"total\": \"\\u009b2J\\u007f\", \"results\": []}", 100)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\\u{9b}2J\\u{7f}") && !e.chars().any(char::is_control),
            "{e}"
        );
        // And in a record's defect, which names the value it found.
        let defect = Source::from_value(&json!({"connected": "yes\u{1b}[31m\u{7}"})).unwrap_err();
        assert_eq!(defect.field, "connected");
        let shown = defect.to_string();
        assert!(
            shown.contains("\\u{1b}[31m") && !shown.chars().any(char::is_control),
            "{shown}"
        );
    }
}
