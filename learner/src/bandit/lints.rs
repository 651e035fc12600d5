//! Linear Thompson sampling (Agrawal & Goyal, ICML 2013) with disjoint models. Each arm's
//! sampled score θ̃ᵀx with θ̃ ~ N(θ̂, v²A⁻¹) is the scalar N(θ̂ᵀx, v²·xᵀA⁻¹x), so a draw costs
//! one normal per arm rather than a d-dimensional Cholesky sample.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{ActionDistribution, Arm, LinearArms, Policy, simulate, standard_normal, top_by_score};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinTs {
    /// Posterior scale v.
    pub scale: f64,
    pub model: LinearArms,
    /// Monte-Carlo draws behind each propensity.
    pub draws: usize,
}

impl LinTs {
    pub fn new(dim: usize, scale: f64, lambda: f64) -> Self {
        Self {
            scale,
            model: LinearArms::new(dim, lambda),
            draws: 256,
        }
    }

    fn sample_ranking(&self, moments: &[(f64, f64)], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let scores: Vec<f64> = moments
            .iter()
            .map(|&(mean, var)| mean + self.scale * var.sqrt() * standard_normal(rng))
            .collect();
        top_by_score(&scores, k)
    }

    fn moments(&self, arms: &[Arm]) -> Vec<(f64, f64)> {
        arms.iter()
            .map(|a| self.model.mean_and_variance(a))
            .collect()
    }
}

impl Policy for LinTs {
    fn name(&self) -> &'static str {
        "lints"
    }

    fn rank(&self, arms: &[Arm], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        self.sample_ranking(&self.moments(arms), k, rng)
    }

    fn action_distribution(
        &self,
        arms: &[Arm],
        k: usize,
        rng: &mut ChaCha8Rng,
    ) -> ActionDistribution {
        let moments = self.moments(arms);
        simulate(arms.len(), k, self.draws, rng, |rng| {
            self.sample_ranking(&moments, k, rng)
        })
    }

    fn update(&mut self, arm: &Arm, reward: f64) {
        self.model.update(arm, reward);
    }
}
