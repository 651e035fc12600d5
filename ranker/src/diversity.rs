//! Diversity by maximal marginal relevance (Carbonell & Goldstein 1998): pick, one at a time,
//! the candidate that best trades its relevance against its similarity to what is already
//! picked. `lambda` = 1 keeps the relevance order; lower values spread the list out.

/// The order in which MMR picks `k` of the candidates. `relevance` is any score (higher is
/// better; scaled to [0, 1] here); `vectors[i]` is candidate i's vector, `None` when it has
/// none (it then counts as similar to nothing).
pub fn mmr_order(
    relevance: &[f32],
    vectors: &[Option<&[f32]>],
    lambda: f32,
    k: usize,
) -> Vec<usize> {
    let n = relevance.len().min(vectors.len());
    let lambda = lambda.clamp(0.0, 1.0);
    let (lo, hi) = relevance[..n]
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &r| {
            (lo.min(r), hi.max(r))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let scaled: Vec<f32> = relevance[..n].iter().map(|r| (r - lo) / span).collect();
    let unit: Vec<Option<Vec<f32>>> = vectors[..n]
        .iter()
        .map(|v| {
            v.and_then(|v| {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                (norm > 0.0).then(|| v.iter().map(|x| x / norm).collect())
            })
        })
        .collect();
    // Highest similarity of each candidate to anything picked so far.
    let mut max_sim = vec![0.0f32; n];
    let mut picked = vec![false; n];
    let mut order = Vec::with_capacity(k.min(n));
    while order.len() < k.min(n) {
        let mut best: Option<(usize, f32)> = None;
        for i in (0..n).filter(|&i| !picked[i]) {
            let value = lambda * scaled[i] - (1.0 - lambda) * max_sim[i];
            if best.is_none_or(|(_, b)| value > b) {
                best = Some((i, value));
            }
        }
        let Some((chosen, _)) = best else { break };
        picked[chosen] = true;
        order.push(chosen);
        if let Some(c) = &unit[chosen] {
            for i in 0..n {
                if let (false, Some(v)) = (picked[i], &unit[i]) {
                    let sim: f32 = c.iter().zip(v).map(|(a, b)| a * b).sum();
                    max_sim[i] = max_sim[i].max(sim);
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lambda_one_keeps_relevance_order() {
        let v = [1.0f32, 0.0];
        let order = mmr_order(&[0.9, 0.8, 0.1], &[Some(&v), Some(&v), None], 1.0, 3);
        assert_eq!(order, [0, 1, 2]);
    }

    #[test]
    fn low_lambda_skips_a_near_duplicate() {
        let (a, b) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        // Candidate 1 duplicates 0; candidate 2 is less relevant but different.
        let order = mmr_order(&[1.0, 0.95, 0.5], &[Some(&a), Some(&a), Some(&b)], 0.5, 2);
        assert_eq!(order, [0, 2]);
    }

    proptest! {
        /// Any lambda gives a permutation prefix: distinct indices, min(k, n) of them, and the
        /// first pick is always the most relevant.
        #[test]
        fn picks_distinct_and_starts_with_the_best(
            rel in prop::collection::vec(-5.0f32..5.0, 1..30),
            lambda in 0.0f32..1.0,
            k in 0usize..40,
        ) {
            let vecs: Vec<Vec<f32>> = (0..rel.len()).map(|i| vec![(i % 3) as f32, 1.0]).collect();
            let views: Vec<Option<&[f32]>> = vecs.iter().map(|v| Some(v.as_slice())).collect();
            let order = mmr_order(&rel, &views, lambda, k);
            prop_assert_eq!(order.len(), k.min(rel.len()));
            let mut sorted = order.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), order.len());
            if let Some(&first) = order.first() && lambda > 0.0 {
                let best = rel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                prop_assert_eq!(rel[first], best);
            }
        }
    }
}
