//! Per-arm ridge regression kept as an inverse Gram matrix, updated by Sherman–Morrison:
//! O(d²) per update instead of a d³ inversion. The shared core of LinUCB, linear Thompson
//! sampling and linear epsilon-greedy ("disjoint" models: one per arm).

use std::collections::BTreeMap;

use nalgebra::{DMatrix, DVector};
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

use super::Arm;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RidgeArm {
    /// (λI + Σ x xᵀ)⁻¹
    pub a_inv: DMatrix<f64>,
    /// Σ r x
    pub b: DVector<f64>,
    pub pulls: u64,
    pub reward_sum: f64,
}

impl RidgeArm {
    fn new(dim: usize, lambda: f64) -> Self {
        Self {
            a_inv: DMatrix::identity(dim, dim) / lambda,
            b: DVector::zeros(dim),
            pulls: 0,
            reward_sum: 0.0,
        }
    }

    /// θ = A⁻¹ b
    pub fn theta(&self) -> DVector<f64> {
        &self.a_inv * &self.b
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearArms {
    dim: usize,
    lambda: f64,
    /// Persistent (a hash array mapped trie), so the copy published to the request path
    /// after each batch of rewards costs O(1) and shares every arm the batch did not touch (a
    /// deep copy is O(arms · d²)); serialised in key order, so equal histories write equal
    /// bytes.
    #[serde(serialize_with = "crate::ordered_map::serialize")]
    arms: imbl::GenericHashMap<u64, RidgeArm, FxBuildHasher, imbl::shared_ptr::DefaultSharedPtr>,
}

impl LinearArms {
    pub fn new(dim: usize, lambda: f64) -> Self {
        Self {
            dim,
            lambda: lambda.max(1e-9),
            arms: Default::default(),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn arm(&self, key: u64) -> Option<&RidgeArm> {
        self.arms.get(&key)
    }

    /// Every arm, by key.
    pub fn arms(&self) -> impl Iterator<Item = (&u64, &RidgeArm)> {
        let mut arms: Vec<(&u64, &RidgeArm)> = self.arms.iter().collect();
        arms.sort_unstable_by_key(|(key, _)| **key);
        arms.into_iter()
    }

    /// Moves the per-arm statistics out (for storing them as tensors).
    pub fn take_arms(&mut self) -> BTreeMap<u64, RidgeArm> {
        std::mem::take(&mut self.arms).into_iter().collect()
    }

    pub fn set_arms(&mut self, arms: BTreeMap<u64, RidgeArm>) {
        self.arms = arms.into_iter().collect();
    }

    /// Estimated reward and its variance factor xᵀA⁻¹x for this arm and context. An arm
    /// never pulled has the prior: mean 0, A⁻¹ = I/λ.
    pub fn mean_and_variance(&self, arm: &Arm) -> (f64, f64) {
        match self.arms.get(&arm.key) {
            Some(state) => {
                let a_inv_x = &state.a_inv * &arm.x;
                (state.b.dot(&a_inv_x), arm.x.dot(&a_inv_x).max(0.0))
            }
            None => (0.0, arm.x.norm_squared() / self.lambda),
        }
    }

    pub fn update(&mut self, arm: &Arm, reward: f64) {
        let (dim, lambda) = (self.dim, self.lambda);
        if !self.arms.contains_key(&arm.key) {
            self.arms.insert(arm.key, RidgeArm::new(dim, lambda));
        }
        let Some(state) = self.arms.get_mut(&arm.key) else {
            return;
        };
        let u = &state.a_inv * &arm.x;
        let denominator = 1.0 + arm.x.dot(&u);
        state.a_inv -= (&u * u.transpose()) / denominator;
        state.b += &arm.x * reward;
        state.pulls += 1;
        state.reward_sum += reward;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Sherman–Morrison keeps A⁻¹ equal to the inverse of the Gram matrix built directly.
        #[test]
        fn inverse_matches_direct_inversion(
            xs in prop::collection::vec(prop::collection::vec(-2.0f64..2.0, 4), 1..40),
            lambda in 0.1f64..5.0,
        ) {
            let mut arms = LinearArms::new(4, lambda);
            let mut gram = DMatrix::identity(4, 4) * lambda;
            for x in &xs {
                let x = DVector::from_vec(x.clone());
                gram += &x * x.transpose();
                arms.update(&Arm { key: 1, x }, 1.0);
            }
            let direct = gram.try_inverse().expect("λI + XᵀX is positive definite");
            let kept = &arms.arm(1).expect("pulled").a_inv;
            prop_assert!((kept - &direct).abs().max() < 1e-8);
        }
    }

    #[test]
    fn recovers_a_linear_reward() {
        let mut arms = LinearArms::new(2, 0.01);
        let truth = DVector::from_vec(vec![0.5, -1.0]);
        for i in 0..200 {
            let x = DVector::from_vec(vec![(i % 7) as f64 / 7.0, (i % 5) as f64 / 5.0]);
            let r = truth.dot(&x);
            arms.update(&Arm { key: 0, x }, r);
        }
        let theta = arms.arm(0).expect("pulled").theta();
        assert!((theta - truth).norm() < 0.05);
    }
}
