//! Dot products and squared distances summed in eight independent lanes.
//!
//! A plain `iter().sum()` over floats is one chain of dependent adds whose order LLVM must
//! keep, so it is never vectorised; eight partial sums are, and make a 64-dimensional
//! distance several times cheaper. This is where hnsw_rs's own scalar `DistL2` spent the
//! graph search.

use hnsw_rs::prelude::Distance;

const LANES: usize = 8;

/// Σ aᵢ·bᵢ over the common length of `a` and `b`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

/// Σ (aᵢ − bᵢ)² over the common length of `a` and `b`.
pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| (x - y) * (x - y))
}

/// Σ term(aᵢ, bᵢ), accumulated in `LANES` independent partial sums.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a_chunks, a_tail) = a[..n].as_chunks::<LANES>();
    let (b_chunks, b_tail) = b[..n].as_chunks::<LANES>();
    let mut acc = [0.0_f32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for lane in 0..LANES {
            acc[lane] += term(x[lane], y[lane]);
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| term(*x, *y)).sum();
    acc.iter().sum::<f32>() + tail
}

/// `v` scaled to unit length (a zero vector stays zero).
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// Squared L2 for hnsw_rs: the same order as its `DistL2` (a monotone function of it) at a
/// fraction of the cost. Over unit vectors this is 2 − 2·cosine, never asserted non-negative
/// (anndists' dot distance panics when rounding takes it below zero).
#[derive(Debug, Clone, Copy, Default)]
pub struct SquaredL2;

impl Distance<f32> for SquaredL2 {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        squared_l2(va, vb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    proptest! {
        #[test]
        fn lane_sums_equal_a_double_precision_reference(
            pairs in prop::collection::vec((-10.0_f32..10.0, -10.0_f32..10.0), 0..150)
        ) {
            let a: Vec<f32> = pairs.iter().map(|p| p.0).collect();
            let b: Vec<f32> = pairs.iter().map(|p| p.1).collect();
            let tolerance = 1e-4 * (1.0 + a.len() as f64 * 100.0);
            prop_assert!((f64::from(dot(&a, &b)) - reference_dot(&a, &b)).abs() <= tolerance);
            let diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
            let expected = reference_dot(&diff, &diff);
            prop_assert!((f64::from(squared_l2(&a, &b)) - expected).abs() <= tolerance);
        }
    }

    #[test]
    fn normalized_vectors_have_unit_length_and_zero_stays_zero() {
        let v = normalized(&[3.0, 4.0]);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
        assert_eq!(normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
