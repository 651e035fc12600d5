//! Off-policy evaluation: the value of a target policy estimated from rounds logged by
//! another, with bootstrap 95% intervals. IPW and SNIPW follow Open Bandit Pipeline's
//! definitions, so the numbers are comparable with its published ones; the direct-method part
//! of DR comes from a reward model (the CTR model) scored on the logged rounds.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One logged round, seen from one target policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoggedRound {
    pub reward: f64,
    /// π_b(a|x): probability with which the logging policy took the logged action.
    pub logging_propensity: f64,
    /// π_e(a|x): probability with which the target policy takes the logged action.
    pub target_propensity: f64,
    /// q̂(x, a) for the logged action.
    pub model_logged: f64,
    /// Σ_a' π_e(a'|x) q̂(x, a'): the model's value of the target policy in this context.
    pub model_target: f64,
}

impl LoggedRound {
    fn weight(&self) -> f64 {
        self.target_propensity / self.logging_propensity
    }
}

/// A value estimator over logged rounds.
pub type Estimator = fn(&[LoggedRound]) -> f64;

/// A point estimate and its bootstrap 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub estimate: f64,
    pub ci95: [f64; 2],
}

/// Inverse probability weighting: mean of w·r.
pub fn ipw(rounds: &[LoggedRound]) -> f64 {
    mean(rounds.iter().map(|r| r.weight() * r.reward))
}

/// Self-normalised IPW: Σ w·r / Σ w. Biased but bounded by the rewards, far steadier.
pub fn snipw(rounds: &[LoggedRound]) -> f64 {
    let (num, den) = rounds.iter().fold((0.0, 0.0), |(n, d), r| {
        (n + r.weight() * r.reward, d + r.weight())
    });
    if den == 0.0 { 0.0 } else { num / den }
}

/// Doubly robust: the model's value plus the IPW-weighted correction of its error. Unbiased
/// when either the propensities or the model are right.
pub fn dr(rounds: &[LoggedRound]) -> f64 {
    mean(
        rounds
            .iter()
            .map(|r| r.model_target + r.weight() * (r.reward - r.model_logged)),
    )
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// The estimate on all rounds, and the 2.5th/97.5th percentiles of the estimator over
/// `resamples` bootstrap resamples of the rounds.
pub fn bootstrap(
    rounds: &[LoggedRound],
    estimator: Estimator,
    resamples: usize,
    seed: u64,
) -> Estimate {
    let estimate = estimator(rounds);
    if rounds.is_empty() || resamples == 0 {
        return Estimate {
            estimate,
            ci95: [estimate, estimate],
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sample = Vec::with_capacity(rounds.len());
    let mut values: Vec<f64> = (0..resamples)
        .map(|_| {
            sample.clear();
            sample.extend((0..rounds.len()).map(|_| rounds[rng.random_range(0..rounds.len())]));
            estimator(&sample)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    Estimate {
        estimate,
        ci95: [percentile(&values, 2.5), percentile(&values, 97.5)],
    }
}

/// Linear interpolation between order statistics (numpy's default).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// The replay method (Li et al., WSDM 2011) for logs of a uniform-random policy: a round
/// counts only when the evaluated policy chose the logged action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    pub matched: u64,
    pub reward_sum: f64,
}

impl Replay {
    pub fn record(&mut self, matched: bool, reward: f64) {
        if matched {
            self.matched += 1;
            self.reward_sum += reward;
        }
    }

    pub fn estimate(&self) -> f64 {
        if self.matched == 0 {
            0.0
        } else {
            self.reward_sum / self.matched as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(reward: f64, logging: f64, target: f64) -> LoggedRound {
        LoggedRound {
            reward,
            logging_propensity: logging,
            target_propensity: target,
            model_logged: 0.0,
            model_target: 0.0,
        }
    }

    #[test]
    fn on_policy_ipw_is_the_plain_mean() {
        let rounds = [
            round(1.0, 0.5, 0.5),
            round(0.0, 0.2, 0.2),
            round(1.0, 0.9, 0.9),
        ];
        assert!((ipw(&rounds) - 2.0 / 3.0).abs() < 1e-12);
        assert!((snipw(&rounds) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn dr_with_a_perfect_model_has_no_correction() {
        let r = LoggedRound {
            reward: 0.3,
            logging_propensity: 0.1,
            target_propensity: 0.9,
            model_logged: 0.3,
            model_target: 0.25,
        };
        assert!((dr(&[r]) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert!((percentile(&v, 50.0) - 2.5).abs() < 1e-12);
        assert!((percentile(&v, 2.5) - 1.075).abs() < 1e-12);
    }

    #[test]
    fn the_interval_brackets_the_estimate() {
        let rounds: Vec<LoggedRound> = (0..500)
            .map(|i| round(f64::from(i % 7 == 0), 0.5, 0.25))
            .collect();
        let e = bootstrap(&rounds, ipw, 500, 1);
        assert!(e.ci95[0] <= e.estimate && e.estimate <= e.ci95[1]);
        assert!(e.ci95[0] < e.ci95[1]);
    }
}
