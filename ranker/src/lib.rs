//! Ranking stages of streamrec: pure functions from candidates to the list a user sees.

pub mod ann;
pub mod rules;

pub use ann::{AnnIndex, ExactIndex, FreshIndex, HnswParams};
pub use rules::{Exclusions, top_k};
