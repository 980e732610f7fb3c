//! Fault injection: which rule applies to a request, how a body-level fault reshapes an
//! otherwise valid response, and the per-request permutation behind `unstable_order`.

use super::{FaultAction, Faults};
use rand::Rng;
use serde_json::{Map, Value};

/// The first rule matching this page and attempt number (1 = first request for the page).
pub(crate) fn rule_for(faults: &Faults, page: u32, attempt: u32) -> Option<FaultAction> {
    faults
        .rules
        .iter()
        .find(|r| r.page.is_none_or(|p| p == page) && r.attempts.contains(&attempt))
        .map(|r| r.action.clone())
}

/// Whether `reshape` changes anything for this fault (the others act on the text).
pub(crate) fn reshapes(action: &FaultAction) -> bool {
    !matches!(
        action,
        FaultAction::TruncatedBody | FaultAction::IgnorePaging | FaultAction::ReplaceInBody { .. }
    )
}

/// Applies the faults that keep the HTTP exchange intact but break the document.
pub(crate) fn reshape(doc: &mut Map<String, Value>, action: &FaultAction) {
    match action {
        FaultAction::TotalWrongType => {
            let text = doc.get("total").map(Value::to_string).unwrap_or_default();
            doc.insert("total".into(), Value::String(text));
        }
        FaultAction::SourceFieldWrongType => {
            let first = doc.get_mut("results").and_then(|r| r.get_mut(0));
            if let Some(Value::Object(source)) = first {
                source.insert("connected".into(), "yes".into());
            }
        }
        FaultAction::MissingResults => {
            doc.shift_remove("results");
        }
        FaultAction::NullResults => {
            doc.insert("results".into(), Value::Null);
        }
        FaultAction::MissingTotal => {
            doc.shift_remove("total");
        }
        FaultAction::SetTotal(total) => {
            doc.insert("total".into(), total.clone());
        }
        FaultAction::WrongPageNumber => {
            let page = doc.get("page").and_then(Value::as_u64).unwrap_or(0);
            doc.insert("page".into(), (page + 1).into());
        }
        _ => {}
    }
}

/// The first half of a body, cut on a character boundary so the result is valid UTF-8
/// that is not valid JSON.
pub(crate) fn truncate(mut body: String) -> String {
    let mut cut = body.len() / 2;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    body.truncate(cut);
    body
}

/// A keyed permutation of `0..n` (a small Feistel network with cycle walking), so a
/// shuffled page costs O(page size) even over 100,000 sources.
pub(crate) struct Shuffle {
    n: u64,
    half: u32,
    keys: [u64; 4],
}

impl Shuffle {
    pub fn new(n: u64, r: &mut impl Rng) -> Shuffle {
        let bits = if n < 2 {
            2
        } else {
            64 - (n - 1).leading_zeros()
        };
        let half = bits.div_ceil(2).max(1);
        Shuffle {
            n,
            half,
            keys: r.gen(),
        }
    }

    pub fn at(&self, x: u64) -> u64 {
        if self.n < 2 {
            return x;
        }
        let mask = (1u64 << self.half) - 1;
        let mut y = x;
        // Cycle walking: the network permutes 0..2^(2·half) ⊇ 0..n, so following the
        // cycle from x < n reaches an element < n again.
        loop {
            let (mut l, mut r) = (y >> self.half, y & mask);
            for k in self.keys {
                let f = mix(r ^ k) & mask;
                (l, r) = (r, l ^ f);
            }
            y = (l << self.half) | r;
            if y < self.n {
                return y;
            }
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    z ^ (z >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_shuffle_is_a_permutation_for_awkward_sizes() {
        for n in [1u64, 2, 3, 7, 100, 301, 1024, 1025] {
            let s = Shuffle::new(n, &mut rand_chacha::ChaCha8Rng::seed_from_u64(n));
            let mut seen: Vec<u64> = (0..n).map(|x| s.at(x)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }
}
