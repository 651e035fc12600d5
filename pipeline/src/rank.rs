//! The stages run in order, with what they need from outside behind two traits: the ANN
//! index the intent's neighbours come from ([`IntentSearch`]) and the re-ranker's
//! inference ([`Scorer`]).

use std::future::Future;
use std::sync::Arc;

use streamrec_learner::ReadSide;
use streamrec_learner::embeddings::cosine;
use streamrec_proto::ShownItem;
use streamrec_ranker::{RerankError, Reranker};

use crate::request::RankedItem;
use crate::stages::{self, RankInputs};

/// Nearest items to an intent vector.
pub trait IntentSearch: Sync {
    /// The `k` items nearest to `query` that `keep` accepts: (item, cosine), nearest first.
    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(&str) -> bool) -> Vec<(String, f32)>;
}

/// Intent neighbours by exact scan of a read side's vectors: for models whose vectors no
/// live index holds (a snapshot's; an offline replay), so the answer depends on the
/// models alone.
pub struct ExactIntent<'a>(pub &'a ReadSide);

impl IntentSearch for ExactIntent<'_> {
    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(&str) -> bool) -> Vec<(String, f32)> {
        let mut hits: Vec<(String, f32)> = self
            .0
            .vectors()
            .filter(|(id, _)| keep(id))
            .map(|(id, v)| (id.to_owned(), cosine(query, v)))
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        hits
    }
}

/// The re-ranker's inference for one request's candidates (rows of features).
pub trait Scorer: Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    fn score(
        &self,
        reranker: Arc<Reranker>,
        features: Vec<f32>,
    ) -> impl Future<Output = Result<Vec<f32>, Self::Error>> + Send;
}

/// Scores on the caller's thread, one request at a time (offline replays, tests).
pub struct InlineScorer;

impl Scorer for InlineScorer {
    type Error = RerankError;

    async fn score(
        &self,
        reranker: Arc<Reranker>,
        features: Vec<f32>,
    ) -> Result<Vec<f32>, RerankError> {
        reranker.score(&features)
    }
}

/// A request's stages, in order (each is timed as one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Candidates,
    Rerank,
    Rules,
    Slate,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Self::Candidates, Self::Rerank, Self::Rules, Self::Slate];

    pub fn name(self) -> &'static str {
        match self {
            Self::Candidates => "candidates",
            Self::Rerank => "rerank",
            Self::Rules => "rules",
            Self::Slate => "slate",
        }
    }
}

/// A ranked answer and the slots to record as its impression.
pub struct Ranking<E> {
    pub items: Vec<RankedItem>,
    pub shown: Vec<ShownItem>,
    /// The re-ranker failed: the list is in stage one's order (plus boosts).
    pub rerank_error: Option<E>,
}

/// Stages 1–4 for one request. `scorer` `None`: stage one's order (the re-ranker may still
/// train). `done` is told as each stage ends.
pub async fn rank<S: Scorer>(
    inputs: &RankInputs<'_>,
    intent: &dyn IntentSearch,
    scorer: Option<&S>,
    done: &mut (dyn FnMut(Stage) + Send),
) -> Ranking<S::Error> {
    let gathered = stages::gather(inputs, intent);
    done(Stage::Candidates);
    let (rerank, rerank_error) = match stages::score(inputs.models, &gathered, scorer).await {
        Ok(scores) => (scores, None),
        Err(error) => (None, Some(error)),
    };
    done(Stage::Rerank);
    let ordered = stages::order(inputs, gathered, rerank);
    done(Stage::Rules);
    let (items, shown) = stages::slate(inputs, ordered);
    done(Stage::Slate);
    Ranking {
        items,
        shown,
        rerank_error,
    }
}
