//! Epsilon-greedy over disjoint linear models: with probability 1 − ε the greedy slate by
//! estimated reward, otherwise a uniformly random one (as Open Bandit Pipeline does), so each
//! position's propensity is exact: (1 − ε)·[greedy] + ε/n.

use rand::Rng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{ActionDistribution, Arm, LinearArms, Policy, top_by_score};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpsilonGreedy {
    pub epsilon: f64,
    pub model: LinearArms,
}

impl EpsilonGreedy {
    pub fn new(dim: usize, epsilon: f64, lambda: f64) -> Self {
        Self {
            epsilon: epsilon.clamp(0.0, 1.0),
            model: LinearArms::new(dim, lambda),
        }
    }

    fn greedy(&self, arms: &[Arm], k: usize) -> Vec<usize> {
        let means: Vec<f64> = arms
            .iter()
            .map(|a| self.model.mean_and_variance(a).0)
            .collect();
        top_by_score(&means, k)
    }
}

impl Policy for EpsilonGreedy {
    fn name(&self) -> &'static str {
        "egreedy"
    }

    fn rank(&self, arms: &[Arm], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        if rng.random::<f64>() < self.epsilon {
            sample(rng, arms.len(), k.min(arms.len())).into_vec()
        } else {
            self.greedy(arms, k)
        }
    }

    fn action_distribution(
        &self,
        arms: &[Arm],
        k: usize,
        _rng: &mut ChaCha8Rng,
    ) -> ActionDistribution {
        let n = arms.len();
        self.greedy(arms, k)
            .into_iter()
            .map(|g| {
                let mut row = vec![self.epsilon / n as f64; n];
                row[g] += 1.0 - self.epsilon;
                row
            })
            .collect()
    }

    fn update(&mut self, arm: &Arm, reward: f64) {
        self.model.update(arm, reward);
    }
}
