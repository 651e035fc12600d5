//! FTRL-Proximal logistic regression (McMahan et al., "Ad Click Prediction: a View from the
//! Trenches", KDD 2013): per-coordinate learning rates, L1 and L2, over hashed features.
//! Weights are not stored: each is computed on demand from its `z` and `n`, which is what
//! makes the L1 sparsity exact and the update a few flops per feature.

use serde::{Deserialize, Serialize};

use crate::features::{Example, FeatureSpace};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FtrlConfig {
    pub alpha: f64,
    pub beta: f64,
    pub l1: f64,
    pub l2: f64,
    pub space: FeatureSpace,
}

impl Default for FtrlConfig {
    fn default() -> Self {
        Self {
            alpha: 0.2,
            beta: 1.0,
            l1: 0.1,
            l2: 1.0,
            space: FeatureSpace::new(20, Vec::new()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ftrl {
    config: FtrlConfig,
    z: Vec<f64>,
    n: Vec<f64>,
    examples: u64,
    #[serde(skip)]
    scratch: Vec<(u32, f32)>,
}

/// Probabilities are kept inside (ε, 1 − ε) so the log-loss stays finite.
const EPS: f64 = 1e-15;

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x.clamp(-35.0, 35.0)).exp())
}

/// Log-loss of predicting `p` for label `y` (0 or 1).
pub fn log_loss(p: f64, y: f64) -> f64 {
    let p = p.clamp(EPS, 1.0 - EPS);
    -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
}

impl Ftrl {
    pub fn new(config: FtrlConfig) -> Self {
        let size = config.space.size();
        Self {
            config,
            z: vec![0.0; size],
            n: vec![0.0; size],
            examples: 0,
            scratch: Vec::new(),
        }
    }

    pub fn config(&self) -> &FtrlConfig {
        &self.config
    }

    pub fn examples(&self) -> u64 {
        self.examples
    }

    fn weight(&self, i: usize) -> f64 {
        let z = self.z[i];
        let c = &self.config;
        if z.abs() <= c.l1 {
            0.0
        } else {
            -(z - z.signum() * c.l1) / ((c.beta + self.n[i].sqrt()) / c.alpha + c.l2)
        }
    }

    fn margin(&self, features: &[(u32, f32)]) -> f64 {
        features
            .iter()
            .map(|&(i, v)| self.weight(i as usize) * f64::from(v))
            .sum()
    }

    /// Probability of a positive label.
    pub fn predict(&mut self, example: &Example) -> f64 {
        let mut features = std::mem::take(&mut self.scratch);
        self.config.space.expand(example, &mut features);
        let p = sigmoid(self.margin(&features));
        self.scratch = features;
        p
    }

    /// Learns one labelled example (`y` in {0, 1}); returns the prediction made *before*
    /// learning it (progressive validation).
    pub fn update(&mut self, example: &Example, y: f64) -> f64 {
        let mut features = std::mem::take(&mut self.scratch);
        self.config.space.expand(example, &mut features);
        let p = sigmoid(self.margin(&features));
        let alpha = self.config.alpha;
        for &(i, v) in &features {
            let i = i as usize;
            let g = (p - y) * f64::from(v);
            let sigma = ((self.n[i] + g * g).sqrt() - self.n[i].sqrt()) / alpha;
            self.z[i] += g - sigma * self.weight(i);
            self.n[i] += g * g;
        }
        self.examples += 1;
        self.scratch = features;
        p
    }

    /// Number of coordinates with a non-zero weight.
    pub fn nonzero_weights(&self) -> usize {
        (0..self.z.len()).filter(|&i| self.weight(i) != 0.0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Namespace;

    fn ex(x: &str) -> Example {
        Example::new(vec![Namespace::new('a').categorical(x)])
    }

    #[test]
    fn learns_a_separable_signal() {
        let mut model = Ftrl::new(FtrlConfig::default());
        for _ in 0..500 {
            model.update(&ex("good"), 1.0);
            model.update(&ex("bad"), 0.0);
        }
        let p = model.predict(&ex("good"));
        assert!(p > 0.9, "{p}");
        assert!(model.predict(&ex("bad")) < 0.1);
    }

    #[test]
    fn strong_l1_keeps_rare_noise_at_zero() {
        let config = FtrlConfig {
            l1: 5.0,
            ..FtrlConfig::default()
        };
        let mut model = Ftrl::new(config);
        model.update(&ex("once"), 1.0);
        assert_eq!(model.nonzero_weights(), 0);
    }

    #[test]
    fn log_loss_is_finite_at_the_edges() {
        assert!(log_loss(0.0, 1.0).is_finite());
        assert!(log_loss(1.0, 0.0).is_finite());
        assert!((log_loss(0.5, 1.0) - std::f64::consts::LN_2).abs() < 1e-12);
    }
}
