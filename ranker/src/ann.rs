//! Approximate nearest neighbours over item vectors (cosine similarity), kept fresh online.
//!
//! [`FreshIndex`] is an HNSW graph (hnsw_rs) built from the vectors at one moment, plus an
//! exact *delta*: items added or whose vector changed since the build. A query searches the
//! graph, drops items whose graph entry is stale, scans the delta exactly, and merges. So a
//! changed vector is found by its new value in the very next query, with no rebuild; once the
//! delta passes a threshold, [`FreshIndex::rebuilt`] makes a new graph from the current
//! vectors, which the caller swaps in atomically (off the request path).

use std::collections::HashMap;

use hnsw_rs::prelude::{DistL2, Hnsw};

/// A candidate: item index and cosine similarity to the query.
pub type Hit = (u32, f32);

/// HNSW parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswParams {
    /// Links per node (M); at most 256.
    pub max_connections: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    /// Rebuild once the delta holds more than this share of the items.
    pub rebuild_fraction: f64,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            max_connections: 16,
            ef_construction: 200,
            ef_search: 64,
            rebuild_fraction: 0.05,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnnError {
    #[error("vector of {got} dimensions; the index has {expected}")]
    Dimension { expected: usize, got: usize },
    #[error("max_connections must be 1..=256, got {0}")]
    Connections(usize),
}

/// Nearest-neighbour search over item vectors: the read half the request path holds.
pub trait AnnIndex: Send + Sync {
    /// The `k` items most similar to `query` that `keep` accepts, best first.
    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<Hit>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Best `k` of `hits` (distinct items) by similarity, ties by item index.
fn best(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    let order = |a: &Hit, b: &Hit| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    // A partial select first: a full scan yields one hit per item, and only k matter.
    if k > 0 && hits.len() > k {
        hits.select_nth_unstable_by(k - 1, order);
        hits.truncate(k);
    }
    hits.sort_by(order);
    hits.dedup_by_key(|h| h.0);
    hits.truncate(k);
    hits
}

/// Exact search: every vector scored. The reference the approximate index is measured by.
pub struct ExactIndex {
    dim: usize,
    vectors: Vec<Vec<f32>>,
}

impl ExactIndex {
    pub fn new(dim: usize, vectors: &[Vec<f32>]) -> Self {
        Self {
            dim,
            vectors: vectors.iter().map(|v| normalized(v)).collect(),
        }
    }
}

impl AnnIndex for ExactIndex {
    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<Hit> {
        if query.len() != self.dim {
            return Vec::new();
        }
        let q = normalized(query);
        let hits = self
            .vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i as u32))
            .map(|(i, v)| (i as u32, dot(&q, v)))
            .collect();
        best(hits, k)
    }

    fn len(&self) -> usize {
        self.vectors.len()
    }
}

pub struct FreshIndex {
    dim: usize,
    params: HnswParams,
    /// Over unit vectors, so L2 order is cosine order (anndists' dot distance asserts on
    /// rounding below zero for near-identical vectors).
    graph: Hnsw<'static, f32, DistL2>,
    /// Current (normalized) vector of every item, by index.
    vectors: Vec<Vec<f32>>,
    /// Items whose graph entry is missing or stale: searched exactly.
    delta: HashMap<u32, ()>,
    graph_len: usize,
}

impl FreshIndex {
    /// Builds the graph over `vectors` (item index = position).
    pub fn build(dim: usize, vectors: &[Vec<f32>], params: HnswParams) -> Result<Self, AnnError> {
        if !(1..=256).contains(&params.max_connections) {
            return Err(AnnError::Connections(params.max_connections));
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != dim) {
            return Err(AnnError::Dimension {
                expected: dim,
                got: v.len(),
            });
        }
        let vectors: Vec<Vec<f32>> = vectors.iter().map(|v| normalized(v)).collect();
        let graph = Hnsw::new(
            params.max_connections,
            vectors.len().max(1),
            16,
            params.ef_construction,
            DistL2,
        );
        // Sequential inserts: the same vectors always give the same graph.
        for (i, v) in vectors.iter().enumerate() {
            graph.insert_slice((v, i));
        }
        let graph_len = vectors.len();
        Ok(Self {
            dim,
            params,
            graph,
            vectors,
            delta: HashMap::new(),
            graph_len,
        })
    }

    /// Sets item `index`'s vector (appending a new item when `index` is the next one):
    /// visible to the very next query.
    pub fn upsert(&mut self, index: u32, vector: &[f32]) -> Result<(), AnnError> {
        if vector.len() != self.dim {
            return Err(AnnError::Dimension {
                expected: self.dim,
                got: vector.len(),
            });
        }
        let v = normalized(vector);
        let i = index as usize;
        if i < self.vectors.len() {
            self.vectors[i] = v;
        } else {
            self.vectors.resize(i, vec![0.0; self.dim]);
            self.vectors.push(v);
        }
        self.delta.insert(index, ());
        Ok(())
    }

    /// Item `index`'s current vector, scaled to unit length.
    pub fn vector(&self, index: u32) -> Option<&[f32]> {
        self.vectors.get(index as usize).map(Vec::as_slice)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether `vector` is what item `index` holds (after scaling to unit length).
    pub fn holds(&self, index: u32, vector: &[f32]) -> bool {
        self.vector(index)
            .is_some_and(|v| v == normalized(vector).as_slice())
    }

    /// Items searched exactly because their graph entry is missing or stale.
    pub fn delta_len(&self) -> usize {
        self.delta.len()
    }

    /// Whether the delta has grown past the rebuild threshold.
    pub fn wants_rebuild(&self) -> bool {
        self.delta.len() as f64 > self.params.rebuild_fraction * self.graph_len.max(1) as f64
    }

    /// The same index searching with another `ef_search` (recall against speed).
    pub fn with_ef_search(mut self, ef_search: usize) -> Self {
        self.params.ef_search = ef_search.max(1);
        self
    }

    /// A fresh graph over the current vectors, with an empty delta.
    pub fn rebuilt(&self) -> Result<Self, AnnError> {
        Self::build(self.dim, &self.vectors, self.params)
    }
}

impl AnnIndex for FreshIndex {
    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<Hit> {
        if query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let q = normalized(query);
        // Ask the graph for enough that dropping stale and filtered entries leaves k.
        let want = k + self.delta.len().min(k * 4);
        let ef = self.params.ef_search.max(want);
        let mut hits: Vec<Hit> = self
            .graph
            .search(&q, want, ef)
            .into_iter()
            .map(|n| n.d_id as u32)
            .filter(|i| !self.delta.contains_key(i) && keep(*i))
            .map(|i| (i, dot(&q, &self.vectors[i as usize])))
            .collect();
        hits.extend(
            self.delta
                .keys()
                .filter(|i| keep(**i))
                .map(|&i| (i, dot(&q, &self.vectors[i as usize]))),
        );
        best(hits, k)
    }

    fn len(&self) -> usize {
        self.vectors.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const DIM: usize = 64;

    /// A 100-cluster Gaussian mixture, like the reference ANN benchmark's data.
    fn mixture(n: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centers: Vec<Vec<f32>> = (0..100)
            .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        (0..n)
            .map(|_| {
                let c = &centers[rng.random_range(0..centers.len())];
                c.iter()
                    .map(|x| x + rng.random_range(-0.35..0.35))
                    .collect()
            })
            .collect()
    }

    fn recall(approx: &dyn AnnIndex, exact: &dyn AnnIndex, queries: &[Vec<f32>], k: usize) -> f64 {
        let all = |_: u32| true;
        let found: usize = queries
            .iter()
            .map(|q| {
                let truth: Vec<u32> = exact.search(q, k, &all).into_iter().map(|h| h.0).collect();
                approx
                    .search(q, k, &all)
                    .into_iter()
                    .filter(|h| truth.contains(&h.0))
                    .count()
            })
            .sum();
        found as f64 / (queries.len() * k) as f64
    }

    #[test]
    fn recall_at_10_is_at_least_095_at_the_defaults() {
        let vectors = mixture(3_000, 1);
        let queries = mixture(100, 2);
        let index = FreshIndex::build(DIM, &vectors, HnswParams::default()).expect("built");
        let exact = ExactIndex::new(DIM, &vectors);
        let r = recall(&index, &exact, &queries, 10);
        assert!(r >= 0.95, "recall@10 {r}");
    }

    #[test]
    fn a_changed_vector_is_found_by_its_new_value_in_the_next_query() {
        let vectors = mixture(1_000, 3);
        let mut index = FreshIndex::build(DIM, &vectors, HnswParams::default()).expect("built");
        let moved: Vec<f32> = mixture(1, 99).remove(0);
        index.upsert(17, &moved).expect("same dimension");
        assert_eq!(index.search(&moved, 1, &|_| true)[0].0, 17);
        // Its old neighbourhood no longer returns it.
        let old = index.search(&vectors[17], 10, &|_| true);
        assert!(old.iter().all(|h| h.0 != 17 || h.1 < 0.99));
        // A new item too.
        let fresh: Vec<f32> = mixture(1, 100).remove(0);
        index.upsert(1_000, &fresh).expect("same dimension");
        assert_eq!(index.search(&fresh, 1, &|_| true)[0].0, 1_000);
        // After a rebuild the answers stand, from the graph alone.
        let rebuilt = index.rebuilt().expect("rebuilt");
        assert_eq!(rebuilt.delta_len(), 0);
        assert_eq!(rebuilt.search(&moved, 1, &|_| true)[0].0, 17);
    }

    #[test]
    fn filters_are_honoured_and_recall_holds_with_a_delta() {
        let vectors = mixture(2_000, 5);
        let mut index = FreshIndex::build(DIM, &vectors, HnswParams::default()).expect("built");
        let changes = mixture(120, 6);
        let mut current = vectors.clone();
        for (j, v) in changes.iter().enumerate() {
            let i = (j * 29) % 2_000;
            index.upsert(i as u32, v).expect("ok");
            current[i] = v.clone();
        }
        assert!(
            index.wants_rebuild(),
            "120 changes are over 5% of 2,000 items"
        );
        let exact = ExactIndex::new(DIM, &current);
        let queries = mixture(100, 7);
        assert!(recall(&index, &exact, &queries, 10) >= 0.95);
        let even = |i: u32| i.is_multiple_of(2);
        for q in &queries[..10] {
            assert!(
                index
                    .search(q, 10, &even)
                    .iter()
                    .all(|h| h.0.is_multiple_of(2))
            );
        }
    }

    #[test]
    fn bad_dimensions_are_errors_not_panics() {
        let vectors = mixture(10, 8);
        assert!(matches!(
            FreshIndex::build(3, &vectors, HnswParams::default()),
            Err(AnnError::Dimension { .. })
        ));
        let mut index = FreshIndex::build(DIM, &vectors, HnswParams::default()).expect("built");
        assert!(index.upsert(0, &[1.0]).is_err());
        assert!(index.search(&[1.0], 5, &|_| true).is_empty());
        assert!(
            FreshIndex::build(
                DIM,
                &vectors,
                HnswParams {
                    max_connections: 300,
                    ..HnswParams::default()
                }
            )
            .is_err()
        );
    }
}
