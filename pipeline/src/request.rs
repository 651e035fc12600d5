//! What a recommendation request asks, and what it is answered.

use serde::Serialize;
use streamrec_learner::candidates::Source;
use streamrec_proto::SnapshotVersion;
use streamrec_ranker::Rules;

/// Largest list a request may ask for.
pub const MAX_K: usize = 500;

/// One recommendation request, with its business rules.
#[derive(Debug, Clone, Default)]
pub struct RecommendRequest {
    pub session_id: String,
    /// Extends the history and the exclusions from the session to the user.
    pub user_id: Option<String>,
    pub k: usize,
    pub rec_id: String,
    /// Answer from this snapshot instead of the live models.
    pub model_version: Option<SnapshotVersion>,
    /// Per item: the stage scores and the source.
    pub explain: bool,
    /// MMR trade-off in [0, 1]; `None` or 1: relevance only.
    pub mmr_lambda: Option<f32>,
    /// Attribute filters: the item's catalog attribute must equal (or, for a list,
    /// contain) the value. Items without a catalog entry fail a filter.
    pub filters: Vec<(String, String)>,
    /// Items to place at a slot (0-based), whatever their score.
    pub pins: Vec<(String, usize)>,
    /// Added to an item's re-ranked score.
    pub boosts: Vec<(String, f32)>,
    /// The request's W3C `traceparent`, carried into its impression.
    pub traceparent: Option<String>,
}

impl RecommendRequest {
    pub fn rules(&self) -> Rules<'_> {
        Rules {
            filters: &self.filters,
            pins: &self.pins,
            boosts: &self.boosts,
        }
    }
}

/// How an item got where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub source: Source,
    /// Stage-one score.
    pub retrieval: f32,
    /// The re-ranker's score, when one served.
    pub rerank: Option<f32>,
    pub boost: Option<f32>,
    /// Rank after re-ranking, boosts and MMR, before the bandit (0-based).
    pub pre_bandit_rank: usize,
    /// The candidate features the re-ranker saw, by name.
    pub features: Vec<(&'static str, f32)>,
    /// For a co-visited item: the history item that relates it most ("co-visited with").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
    /// The bandit showed it although the stages ranked it below the first `k`.
    pub explored: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RankedItem {
    pub item_id: String,
    /// Final score: the re-ranked score (plus boost), or stage one's without a re-ranker.
    pub score: f64,
    pub propensity: f64,
    pub explanation: Option<Explanation>,
}

/// A ranked answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub model_version: String,
    pub items: Vec<RankedItem>,
}
