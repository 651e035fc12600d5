//! Approximate nearest neighbours over item vectors (cosine similarity), kept fresh online.
//!
//! [`FreshIndex`] is an HNSW graph (hnsw_rs; or FAISS's, with the `faiss` feature) built from
//! the vectors at one moment, plus an
//! exact *delta*: items added since the build, or whose vector moved far from where the graph
//! placed it. A query searches the graph (re-scoring its hits by their current vectors),
//! drops the items in the delta from it, scans the delta exactly, and merges. So a moved or
//! new vector is found by its new value in the very next query, with no rebuild. Online
//! learning nudges most vectors a little all the time; those stay graph-served, since their
//! neighbourhood is still about right and the score is exact: otherwise the delta would soon
//! hold most of the catalog and every query would scan it. Once the delta, or the share of
//! drifted entries, passes a threshold, [`FreshIndex::rebuilt`] makes a new graph from the
//! current vectors, which the caller swaps in atomically (off the request path).

use std::collections::HashMap;

#[cfg(feature = "faiss")]
mod faiss_graph;
mod hnsw_graph;
pub mod lanes;

use lanes::{dot, normalized};

/// A candidate: item index and cosine similarity to the query.
pub type Hit = (u32, f32);

/// Which graph library a [`FreshIndex`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnnBackend {
    /// hnsw_rs: always compiled in.
    #[default]
    Hnsw,
    /// FAISS `IndexHNSWFlat`: with the `faiss` cargo feature.
    Faiss,
}

impl AnnBackend {
    /// Every backend this build can construct.
    pub fn available() -> &'static [AnnBackend] {
        if cfg!(feature = "faiss") {
            &[AnnBackend::Hnsw, AnnBackend::Faiss]
        } else {
            &[AnnBackend::Hnsw]
        }
    }

    /// `hnsw` or `faiss` (the latter only in a build with the `faiss` feature).
    pub fn parse(name: &str) -> Result<Self, AnnError> {
        let backend = match name {
            "hnsw" | "hnsw_rs" => AnnBackend::Hnsw,
            "faiss" => AnnBackend::Faiss,
            other => return Err(AnnError::UnknownBackend(other.to_string())),
        };
        if Self::available().contains(&backend) {
            Ok(backend)
        } else {
            Err(AnnError::NotCompiled(backend.name()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AnnBackend::Hnsw => "hnsw_rs",
            AnnBackend::Faiss => "faiss",
        }
    }
}

/// HNSW parameters (both backends are HNSW graphs and take the same ones).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswParams {
    pub backend: AnnBackend,
    /// Links per node (M); at most 256.
    pub max_connections: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    /// Rebuild once the delta holds more than this share of the items.
    pub rebuild_fraction: f64,
    /// A graph entry whose current vector has a cosine below this to the one it was placed
    /// by is searched exactly instead.
    pub drift_cosine: f32,
    /// Rebuild once more than this share of the graph's entries have drifted at all.
    pub drifted_fraction: f64,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            backend: AnnBackend::Hnsw,
            max_connections: 16,
            ef_construction: 200,
            ef_search: 64,
            rebuild_fraction: 0.05,
            drift_cosine: 0.9,
            drifted_fraction: 0.5,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnnError {
    #[error("vector of {got} dimensions; the index has {expected}")]
    Dimension { expected: usize, got: usize },
    #[error("max_connections must be 1..=256, got {0}")]
    Connections(usize),
    #[error("unknown ANN backend {0:?}: use hnsw or faiss")]
    UnknownBackend(String),
    #[error("the {0} ANN backend is not compiled into this build (cargo feature `faiss`)")]
    NotCompiled(&'static str),
    #[error("FAISS: {0}")]
    Faiss(String),
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

/// A graph built once over fixed unit vectors: the approximate half of a [`FreshIndex`].
trait Graph: Send + Sync {
    /// Up to `k` item indices near the unit vector `query`, nearest first.
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<u32>, AnnError>;
    /// Entries in the graph: items `0..len`.
    fn len(&self) -> usize;
    /// Adds item `len()` (the next index): safe beside concurrent searches.
    fn insert(&self, item: u32, vector: &[f32]) -> Result<(), AnnError>;
    fn set_ef_search(&mut self, ef_search: usize) -> Result<(), AnnError>;
}

fn build_graph(
    dim: usize,
    vectors: &[Vec<f32>],
    params: &HnswParams,
) -> Result<Box<dyn Graph>, AnnError> {
    match params.backend {
        AnnBackend::Hnsw => Ok(Box::new(hnsw_graph::HnswGraph::build(vectors, params))),
        #[cfg(feature = "faiss")]
        AnnBackend::Faiss => Ok(Box::new(faiss_graph::FaissGraph::build(
            dim, vectors, params,
        )?)),
        #[cfg(not(feature = "faiss"))]
        AnnBackend::Faiss => {
            let _ = dim;
            Err(AnnError::NotCompiled("faiss"))
        }
    }
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

/// Best `k` of `hits` that `keep` accepts. `keep` is asked best first and only until k are
/// kept: a filter (catalog, seen items) costs more than a dot product, so asking it of every
/// scanned item would cost more than the scan.
fn best_kept(mut hits: Vec<Hit>, k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<Hit> {
    let order = |a: &Hit, b: &Hit| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut kept = Vec::with_capacity(k);
    let mut from = 0;
    let mut window = (2 * k).max(16);
    while kept.len() < k && from < hits.len() {
        let rest = &mut hits[from..];
        let take = window.min(rest.len());
        if take < rest.len() {
            rest.select_nth_unstable_by(take - 1, order);
        }
        rest[..take].sort_by(order);
        for &hit in &rest[..take] {
            if kept.len() < k && keep(hit.0) {
                kept.push(hit);
            }
        }
        from += take;
        window *= 4;
    }
    kept
}

/// Every vector of `vectors` (unit length), scored against `q`.
fn scan(vectors: &[Vec<f32>], q: &[f32]) -> Vec<Hit> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u32, dot(q, v)))
        .collect()
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
        best_kept(scan(&self.vectors, &normalized(query)), k, keep)
    }

    fn len(&self) -> usize {
        self.vectors.len()
    }
}

pub struct FreshIndex {
    dim: usize,
    params: HnswParams,
    /// Over unit vectors, so L2 order is cosine order.
    graph: Box<dyn Graph>,
    /// Current (normalized) vector of every item, by index.
    vectors: Vec<Vec<f32>>,
    /// Items whose graph entry is missing or far from their vector: searched exactly.
    delta: HashMap<u32, ()>,
    /// Graph entries whose vector changed since the build: the vector the graph placed.
    placed: HashMap<u32, Vec<f32>>,
    graph_len: usize,
}

impl FreshIndex {
    /// Builds the graph over `vectors` (item index = position) with `params.backend`.
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
        let graph = build_graph(dim, &vectors, &params)?;
        let graph_len = vectors.len();
        Ok(Self {
            dim,
            params,
            graph,
            vectors,
            delta: HashMap::new(),
            placed: HashMap::new(),
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
        if i < self.graph_len {
            let placed = self
                .placed
                .entry(index)
                .or_insert_with(|| self.vectors[i].clone());
            if dot(placed, &v) < self.params.drift_cosine {
                self.delta.insert(index, ());
            } else {
                self.delta.remove(&index);
            }
        } else {
            self.delta.insert(index, ());
        }
        if i < self.vectors.len() {
            self.vectors[i] = v;
        } else {
            self.vectors.resize(i, vec![0.0; self.dim]);
            self.vectors.push(v);
        }
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

    /// Items searched exactly because their graph entry is missing or far off.
    pub fn delta_len(&self) -> usize {
        self.delta.len()
    }

    /// Graph entries whose vector has changed since the build, near or far.
    pub fn drifted_len(&self) -> usize {
        self.placed.len()
    }

    /// Whether the entries moved far, or the share of drifted entries, has grown past its
    /// threshold. New items do not count: [`FreshIndex::grow`] adds them to the graph.
    pub fn wants_rebuild(&self) -> bool {
        let graph = self.graph_len.max(1) as f64;
        self.moved_far() as f64 > self.params.rebuild_fraction * graph
            || self.placed.len() as f64 > self.params.drifted_fraction * graph
    }

    /// Graph entries in the delta: placed where their vector no longer is.
    fn moved_far(&self) -> usize {
        self.delta
            .keys()
            .filter(|&&i| (i as usize) < self.graph_len)
            .count()
    }

    /// Items added since the graph last grew: searched exactly until [`FreshIndex::grow`]
    /// and [`FreshIndex::absorb_grown`] take them in.
    pub fn ungrown(&self) -> usize {
        self.vectors.len().saturating_sub(self.graph.len())
    }

    /// Inserts new items into the graph, in index order, until `budget` has passed: through
    /// `&self`, so queries go on meanwhile (they still take these items from the delta).
    /// Answers how many it inserted.
    pub fn grow(&self, budget: std::time::Duration) -> Result<usize, AnnError> {
        let started = std::time::Instant::now();
        let mut inserted = 0;
        while started.elapsed() < budget {
            let next = self.graph.len();
            let Some(v) = self.vectors.get(next) else {
                break;
            };
            self.graph.insert(next as u32, v)?;
            inserted += 1;
        }
        Ok(inserted)
    }

    /// Serves the items [`FreshIndex::grow`] inserted from the graph from now on.
    pub fn absorb_grown(&mut self) {
        let grown = self.graph.len().min(self.vectors.len());
        for i in self.graph_len..grown {
            self.delta.remove(&(i as u32));
        }
        self.graph_len = self.graph_len.max(grown);
    }

    /// The same index searching with another `ef_search` (recall against speed).
    pub fn with_ef_search(mut self, ef_search: usize) -> Result<Self, AnnError> {
        self.params.ef_search = ef_search.max(1);
        self.graph.set_ef_search(self.params.ef_search)?;
        Ok(self)
    }

    pub fn backend(&self) -> AnnBackend {
        self.params.backend
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
        let from_delta = best_kept(
            self.delta
                .keys()
                .map(|&i| (i, dot(&q, &self.vectors[i as usize])))
                .collect(),
            k,
            keep,
        );
        // Ask the graph for enough that dropping stale entries (about the delta's share of the
        // graph, at most `rebuild_fraction`) and a few filtered ones still leaves k: a wider
        // graph search costs more than the entries it saves. A filter that leaves fewer than
        // three quarters of k widens the search by the share it kept (the tail of a list is
        // worth less than a second search), and past the graph's size it is an exact scan.
        let stale_share = self.moved_far() as f64 / self.graph_len.max(1) as f64;
        let mut want = k + (2.0 * stale_share.min(1.0) * k as f64).ceil() as usize;
        loop {
            if want >= self.graph_len {
                return best_kept(scan(&self.vectors, &q), k, keep);
            }
            let Ok(graph_hits) = self.graph.search(&q, want) else {
                // A graph that cannot answer (a FAISS error) costs speed, not the answer.
                return best_kept(scan(&self.vectors, &q), k, keep);
            };
            let exhausted = graph_hits.len() < want;
            let mut hits: Vec<Hit> = graph_hits
                .into_iter()
                .filter(|i| {
                    !self.delta.contains_key(i) && (*i as usize) < self.vectors.len() && keep(*i)
                })
                .map(|i| (i, dot(&q, &self.vectors[i as usize])))
                .collect();
            if 4 * hits.len() >= 3 * k || exhausted {
                hits.extend_from_slice(&from_delta);
                return best(hits, k);
            }
            let kept = hits.len().max(1);
            want *= k.div_ceil(kept).clamp(2, 16);
        }
    }

    fn len(&self) -> usize {
        self.vectors.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::ClusteredMixture;

    const DIM: usize = 64;

    /// The reference benchmark's shape: 100 clusters, decaying spectrum, random rotations.
    fn mixture(n: usize, seed: u64) -> Vec<Vec<f32>> {
        ClusteredMixture::new(DIM, 100, 0).sample(n, seed)
    }

    fn params(backend: AnnBackend) -> HnswParams {
        HnswParams {
            backend,
            ..HnswParams::default()
        }
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
    fn recall_at_10_is_at_least_095_at_the_defaults_for_every_backend() {
        let vectors = mixture(5_000, 1);
        let queries = mixture(200, 2);
        let exact = ExactIndex::new(DIM, &vectors);
        for &backend in AnnBackend::available() {
            let index = FreshIndex::build(DIM, &vectors, params(backend)).expect("built");
            assert_eq!(index.backend(), backend);
            let r = recall(&index, &exact, &queries, 10);
            assert!(r >= 0.95, "{}: recall@10 {r}", backend.name());
        }
    }

    #[test]
    fn a_changed_vector_is_found_by_its_new_value_in_the_next_query() {
        let vectors = mixture(1_000, 3);
        for &backend in AnnBackend::available() {
            let mut index = FreshIndex::build(DIM, &vectors, params(backend)).expect("built");
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
            assert_eq!(rebuilt.backend(), backend);
            assert_eq!(rebuilt.delta_len(), 0);
            assert_eq!(rebuilt.search(&moved, 1, &|_| true)[0].0, 17);
            assert_eq!(rebuilt.search(&fresh, 1, &|_| true)[0].0, 1_000);
        }
    }

    #[test]
    fn vectors_nudged_by_learning_stay_graph_served_with_exact_scores() {
        let vectors = mixture(2_000, 11);
        for &backend in AnnBackend::available() {
            let mut index = FreshIndex::build(DIM, &vectors, params(backend)).expect("built");
            let mut current = vectors.clone();
            // Every item nudged a little, as a few SGD steps do: none leaves its place.
            let noise = mixture(2_000, 12);
            for (i, (v, n)) in current.iter_mut().zip(&noise).enumerate() {
                let scale = 0.05 * lanes::dot(v, v).sqrt() / lanes::dot(n, n).sqrt();
                for (x, e) in v.iter_mut().zip(n) {
                    *x += scale * e;
                }
                index.upsert(i as u32, v).expect("ok");
            }
            assert_eq!(
                index.delta_len(),
                0,
                "{}: nudges stay in the graph",
                backend.name()
            );
            assert_eq!(index.drifted_len(), 2_000);
            assert!(
                index.wants_rebuild(),
                "every entry drifted: a rebuild is due"
            );
            let exact = ExactIndex::new(DIM, &current);
            let queries = mixture(100, 13);
            let r = recall(&index, &exact, &queries, 10);
            assert!(r >= 0.9, "{}: recall@10 {r}", backend.name());
            // Scores are the current vectors', not the graph's.
            for q in &queries[..10] {
                let truth = exact.search(q, 1, &|_| true)[0];
                let hit = index.search(q, 1, &|_| true)[0];
                if hit.0 == truth.0 {
                    assert!((hit.1 - truth.1).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn new_items_grow_into_the_graph_and_leave_the_delta() {
        let vectors = mixture(1_500, 15);
        for &backend in AnnBackend::available() {
            let mut index =
                FreshIndex::build(DIM, &vectors[..500], params(backend)).expect("built");
            for (i, v) in vectors.iter().enumerate().skip(500) {
                index.upsert(i as u32, v).expect("ok");
            }
            assert_eq!(index.delta_len(), 1_000);
            assert_eq!(index.ungrown(), 1_000);
            assert!(
                !index.wants_rebuild(),
                "new items are grown, not rebuilt for"
            );
            let exact = ExactIndex::new(DIM, &vectors);
            let queries = mixture(100, 16);
            let before = recall(&index, &exact, &queries, 10);
            while index.ungrown() > 0 {
                index
                    .grow(std::time::Duration::from_millis(5))
                    .expect("grows");
                index.absorb_grown();
            }
            assert_eq!(index.delta_len(), 0, "{}", backend.name());
            let after = recall(&index, &exact, &queries, 10);
            assert!(
                before >= 0.95 && after >= 0.95,
                "{}: {before} then {after}",
                backend.name()
            );
        }
    }

    #[test]
    fn the_filter_is_asked_only_of_the_best_candidates() {
        let vectors = mixture(3_000, 14);
        let index = ExactIndex::new(DIM, &vectors);
        let asked = std::cell::Cell::new(0usize);
        let keep = |i: u32| {
            asked.set(asked.get() + 1);
            i.is_multiple_of(2)
        };
        let hits = index.search(&vectors[0], 10, &keep);
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| h.0.is_multiple_of(2)));
        let truth: Vec<u32> = index
            .search(&vectors[0], 3_000, &|_| true)
            .into_iter()
            .map(|h| h.0)
            .filter(|i| i.is_multiple_of(2))
            .take(10)
            .collect();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), truth);
        assert!(asked.get() < 100, "asked {} of 3,000", asked.get());
    }

    #[test]
    fn filters_are_honoured_and_recall_holds_with_a_delta() {
        let vectors = mixture(2_000, 5);
        let changes = mixture(120, 6);
        for &backend in AnnBackend::available() {
            let mut index = FreshIndex::build(DIM, &vectors, params(backend)).expect("built");
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
            let r = recall(&index, &exact, &queries, 10);
            assert!(r >= 0.95, "{}: recall@10 {r}", backend.name());
            // A filter keeping one item in 50 still gets (at least three quarters of) its 10,
            // and the right ones.
            let rare = |i: u32| i.is_multiple_of(50);
            let exact_rare = |q: &[f32]| -> Vec<u32> {
                exact
                    .search(q, 10, &rare)
                    .into_iter()
                    .map(|h| h.0)
                    .collect()
            };
            for q in &queries[..10] {
                let hits: Vec<u32> = index
                    .search(q, 10, &rare)
                    .into_iter()
                    .map(|h| h.0)
                    .collect();
                assert!(hits.len() >= 8, "{}: {} hits", backend.name(), hits.len());
                assert!(hits.iter().all(|i| rare(*i)));
                let truth = exact_rare(q);
                let found = hits.iter().filter(|i| truth.contains(i)).count();
                assert!(found >= 7, "{}: {found} of 10", backend.name());
            }
            let even = |i: u32| i.is_multiple_of(2);
            for q in &queries[..10] {
                let hits = index.search(q, 10, &even);
                assert!(!hits.is_empty());
                assert!(hits.iter().all(|h| h.0.is_multiple_of(2)));
            }
        }
    }

    #[test]
    fn a_smaller_ef_search_trades_recall_for_speed_on_every_backend() {
        let vectors = mixture(3_000, 9);
        let queries = mixture(100, 10);
        let exact = ExactIndex::new(DIM, &vectors);
        for &backend in AnnBackend::available() {
            let index = FreshIndex::build(DIM, &vectors, params(backend)).expect("built");
            let wide = recall(&index, &exact, &queries, 10);
            let narrow_index = index.with_ef_search(10).expect("set");
            let narrow = recall(&narrow_index, &exact, &queries, 10);
            assert!(narrow <= wide, "{}: {narrow} > {wide}", backend.name());
            let back = narrow_index.with_ef_search(64).expect("set");
            assert_eq!(recall(&back, &exact, &queries, 10), wide);
        }
    }

    #[test]
    fn backends_parse_by_name() {
        assert_eq!(AnnBackend::parse("hnsw"), Ok(AnnBackend::Hnsw));
        assert!(matches!(
            AnnBackend::parse("annoy"),
            Err(AnnError::UnknownBackend(_))
        ));
        if cfg!(feature = "faiss") {
            assert_eq!(AnnBackend::parse("faiss"), Ok(AnnBackend::Faiss));
        } else {
            assert_eq!(
                AnnBackend::parse("faiss"),
                Err(AnnError::NotCompiled("faiss"))
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
