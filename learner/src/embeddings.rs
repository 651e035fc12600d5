//! Online item embeddings, item2vec-style (Barkan & Koenigstein 2016): skip-gram with
//! negative sampling over in-session sequences, one SGD step per event.
//!
//! Why item2vec rather than BPR matrix factorisation: sessions are mostly anonymous and short,
//! so there is no stable user to factorise; co-occurrence within a session is exactly the
//! "current intent" signal the ranking needs, and an update touches only the items of one
//! window, O(window × negatives × dim), whatever the catalog size.
//!
//! Negatives are drawn from a ring buffer of recent item occurrences: a sample of the
//! unigram distribution that follows the stream as popularity shifts. A new item's vector is
//! seeded from its id, so it does not depend on when the item first appeared.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::ftrl::sigmoid;

mod by_epoch;
mod change_journal;
use by_epoch::{Deferred, Observation, Shadow, Touched, TouchedRows, Training};
use change_journal::ChangeJournal;
use std::sync::{Arc, Mutex};

// Every field defaults, so a config file names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmbeddingConfig {
    pub dim: usize,
    /// Previous items of the session paired with each new one.
    pub window: usize,
    pub negatives: usize,
    pub learning_rate: f32,
    /// Recent occurrences negatives are drawn from.
    pub noise_buffer: usize,
    pub seed: u64,
    /// Events per epoch when vectors are trained by epoch (0: each event as it comes). By
    /// epoch, an epoch's events are trained on another thread while the next epoch's are
    /// learned, and what is read takes them when that next epoch ends: a lag of N to 2N
    /// events. Left out of a saved config at 0, so a snapshot is byte for byte what it was
    /// before epochs existed.
    #[serde(skip_serializing_if = "is_zero")]
    pub epoch: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            window: 5,
            negatives: 5,
            learning_rate: 0.025,
            noise_buffer: 100_000,
            seed: 42,
            epoch: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemEmbeddings {
    config: EmbeddingConfig,
    ids: Vec<String>,
    /// Serialised in key order, so equal histories write equal bytes.
    #[serde(serialize_with = "crate::ordered_map::serialize")]
    index: FxHashMap<String, u32>,
    /// Item vectors (row per item): what similarity and intent use.
    input: Vec<f32>,
    /// Context vectors of the skip-gram objective.
    output: Vec<f32>,
    noise: Vec<u32>,
    noise_next: usize,
    rng: ChaCha8Rng,
    updates: u64,
    #[serde(skip)]
    journal: ChangeJournal,
    /// With vectors by epoch: the observations that wait (empty, and left out, otherwise).
    #[serde(default, skip_serializing_if = "Deferred::is_empty")]
    deferred: Deferred,
    #[serde(skip)]
    shadow: Shadow,
    /// Rows moved since the last install: kept by a training copy only.
    #[serde(skip)]
    touched: TouchedRows,
}

impl ItemEmbeddings {
    pub fn new(config: EmbeddingConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Self {
            config,
            ids: Vec::new(),
            index: FxHashMap::default(),
            input: Vec::new(),
            output: Vec::new(),
            noise: Vec::new(),
            noise_next: 0,
            rng,
            updates: 0,
            journal: ChangeJournal::default(),
            deferred: Deferred::default(),
            shadow: Shadow::default(),
            touched: TouchedRows::default(),
        }
    }

    pub fn config(&self) -> &EmbeddingConfig {
        &self.config
    }

    pub fn dim(&self) -> usize {
        self.config.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Rows whose item vector changed (or was created) after update `after`; None when that
    /// is not known (compare every row then).
    pub fn rows_changed_since(&self, after: u64) -> Option<Vec<u32>> {
        self.journal.changed_since(after)
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Row-major item vectors, `len() × dim()`.
    pub fn matrix(&self) -> &[f32] {
        &self.input
    }

    /// Row-major context vectors of the skip-gram objective, `len() × dim()`.
    pub fn context_matrix(&self) -> &[f32] {
        &self.output
    }

    /// Moves the two matrices out (for storing them as tensors), leaving them empty.
    pub fn take_matrices(&mut self) -> (Vec<f32>, Vec<f32>) {
        (
            std::mem::take(&mut self.input),
            std::mem::take(&mut self.output),
        )
    }

    /// Puts matrices back; they must hold `len() × dim()` values each.
    pub fn set_matrices(&mut self, input: Vec<f32>, output: Vec<f32>) -> Result<(), String> {
        let Some(expected) = self.ids.len().checked_mul(self.config.dim) else {
            return Err(format!(
                "{} items × {} dims overflow",
                self.ids.len(),
                self.config.dim
            ));
        };
        if input.len() != expected || output.len() != expected {
            return Err(format!(
                "embedding matrices of {} and {} values; {} items × {} dims need {expected}",
                input.len(),
                output.len(),
                self.ids.len(),
                self.config.dim
            ));
        }
        self.input = input;
        self.output = output;
        Ok(())
    }

    pub fn vector(&self, item: &str) -> Option<&[f32]> {
        self.index.get(item).map(|&i| self.row(&self.input, i))
    }

    fn row<'a>(&self, m: &'a [f32], i: u32) -> &'a [f32] {
        let d = self.config.dim;
        &m[i as usize * d..(i as usize + 1) * d]
    }

    /// The item's row, creating it (seeded by the item id) on first sight.
    pub fn ensure(&mut self, item: &str) -> u32 {
        if let Some(&i) = self.index.get(item) {
            return i;
        }
        let i = self.ids.len() as u32;
        let d = self.config.dim;
        let mut init =
            ChaCha8Rng::seed_from_u64(xxh3_64_with_seed(item.as_bytes(), self.config.seed));
        let scale = 0.5 / d as f32;
        self.input
            .extend((0..d).map(|_| init.random_range(-scale..scale)));
        self.output.extend(std::iter::repeat_n(0.0, d));
        self.ids.push(item.to_owned());
        self.index.insert(item.to_owned(), i);
        // A new row is a change too, counted with the update under way.
        self.journal.record(self.updates + 1, i);
        // A row made on the read copy itself (not by an install): the training copy no
        // longer follows it, so it is made afresh at the next epoch's end.
        self.shadow = Shadow::default();
        i
    }

    fn remember_occurrence(&mut self, i: u32) {
        if self.noise.len() < self.config.noise_buffer {
            self.noise.push(i);
        } else if !self.noise.is_empty() {
            let slot = self.noise_next % self.noise.len();
            self.noise[slot] = i;
        }
        self.noise_next = self.noise_next.wrapping_add(1);
    }

    /// Learns that `item` followed `previous` (most recent first) in a session; by epoch
    /// (`config.epoch`), keeps it to be trained when the epoch ends ([`Self::close_epoch`]).
    pub fn observe(&mut self, item: &str, previous: &[&str]) {
        if self.config.epoch > 0 {
            let window = self.config.window;
            self.deferred.open.push(Observation(
                item.to_owned(),
                previous
                    .iter()
                    .take(window)
                    .map(|p| (*p).to_owned())
                    .collect(),
            ));
            return;
        }
        self.learn(item, previous);
    }

    /// Whether what waits fits the config: only a learner by epoch keeps observations (a
    /// snapshot's config travels with it, so anything else is a tampered file).
    pub fn deferred_fits_config(&self) -> bool {
        self.config.epoch > 0 || self.deferred.is_empty()
    }

    /// Ends an epoch: the rows the previous epoch's training moved are read from now on,
    /// and this epoch's events are trained on the training copy by another thread while the
    /// next epoch's are learned. Costs the rows that moved, not the catalog (but for the
    /// first epoch after a restore or a clone, which copies the model once).
    pub fn close_epoch(&mut self) {
        let shadow = loop {
            let shadow = match &self.shadow.0 {
                Some(shadow) if !shadow.is_poisoned() => Arc::clone(shadow),
                _ => {
                    let shadow = Arc::new(Mutex::new(self.training_copy()));
                    self.shadow = Shadow(Some(Arc::clone(&shadow)));
                    shadow
                }
            };
            // A training thread that panicked left its copy part-trained (and the lock
            // poisoned): that copy is dropped and made afresh from the read copy and what
            // waits, so no observation is lost or learned twice.
            if shadow
                .lock()
                .map(|mut training| training.catch_up())
                .is_ok()
            {
                break shadow;
            }
            self.shadow = Shadow::default();
        };
        {
            // Trained through what it was handed: a thread still to start finds nothing.
            let mut training = by_epoch::lock(&shadow);
            self.install(&mut training.model);
            self.deferred.pending = Arc::new(std::mem::take(&mut self.deferred.open));
            if !self.deferred.pending.is_empty() {
                training.todo = Some(Arc::clone(&self.deferred.pending));
            }
        }
        if self.deferred.pending.is_empty() {
            return;
        }
        // A thread that cannot start loses nothing: whoever locks the copy next trains
        // what it holds.
        let _ = std::thread::Builder::new()
            .name("item2vec-train".into())
            .spawn(move || by_epoch::lock(&shadow).catch_up());
    }

    /// The read copy with the pending epoch still to train: what the training copy is.
    fn training_copy(&self) -> Training {
        let mut model = self.clone();
        model.config.epoch = 0;
        model.deferred = Deferred::default();
        model.touched = TouchedRows(Some(Touched::default()));
        let pending = &self.deferred.pending;
        Training {
            model,
            todo: (!pending.is_empty()).then(|| Arc::clone(pending)),
        }
    }

    /// Takes what the training copy learned since the last install: its moved rows, its new
    /// items, its sampler.
    fn install(&mut self, trained: &mut ItemEmbeddings) {
        let touched = trained
            .touched
            .0
            .replace(Touched::default())
            .unwrap_or_default();
        let d = self.config.dim;
        let known = self.ids.len();
        // Every move is journalled at the first update installed, so the journal reaches
        // back to what was read before.
        let first = self.updates + 1;
        for row in touched.input {
            let at = row as usize * d..(row as usize + 1) * d;
            if (row as usize) < known {
                self.input[at.clone()].copy_from_slice(&trained.input[at]);
                self.journal.record(first, row);
            }
        }
        for row in touched.output {
            let at = row as usize * d..(row as usize + 1) * d;
            if (row as usize) < known {
                self.output[at.clone()].copy_from_slice(&trained.output[at]);
            }
        }
        for (row, id) in trained.ids.iter().enumerate().skip(known) {
            self.ids.push(id.clone());
            self.index.insert(id.clone(), row as u32);
            self.journal.record(first, row as u32);
        }
        self.input.extend_from_slice(&trained.input[known * d..]);
        self.output.extend_from_slice(&trained.output[known * d..]);
        self.noise.clone_from(&trained.noise);
        self.noise_next = trained.noise_next;
        self.rng.clone_from(&trained.rng);
        self.updates = trained.updates;
    }

    /// Observations kept to be learned by epoch: the epoch being trained, the epoch under way.
    pub fn waiting(&self) -> (usize, usize) {
        (self.deferred.pending.len(), self.deferred.open.len())
    }

    fn learn<S: AsRef<str>>(&mut self, item: &str, previous: &[S]) {
        let center = self.ensure(item);
        let contexts: Vec<u32> = previous
            .iter()
            .take(self.config.window)
            .map(|p| self.ensure(p.as_ref()))
            .filter(|&c| c != center)
            .collect();
        // One gradient buffer for the event's pairs: allocating one per pair cost more than
        // the arithmetic at 64 dimensions.
        let mut grad = vec![0.0f32; self.config.dim];
        for &context in &contexts {
            self.train_pair(center, context, &mut grad);
            self.train_pair(context, center, &mut grad);
        }
        self.remember_occurrence(center);
        self.updates += 1;
        // Only rows trained as a centre move in the item matrix.
        self.journal.record(self.updates, center);
        for context in contexts {
            self.journal.record(self.updates, context);
        }
    }

    /// One skip-gram step: `center` should predict `context` and not the sampled negatives
    /// (each drawn just before its step: the draws never depend on the steps, so this is the
    /// order of drawing them all first). `grad` is scratch of `dim` floats.
    fn train_pair(&mut self, center: u32, context: u32, grad: &mut [f32]) {
        grad.fill(0.0);
        self.step_towards(center, context, 1.0, grad);
        for _ in 0..self.config.negatives {
            if self.noise.is_empty() {
                break;
            }
            let negative = self.noise[self.rng.random_range(0..self.noise.len())];
            if negative != context && negative != center {
                self.step_towards(center, negative, 0.0, grad);
            }
        }
        let c0 = center as usize * self.config.dim;
        for (x, g) in self.input[c0..c0 + self.config.dim].iter_mut().zip(&*grad) {
            *x += g;
        }
        if let Some(touched) = &mut self.touched.0 {
            touched.input.push(center);
        }
    }

    /// Moves `target`'s context vector towards `label` for `center`, adding the centre's
    /// gradient to `grad`.
    fn step_towards(&mut self, center: u32, target: u32, label: f32, grad: &mut [f32]) {
        let d = self.config.dim;
        let c0 = center as usize * d;
        let t0 = target as usize * d;
        let (center_row, target_row) = (c0..c0 + d, t0..t0 + d);
        let dot = dot(
            &self.input[center_row.clone()],
            &self.output[target_row.clone()],
        );
        let g = self.config.learning_rate * (label - sigmoid(f64::from(dot)) as f32);
        if let Some(touched) = &mut self.touched.0 {
            touched.output.push(target);
        }
        let center_vec = &self.input[center_row];
        for ((acc, out), x) in grad
            .iter_mut()
            .zip(&mut self.output[target_row])
            .zip(center_vec)
        {
            *acc += g * *out;
            *out += g * x;
        }
    }

    /// Cosine similarity of two items' vectors.
    pub fn similarity(&self, a: &str, b: &str) -> Option<f32> {
        Some(cosine(self.vector(a)?, self.vector(b)?))
    }

    /// The `k` items most similar to `item` (exact scan; for inspection and tests).
    pub fn most_similar(&self, item: &str, k: usize) -> Vec<(String, f32)> {
        let Some(v) = self.vector(item) else {
            return Vec::new();
        };
        let mut scored: Vec<(String, f32)> = self
            .ids
            .iter()
            .filter(|id| id.as_str() != item)
            .filter_map(|id| Some((id.clone(), cosine(v, self.vector(id)?))))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let na = dot(a, a).sqrt();
    let nb = dot(b, b).sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot(a, b) / (na * nb)
    }
}

/// Lanes of [`dot`]'s partial sums.
const LANES: usize = 8;

/// The dot product of two vectors (over the shorter's length), summed in [`LANES`]
/// independent partial sums, then those in a fixed order. A single running sum is one
/// dependent addition per dimension, and at 64 dimensions sixty of them per event were a
/// tenth of learning; the lanes let the compiler use vector registers. The order is fixed
/// (no fused or reassociated arithmetic in Rust), so the result is the same on every run
/// and every machine.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for k in 0..LANES {
            lanes[k] += x[k] * y[k];
        }
    }
    let mut rest = 0.0f32;
    for (x, y) in a_rest.iter().zip(b_rest) {
        rest += x * y;
    }
    let [l0, l1, l2, l3, l4, l5, l6, l7] = lanes;
    ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)) + rest
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn dot_is_the_exact_dot_product_to_rounding(
            pairs in prop::collection::vec((-4.0f32..4.0, -4.0f32..4.0), 0..100),
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            let bound: f64 = a.iter().zip(&b).map(|(x, y)| f64::from((x * y).abs())).sum();
            let got = f64::from(dot(&a, &b));
            prop_assert!((got - exact).abs() <= 1e-5 * (1.0 + bound), "{got} vs {exact}");
            // Only the common length counts.
            prop_assert_eq!(dot(&a, &b[..b.len() / 2]).to_bits(), dot(&a[..a.len() / 2], &b[..b.len() / 2]).to_bits());
        }
    }

    #[test]
    fn cosine_of_a_vector_with_itself_is_one_and_of_zero_is_zero() {
        let v: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&v, &[0.0; 64]), 0.0);
    }
}
