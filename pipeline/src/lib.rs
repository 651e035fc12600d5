//! The request path as pure stages over one published version of the learners, and the
//! learners driven by hand in stream order. No actors, no async runtime, no I/O: the actor
//! engine serves through these stages, and `streamrec train` / `evaluate` use them directly.
//!
//! A request goes through [`stages::gather`] (candidates), [`stages::score`] (the
//! re-ranker, behind [`Scorer`]), [`stages::order`] (boosts and diversity) and
//! [`stages::slate`] (the bandit and pins); [`rank`] runs them in that order.

pub mod offline;
pub mod point_in_time;
pub mod published;
pub mod rank;
pub mod replayer;
pub mod request;
pub mod stages;

pub use offline::OfflineEngine;
pub use point_in_time::{
    FeatureMismatch, PointInTimeReport, StreamEntry, recompute_features, replay_logged_features,
};
pub use published::{
    RerankerProgress, ServingModels, feature_log, position_of, reranker_config, serving_reranker,
    to_weights,
};
pub use rank::{ExactIntent, InlineScorer, IntentSearch, Ranking, Scorer, Stage, rank};
pub use replayer::{Replayer, train_batch};
pub use request::{Explanation, MAX_K, Ranked, RankedItem, RecommendRequest};
pub use stages::{RankInputs, SessionSeen};

#[cfg(test)]
mod tests;
