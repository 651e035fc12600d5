//! The default graph: hnsw_rs, over unit vectors with the lane-summed squared L2.

use hnsw_rs::prelude::Hnsw;

use super::lanes::SquaredL2;
use super::{AnnError, Graph, HnswParams};

pub struct HnswGraph {
    hnsw: Hnsw<'static, f32, SquaredL2>,
    ef_search: usize,
}

impl HnswGraph {
    /// `vectors` are unit length; item index = position.
    pub fn build(vectors: &[Vec<f32>], params: &HnswParams) -> Self {
        let hnsw = Hnsw::new(
            params.max_connections,
            vectors.len().max(1),
            16,
            params.ef_construction,
            SquaredL2,
        );
        // Sequential inserts: hnsw_rs seeds its level draws, so the same vectors always give
        // the same graph (a parallel build would not, and would take the serving core).
        for (i, v) in vectors.iter().enumerate() {
            hnsw.insert_slice((v, i));
        }
        Self {
            hnsw,
            ef_search: params.ef_search,
        }
    }
}

impl Graph for HnswGraph {
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<u32>, AnnError> {
        Ok(self
            .hnsw
            .search(query, k, self.ef_search.max(k))
            .into_iter()
            .map(|n| n.d_id as u32)
            .collect())
    }

    fn len(&self) -> usize {
        self.hnsw.get_nb_point()
    }

    fn insert(&self, item: u32, vector: &[f32]) -> Result<(), AnnError> {
        // hnsw_rs inserts through `&self`, beside concurrent searches.
        self.hnsw.insert_slice((vector, item as usize));
        Ok(())
    }

    fn set_ef_search(&mut self, ef_search: usize) -> Result<(), AnnError> {
        self.ef_search = ef_search;
        Ok(())
    }
}
