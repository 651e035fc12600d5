//! Bandits on a simulated linear problem: LinUCB and linear Thompson sampling have regret that
//! grows sublinearly and stays below epsilon-greedy's; every policy's stated propensities are
//! the frequencies with which it actually chooses.

use nalgebra::DVector;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamrec_learner::bandit::{Arm, BernoulliTs, EpsilonGreedy, LinTs, LinUcb, Policy, Uniform};

const ARMS: usize = 10;
const DIM: usize = 5;
const ROUNDS: usize = 4_000;
const SEEDS: u64 = 5;

struct Problem {
    thetas: Vec<DVector<f64>>,
}

impl Problem {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(1_000 + seed);
        let thetas = (0..ARMS)
            .map(|_| DVector::from_fn(DIM, |_, _| rng.random_range(-1.0..1.0)))
            .collect();
        Self { thetas }
    }

    fn context(&self, rng: &mut ChaCha8Rng) -> Vec<Arm> {
        let x = DVector::from_fn(DIM, |_, _| rng.random_range(-1.0..1.0));
        (0..ARMS)
            .map(|a| Arm {
                key: a as u64,
                x: x.clone(),
            })
            .collect()
    }

    fn mean(&self, arms: &[Arm], a: usize) -> f64 {
        self.thetas[a].dot(&arms[a].x)
    }
}

/// Cumulative pseudo-regret after each round.
fn run(mut policy: impl Policy, seed: u64) -> Vec<f64> {
    let problem = Problem::new(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut noise = ChaCha8Rng::seed_from_u64(seed + 99);
    let mut total = 0.0;
    let mut curve = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let arms = problem.context(&mut rng);
        let chosen = policy.rank(&arms, 1, &mut rng)[0];
        let best = (0..ARMS)
            .map(|a| problem.mean(&arms, a))
            .fold(f64::MIN, f64::max);
        let mean = problem.mean(&arms, chosen);
        total += best - mean;
        let reward = mean + 0.1 * (noise.random::<f64>() - 0.5);
        policy.update(&arms[chosen], reward);
        curve.push(total);
    }
    curve
}

fn mean_curve(runner: impl Fn(u64) -> Vec<f64>) -> Vec<f64> {
    let curves: Vec<Vec<f64>> = (0..SEEDS).map(runner).collect();
    (0..ROUNDS)
        .map(|t| curves.iter().map(|c| c[t]).sum::<f64>() / SEEDS as f64)
        .collect()
}

#[test]
fn linucb_and_lints_regret_is_sublinear_and_below_epsilon_greedy() {
    let linucb = mean_curve(|s| run(LinUcb::new(DIM, 0.5, 1.0), s));
    let lints = mean_curve(|s| run(LinTs::new(DIM, 0.2, 1.0), s));
    let egreedy = mean_curve(|s| run(EpsilonGreedy::new(DIM, 0.1, 1.0), s));
    let half = ROUNDS / 2 - 1;
    let end = ROUNDS - 1;
    for (name, curve) in [
        ("linucb", &linucb),
        ("lints", &lints),
        ("egreedy", &egreedy),
    ] {
        println!(
            "{name}: regret {:.1} after {} rounds, {:.1} after {ROUNDS}",
            curve[half],
            half + 1,
            curve[end]
        );
    }
    for (name, curve) in [("linucb", &linucb), ("lints", &lints)] {
        let first_half = curve[half];
        let second_half = curve[end] - curve[half];
        assert!(
            second_half < 0.5 * first_half,
            "{name}: the second half adds {second_half:.1}, the first {first_half:.1}"
        );
        assert!(
            curve[end] < egreedy[end],
            "{name} {:.1} vs egreedy {:.1}",
            curve[end],
            egreedy[end]
        );
    }
    // Fixed-ε exploration keeps paying: its regret keeps growing at a steady rate.
    assert!(egreedy[end] - egreedy[half] > 0.5 * egreedy[half]);
}

/// Empirical frequency of each (position, candidate) over many `rank` calls.
fn empirical(policy: &dyn Policy, arms: &[Arm], k: usize, draws: usize) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut freq = vec![vec![0.0; arms.len()]; k];
    for _ in 0..draws {
        for (pos, c) in policy.rank(arms, k, &mut rng).into_iter().enumerate() {
            freq[pos][c] += 1.0 / draws as f64;
        }
    }
    freq
}

#[test]
fn stated_propensities_are_the_real_choice_frequencies() {
    let problem = Problem::new(0);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let arms = problem.context(&mut rng);
    // Train a little so the models are not at their priors.
    let mut linucb = LinUcb::new(DIM, 0.5, 1.0);
    let mut lints = LinTs::new(DIM, 0.5, 1.0);
    lints.draws = 20_000;
    let mut egreedy = EpsilonGreedy::new(DIM, 0.2, 1.0);
    let mut bts = BernoulliTs::new(1.0, 1.0);
    bts.draws = 20_000;
    for (a, arm) in arms.iter().enumerate() {
        let r = problem.mean(&arms, a);
        linucb.update(arm, r);
        lints.update(arm, r);
        egreedy.update(arm, r);
        bts.update(arm, if a % 3 == 0 { 1.0 } else { 0.0 });
    }
    let policies: [&dyn Policy; 5] = [&Uniform, &linucb, &lints, &egreedy, &bts];
    for policy in policies {
        let stated = policy.action_distribution(&arms, 3, &mut rng);
        for row in &stated {
            assert!(
                (row.iter().sum::<f64>() - 1.0).abs() < 1e-9,
                "{}: a position's propensities sum to 1",
                policy.name()
            );
        }
        let observed = empirical(policy, &arms, 3, 20_000);
        for (pos, (s, o)) in stated.iter().zip(&observed).enumerate() {
            for (c, (ps, po)) in s.iter().zip(o).enumerate() {
                assert!(
                    (ps - po).abs() < 0.02,
                    "{} position {pos} candidate {c}: stated {ps:.3}, observed {po:.3}",
                    policy.name()
                );
            }
        }
        // A decision's propensities are those of its own choices.
        let decision = policy.decide(&arms, 3, &mut rng);
        assert_eq!(decision.slate.len(), 3);
        assert!(decision.propensities.iter().all(|&p| p > 0.0 && p <= 1.0));
    }
}
