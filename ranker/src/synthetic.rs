//! Synthetic item vectors for tests and benchmarks: the clustered Gaussian mixture of the
//! reference ANN benchmark (`../shared/baselines/perf-scripts/gen_ann.py`), so our figures and
//! the reference's are taken on data of one shape. Clusters have unequal sizes (Dirichlet(2)
//! weights), centres drawn from N(0, 1), and within a cluster a decaying spectrum
//! (0.8 · j^-½ along axis j) turned by a random rotation of the cluster's own.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, StandardNormal};

use crate::ann::lanes::dot;

pub struct ClusteredMixture {
    dim: usize,
    centers: Vec<Vec<f32>>,
    /// Per cluster, a `dim × dim` orthonormal matrix, row-major.
    rotations: Vec<Vec<f32>>,
    scales: Vec<f32>,
    /// Cumulative cluster weights, ending at 1.
    cumulative: Vec<f64>,
}

impl ClusteredMixture {
    /// `clusters` clusters in `dim` dimensions; the same `seed` gives the same mixture.
    pub fn new(dim: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centers = (0..clusters)
            .map(|_| gaussian_vector(&mut rng, dim))
            .collect();
        let rotations = (0..clusters).map(|_| rotation(&mut rng, dim)).collect();
        let scales = (1..=dim).map(|j| 0.8 / (j as f32).sqrt()).collect();
        let gamma = Gamma::new(2.0, 1.0).unwrap_or_else(|_| unreachable!("valid shape and scale"));
        let weights: Vec<f64> = (0..clusters).map(|_| gamma.sample(&mut rng)).collect();
        let total: f64 = weights.iter().sum();
        let cumulative = weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w / total;
                Some(*acc)
            })
            .collect();
        Self {
            dim,
            centers,
            rotations,
            scales,
            cumulative,
        }
    }

    /// `n` vectors drawn from the mixture with their own `seed` (base set, queries, updates).
    pub fn sample(&self, n: usize, seed: u64) -> Vec<Vec<f32>> {
        self.sample_with_clusters(n, seed).1
    }

    /// As [`Self::sample`], with the cluster each vector was drawn from.
    pub fn sample_with_clusters(&self, n: usize, seed: u64) -> (Vec<usize>, Vec<Vec<f32>>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| self.draw(&mut rng)).unzip()
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> (usize, Vec<f32>) {
        let u: f64 = rng.random();
        let cluster = self
            .cumulative
            .partition_point(|&c| c < u)
            .min(self.centers.len() - 1);
        let z: Vec<f32> = self
            .scales
            .iter()
            .map(|s| s * rng.sample::<f32, _>(StandardNormal))
            .collect();
        let rotation = &self.rotations[cluster];
        // z (a row) times the rotation: Σ_j z_j · R[j, ·].
        let mut out = self.centers[cluster].clone();
        for (j, zj) in z.iter().enumerate() {
            let row = &rotation[j * self.dim..(j + 1) * self.dim];
            for (o, r) in out.iter_mut().zip(row) {
                *o += zj * r;
            }
        }
        (cluster, out)
    }
}

fn gaussian_vector(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.sample(StandardNormal)).collect()
}

/// A random orthonormal basis: Gram–Schmidt over Gaussian rows (the Q of a QR, up to signs).
fn rotation(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    let mut rows: Vec<Vec<f32>> = Vec::with_capacity(dim);
    while rows.len() < dim {
        let mut v = gaussian_vector(rng, dim);
        for r in &rows {
            let p = dot(&v, r);
            v.iter_mut().zip(r).for_each(|(x, y)| *x -= p * y);
        }
        let norm = dot(&v, &v).sqrt();
        // A draw (almost) inside the span so far is redrawn rather than amplified.
        if norm > 1e-3 {
            rows.push(v.iter().map(|x| x / norm).collect());
        }
    }
    rows.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_are_orthonormal() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let dim = 16;
        let r = rotation(&mut rng, dim);
        for i in 0..dim {
            for j in 0..dim {
                let d = dot(&r[i * dim..(i + 1) * dim], &r[j * dim..(j + 1) * dim]);
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((d - expected).abs() < 1e-4, "({i}, {j}): {d}");
            }
        }
    }

    #[test]
    fn samples_are_seeded_and_clustered() {
        let mixture = ClusteredMixture::new(8, 4, 1);
        assert_eq!(mixture.sample(5, 2), mixture.sample(5, 2));
        assert_ne!(mixture.sample(5, 2), mixture.sample(5, 3));
        // Every sample lies near one of the centres: within-cluster spread (≤ 0.8 per axis)
        // is small against the distance between N(0, 1) centres.
        for v in mixture.sample(200, 4) {
            let nearest = mixture
                .centers
                .iter()
                .map(|c| crate::ann::lanes::squared_l2(&v, c))
                .fold(f32::INFINITY, f32::min);
            assert!(nearest < 16.0, "{nearest}");
        }
    }
}
