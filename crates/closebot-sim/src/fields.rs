//! Leaf helpers for the generator: random streams, GUID text, and the leaf-level parts
//! of a record (time stamps, names, windows, script fields, wallet) with their null rates.

use super::json::J;
use super::vocab::{COST_OVERRIDES, DAYS, DOMAINS, DURATIONS, START_TIMES};
use chrono::{Datelike, Timelike};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

/// `null` with probability `p`, else what `f` makes.
pub(crate) fn or_null<'a, T: Into<J<'a>>>(
    r: &mut ChaCha8Rng,
    p: f64,
    f: impl FnOnce(&mut ChaCha8Rng) -> T,
) -> J<'a> {
    if r.gen_bool(p) {
        J::Null
    } else {
        f(r).into()
    }
}

/// `null` with probability `p`, else an array of `0..=max` items (so empty arrays occur too).
pub(crate) fn list<'a>(
    r: &mut ChaCha8Rng,
    p: f64,
    max: usize,
    mut f: impl FnMut(&mut ChaCha8Rng) -> J<'a>,
) -> J<'a> {
    if r.gen_bool(p) {
        return J::Null;
    }
    let n = r.gen_range(0..=max);
    (0..n).map(|_| f(r)).collect()
}

/// A date-time as the live API writes them: mostly with `Z`, some without a zone, some
/// with a fraction of one to seven digits (.NET writes up to seven and drops trailing
/// zeros). (Formatted by hand: chrono's `format` is slow.)
pub(crate) fn stamp(r: &mut ChaCha8Rng, secs: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    match r.gen_range(0..20) {
        // Without a zone; half of them with a fraction, chosen by the time itself so that
        // no draw is added and the records that follow in the stream stay as they were.
        0..=2 => {
            let quarter = (secs / 900).unsigned_abs();
            if quarter.is_multiple_of(2) {
                base
            } else {
                base + &fraction(quarter.wrapping_mul(2_654_435_761) as u32)
            }
        }
        3 => {
            // One draw gives both the digits and how many are written.
            let ticks: u32 = r.gen_range(0..10_000_000);
            base + &fraction(ticks) + "Z"
        }
        _ => base + "Z",
    }
}

/// `.` and one to seven of the digits of `ticks` (ten-millionths of a second), as .NET
/// writes them: trailing zeros dropped, nothing at all when none is left.
fn fraction(ticks: u32) -> String {
    let ticks = ticks % 10_000_000;
    let shown = 1 + (ticks % 7) as usize;
    let digits = format!("{ticks:07}");
    match digits[..shown].trim_end_matches('0') {
        "" => String::new(),
        kept => format!(".{kept}"),
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

pub(crate) fn address(r: &mut ChaCha8Rng, category: Option<&str>) -> J<'static> {
    or_null(r, 0.08, |r| match category {
        Some("GHL") => alnum(r, 20),
        Some("HubSpot") => r.gen_range(1_000_000..99_999_999u32).to_string(),
        _ => format!("https://{}/closebot/{}", pick(r, DOMAINS), alnum(r, 10)),
    })
}

/// A respond window; bot respond windows add a channel after it.
pub(crate) fn window(r: &mut ChaCha8Rng, day: J<'static>) -> Vec<(&'static str, J<'static>)> {
    let start = or_null(r, 0.03, |r| pick(r, START_TIMES));
    let duration = or_null(r, 0.03, |r| pick(r, DURATIONS));
    let mut w = Vec::with_capacity(4);
    w.extend([
        ("dayOfWeekUtc", day),
        ("startTimeUtc", start),
        ("duration", duration),
    ]);
    w
}

/// Business hours: usually the five weekdays or the whole week, sometimes none or a few.
pub(crate) fn respond_windows(r: &mut ChaCha8Rng) -> J<'static> {
    if r.gen_bool(0.08) {
        return J::Null;
    }
    let days: Vec<&'static str> = match r.gen_range(0..20) {
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
            let day = or_null(r, 0.03, |_| d);
            J::Obj(window(r, day))
        })
        .collect()
}

/// How the live API writes a time stamp that never happened (.NET's `DateTime.MinValue`).
pub(crate) const NEVER: &str = "0001-01-01T00:00:00";

/// The five script fields of versions B and C, appended to the record in order.
pub(crate) fn script_fields(r: &mut ChaCha8Rng, m: &mut Vec<(&'static str, J<'_>)>) {
    let installed = r.gen_bool(0.4);
    let seen = r.gen_bool(if installed { 0.9 } else { 0.1 });
    let domain = format!("www.{}", pick(r, DOMAINS));
    let at = if seen {
        let secs = random_secs(r);
        stamp(r, secs).into()
    } else if installed {
        // Installed, never seen: the live API writes "never" as .NET's smallest date-time.
        NEVER.into()
    } else {
        J::Null
    };
    let d = if seen && r.gen_bool(0.95) {
        domain.clone().into()
    } else {
        J::Null
    };
    let e = if seen && r.gen_bool(0.95) {
        let path = pick(r, &["", "contact", "book-now", "pricing"]);
        format!("https://{domain}/{path}").into()
    } else {
        J::Null
    };
    let allow = list(r, 0.3, 3, |r| format!("www.{}", pick(r, DOMAINS)).into());
    m.extend([
        ("scriptInstalled", installed.into()),
        ("scriptLastSeenAt", at),
        ("scriptLastSeenDomain", d),
        ("scriptLastSeenEndpoint", e),
        ("scriptDomainAllowList", allow),
    ]);
}

pub(crate) fn wallet(r: &mut ChaCha8Rng) -> J<'static> {
    if r.gen_bool(0.25) {
        return J::Null;
    }
    let cost = |r: &mut ChaCha8Rng| or_null(r, 0.6, |r| pick(r, COST_OVERRIDES));
    J::Obj(vec![
        ("reBilling", r.gen_bool(0.3).into()),
        ("autoRefill", r.gen_bool(0.5).into()),
        ("topUpAmount", pick(r, &[10, 25, 50, 100, 250, 500]).into()),
        ("refillThreshold", pick(r, &[5, 10, 20, 50]).into()),
        (
            "stripeCustomerId",
            or_null(r, 0.2, |r| format!("cus_{}", alnum(r, 14))),
        ),
        ("currency", or_null(r, 0.1, |_| "usd")),
        ("responseUnitCostOverride", cost(r)),
        ("storageUnitCostOverride", cost(r)),
        ("userUnitCostOverride", cost(r)),
    ])
}
