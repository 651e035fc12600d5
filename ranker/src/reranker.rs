//! Stage two: a burn wide-and-deep scorer over each candidate's features (session intent
//! against the item, co-visitation, transition, windowed popularity, CTR estimate, context):
//! a linear part plus an MLP. The linear part starts as `prior_weight` × the stage-one score
//! and the MLP's output layer at zero, so an untrained re-ranker keeps stage one's order and
//! training can only move it where the data says so.
//!
//! Trained online with a listwise loss: each training group is one observed event (row 0,
//! the item the user went to) beside candidates they did not take; the loss is the softmax
//! cross-entropy of the positive within its group. Plain SGD keeps the optimizer stateless,
//! so the weights alone are the whole state a snapshot needs to resume training exactly.
//! Weights start from a seeded draw, so a run is reproducible.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::log_softmax;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A tensor as plain data: (name, shape, row-major values).
pub type Weights = Vec<(String, Vec<usize>, Vec<f32>)>;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum RerankError {
    #[error("re-ranker weights: {0}")]
    Weights(String),
    #[error("{got} feature values do not make rows of {inputs}")]
    Shape { got: usize, inputs: usize },
    #[error("device {0:?} is not compiled in (build with the `gpu` feature)")]
    Unavailable(String),
    #[error("unknown device {0:?}: use cpu or gpu")]
    UnknownDevice(String),
    #[error("re-ranker runtime: {0}")]
    Runtime(String),
}

/// Where the re-ranker runs: chosen at run time; the model code is the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ComputeDevice {
    /// burn's flex backend (pure Rust).
    #[default]
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12, or GL; Mesa's software driver without a
    /// GPU). Needs the `gpu` feature.
    Gpu,
}

impl ComputeDevice {
    pub fn parse(name: &str) -> Result<Self, RerankError> {
        match name {
            "cpu" => Ok(Self::Cpu),
            "gpu" if cfg!(feature = "gpu") => Ok(Self::Gpu),
            "gpu" => Err(RerankError::Unavailable(name.to_owned())),
            other => Err(RerankError::UnknownDevice(other.to_owned())),
        }
    }

    fn device(self) -> Device {
        match self {
            Self::Cpu => Device::flex(),
            #[cfg(feature = "gpu")]
            Self::Gpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(not(feature = "gpu"))]
            Self::Gpu => Device::flex(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RerankerConfig {
    pub inputs: usize,
    pub hidden: [usize; 2],
    pub learning_rate: f64,
    pub seed: u64,
    /// The input holding the stage-one score, and its initial weight in the linear part.
    pub prior: Option<(usize, f32)>,
}

impl RerankerConfig {
    pub fn new(inputs: usize) -> Self {
        Self {
            inputs,
            hidden: [32, 16],
            learning_rate: 0.05,
            seed: 7,
            prior: None,
        }
    }

    /// Starts the linear part at `weight` × input `index` (the stage-one score).
    pub fn with_prior(mut self, index: usize, weight: f32) -> Self {
        self.prior = (index < self.inputs).then_some((index, weight));
        self
    }
}

#[derive(Module, Debug)]
struct Mlp {
    first: Linear,
    second: Linear,
    out: Linear,
    wide: Linear,
    activation: Relu,
}

const LAYERS: [&str; 4] = ["first", "second", "out", "wide"];

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let wide = self.wide.forward(x.clone());
        let x = self.activation.forward(self.first.forward(x));
        let x = self.activation.forward(self.second.forward(x));
        self.out.forward(x) + wide
    }

    fn layers(&self) -> [&Linear; 4] {
        [&self.first, &self.second, &self.out, &self.wide]
    }

    fn layers_mut(&mut self) -> [&mut Linear; 4] {
        [
            &mut self.first,
            &mut self.second,
            &mut self.out,
            &mut self.wide,
        ]
    }

    fn new(config: &RerankerConfig, device: &Device) -> Self {
        let [h1, h2] = config.hidden;
        Self {
            first: LinearConfig::new(config.inputs, h1).init(device),
            second: LinearConfig::new(h1, h2).init(device),
            out: LinearConfig::new(h2, 1).init(device),
            wide: LinearConfig::new(config.inputs, 1).init(device),
            activation: Relu::new(),
        }
    }

    /// Seeded Glorot-uniform hidden layers, the linear part at the prior, the output layer
    /// at zero when there is a prior (seeded otherwise, to break symmetry), zero biases.
    fn initial_weights(config: &RerankerConfig) -> Weights {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let [h1, h2] = config.hidden;
        let mut glorot = |i: usize, o: usize| -> Vec<f32> {
            let limit = (6.0 / (i + o) as f32).sqrt();
            (0..i * o)
                .map(|_| rng.random_range(-limit..limit))
                .collect()
        };
        let first = glorot(config.inputs, h1);
        let second = glorot(h1, h2);
        let out = match config.prior {
            Some(_) => vec![0.0; h2],
            None => glorot(h2, 1),
        };
        let mut wide = vec![0.0; config.inputs];
        if let Some((index, weight)) = config.prior {
            wide[index] = weight;
        }
        let layer = |name: &str, i: usize, o: usize, w: Vec<f32>| {
            [
                (format!("{name}.weight"), vec![i, o], w),
                (format!("{name}.bias"), vec![o], vec![0.0; o]),
            ]
        };
        [
            layer("first", config.inputs, h1, first),
            layer("second", h1, h2, second),
            layer("out", h2, 1, out),
            layer("wide", config.inputs, 1, wide),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn set_weights(&mut self, weights: &Weights, device: &Device) -> Result<(), RerankError> {
        let find = |name: &str, shape: &[usize]| -> Result<TensorData, RerankError> {
            let (_, s, v) = weights
                .iter()
                .find(|(n, _, _)| n == name)
                .ok_or_else(|| RerankError::Weights(format!("no tensor {name}")))?;
            if s != shape || v.len() != shape.iter().product::<usize>() {
                return Err(RerankError::Weights(format!(
                    "{name} has shape {s:?} with {} values; the model needs {shape:?}",
                    v.len()
                )));
            }
            Ok(TensorData::new(v.clone(), s.clone()))
        };
        for (name, layer) in LAYERS.iter().zip(self.layers_mut()) {
            let [i, o] = layer.weight.dims();
            let w = find(&format!("{name}.weight"), &[i, o])?;
            let b = find(&format!("{name}.bias"), &[o])?;
            layer.weight = Param::from_tensor(Tensor::<2>::from_data(w, device));
            layer.bias = Some(Param::from_tensor(Tensor::<1>::from_data(b, device)));
        }
        Ok(())
    }

    fn weights(&self) -> Weights {
        let values = |data: TensorData| values(data).unwrap_or_default();
        LAYERS
            .iter()
            .zip(self.layers())
            .flat_map(|(name, layer)| {
                let w = layer.weight.val();
                let [i, o] = w.dims();
                let b = layer
                    .bias
                    .as_ref()
                    .map(|b| values(b.val().into_data()))
                    .unwrap_or_else(|| vec![0.0; o]);
                [
                    (format!("{name}.weight"), vec![i, o], values(w.into_data())),
                    (format!("{name}.bias"), vec![o], b),
                ]
            })
            .collect()
    }
}

fn rows(features: &[f32], inputs: usize, device: &Device) -> Result<Tensor<2>, RerankError> {
    if inputs == 0 || !features.len().is_multiple_of(inputs) {
        return Err(RerankError::Shape {
            got: features.len(),
            inputs,
        });
    }
    let n = features.len() / inputs;
    Ok(Tensor::from_data(
        TensorData::new(features.to_vec(), [n, inputs]),
        device,
    ))
}

fn values(data: TensorData) -> Result<Vec<f32>, RerankError> {
    data.try_into_vec::<f32>()
        .map_err(|e| RerankError::Weights(format!("{e:?}")))
}

fn first(t: Tensor<1>) -> Result<f32, RerankError> {
    values(t.into_data())?
        .first()
        .copied()
        .ok_or_else(|| RerankError::Weights("empty loss".to_owned()))
}

/// Mean over groups of −log softmax(score of row 0 within its group).
fn group_loss(scores: Tensor<2>, groups: usize, group_len: usize) -> Tensor<1> {
    let scores = scores.reshape([groups, group_len]);
    log_softmax(scores, 1).narrow(1, 0, 1).mean().neg()
}

/// The serving copy: immutable, inference only.
#[derive(Debug)]
pub struct Reranker {
    model: Mlp,
    device: Device,
    inputs: usize,
    steps: u64,
}

impl Reranker {
    pub fn from_weights(
        config: &RerankerConfig,
        weights: &Weights,
        on: ComputeDevice,
        steps: u64,
    ) -> Result<Self, RerankError> {
        let device = on.device();
        let mut model = Mlp::new(config, &device);
        model.set_weights(weights, &device)?;
        Ok(Self {
            model,
            device,
            inputs: config.inputs,
            steps,
        })
    }

    /// Training steps behind these weights.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// One score per row of `features` (row-major, `inputs` values a row).
    pub fn score(&self, features: &[f32]) -> Result<Vec<f32>, RerankError> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        let x = rows(features, self.inputs, &self.device)?;
        values(self.model.forward(x).into_data())
    }

    /// The listwise loss of `groups` (each `group_len` rows, positive first), no update.
    pub fn loss(&self, groups: &[f32], group_len: usize) -> Result<f32, RerankError> {
        let x = rows(groups, self.inputs, &self.device)?;
        let n = x.dims()[0] / group_len.max(1);
        let loss = group_loss(self.model.forward(x), n, group_len);
        first(loss)
    }
}

/// The training copy: an autodiff model and its optimizer.
pub struct RerankTrainer {
    config: RerankerConfig,
    /// Always `Some` between calls; taken for the duration of a step.
    model: Option<Mlp>,
    optimizer: ModuleOptimizer,
    device: Device,
    on: ComputeDevice,
}

impl std::fmt::Debug for RerankTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RerankTrainer")
            .field("config", &self.config)
            .field("on", &self.on)
            .finish()
    }
}

impl RerankTrainer {
    /// Resumes from `weights`, or starts from the seeded initial weights when empty.
    pub fn new(
        config: RerankerConfig,
        weights: &Weights,
        on: ComputeDevice,
    ) -> Result<Self, RerankError> {
        let device = on.device().autodiff();
        let mut model = Mlp::new(&config, &device);
        if weights.is_empty() {
            model.set_weights(&Mlp::initial_weights(&config), &device)?;
        } else {
            model.set_weights(weights, &device)?;
        }
        Ok(Self {
            optimizer: SgdConfig::new().init(),
            config,
            model: Some(model),
            device,
            on,
        })
    }

    /// One SGD step on `groups` (each `group_len` rows, positive first); returns the
    /// batch's loss before the step.
    pub fn step(&mut self, groups: &[f32], group_len: usize) -> Result<f32, RerankError> {
        let x = rows(groups, self.config.inputs, &self.device)?;
        let n = x.dims()[0] / group_len.max(1);
        if n == 0 || n * group_len != x.dims()[0] {
            return Err(RerankError::Shape {
                got: groups.len(),
                inputs: self.config.inputs * group_len,
            });
        }
        let model = self
            .model
            .take()
            .ok_or_else(|| RerankError::Weights("a failed step lost the model".to_owned()))?;
        let loss = group_loss(model.forward(x), n, group_len);
        let value = first(loss.clone())?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optimizer.step(self.config.learning_rate, model, grads));
        Ok(value)
    }

    pub fn weights(&self) -> Weights {
        self.model.as_ref().map(Mlp::weights).unwrap_or_default()
    }

    /// An immutable serving copy of the current weights, on the same device kind.
    pub fn serving(&self, steps: u64) -> Result<Reranker, RerankError> {
        Reranker::from_weights(&self.config, &self.weights(), self.on, steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUTS: usize = 4;
    const GROUP: usize = 8;

    /// Groups where the positive (row 0) has a higher first feature and a lower third one
    /// than the negatives, with noise; feature 1 is noise only.
    fn groups(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n * GROUP * INPUTS);
        for _ in 0..n {
            for row in 0..GROUP {
                let lift = if row == 0 { 0.6 } else { 0.0 };
                out.push(rng.random_range(0.0..1.0) + lift);
                out.push(rng.random_range(0.0..1.0));
                out.push(rng.random_range(0.0..1.0) - lift);
                out.push(1.0);
            }
        }
        out
    }

    fn trainer() -> RerankTrainer {
        RerankTrainer::new(RerankerConfig::new(INPUTS), &Vec::new(), ComputeDevice::Cpu)
            .expect("cpu trainer")
    }

    #[test]
    fn online_training_lowers_held_out_loss() {
        let held_out = groups(200, 99);
        let mut t = trainer();
        let before = t
            .serving(0)
            .expect("fixture")
            .loss(&held_out, GROUP)
            .expect("fixture");
        for step in 0..150 {
            t.step(&groups(32, step), GROUP).expect("fixture");
        }
        let after = t
            .serving(150)
            .expect("fixture")
            .loss(&held_out, GROUP)
            .expect("fixture");
        // Uniform guessing over 8 rows costs ln 8 = 2.08.
        assert!(after < before * 0.8, "held-out loss {before} -> {after}");
        let scores = t
            .serving(150)
            .expect("fixture")
            .score(&held_out[..GROUP * INPUTS])
            .expect("fixture");
        assert_eq!(scores.len(), GROUP);
    }

    #[test]
    fn training_is_deterministic_and_weights_round_trip() {
        let (mut a, mut b) = (trainer(), trainer());
        for step in 0..5 {
            let batch = groups(16, step);
            assert_eq!(
                a.step(&batch, GROUP).expect("fixture"),
                b.step(&batch, GROUP).expect("fixture")
            );
        }
        assert_eq!(a.weights(), b.weights());
        let probe = groups(4, 1234);
        let resumed = Reranker::from_weights(
            &RerankerConfig::new(INPUTS),
            &a.weights(),
            ComputeDevice::Cpu,
            5,
        )
        .expect("fixture");
        assert_eq!(
            resumed.score(&probe).expect("fixture"),
            a.serving(5)
                .expect("fixture")
                .score(&probe)
                .expect("fixture")
        );
        // A trainer resumed from the weights takes the same next step.
        let mut c = RerankTrainer::new(
            RerankerConfig::new(INPUTS),
            &a.weights(),
            ComputeDevice::Cpu,
        )
        .expect("fixture");
        let next = groups(16, 77);
        assert_eq!(
            a.step(&next, GROUP).expect("fixture"),
            c.step(&next, GROUP).expect("fixture")
        );
        assert_eq!(a.weights(), c.weights());
    }

    #[test]
    fn an_untrained_reranker_with_a_prior_keeps_the_prior_order() {
        let config = RerankerConfig::new(INPUTS).with_prior(0, 10.0);
        let t = RerankTrainer::new(config, &Vec::new(), ComputeDevice::Cpu).expect("fixture");
        let probe = groups(3, 8);
        let scores = t
            .serving(0)
            .expect("fixture")
            .score(&probe)
            .expect("fixture");
        for (row, score) in probe.chunks(INPUTS).zip(scores) {
            assert!(
                (score - 10.0 * row[0]).abs() < 1e-4,
                "{score} vs {}",
                10.0 * row[0]
            );
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let t = trainer().serving(0).expect("fixture");
        assert!(matches!(t.score(&[1.0; 5]), Err(RerankError::Shape { .. })));
        let mut w = trainer().weights();
        w[0].1 = vec![1, 1];
        assert!(
            Reranker::from_weights(&RerankerConfig::new(INPUTS), &w, ComputeDevice::Cpu, 0)
                .is_err()
        );
        assert!(matches!(
            ComputeDevice::parse("tpu"),
            Err(RerankError::UnknownDevice(_))
        ));
    }

    /// The `gpu` build: wgpu (Mesa's software driver where no GPU exists) scores and trains
    /// like the CPU backend, within float tolerance.
    #[cfg(feature = "gpu")]
    #[test]
    fn gpu_scores_and_steps_match_cpu() {
        let config = RerankerConfig::new(INPUTS);
        let mut cpu =
            RerankTrainer::new(config.clone(), &Vec::new(), ComputeDevice::Cpu).expect("fixture");
        let mut gpu =
            RerankTrainer::new(config.clone(), &Vec::new(), ComputeDevice::Gpu).expect("fixture");
        let probe = groups(8, 5);
        let close = |a: &[f32], b: &[f32]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + x.abs()))
        };
        let (sc, sg) = (
            cpu.serving(0)
                .expect("fixture")
                .score(&probe)
                .expect("fixture"),
            gpu.serving(0)
                .expect("fixture")
                .score(&probe)
                .expect("fixture"),
        );
        assert!(close(&sc, &sg), "scores differ: {sc:?} vs {sg:?}");
        let batch = groups(16, 6);
        let (lc, lg) = (
            cpu.step(&batch, GROUP).expect("fixture"),
            gpu.step(&batch, GROUP).expect("fixture"),
        );
        assert!((lc - lg).abs() < 1e-4, "loss {lc} vs {lg}");
        for ((n, _, wc), (_, _, wg)) in cpu.weights().iter().zip(gpu.weights().iter()) {
            assert!(close(wc, wg), "{n} differs after a step");
        }
    }
}
