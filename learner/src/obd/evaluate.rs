//! A policy run over a logged OBD run in log order, learning online as it goes, and scored
//! off-policy (IPW, SNIPW, DR) and, on a uniform-random log, by the replay method.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{ObdLog, UserEncoder, reward_example, reward_model};
use crate::bandit::{BernoulliTs, EpsilonGreedy, LinTs, LinUcb, Policy, Uniform};
use crate::ftrl::Ftrl;
use crate::ope::{Estimate, LoggedRound, Replay, bootstrap, dr, ipw, snipw};

/// Bootstrap resamples behind each interval.
const RESAMPLES: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyName {
    Uniform,
    Egreedy,
    Linucb,
    Lints,
    Bts,
}

impl std::str::FromStr for PolicyName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uniform" => Ok(Self::Uniform),
            "egreedy" => Ok(Self::Egreedy),
            "linucb" => Ok(Self::Linucb),
            "lints" => Ok(Self::Lints),
            "bts" => Ok(Self::Bts),
            other => Err(format!(
                "unknown policy {other:?} (uniform, egreedy, linucb, lints, bts)"
            )),
        }
    }
}

/// Hyper-parameters of the policies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PolicyParams {
    /// Exploration rate of epsilon-greedy.
    pub epsilon: f64,
    /// Width of LinUCB's confidence bonus.
    pub ucb_alpha: f64,
    /// Posterior scale of linear Thompson sampling.
    pub ts_scale: f64,
    /// Ridge prior of the linear models.
    pub lambda: f64,
}

impl Default for PolicyParams {
    fn default() -> Self {
        Self {
            // Chosen on a 30,000-round, 4-seed sweep of the OBD simulator (seeds 0-3); see
            // docs/BENCHMARKS.md.
            epsilon: 0.1,
            ucb_alpha: 0.01,
            ts_scale: 0.005,
            lambda: 5.0,
        }
    }
}

/// The policy `name` over contexts of dimension `dim`.
pub fn make_policy(name: PolicyName, dim: usize, params: &PolicyParams) -> Box<dyn Policy> {
    let PolicyParams {
        epsilon,
        ucb_alpha,
        ts_scale,
        lambda,
    } = *params;
    match name {
        PolicyName::Uniform => Box::new(Uniform),
        PolicyName::Egreedy => Box::new(EpsilonGreedy::new(dim, epsilon, lambda)),
        PolicyName::Linucb => Box::new(LinUcb::new(dim, ucb_alpha, lambda)),
        PolicyName::Lints => Box::new(LinTs::new(dim, ts_scale, lambda)),
        PolicyName::Bts => Box::new(BernoulliTs::new(1.0, 1.0)),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub estimate: f64,
    pub matched: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub policy: PolicyName,
    pub rows: usize,
    pub ipw: Estimate,
    pub snipw: Estimate,
    pub dr: Estimate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayReport>,
}

/// Whether every impression was logged with the uniform propensity 1/items.
fn is_uniform(log: &ObdLog) -> bool {
    let uniform = 1.0 / log.items.len() as f64;
    log.rows
        .iter()
        .all(|r| (r.propensity - uniform).abs() < 1e-9)
}

pub fn evaluate(
    log: &ObdLog,
    name: PolicyName,
    params: &PolicyParams,
    seed: u64,
) -> EvaluationReport {
    let encoder = UserEncoder::fit(&log.rows);
    let n_items = log.items.len();
    let k = log.positions;
    let mut policy = make_policy(name, encoder.dim(), params);
    let mut model = reward_model();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rounds = Vec::with_capacity(log.rows.len());
    for row in &log.rows {
        let arms = encoder.arms(&row.user, &row.affinity, n_items);
        let dist = policy.action_distribution(&arms, k, &mut rng);
        let at_position = &dist[row.position.min(dist.len() - 1)];
        let q = |item: usize, model: &mut Ftrl| {
            model.predict(&reward_example(
                &row.user,
                &row.affinity,
                &log.items,
                item,
                row.position,
            ))
        };
        let model_target = (0..n_items)
            .filter(|&a| at_position[a] > 0.0)
            .map(|a| at_position[a] * q(a, &mut model))
            .sum();
        let logged = reward_example(&row.user, &row.affinity, &log.items, row.item, row.position);
        let reward = f64::from(u8::from(row.click));
        rounds.push(LoggedRound {
            reward,
            logging_propensity: row.propensity,
            target_propensity: at_position[row.item],
            model_logged: model.update(&logged, reward),
            model_target,
        });
        policy.update(&arms[row.item], reward);
    }
    EvaluationReport {
        policy: name,
        rows: log.rows.len(),
        ipw: bootstrap(&rounds, ipw, RESAMPLES, seed),
        snipw: bootstrap(&rounds, snipw, RESAMPLES, seed),
        dr: bootstrap(&rounds, dr, RESAMPLES, seed),
        replay: is_uniform(log).then(|| replay(log, &encoder, name, params, seed)),
    }
}

/// Li et al.'s replay: a fresh policy proposes a list for each impression; only impressions
/// where its item at the logged slot is the logged item count, and only those teach it.
fn replay(
    log: &ObdLog,
    encoder: &UserEncoder,
    name: PolicyName,
    params: &PolicyParams,
    seed: u64,
) -> ReplayReport {
    let mut policy = make_policy(name, encoder.dim(), params);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED);
    let mut replay = Replay::default();
    for row in &log.rows {
        let arms = encoder.arms(&row.user, &row.affinity, log.items.len());
        let slate = policy.rank(&arms, log.positions, &mut rng);
        let matched = slate.get(row.position) == Some(&row.item);
        let reward = f64::from(u8::from(row.click));
        replay.record(matched, reward);
        if matched {
            policy.update(&arms[row.item], reward);
        }
    }
    ReplayReport {
        estimate: replay.estimate(),
        matched: replay.matched,
    }
}
