//! LinUCB with disjoint linear models (Li et al., WWW 2010): rank by mean + α·√(xᵀA⁻¹x).

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{ActionDistribution, Arm, LinearArms, Policy, one_hot, top_by_score};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinUcb {
    pub alpha: f64,
    pub model: LinearArms,
}

impl LinUcb {
    pub fn new(dim: usize, alpha: f64, lambda: f64) -> Self {
        Self {
            alpha,
            model: LinearArms::new(dim, lambda),
        }
    }

    fn scores(&self, arms: &[Arm]) -> Vec<f64> {
        arms.iter()
            .map(|arm| {
                let (mean, var) = self.model.mean_and_variance(arm);
                mean + self.alpha * var.sqrt()
            })
            .collect()
    }
}

impl Policy for LinUcb {
    fn name(&self) -> &'static str {
        "linucb"
    }

    fn rank(&self, arms: &[Arm], k: usize, _rng: &mut ChaCha8Rng) -> Vec<usize> {
        top_by_score(&self.scores(arms), k)
    }

    /// Deterministic: the ranking has probability one.
    fn action_distribution(
        &self,
        arms: &[Arm],
        k: usize,
        rng: &mut ChaCha8Rng,
    ) -> ActionDistribution {
        one_hot(&self.rank(arms, k, rng), arms.len())
    }

    fn update(&mut self, arm: &Arm, reward: f64) {
        self.model.update(arm, reward);
    }
}
