//! Business rules applied to a ranked candidate list: drop what must never be shown
//! (items the session already interacted with, unavailable items), keep the best `k`.

/// Why a candidate may not be shown. Implemented by the request path over its session and
/// catalog state, so this stage needs no copy of either.
pub trait Exclusions {
    fn excludes(&self, item_id: &str) -> bool;
}

impl<F: Fn(&str) -> bool> Exclusions for F {
    fn excludes(&self, item_id: &str) -> bool {
        self(item_id)
    }
}

/// The first `k` candidates (already in rank order) that no rule excludes, and no repeats.
pub fn top_k<'a, I>(ranked: I, k: usize, exclusions: &impl Exclusions) -> Vec<(&'a str, f64)>
where
    I: IntoIterator<Item = (&'a str, f64)>,
{
    let mut out: Vec<(&'a str, f64)> = Vec::with_capacity(k);
    for (item, score) in ranked {
        if out.len() == k {
            break;
        }
        if exclusions.excludes(item) || out.iter().any(|(chosen, _)| *chosen == item) {
            continue;
        }
        out.push((item, score));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn skips_excluded_and_stops_at_k() {
        let ranked = [("a", 5.0), ("b", 4.0), ("c", 3.0), ("d", 2.0)];
        let got = top_k(ranked, 2, &|id: &str| id == "a");
        assert_eq!(got, [("b", 4.0), ("c", 3.0)]);
    }

    proptest! {
        /// Equals the reference: filter, de-duplicate, take k.
        #[test]
        fn equals_filter_then_take(
            ids in prop::collection::vec(0u8..30, 0..60),
            banned in prop::collection::hash_set(0u8..30, 0..10),
            k in 0usize..20,
        ) {
            let names: Vec<String> = ids.iter().map(|i| format!("i{i}")).collect();
            let banned: HashSet<String> = banned.iter().map(|i| format!("i{i}")).collect();
            let ranked: Vec<(&str, f64)> = names.iter().enumerate().map(|(r, n)| (n.as_str(), -(r as f64))).collect();
            let got = top_k(ranked.iter().copied(), k, &|id: &str| banned.contains(id));
            let mut seen = HashSet::new();
            let expected: Vec<(&str, f64)> = ranked.iter().copied()
                .filter(|(id, _)| !banned.contains(*id) && seen.insert(*id))
                .take(k)
                .collect();
            prop_assert_eq!(got, expected);
        }
    }
}
