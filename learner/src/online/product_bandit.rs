//! The bandit of the serving path: disjoint linear models per item over a small context
//! derived from the candidate stage, so an item's clicks move it and only it.
//!
//! Context x = [1, log(1 + popularity) / log(1 + top popularity)]. An item never shown has
//! the prior, under which LinUCB's bonus α·‖x‖/√λ grows with popularity: a cold engine
//! ranks by popularity, and feedback moves items from there.

use std::hash::{Hash, Hasher};

use nalgebra::DVector;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::bandit::{ActionDistribution, Arm, EpsilonGreedy, LinTs, LinUcb, LinearArms, Policy};

pub const ARM_DIM: usize = 2;

/// Which policy serves; all share the same context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BanditKind {
    /// Deterministic (propensity 1): reproducible lists, no randomisation for OPE.
    #[default]
    Linucb,
    /// Randomised: propensities below 1, so its logs support off-policy evaluation.
    Lints,
    Egreedy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Bandit {
    LinUcb(LinUcb),
    LinTs(LinTs),
    EpsilonGreedy(EpsilonGreedy),
}

/// A policy's parameters: its exploration (LinUCB's alpha, LinTS's posterior scale,
/// epsilon-greedy's epsilon) and its ridge regularisation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BanditParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exploration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regularization: Option<f64>,
}

impl BanditParams {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Bandit {
    pub fn new(kind: BanditKind) -> Self {
        Self::with_params(kind, BanditParams::default())
    }

    pub fn with_params(kind: BanditKind, params: BanditParams) -> Self {
        let lambda = params.regularization.unwrap_or(1.0);
        match kind {
            BanditKind::Linucb => Bandit::LinUcb(LinUcb::new(
                ARM_DIM,
                params.exploration.unwrap_or(0.3),
                lambda,
            )),
            BanditKind::Lints => Bandit::LinTs(LinTs::new(
                ARM_DIM,
                params.exploration.unwrap_or(0.1),
                lambda,
            )),
            BanditKind::Egreedy => Bandit::EpsilonGreedy(EpsilonGreedy::new(
                ARM_DIM,
                params.exploration.unwrap_or(0.1),
                lambda,
            )),
        }
    }

    pub fn dim(&self) -> usize {
        ARM_DIM
    }

    fn policy(&self) -> &dyn Policy {
        match self {
            Bandit::LinUcb(p) => p,
            Bandit::LinTs(p) => p,
            Bandit::EpsilonGreedy(p) => p,
        }
    }

    fn policy_mut(&mut self) -> &mut dyn Policy {
        match self {
            Bandit::LinUcb(p) => p,
            Bandit::LinTs(p) => p,
            Bandit::EpsilonGreedy(p) => p,
        }
    }

    /// The per-item linear models.
    pub fn model(&self) -> &LinearArms {
        match self {
            Bandit::LinUcb(p) => &p.model,
            Bandit::LinTs(p) => &p.model,
            Bandit::EpsilonGreedy(p) => &p.model,
        }
    }

    pub fn model_mut(&mut self) -> &mut LinearArms {
        match self {
            Bandit::LinUcb(p) => &mut p.model,
            Bandit::LinTs(p) => &mut p.model,
            Bandit::EpsilonGreedy(p) => &mut p.model,
        }
    }

    /// Pulls and summed reward of one item's model.
    pub fn arm_stats(&self, item_id: &str) -> Option<(u64, f64)> {
        self.model()
            .arm(arm_key(item_id))
            .map(|a| (a.pulls, a.reward_sum))
    }
}

impl Policy for Bandit {
    fn name(&self) -> &'static str {
        self.policy().name()
    }

    fn rank(&self, arms: &[Arm], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        self.policy().rank(arms, k, rng)
    }

    fn action_distribution(
        &self,
        arms: &[Arm],
        k: usize,
        rng: &mut ChaCha8Rng,
    ) -> ActionDistribution {
        self.policy().action_distribution(arms, k, rng)
    }

    fn update(&mut self, arm: &Arm, reward: f64) {
        self.policy_mut().update(arm, reward);
    }
}

/// The bandit's context for a candidate with popularity `score`.
pub fn arm_features(score: f64, top_score: f64) -> Vec<f64> {
    let scale = (1.0 + top_score.max(0.0)).ln();
    let relative = if scale > 0.0 {
        (1.0 + score.max(0.0)).ln() / scale
    } else {
        0.0
    };
    vec![1.0, relative]
}

/// Stable arm identity of an item.
pub fn arm_key(item_id: &str) -> u64 {
    xxh3_64(item_id.as_bytes())
}

/// A generator seeded by a request id: the same request explores the same way.
pub fn request_rng(rec_id: &str) -> ChaCha8Rng {
    let mut h = Xxh3::new();
    rec_id.hash(&mut h);
    rand::SeedableRng::seed_from_u64(h.finish())
}

/// Builds the arms for candidates `(item_id, score)` in rank order.
pub fn arms_for(candidates: &[(String, f64)]) -> Vec<Arm> {
    let top = candidates.first().map_or(0.0, |c| c.1);
    candidates
        .iter()
        .map(|(id, score)| Arm {
            key: arm_key(id),
            x: DVector::from_vec(arm_features(*score, top)),
        })
        .collect()
}

/// One slot of an answer: which candidate, and the slot as recorded in an impression.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub candidate: usize,
    pub shown: streamrec_proto::ShownItem,
}

/// The slate `bandit` shows for `candidates` (item, score; in rank order) under `rec_id`:
/// each slot with its propensity and the features the decision used. Without a bandit, the
/// first `k` candidates with propensity 1.
pub fn choose_slate(
    bandit: Option<&Bandit>,
    candidates: &[(String, f64)],
    k: usize,
    rec_id: &str,
) -> Vec<Slot> {
    let arms = arms_for(candidates);
    let (slate, propensities) = match bandit {
        Some(bandit) => {
            let decision = bandit.decide(&arms, k, &mut request_rng(rec_id));
            (decision.slate, decision.propensities)
        }
        None => {
            let n = k.min(candidates.len());
            ((0..n).collect(), vec![1.0; n])
        }
    };
    slate
        .into_iter()
        .zip(propensities)
        .enumerate()
        .map(|(position, (c, propensity))| Slot {
            candidate: c,
            shown: streamrec_proto::ShownItem {
                item_id: candidates[c].0.clone(),
                position: position as u32,
                propensity,
                features: arms[c].x.iter().copied().collect(),
                candidate_features: None,
                rerank_score: None,
            },
        })
        .collect()
}
