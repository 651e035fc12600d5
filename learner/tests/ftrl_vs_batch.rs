//! FTRL, learning one example at a time in a single pass, reaches the held-out log-loss of a
//! batch logistic regression (linfa-logistic, L-BFGS to convergence) fitted on the same data.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamrec_learner::{Example, FeatureSpace, Ftrl, FtrlConfig, Namespace, log_loss, sigmoid};

const NUMERIC: usize = 8;
const CATEGORIES: usize = 20;

struct Row {
    numeric: [f64; NUMERIC],
    category: usize,
    label: bool,
}

/// Labels drawn from a known logistic model.
fn synthetic(n: usize, seed: u64) -> Vec<Row> {
    let mut truth_rng = ChaCha8Rng::seed_from_u64(7);
    let weights: Vec<f64> = (0..NUMERIC)
        .map(|_| truth_rng.random_range(-1.0..1.0))
        .collect();
    let category_effect: Vec<f64> = (0..CATEGORIES)
        .map(|_| truth_rng.random_range(-1.5..1.5))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let numeric: [f64; NUMERIC] = std::array::from_fn(|_| rng.random_range(-1.0..1.0));
            let category = rng.random_range(0..CATEGORIES);
            let margin = -0.5
                + numeric
                    .iter()
                    .zip(&weights)
                    .map(|(x, w)| x * w)
                    .sum::<f64>()
                + category_effect[category];
            let label = rng.random_bool(sigmoid(margin));
            Row {
                numeric,
                category,
                label,
            }
        })
        .collect()
}

fn example(row: &Row) -> Example {
    let mut numeric = Namespace::new('x');
    for (j, &x) in row.numeric.iter().enumerate() {
        numeric.push(&format!("f{j}"), x as f32);
    }
    Example::new(vec![
        numeric,
        Namespace::new('c').categorical(&format!("c{}", row.category)),
    ])
}

fn dense(rows: &[Row]) -> Array2<f64> {
    Array2::from_shape_fn((rows.len(), NUMERIC + CATEGORIES), |(i, j)| {
        if j < NUMERIC {
            rows[i].numeric[j]
        } else {
            f64::from(u8::from(rows[i].category == j - NUMERIC))
        }
    })
}

fn mean_log_loss(ps: impl Iterator<Item = f64>, rows: &[Row]) -> f64 {
    ps.zip(rows)
        .map(|(p, r)| log_loss(p, f64::from(u8::from(r.label))))
        .sum::<f64>()
        / rows.len() as f64
}

#[test]
fn single_pass_ftrl_is_within_two_percent_of_batch_logistic_regression() {
    let train = synthetic(40_000, 1);
    let test = synthetic(10_000, 2);

    let mut ftrl = Ftrl::new(FtrlConfig {
        l1: 0.0,
        space: FeatureSpace::new(18, Vec::new()),
        ..FtrlConfig::default()
    });
    for row in &train {
        ftrl.update(&example(row), f64::from(u8::from(row.label)));
    }
    let ftrl_loss = mean_log_loss(test.iter().map(|r| ftrl.predict(&example(r))), &test);

    let labels: Array1<bool> = train.iter().map(|r| r.label).collect();
    let batch = LogisticRegression::default()
        .alpha(1e-6)
        .max_iterations(500)
        .fit(&Dataset::new(dense(&train), labels))
        .expect("batch logistic regression converges");
    // linfa reports the probability of its "positive" class: the more frequent label.
    let positive_is_true = batch.labels().pos.class;
    let probs = batch.predict_probabilities(&dense(&test));
    let p_true = probs
        .iter()
        .map(|&p| if positive_is_true { p } else { 1.0 - p });
    let batch_loss = mean_log_loss(p_true, &test);

    let base_rate = train.iter().filter(|r| r.label).count() as f64 / train.len() as f64;
    let constant_loss = mean_log_loss(test.iter().map(|_| base_rate), &test);
    println!(
        "held-out log-loss: ftrl {ftrl_loss:.5}, batch {batch_loss:.5}, constant {constant_loss:.5}"
    );
    assert!(batch_loss < constant_loss * 0.95, "the data carries signal");
    assert!(
        ftrl_loss <= batch_loss * 1.02,
        "FTRL {ftrl_loss:.5} vs batch {batch_loss:.5}"
    );
}
