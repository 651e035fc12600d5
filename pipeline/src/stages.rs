//! The four stages of a request, each a pure function of what the one before it gave:
//!
//! 1. [`gather`]: the user's co-visited items (item-kNN over the history, recency-weighted,
//!    and the transitions of the last item), the ANN neighbours of the session's intent,
//!    and popular items, merged; seen, unavailable, pinned and filtered-out items never
//!    enter;
//! 2. [`score`]: the re-ranker scores them, through a [`Scorer`] (the engine's
//!    micro-batcher, or inline);
//! 3. [`order`]: request boosts are added to the scores, then diversity by maximal
//!    marginal relevance when the request asks for it;
//! 4. [`slate`]: the bandit's slate over that order, with each position's propensity,
//!    then pinned items at their slots (propensity 1).
//!
//! Boosts and MMR act before the bandit so the propensities recorded are those of the list
//! actually shown.

use std::sync::Arc;

use streamrec_learner::ReadSide;
use streamrec_learner::candidates::{Candidate, CandidateReads, FEATURE_NAMES, Source, Sources};
use streamrec_learner::covisit::strongest_anchor;
use streamrec_learner::history::ItemHistory;
use streamrec_learner::online::choose_slate;
use streamrec_proto::{PackedFeatures, ShownItem};
use streamrec_ranker::mmr_order;

use crate::published::ServingModels;
use crate::rank::{IntentSearch, Scorer};
use crate::request::{Explanation, MAX_K, RankedItem, RecommendRequest};

/// Intent neighbours asked of the ANN index.
pub const ANN_CANDIDATES: usize = 64;
/// Popular items offered to the candidate stage.
pub const POPULAR_CANDIDATES: usize = 100;

/// What one request is ranked with.
#[derive(Clone, Copy)]
pub struct RankInputs<'a> {
    /// The version ranked with: the live one, or a pinned snapshot's.
    pub models: &'a ServingModels,
    /// The catalog as it is now, even for a pinned version: an item withdrawn since is not
    /// served again.
    pub catalog: &'a ReadSide,
    pub request: &'a RecommendRequest,
    /// What the session has met (never served again).
    pub seen: SessionSeen<'a>,
    /// Wall-clock now (epoch ms), for the catalog's availability windows.
    pub now_ms: i64,
}

impl RankInputs<'_> {
    /// Whether `id` may not be a candidate: seen, unavailable, placed by a pin instead, or
    /// refused by a filter.
    fn excluded(&self, id: &str) -> bool {
        self.seen.id(id) || self.refused(id)
    }

    /// [`Self::excluded`] for the item with dense id `index` on the read side ranked with.
    fn excluded_at(&self, index: u32, id: &str) -> bool {
        self.seen.at(&self.models.read, index, id) || self.refused(id)
    }

    /// Placed by a pin, unavailable, or refused by a filter.
    fn refused(&self, id: &str) -> bool {
        let rules = self.request.rules();
        if rules.pins(id) {
            return true;
        }
        match self.catalog.servable(id, self.now_ms) {
            Some(entry) => !rules.admits(entry.map(|i| &**i)),
            None => true,
        }
    }

    fn k(&self) -> usize {
        self.request.k.min(MAX_K)
    }

    /// The pool the bandit and MMR choose from: five times the list, at least the list.
    fn pool(&self, available: usize) -> usize {
        let k = self.k();
        available.min((k * 5).max(k))
    }
}

/// What a session has met, by its history on one read side: what a request never serves.
#[derive(Clone, Copy, Default)]
pub struct SessionSeen<'a> {
    read: Option<&'a ReadSide>,
    history: Option<&'a ItemHistory>,
}

impl<'a> SessionSeen<'a> {
    /// The session's history on `read` (nothing, for a session `read` has not met).
    pub fn of(read: &'a ReadSide, session_id: &str) -> Self {
        Self {
            read: Some(read),
            history: read.session(session_id),
        }
    }

    /// Whether the session has met the item `id`.
    pub fn id(&self, id: &str) -> bool {
        match (self.read, self.history) {
            (Some(read), Some(h)) => read.item_index(id).is_some_and(|i| h.contains(i)),
            _ => false,
        }
    }

    /// Whether the session has met the item with dense id `index` on `on` (wire id `id`):
    /// by the dense id itself when the history is `on`'s, without a lookup of `id`.
    fn at(&self, on: &ReadSide, index: u32, id: &str) -> bool {
        match (self.read, self.history) {
            (Some(read), Some(h)) if std::ptr::eq(read, on) => h.contains(index),
            _ => self.id(id),
        }
    }
}

/// Stage one's answer.
pub struct Gathered {
    pub candidates: Vec<Candidate>,
    /// Per candidate, its embedding, when the request asks for diversity.
    vectors: Vec<Option<Vec<f32>>>,
    /// The history (dense ids) when the request is explained: what an explained item was
    /// co-visited with.
    history: Vec<u32>,
}

/// Stage 1: candidates from co-visitation, the intent's ANN neighbours (`intent`) and
/// popularity, with their features.
pub fn gather(inputs: &RankInputs<'_>, intent: &dyn IntentSearch) -> Gathered {
    let RankInputs {
        models, request, ..
    } = *inputs;
    let read = &models.read;
    let user = request.user_id.as_deref();
    let history = read.user_role_history(user, &request.session_id);
    let excluded = |id: &str| {
        inputs.excluded(id)
            || history.is_some_and(|h| read.item_index(id).is_some_and(|i| h.contains(i)))
    };
    // The intent search asks for every item it looks at (an exact scan: every item), so
    // by dense id: the history first, then what needs the wire id.
    let excluded_at = |i: u32| {
        history.is_some_and(|h| h.contains(i))
            || read.item(i).is_none_or(|id| inputs.excluded_at(i, id))
    };
    let context = read.context(user, &request.session_id);
    let ann = match &context.intent {
        Some(query) => intent.search(query, ANN_CANDIDATES, &|i| !excluded_at(i)),
        None => Vec::new(),
    };
    let popular: Vec<&str> = models
        .popularity
        .ranked
        .iter()
        .take(POPULAR_CANDIDATES)
        .map(|(id, _)| &**id)
        .collect();
    let candidates = Sources { reads: read }.candidates(
        &context,
        &ann,
        &popular,
        &excluded,
        read.candidate_config(),
    );
    let want_vectors = request.mmr_lambda.is_some_and(|l| l < 1.0);
    let vectors = candidates
        .iter()
        .map(|c| {
            want_vectors
                .then(|| read.vector(&c.item_id).map(<[f32]>::to_vec))
                .flatten()
        })
        .collect();
    let history = if request.explain {
        context.history
    } else {
        Vec::new()
    };
    Gathered {
        candidates,
        vectors,
        history,
    }
}

/// Stage 2: the re-ranker's score of every candidate, in candidate order; `None` when the
/// version has no trained re-ranker, no scorer is given, or there is nothing to score.
pub async fn score<S: Scorer>(
    models: &ServingModels,
    gathered: &Gathered,
    scorer: Option<&S>,
) -> Result<Option<Vec<f32>>, S::Error> {
    let (Some(reranker), Some(scorer)) = (&models.reranker, scorer) else {
        return Ok(None);
    };
    if gathered.candidates.is_empty() {
        return Ok(None);
    }
    let features: Vec<f32> = gathered
        .candidates
        .iter()
        .flat_map(|c| c.features)
        .collect();
    scorer.score(Arc::clone(reranker), features).await.map(Some)
}

/// A candidate with its stage scores.
pub struct Scored {
    pub candidate: Candidate,
    pub rerank: Option<f32>,
    pub boost: Option<f32>,
    /// The re-ranked score (stage one's without one), plus the boost.
    pub score: f32,
    vector: Option<Vec<f32>>,
}

/// Stage 3's answer: the candidates in the order the bandit starts from.
pub struct Ordered {
    pub scored: Vec<Scored>,
    history: Vec<u32>,
}

/// Stage 3: boosts added, sorted by score (ties to the lower id), then MMR over the pool
/// when the request asks for diversity.
pub fn order(inputs: &RankInputs<'_>, gathered: Gathered, rerank: Option<Vec<f32>>) -> Ordered {
    let rules = inputs.request.rules();
    let Gathered {
        candidates,
        vectors,
        history,
    } = gathered;
    let mut scored: Vec<Scored> = candidates
        .into_iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (candidate, vector))| {
            let rerank = rerank.as_ref().and_then(|s| s.get(i).copied());
            let boost = rules.boost(&candidate.item_id);
            let score = rerank.unwrap_or(candidate.retrieval) + boost.unwrap_or(0.0);
            Scored {
                candidate,
                rerank,
                boost,
                score,
                vector,
            }
        })
        .collect();
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.candidate.item_id.cmp(&b.candidate.item_id))
    });
    if let Some(lambda) = inputs.request.mmr_lambda.filter(|l| *l < 1.0) {
        let pool = inputs.pool(scored.len());
        let relevance: Vec<f32> = scored[..pool].iter().map(|s| s.score).collect();
        let views: Vec<Option<&[f32]>> =
            scored[..pool].iter().map(|s| s.vector.as_deref()).collect();
        let order = mmr_order(&relevance, &views, lambda, pool);
        let mut head: Vec<Option<Scored>> = scored.drain(..pool).map(Some).collect();
        let reordered: Vec<Scored> = order.iter().filter_map(|&i| head[i].take()).collect();
        scored.splice(0..0, reordered);
    }
    Ordered { scored, history }
}

/// Stage 4: the bandit's slate of `k` over the ordered pool (its context is the rank the
/// stages gave), then the request's pins at their slots. The list answered, and the slots
/// to record as the impression.
pub fn slate(inputs: &RankInputs<'_>, ordered: Ordered) -> (Vec<RankedItem>, Vec<ShownItem>) {
    let RankInputs {
        models, request, ..
    } = *inputs;
    let Ordered { scored, history } = ordered;
    let k = inputs.k();
    let pool = inputs.pool(scored.len());
    let ranked: Vec<(String, f64)> = scored[..pool]
        .iter()
        .enumerate()
        .map(|(r, s)| (s.candidate.item_id.clone(), 1.0 / (1.0 + r as f64)))
        .collect();
    let slots = choose_slate(Some(models.bandit()), &ranked, k, &request.rec_id);
    let mut items: Vec<RankedItem> = slots
        .iter()
        .map(|slot| {
            let s = &scored[slot.candidate];
            RankedItem {
                item_id: s.candidate.item_id.clone(),
                score: f64::from(s.score),
                propensity: slot.shown.propensity,
                explanation: request.explain.then(|| Explanation {
                    source: s.candidate.source,
                    retrieval: s.candidate.retrieval,
                    rerank: s.rerank,
                    boost: s.boost,
                    pre_bandit_rank: slot.candidate,
                    features: FEATURE_NAMES
                        .iter()
                        .copied()
                        .zip(s.candidate.features)
                        .collect(),
                    because: matches!(s.candidate.source, Source::Knn | Source::Transition)
                        .then(|| anchor_of(&models.read, &history, &s.candidate.item_id))
                        .flatten(),
                    explored: slot.candidate >= k,
                }),
            }
        })
        .collect();
    // Logged as served: the vector the re-ranker scored, bit for bit, and its score.
    let mut shown: Vec<ShownItem> = slots
        .into_iter()
        .map(|slot| {
            let s = &scored[slot.candidate];
            ShownItem {
                candidate_features: Some(PackedFeatures(s.candidate.features.to_vec())),
                rerank_score: s.rerank,
                ..slot.shown
            }
        })
        .collect();
    let rules = request.rules();
    let pins = rules.pin_slots(items.len(), |id| {
        !inputs.seen.id(id) && !inputs.catalog.is_unavailable(id, inputs.now_ms)
    });
    // A pinned item carries the list's top score: JSON has no infinity, and its place is the
    // pin's, not the score's.
    let top = items
        .iter()
        .map(|i| i.score)
        .fold(None, |best: Option<f64>, s| {
            Some(best.map_or(s, |b| b.max(s)))
        })
        .unwrap_or(0.0);
    for (id, at) in pins {
        items.insert(
            at,
            RankedItem {
                item_id: id.to_owned(),
                score: top,
                propensity: 1.0,
                explanation: request.explain.then(|| Explanation {
                    source: Source::Pinned,
                    retrieval: 0.0,
                    rerank: None,
                    boost: None,
                    pre_bandit_rank: at,
                    features: Vec::new(),
                    because: None,
                    explored: false,
                }),
            },
        );
        shown.insert(
            at,
            ShownItem {
                item_id: id.to_owned(),
                position: 0,
                propensity: 1.0,
                features: Vec::new(),
                candidate_features: None,
                rerank_score: None,
            },
        );
    }
    items.truncate(k);
    shown.truncate(k);
    for (position, slot) in shown.iter_mut().enumerate() {
        slot.position = position as u32;
    }
    (items, shown)
}

/// The history item (of `history`, dense ids) that `item_id` is most co-visited with.
fn anchor_of(read: &ReadSide, history: &[u32], item_id: &str) -> Option<String> {
    let config = read.candidate_config();
    let item = read.item_index(item_id)?;
    let anchor = strongest_anchor(
        read,
        history,
        item,
        config.history_decay,
        config.history_depth,
    )?;
    read.item(anchor).map(str::to_owned)
}
