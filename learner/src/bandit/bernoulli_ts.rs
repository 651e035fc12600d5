//! Context-free Bernoulli Thompson sampling: a Beta posterior per arm, the policy that logged
//! the Open Bandit Dataset's production log. The baseline contextual policies must beat.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

use super::{ActionDistribution, Arm, Policy, simulate, top_by_score};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BernoulliTs {
    pub prior_alpha: f64,
    pub prior_beta: f64,
    /// (successes, failures) per arm.
    counts: BTreeMap<u64, (f64, f64)>,
    pub draws: usize,
}

impl BernoulliTs {
    pub fn new(prior_alpha: f64, prior_beta: f64) -> Self {
        Self {
            prior_alpha: prior_alpha.max(1e-6),
            prior_beta: prior_beta.max(1e-6),
            counts: BTreeMap::new(),
            draws: 256,
        }
    }

    fn sample_ranking(&self, arms: &[Arm], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let scores: Vec<f64> = arms
            .iter()
            .map(|arm| {
                let (s, f) = self.counts.get(&arm.key).copied().unwrap_or((0.0, 0.0));
                // Parameters are positive by construction, so the distribution exists.
                Beta::new(self.prior_alpha + s, self.prior_beta + f).map_or(0.0, |b| b.sample(rng))
            })
            .collect();
        top_by_score(&scores, k)
    }
}

impl Policy for BernoulliTs {
    fn name(&self) -> &'static str {
        "bts"
    }

    fn rank(&self, arms: &[Arm], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        self.sample_ranking(arms, k, rng)
    }

    fn action_distribution(
        &self,
        arms: &[Arm],
        k: usize,
        rng: &mut ChaCha8Rng,
    ) -> ActionDistribution {
        simulate(arms.len(), k, self.draws, rng, |rng| {
            self.sample_ranking(arms, k, rng)
        })
    }

    fn update(&mut self, arm: &Arm, reward: f64) {
        let entry = self.counts.entry(arm.key).or_insert((0.0, 0.0));
        if reward > 0.0 {
            entry.0 += 1.0;
        } else {
            entry.1 += 1.0;
        }
    }
}
