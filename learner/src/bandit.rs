//! Contextual bandits over a candidate list. Every policy ranks a slate and can say with
//! which probability each candidate lands at each position: the propensities that make its
//! decisions evaluable off-policy.
//!
//! Randomness is passed in by the caller, so an immutable serving copy can explore
//! concurrently and a replay with the same seed makes the same choices.

mod bernoulli_ts;
mod egreedy;
mod linear;
mod lints;
mod linucb;
mod uniform;

use nalgebra::DVector;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use bernoulli_ts::BernoulliTs;
pub use egreedy::EpsilonGreedy;
pub use linear::{LinearArms, RidgeArm};
pub use lints::LinTs;
pub use linucb::LinUcb;
pub use uniform::Uniform;

/// One candidate: which arm it is (its own statistics in disjoint models) and its context.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub key: u64,
    pub x: DVector<f64>,
}

/// A slate and, per position, the probability that the policy put that item there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Indices into the candidate list, best first.
    pub slate: Vec<usize>,
    pub propensities: Vec<f64>,
}

/// Marginal probabilities `[position][candidate]`.
pub type ActionDistribution = Vec<Vec<f64>>;

pub trait Policy {
    fn name(&self) -> &'static str;

    /// The slate of `k` candidates (fewer if there are fewer candidates).
    fn rank(&self, arms: &[Arm], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize>;

    /// Probability that each candidate is shown at each position.
    fn action_distribution(
        &self,
        arms: &[Arm],
        k: usize,
        rng: &mut ChaCha8Rng,
    ) -> ActionDistribution;

    /// Learns the reward observed for `arm`.
    fn update(&mut self, arm: &Arm, reward: f64);

    /// Ranks and attaches the propensity of each chosen position.
    fn decide(&self, arms: &[Arm], k: usize, rng: &mut ChaCha8Rng) -> Decision {
        let slate = self.rank(arms, k, rng);
        let dist = self.action_distribution(arms, k, rng);
        let propensities = slate
            .iter()
            .enumerate()
            .map(|(pos, &c)| dist[pos][c])
            .collect();
        Decision {
            slate,
            propensities,
        }
    }
}

/// Indices of the `k` highest scores, best first; ties go to the lower index.
pub(crate) fn top_by_score(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k.min(scores.len()));
    order
}

/// `[position][candidate]` with probability one on a fixed ranking.
pub(crate) fn one_hot(ranking: &[usize], n: usize) -> ActionDistribution {
    ranking
        .iter()
        .map(|&c| {
            let mut row = vec![0.0; n];
            row[c] = 1.0;
            row
        })
        .collect()
}

/// Monte-Carlo estimate of a randomised ranking's action distribution.
pub(crate) fn simulate(
    n: usize,
    k: usize,
    draws: usize,
    rng: &mut ChaCha8Rng,
    mut sample_ranking: impl FnMut(&mut ChaCha8Rng) -> Vec<usize>,
) -> ActionDistribution {
    let k = k.min(n);
    let mut dist = vec![vec![0.0; n]; k];
    let weight = 1.0 / draws.max(1) as f64;
    for _ in 0..draws.max(1) {
        for (pos, c) in sample_ranking(rng).into_iter().enumerate().take(k) {
            dist[pos][c] += weight;
        }
    }
    dist
}

/// A standard normal draw (Box–Muller), so the sequence depends only on the generator.
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
