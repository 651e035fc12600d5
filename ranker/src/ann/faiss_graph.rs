//! FAISS's `IndexHNSWFlat` (feature `faiss`, built from source by the `faiss` crate), as the
//! second graph behind [`super::FreshIndex`]: same parameters, same unit vectors.

use faiss::index::autotune::ParameterSpace;
use std::sync::Mutex;

use faiss::index::{Index, IndexImpl};
use faiss::{MetricType, index_factory};

use super::{AnnError, Graph, HnswParams};

pub struct FaissGraph {
    /// The binding gives the factory's `IndexImpl` only a `&mut self` search (FAISS's own is
    /// const), so concurrent queries take turns here.
    index: Mutex<IndexImpl>,
    ef_search: usize,
}

impl FaissGraph {
    /// `vectors` are unit length and `dim` long; item index = position.
    pub fn build(dim: usize, vectors: &[Vec<f32>], params: &HnswParams) -> Result<Self, AnnError> {
        let description = format!("HNSW{},Flat", params.max_connections);
        let mut index =
            index_factory(dim as u32, description, MetricType::L2).map_err(faiss_error)?;
        let space = ParameterSpace::new().map_err(faiss_error)?;
        space
            .set_index_parameter(&index, "efConstruction", params.ef_construction as f64)
            .map_err(faiss_error)?;
        space
            .set_index_parameter(&index, "efSearch", params.ef_search as f64)
            .map_err(faiss_error)?;
        index.add(&vectors.concat()).map_err(faiss_error)?;
        Ok(Self {
            index: Mutex::new(index),
            ef_search: params.ef_search,
        })
    }
}

impl Graph for FaissGraph {
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<u32>, AnnError> {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        // A search for more than efSearch results widens to k, as hnsw_rs's does (FAISS would
        // keep efSearch and return a poor tail); the lock makes the change this query's alone.
        let widened = k > self.ef_search;
        if widened {
            set_ef_search(&index, k)?;
        }
        let result = index.search(query, k).map_err(faiss_error);
        if widened {
            set_ef_search(&index, self.ef_search)?;
        }
        let result = result?;
        Ok(result
            .labels
            .iter()
            .filter_map(|label| label.get())
            .map(|i| i as u32)
            .collect())
    }

    fn len(&self) -> usize {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.ntotal() as usize
    }

    fn insert(&self, item: u32, vector: &[f32]) -> Result<(), AnnError> {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        // FAISS labels entries by insertion order: only the next index can be added.
        if item as u64 != index.ntotal() {
            return Err(AnnError::Faiss(format!(
                "insert of item {item} into a graph of {}",
                index.ntotal()
            )));
        }
        index.add(vector).map_err(faiss_error)
    }

    fn set_ef_search(&mut self, ef_search: usize) -> Result<(), AnnError> {
        let index = self.index.get_mut().unwrap_or_else(|p| p.into_inner());
        set_ef_search(index, ef_search)?;
        self.ef_search = ef_search;
        Ok(())
    }
}

fn set_ef_search(index: &IndexImpl, ef_search: usize) -> Result<(), AnnError> {
    ParameterSpace::new()
        .and_then(|space| space.set_index_parameter(index, "efSearch", ef_search as f64))
        .map_err(faiss_error)
}

fn faiss_error(error: faiss::error::Error) -> AnnError {
    AnnError::Faiss(error.to_string())
}
