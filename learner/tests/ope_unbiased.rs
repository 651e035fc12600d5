//! IPW, SNIPW and DR on synthetic logs whose true target-policy value is known: their mean
//! over many logs is the truth, and their 95% intervals cover it about 95% of the time.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamrec_learner::ope::{Estimator, LoggedRound, bootstrap, dr, ipw, snipw};

const ACTIONS: usize = 5;
const CONTEXTS: usize = 4;
const ROUNDS: usize = 2_000;
const LOGS: u64 = 120;

/// Click probability of action `a` in context `c`.
fn q(c: usize, a: usize) -> f64 {
    0.05 + 0.15 * ((c * 3 + a * 7) % 5) as f64 / 4.0
}

/// Logging policy: favours low action ids, never zero.
fn logging(c: usize, a: usize) -> f64 {
    let w = |a: usize| 1.0 / (1.0 + a as f64 + c as f64 * 0.1);
    w(a) / (0..ACTIONS).map(w).sum::<f64>()
}

/// Target policy: favours high action ids.
fn target(_c: usize, a: usize) -> f64 {
    (a + 1) as f64 / (ACTIONS * (ACTIONS + 1) / 2) as f64
}

/// A deliberately wrong reward model: DR must not need it to be right.
fn model(c: usize, a: usize) -> f64 {
    q(c, a) * 0.5 + 0.05
}

fn truth() -> f64 {
    (0..CONTEXTS)
        .map(|c| (0..ACTIONS).map(|a| target(c, a) * q(c, a)).sum::<f64>())
        .sum::<f64>()
        / CONTEXTS as f64
}

fn log(seed: u64) -> Vec<LoggedRound> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..ROUNDS)
        .map(|_| {
            let c = rng.random_range(0..CONTEXTS);
            let u: f64 = rng.random();
            let mut acc = 0.0;
            let a = (0..ACTIONS)
                .find(|&a| {
                    acc += logging(c, a);
                    u < acc
                })
                .unwrap_or(ACTIONS - 1);
            LoggedRound {
                reward: f64::from(u8::from(rng.random_bool(q(c, a)))),
                logging_propensity: logging(c, a),
                target_propensity: target(c, a),
                model_logged: model(c, a),
                model_target: (0..ACTIONS).map(|b| target(c, b) * model(c, b)).sum(),
            }
        })
        .collect()
}

#[test]
fn estimators_are_unbiased_and_intervals_cover_the_truth() {
    let truth = truth();
    let estimators: [(&str, Estimator); 3] = [("ipw", ipw), ("snipw", snipw), ("dr", dr)];
    for (name, estimator) in estimators {
        let mut estimates = Vec::new();
        let mut covered = 0;
        for seed in 0..LOGS {
            let rounds = log(seed);
            let e = bootstrap(&rounds, estimator, 100, seed);
            estimates.push(e.estimate);
            covered += u32::from(e.ci95[0] <= truth && truth <= e.ci95[1]);
        }
        let mean = estimates.iter().sum::<f64>() / LOGS as f64;
        let sd =
            (estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (LOGS - 1) as f64).sqrt();
        let stderr = sd / (LOGS as f64).sqrt();
        println!(
            "{name}: truth {truth:.5}, mean {mean:.5} ± {stderr:.5}, coverage {covered}/{LOGS}"
        );
        assert!(
            (mean - truth).abs() < 3.0 * stderr,
            "{name}: mean {mean:.5} vs truth {truth:.5}"
        );
        assert!(
            covered as f64 >= 0.88 * LOGS as f64,
            "{name}: the 95% interval covered {covered}/{LOGS}"
        );
    }
}
