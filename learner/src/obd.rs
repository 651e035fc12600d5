//! The Open Bandit Dataset as bandit feedback: contexts for the policies, features for the
//! reward model, and the online off-policy evaluation of a policy over a logged run.

mod evaluate;
mod simulator;

use serde::{Deserialize, Serialize};

use crate::bandit::Arm;
use crate::features::{Example, FeatureSpace, Namespace};
use crate::ftrl::{Ftrl, FtrlConfig};

pub use evaluate::{
    EvaluationReport, PolicyName, PolicyParams, ReplayReport, evaluate, make_policy,
};
pub use simulator::{ClickModel, SimulationReport, simulate};

/// Number of user features in the log.
pub const USER_FEATURES: usize = 4;

/// One impression: the item shown at a position, whether it was clicked, and how likely
/// the logging policy was to show it there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObdRow {
    pub item: usize,
    /// 0-based slot.
    pub position: usize,
    pub click: bool,
    pub propensity: f64,
    pub user: [String; USER_FEATURES],
    /// User–item affinity, one per item.
    pub affinity: Vec<f64>,
}

/// Per-item context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObdItem {
    pub numeric: f64,
    pub categorical: Vec<String>,
}

/// A logged run, in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObdLog {
    pub rows: Vec<ObdRow>,
    pub items: Vec<ObdItem>,
    /// Slots per impression list.
    pub positions: usize,
}

/// One-hot encoding of the user features, with each feature's values sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEncoder {
    vocab: Vec<Vec<String>>,
}

impl UserEncoder {
    pub fn fit(rows: &[ObdRow]) -> Self {
        let vocab = (0..USER_FEATURES)
            .map(|f| {
                let mut values: Vec<String> = rows.iter().map(|r| r.user[f].clone()).collect();
                values.sort();
                values.dedup();
                values
            })
            .collect();
        Self { vocab }
    }

    /// Bias + one-hot user features + the item's affinity.
    pub fn dim(&self) -> usize {
        1 + self.vocab.iter().map(Vec::len).sum::<usize>() + 1
    }

    /// The candidates of one impression: every item, with the user's context.
    pub fn arms(&self, user: &[String; USER_FEATURES], affinity: &[f64], items: usize) -> Vec<Arm> {
        let mut shared = vec![0.0; self.dim()];
        shared[0] = 1.0;
        let mut offset = 1;
        for (f, values) in self.vocab.iter().enumerate() {
            if let Ok(i) = values.binary_search(&user[f]) {
                shared[offset + i] = 1.0;
            }
            offset += values.len();
        }
        (0..items)
            .map(|a| {
                let mut x = shared.clone();
                x[offset] = affinity.get(a).copied().unwrap_or(0.0);
                Arm {
                    key: a as u64,
                    x: nalgebra::DVector::from_vec(x),
                }
            })
            .collect()
    }
}

/// The reward (CTR) model over [`reward_example`]s: behind DR's direct-method term in the
/// evaluation, and the click model of the simulator.
pub fn reward_model() -> Ftrl {
    Ftrl::new(FtrlConfig {
        alpha: 0.05,
        l1: 0.0,
        space: FeatureSpace::new(18, vec![('u', 'i')]),
        ..FtrlConfig::default()
    })
}

/// Features of the reward (CTR) model for showing `item` at `position` to this user.
pub fn reward_example(
    user: &[String; USER_FEATURES],
    affinity: &[f64],
    items: &[ObdItem],
    item: usize,
    position: usize,
) -> Example {
    let mut u = Namespace::new('u');
    for (f, value) in user.iter().enumerate() {
        u.push(&format!("{f}={value}"), 1.0);
    }
    let mut i = Namespace::new('i').categorical(&item.to_string());
    if let Some(meta) = items.get(item) {
        for (f, value) in meta.categorical.iter().enumerate() {
            i.push(&format!("{f}={value}"), 1.0);
        }
        i.push("numeric", meta.numeric as f32);
    }
    let p = Namespace::new('p').categorical(&position.to_string());
    let a = Namespace::new('a').numeric(
        "affinity",
        affinity.get(item).copied().unwrap_or(0.0) as f32,
    );
    Example::new(vec![u, i, p, a])
}
