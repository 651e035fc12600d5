//! The uniform-random policy: every candidate equally likely at every position.

use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{ActionDistribution, Arm, Policy};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Uniform;

impl Policy for Uniform {
    fn name(&self) -> &'static str {
        "uniform"
    }

    fn rank(&self, arms: &[Arm], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        sample(rng, arms.len(), k.min(arms.len())).into_vec()
    }

    fn action_distribution(
        &self,
        arms: &[Arm],
        k: usize,
        _rng: &mut ChaCha8Rng,
    ) -> ActionDistribution {
        let n = arms.len();
        vec![vec![1.0 / n as f64; n]; k.min(n)]
    }

    fn update(&mut self, _arm: &Arm, _reward: f64) {}
}
