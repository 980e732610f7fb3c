//! Value helpers for the generator: random streams, GUID text, and the leaf-level parts
//! of a record (time stamps, names, windows, script fields, wallet) with their null rates.

use super::vocab::{COST_OVERRIDES, DAYS, DOMAINS, DURATIONS, START_TIMES};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random stream for one purpose and one stream number (slot, counter, ...).
pub(crate) fn rng(seed: u64, purpose: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(splitmix(seed ^ splitmix(purpose)));
    r.set_stream(stream);
    r
}

/// Lowercase GUID text. Its byte order equals the numeric order of `v`, which lets the
/// simulator make an id that sorts before a given one.
pub(crate) fn uuid_text(v: u128) -> String {
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub(crate) fn parse_uuid(s: &str) -> Option<u128> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32).then(|| u128::from_str_radix(&hex, 16).ok())?
}

pub(crate) fn uuid(r: &mut ChaCha8Rng) -> String {
    uuid_text(r.gen())
}

pub(crate) fn alnum(r: &mut ChaCha8Rng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n).map(|_| A[r.gen_range(0..A.len())] as char).collect()
}

pub(crate) fn b64url(r: &mut ChaCha8Rng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..n).map(|_| A[r.gen_range(0..A.len())] as char).collect()
}

pub(crate) fn pick<T: Copy>(r: &mut ChaCha8Rng, xs: &[T]) -> T {
    xs[r.gen_range(0..xs.len())]
}

/// `null` with probability `p`, else the string `f` makes.
pub(crate) fn or_null(
    r: &mut ChaCha8Rng,
    p: f64,
    f: impl FnOnce(&mut ChaCha8Rng) -> String,
) -> Value {
    if r.gen_bool(p) {
        Value::Null
    } else {
        Value::String(f(r))
    }
}

/// `null` with probability `p`, else an array of `0..=max` items (so empty arrays occur too).
pub(crate) fn list(
    r: &mut ChaCha8Rng,
    p: f64,
    max: usize,
    mut f: impl FnMut(&mut ChaCha8Rng) -> Value,
) -> Value {
    if r.gen_bool(p) {
        return Value::Null;
    }
    let n = r.gen_range(0..=max);
    Value::Array((0..n).map(|_| f(r)).collect())
}

/// A date-time as the live API writes them: mostly with `Z`, some without a zone, some
/// with .NET's seven fractional digits.
pub(crate) fn stamp(r: &mut ChaCha8Rng, secs: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    let base = t.format("%Y-%m-%dT%H:%M:%S");
    match r.gen_range(0..20) {
        0..=2 => base.to_string(),
        3 => format!("{base}.{:07}Z", r.gen_range(0..10_000_000)),
        _ => format!("{base}Z"),
    }
}

pub(crate) fn random_secs(r: &mut ChaCha8Rng) -> i64 {
    // 2023-01-01 plus up to three years, on a quarter hour.
    1_672_531_200 + i64::from(r.gen_range(0..105_120u32)) * 900
}

/// A source name: mostly ASCII, a quarter unicode (accents, CJK, Hangul, emoji), a few null.
pub(crate) fn random_name(r: &mut ChaCha8Rng) -> Option<String> {
    use super::vocab::{NAME_PREFIXES, NAME_SUFFIXES, NAME_TRADES, UNICODE_NAMES};
    match r.gen_range(0..100) {
        0..=1 => None,
        2..=26 => Some(pick(r, UNICODE_NAMES).to_owned()),
        _ => Some(format!(
            "{} {}{}",
            pick(r, NAME_PREFIXES),
            pick(r, NAME_TRADES),
            pick(r, NAME_SUFFIXES)
        )),
    }
}

pub(crate) fn address(r: &mut ChaCha8Rng, category: Option<&str>) -> Value {
    or_null(r, 0.08, |r| match category {
        Some("GHL") => alnum(r, 20),
        Some("HubSpot") => r.gen_range(1_000_000..99_999_999u32).to_string(),
        _ => format!("https://{}/closebot/{}", pick(r, DOMAINS), alnum(r, 10)),
    })
}

pub(crate) fn window(r: &mut ChaCha8Rng) -> Map<String, Value> {
    let day = or_null(r, 0.03, |r| pick(r, DAYS).to_owned());
    window_on(r, day)
}

pub(crate) fn window_on(r: &mut ChaCha8Rng, day: Value) -> Map<String, Value> {
    let mut w = Map::new();
    w.insert("dayOfWeekUtc".into(), day);
    let start = or_null(r, 0.03, |r| pick(r, START_TIMES).to_owned());
    w.insert("startTimeUtc".into(), start);
    w.insert(
        "duration".into(),
        or_null(r, 0.03, |r| pick(r, DURATIONS).to_owned()),
    );
    w
}

/// Business hours: usually the five weekdays or the whole week, sometimes none or a few.
pub(crate) fn respond_windows(r: &mut ChaCha8Rng) -> Value {
    if r.gen_bool(0.08) {
        return Value::Null;
    }
    let days: Vec<&str> = match r.gen_range(0..20) {
        0..=2 => vec![],
        3..=12 => DAYS[..5].to_vec(),
        13..=15 => DAYS.to_vec(),
        _ => {
            let n = r.gen_range(1..=7);
            index::sample(r, DAYS.len(), n)
                .iter()
                .map(|i| DAYS[i])
                .collect()
        }
    };
    days.into_iter()
        .map(|d| {
            let day = if r.gen_bool(0.03) {
                Value::Null
            } else {
                d.into()
            };
            Value::Object(window_on(r, day))
        })
        .collect()
}

pub(crate) fn script_fields(r: &mut ChaCha8Rng, m: &mut Map<String, Value>) {
    let installed = r.gen_bool(0.4);
    let seen = r.gen_bool(if installed { 0.9 } else { 0.1 });
    let domain = format!("www.{}", pick(r, DOMAINS));
    m.insert("scriptInstalled".into(), installed.into());
    let at = if seen {
        let secs = random_secs(r);
        stamp(r, secs).into()
    } else {
        Value::Null
    };
    m.insert("scriptLastSeenAt".into(), at);
    let d = if seen && r.gen_bool(0.95) {
        domain.clone().into()
    } else {
        Value::Null
    };
    m.insert("scriptLastSeenDomain".into(), d);
    let e = if seen && r.gen_bool(0.95) {
        format!(
            "https://{domain}/{}",
            pick(r, &["", "contact", "book-now", "pricing"])
        )
        .into()
    } else {
        Value::Null
    };
    m.insert("scriptLastSeenEndpoint".into(), e);
    let allow = list(r, 0.3, 3, |r| format!("www.{}", pick(r, DOMAINS)).into());
    m.insert("scriptDomainAllowList".into(), allow);
}

pub(crate) fn wallet(r: &mut ChaCha8Rng) -> Value {
    if r.gen_bool(0.25) {
        return Value::Null;
    }
    let cost = |r: &mut ChaCha8Rng| or_null(r, 0.6, |r| pick(r, COST_OVERRIDES).to_owned());
    json!({
        "reBilling": r.gen_bool(0.3),
        "autoRefill": r.gen_bool(0.5),
        "topUpAmount": pick(r, &[10, 25, 50, 100, 250, 500]),
        "refillThreshold": pick(r, &[5, 10, 20, 50]),
        "stripeCustomerId": or_null(r, 0.2, |r| format!("cus_{}", alnum(r, 14))),
        "currency": or_null(r, 0.1, |_| "usd".to_owned()),
        "responseUnitCostOverride": cost(r),
        "storageUnitCostOverride": cost(r),
        "userUnitCostOverride": cost(r),
    })
}
