//! The stages run in order, with what they need from outside behind two traits: the ANN
//! index the intent's neighbours come from ([`IntentSearch`]) and the re-ranker's
//! inference ([`Scorer`]).

use std::future::Future;
use std::sync::Arc;

use streamrec_learner::ReadSide;
use streamrec_learner::candidates::CandidateReads;
use streamrec_learner::embeddings::cosine;
use streamrec_proto::ShownItem;
use streamrec_ranker::{RerankError, Reranker};

use crate::request::RankedItem;
use crate::stages::{self, RankInputs};

/// Nearest items to an intent vector.
pub trait IntentSearch: Sync {
    /// The `k` items nearest to `query` that `keep` accepts: (dense id, cosine), nearest
    /// first. Ids are the read side's dense ids, which every version of one learner shares:
    /// the filter a search calls for every item it looks at needs no lookup of a wire id.
    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)>;
}

/// Intent neighbours by exact scan of a read side's vectors: for models whose vectors no
/// live index holds (a snapshot's; an offline replay), so the answer depends on the
/// models alone.
pub struct ExactIntent<'a>(pub &'a ReadSide);

impl IntentSearch for ExactIntent<'_> {
    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)> {
        let read = self.0;
        let hits = (0..read.item_count() as u32)
            .filter(|&i| keep(i))
            .filter_map(|i| Some((i, cosine(query, read.vector_at(i)?))))
            .collect();
        most_similar(hits, k, |i| read.item(i))
    }
}

/// The `k` most similar of `hits` (ids unique), best first, ties by wire id (`id_of`).
/// Only the best are sorted: sorting every item was most of an offline replay's request
/// (callgrind).
fn most_similar<'a>(
    mut hits: Vec<(u32, f32)>,
    k: usize,
    id_of: impl Fn(u32) -> Option<&'a str>,
) -> Vec<(u32, f32)> {
    let order = |a: &(u32, f32), b: &(u32, f32)| {
        b.1.total_cmp(&a.1)
            .then_with(|| id_of(a.0).cmp(&id_of(b.0)))
    };
    if k == 0 {
        return Vec::new();
    }
    if hits.len() > k {
        hits.select_nth_unstable_by(k - 1, order);
        hits.truncate(k);
    }
    hits.sort_unstable_by(order);
    hits
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
            // Wire ids that do not sort as the dense ids do: ties must go by the wire id.
            let ids: Vec<String> = (0..scores.len()).map(|i| format!("i{i}")).collect();
            let hits: Vec<(u32, f32)> =
                (0..scores.len() as u32).zip(scores.iter().copied()).collect();
            let mut sorted: Vec<(String, f32)> =
                ids.iter().cloned().zip(scores.iter().copied()).collect();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            sorted.truncate(k);
            let got: Vec<(String, f32)> = most_similar(hits, k, |i| ids.get(i as usize).map(String::as_str))
                .into_iter()
                .map(|(i, s)| (ids[i as usize].clone(), s))
                .collect();
            prop_assert_eq!(got, sorted);
        }
    }
}
