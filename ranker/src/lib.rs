//! Ranking stages of streamrec: pure functions from candidates to the list a user sees.

pub mod ann;
pub mod diversity;
pub mod reranker;
pub mod rules;
pub mod synthetic;

pub use ann::{AnnBackend, AnnError, AnnIndex, ExactIndex, FreshIndex, HnswParams};
pub use diversity::mmr_order;
pub use reranker::{ComputeDevice, RerankError, RerankTrainer, Reranker, RerankerConfig, Weights};
pub use rules::Rules;
