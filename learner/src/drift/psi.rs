//! The population stability index of one feature, one window against another, from the
//! counts each window kept.
//!
//! As Evidently computes it: numeric values in equal-width bins over the range both windows
//! span, categories each a bin; proportions floored at [`PSI_FLOOR`] so an empty bin adds a
//! large but finite term, never an infinity; `PSI = Σ (cur − ref) · ln(cur / ref)`.
//!
//! A window cannot keep every value, so a numeric value is counted in one of [`FINE_BINS`]
//! fine bins of `x / (1 + |x|)` (which maps every real into (−1, 1), dense near 0 where the
//! features live); the equal-width bins are cut from the fine ones both windows occupy. A
//! categorical feature with many categories (item ids) would be all noise bin by bin: its
//! bins are the `bins − 1` categories most frequent in the two windows together, and one
//! for every other category.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::windows::Aggregate;

/// Fine bins a numeric value is counted in.
pub const FINE_BINS: u32 = 1024;
/// The least proportion a bin is given (Evidently's).
pub const PSI_FLOOR: f64 = 1e-4;

/// A window's counts per bin (numeric: fine bin; categorical: category id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinCounts(BTreeMap<u32, u64>);

impl Aggregate for BinCounts {
    fn merge(&mut self, other: &Self) {
        for (bin, n) in &other.0 {
            let mine = self.0.entry(*bin).or_default();
            *mine = mine.saturating_add(*n);
        }
    }
}

impl BinCounts {
    pub fn add(&mut self, bin: u32) {
        let n = self.0.entry(bin).or_default();
        *n = n.saturating_add(1);
    }

    pub fn total(&self) -> u64 {
        self.0.values().fold(0u64, |a, n| a.saturating_add(*n))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The fine bin of a numeric value; `None` for NaN, which no bin holds.
pub fn fine_bin(value: f64) -> Option<u32> {
    if value.is_nan() {
        return None;
    }
    let squashed = if value.is_infinite() {
        value.signum()
    } else {
        value / (1.0 + value.abs())
    };
    let at = ((squashed + 1.0) / 2.0 * f64::from(FINE_BINS)).floor();
    Some((at.max(0.0) as u32).min(FINE_BINS - 1))
}

/// PSI of two distributions given as counts per bin, in the same bin order.
pub fn psi_of_counts(reference: &[u64], current: &[u64]) -> f64 {
    let total = |c: &[u64]| c.iter().map(|n| *n as f64).sum::<f64>();
    let (r_total, c_total) = (total(reference), total(current));
    if r_total == 0.0 || c_total == 0.0 {
        return 0.0;
    }
    reference
        .iter()
        .zip(current)
        .map(|(r, c)| {
            let r = (*r as f64 / r_total).max(PSI_FLOOR);
            let c = (*c as f64 / c_total).max(PSI_FLOOR);
            (c - r) * (c / r).ln()
        })
        .sum()
}

/// PSI of a numeric feature: `bins` equal-width bins over the fine bins either window holds.
pub fn numeric_psi(reference: &BinCounts, current: &BinCounts, bins: usize) -> f64 {
    let occupied = reference.0.keys().chain(current.0.keys());
    let (Some(lo), Some(hi)) = (occupied.clone().min(), occupied.max()) else {
        return 0.0;
    };
    let bins = bins.max(1);
    // Saturating: a stored state's bins are not trusted to lie below FINE_BINS.
    let span = f64::from((hi - lo).saturating_add(1));
    let coarse = |fine: u32| -> usize {
        let at = (f64::from(fine - lo) / span * bins as f64) as usize;
        at.min(bins - 1)
    };
    let histogram = |counts: &BinCounts| {
        let mut out = vec![0u64; bins];
        for (fine, n) in &counts.0 {
            let bin = &mut out[coarse(*fine)];
            *bin = bin.saturating_add(*n);
        }
        out
    };
    psi_of_counts(&histogram(reference), &histogram(current))
}

/// PSI of a categorical feature: the `bins − 1` categories most frequent over both windows
/// (ties to the lower id), and one bin for the rest.
pub fn categorical_psi(reference: &BinCounts, current: &BinCounts, bins: usize) -> f64 {
    let mut both = reference.clone();
    both.merge(current);
    let mut ranked: Vec<(u32, u64)> = both.0.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let named: Vec<u32> = ranked
        .iter()
        .take(bins.max(2) - 1)
        .map(|(id, _)| *id)
        .collect();
    let histogram = |counts: &BinCounts| {
        let mut out = vec![0u64; named.len() + 1];
        for (id, n) in &counts.0 {
            let at = named.iter().position(|c| c == id).unwrap_or(named.len());
            out[at] = out[at].saturating_add(*n);
        }
        out
    };
    psi_of_counts(&histogram(reference), &histogram(current))
}
