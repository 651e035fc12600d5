//! Ranking stages of streamrec: pure functions from candidates to the list a user sees.

pub mod rules;

pub use rules::{Exclusions, top_k};
