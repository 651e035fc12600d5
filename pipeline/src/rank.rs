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
        let hits = self
            .0
            .vectors()
            .filter(|(id, _)| keep(id))
            .map(|(id, v)| (id, cosine(query, v)))
            .collect();
        most_similar(hits, k)
    }
}

/// The `k` most similar of `hits` (ids unique), best first, ties by id. Only the best are
/// sorted and copied: sorting and copying every item was most of an offline replay's
/// request (callgrind).
fn most_similar(mut hits: Vec<(&str, f32)>, k: usize) -> Vec<(String, f32)> {
    let order = |a: &(&str, f32), b: &(&str, f32)| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0));
    if k == 0 {
        return Vec::new();
    }
    if hits.len() > k {
        hits.select_nth_unstable_by(k - 1, order);
        hits.truncate(k);
    }
    hits.sort_unstable_by(order);
    hits.into_iter().map(|(id, s)| (id.to_owned(), s)).collect()
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

#[cfg(test)]
mod tests {
    use super::most_similar;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn most_similar_is_the_head_of_the_full_sort(
            scores in prop::collection::vec(prop_oneof![Just(0.5f32), Just(-0.25), -1.0f32..1.0], 0..200),
            k in 0usize..80,
        ) {
            let ids: Vec<String> = (0..scores.len()).map(|i| format!("i{i}")).collect();
            let hits: Vec<(&str, f32)> =
                ids.iter().map(String::as_str).zip(scores.iter().copied()).collect();
            let mut sorted: Vec<(String, f32)> =
                hits.iter().map(|&(id, s)| (id.to_owned(), s)).collect();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            sorted.truncate(k);
            prop_assert_eq!(most_similar(hits, k), sorted);
        }
    }
}
