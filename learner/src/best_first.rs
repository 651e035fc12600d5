//! The one order of ranked `(item, score)` lists, best first: higher score (by
//! `f32::total_cmp`), then lower item id. As a `u64` key it sorts and selects with integer
//! comparisons: co-visitation re-ranks a row of up to 1,500 entries several times per
//! event, and comparing pairs of floats and ids was most of that cost.

use std::cmp::Ordering;

/// Best first by score, then by id.
pub fn by_score_then_id(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// A key that orders like [`by_score_then_id`] (smaller: better), and gives back exactly
/// the pair it was made of ([`entry`]).
pub fn key((id, score): (u32, f32)) -> u64 {
    let bits = score.to_bits();
    // `total_cmp`'s order as unsigned bits: negatives below positives, and more negative
    // lower; then inverted, so a better score is a smaller key.
    let ascending = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(!ascending) << 32) | u64::from(id)
}

/// The pair a [`key`] was made of.
pub fn entry(key: u64) -> (u32, f32) {
    let ascending = !((key >> 32) as u32);
    let bits = if ascending >> 31 == 1 {
        ascending & 0x7fff_ffff
    } else {
        !ascending
    };
    (key as u32, f32::from_bits(bits))
}

/// Room for the keys of a list being ranked, kept between calls so a re-rank does not
/// allocate. Not state: it compares equal and clones empty.
#[derive(Debug, Default)]
pub struct Scratch(Vec<u64>);

impl Clone for Scratch {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The `n` best of `entries` (ids unique), best first.
pub fn top_n(
    entries: impl IntoIterator<Item = (u32, f32)>,
    n: usize,
    scratch: &mut Scratch,
) -> Vec<(u32, f32)> {
    let keys = &mut scratch.0;
    keys.clear();
    keys.extend(entries.into_iter().map(key));
    if n == 0 {
        return Vec::new();
    }
    if keys.len() > n {
        keys.select_nth_unstable(n - 1);
        keys.truncate(n);
    }
    keys.sort_unstable();
    keys.iter().map(|&k| entry(k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn score() -> impl Strategy<Value = f32> {
        prop_oneof![
            any::<f32>(),
            Just(0.0),
            Just(-0.0),
            Just(f32::NAN),
            Just(-f32::NAN),
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
            (0u32..4).prop_map(|k| k as f32 * 0.25),
        ]
    }

    proptest! {
        #[test]
        fn keys_order_as_the_comparison_does_and_decode_exactly(
            a in (0u32..8, score()),
            b in (0u32..8, score()),
        ) {
            prop_assert_eq!(key(a).cmp(&key(b)), by_score_then_id(&a, &b));
            let (id, s) = entry(key(a));
            prop_assert_eq!(id, a.0);
            prop_assert_eq!(s.to_bits(), a.1.to_bits());
        }

        #[test]
        fn top_n_is_the_head_of_the_sorted_list(
            scores in prop::collection::vec(score(), 0..300),
            n in 0usize..120,
        ) {
            let entries: Vec<(u32, f32)> =
                scores.iter().enumerate().map(|(i, &s)| (i as u32, s)).collect();
            let mut sorted = entries.clone();
            sorted.sort_by(by_score_then_id);
            sorted.truncate(n);
            let top = top_n(entries, n, &mut Scratch::default());
            let bits = |l: &[(u32, f32)]| l.iter().map(|&(i, s)| (i, s.to_bits())).collect::<Vec<_>>();
            prop_assert_eq!(bits(&top), bits(&sorted));
        }
    }
}
