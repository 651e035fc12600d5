//! The request path, in stages:
//!
//! 1. candidates: the user's co-visited items (item-kNN over the history, recency-weighted,
//!    and the transitions of the last item), the ANN neighbours of the session's intent,
//!    and popular items, merged; seen, unavailable and filtered-out items never enter;
//! 2. the burn re-ranker scores them (micro-batched with concurrent requests); request
//!    boosts are added to its scores;
//! 3. diversity by maximal marginal relevance when the request asks for it;
//! 4. the bandit's slate over that order, with each position's propensity, then pinned
//!    items at their slots (propensity 1).
//!
//! Boosts and MMR act before the bandit so the propensities recorded are those of the list
//! actually shown. The decision goes onto the event stream as an impression, so the click
//! that answers it is learned in stream order.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use streamrec_learner::ReadSide;
use streamrec_learner::candidates::{Candidate, CandidateReads, Source, Sources};
use streamrec_learner::covisit::strongest_anchor;
use streamrec_learner::embeddings::cosine;
use streamrec_learner::online::choose_slate;
use streamrec_proto::{Impression, ShownItem, SnapshotVersion};
use streamrec_ranker::{Rules, mmr_order};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::published::ServingModels;
use crate::serving::ServingState;
use crate::shadow::{ShadowReport, ShadowRun, with_run};

/// Largest list a request may ask for.
pub const MAX_K: usize = 500;
/// Intent neighbours asked of the ANN index.
const ANN_CANDIDATES: usize = 64;
/// Popular items offered to the candidate stage.
const POPULAR_CANDIDATES: usize = 100;

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

struct Scored {
    candidate: Candidate,
    rerank: Option<f32>,
    boost: Option<f32>,
    score: f32,
    vector: Option<Vec<f32>>,
}

/// Intent neighbours by exact scan: for a snapshot's models, whose vectors no live index
/// holds (a reproduction must not depend on the live index).
fn exact_intent(
    read: &ReadSide,
    intent: &[f32],
    k: usize,
    keep: &dyn Fn(&str) -> bool,
) -> Vec<(String, f32)> {
    let mut hits: Vec<(String, f32)> = read
        .vectors()
        .filter(|(id, _)| keep(id))
        .map(|(id, v)| (id.to_owned(), cosine(intent, v)))
        .collect();
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    hits.truncate(k);
    hits
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

impl Engine {
    /// Stages 1–4 for one request on `models`; the answer and the slots to record.
    async fn rank(
        &self,
        models: &ServingModels,
        request: &RecommendRequest,
        session_seen: &(dyn Fn(&str) -> bool + Sync),
    ) -> (Vec<RankedItem>, Vec<ShownItem>) {
        let mut clock = StageClock::start();
        let rules = request.rules();
        // The catalog as it is now, even for a pinned version: an item withdrawn since
        // is not served again.
        let live = self.models();
        let catalog = &live.read;
        let now_ms = streamrec_proto::now_millis();
        let excluded = |id: &str| {
            session_seen(id)
                || catalog.is_unavailable(id, now_ms)
                || rules.pins(id)
                || !rules.admits(catalog.catalog_item(id).map(|i| &**i))
        };
        let want_vectors = request.mmr_lambda.is_some_and(|l| l < 1.0);
        let (candidates, vectors, history) = {
            let read = &models.read;
            let user = request.user_id.as_deref();
            let history = read.user_role_history(user, &request.session_id);
            let excluded = |id: &str| {
                excluded(id)
                    || history.is_some_and(|h| read.item_index(id).is_some_and(|i| h.contains(i)))
            };
            let context = read.context(user, &request.session_id);
            let ann = match (&context.intent, models.name.is_some()) {
                (Some(q), false) => self
                    .serving()
                    .intent_index
                    .search(q, ANN_CANDIDATES, &|id| !excluded(id)),
                (Some(q), true) => exact_intent(read, q, ANN_CANDIDATES, &|id| !excluded(id)),
                (None, _) => Vec::new(),
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
            let vectors: Vec<Option<Vec<f32>>> = candidates
                .iter()
                .map(|c| {
                    want_vectors
                        .then(|| read.vector(&c.item_id).map(<[f32]>::to_vec))
                        .flatten()
                })
                .collect();
            // Kept only to name what an explained item was co-visited with.
            let history = if request.explain {
                context.history
            } else {
                Vec::new()
            };
            (candidates, vectors, history)
        };
        clock.lap("candidates");
        let rerank = match (&models.reranker, candidates.is_empty()) {
            (Some(reranker), false) if self.reranks() => {
                let features: Vec<f32> = candidates.iter().flat_map(|c| c.features).collect();
                match self.batcher().score(Arc::clone(reranker), features).await {
                    Ok(scores) => Some(scores),
                    Err(error) => {
                        tracing::warn!(%error, "re-ranker failed; serving stage-one order");
                        None
                    }
                }
            }
            _ => None,
        };
        clock.lap("rerank");
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
                .then(a.candidate.item_id.cmp(&b.candidate.item_id))
        });
        let k = request.k.min(MAX_K);
        if let Some(lambda) = request.mmr_lambda.filter(|l| *l < 1.0) {
            let pool = scored.len().min((k * 5).max(k));
            let relevance: Vec<f32> = scored[..pool].iter().map(|s| s.score).collect();
            let views: Vec<Option<&[f32]>> =
                scored[..pool].iter().map(|s| s.vector.as_deref()).collect();
            let order = mmr_order(&relevance, &views, lambda, pool);
            let mut head: Vec<Option<Scored>> = scored.drain(..pool).map(Some).collect();
            let reordered: Vec<Scored> = order.iter().filter_map(|&i| head[i].take()).collect();
            scored.splice(0..0, reordered);
        }
        clock.lap("rules");
        // Rank-based scores for the bandit: its context is the position the stages gave.
        let pool = scored.len().min((k * 5).max(k));
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
                        features: streamrec_learner::candidates::FEATURE_NAMES
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
        let mut shown: Vec<ShownItem> = slots.into_iter().map(|slot| slot.shown).collect();
        let pins = rules.pin_slots(items.len(), |id| {
            !session_seen(id) && !catalog.is_unavailable(id, now_ms)
        });
        // A pinned item carries the list's top score: JSON has no infinity, and its place is
        // the pin's, not the score's.
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
                },
            );
        }
        items.truncate(k);
        shown.truncate(k);
        for (position, slot) in shown.iter_mut().enumerate() {
            slot.position = position as u32;
        }
        clock.lap("slate");
        (items, shown)
    }
    /// Ranks the same request with the shadow candidate, if one runs, and records both.
    async fn shadow_decision(
        &self,
        request: &RecommendRequest,
        session_seen: &(dyn Fn(&str) -> bool + Sync),
        live: &[RankedItem],
    ) {
        let shadow = &self.serving().shadow;
        // Rank outside the lock; take it only to record.
        let Some(models) = with_run(shadow, |run| Arc::clone(run.models())) else {
            return;
        };
        let rec_id = request.rec_id.as_str();
        let (candidate, _) = self.rank(&models, request, session_seen).await;
        let slots = |items: &[RankedItem]| {
            items
                .iter()
                .map(|i| (i.item_id.clone(), i.propensity))
                .collect()
        };
        with_run(shadow, |run| {
            run.record(rec_id, slots(live), slots(&candidate))
        });
    }

    /// Runs snapshot `version` in shadow from now on (replacing any earlier candidate).
    pub async fn set_shadow(&self, version: &SnapshotVersion) -> Result<ShadowReport, EngineError> {
        let models = self.pinned_models(version).await?;
        let run = ShadowRun::new(version.to_string(), models);
        let report = run.report();
        self.serving().shadow.store(Some(Arc::new(Mutex::new(run))));
        Ok(report)
    }

    /// Stops the shadow run; returns its final report.
    pub fn clear_shadow(&self) -> Option<ShadowReport> {
        let run = self.serving().shadow.swap(None)?;
        let run = run.lock().unwrap_or_else(|p| p.into_inner());
        Some(run.report())
    }

    pub fn shadow_report(&self) -> Option<ShadowReport> {
        with_run(&self.serving().shadow, |run| run.report())
    }

    /// The top `k` items for the request's session (and user). An unknown session gets
    /// popular items. With `model_version`, the answer comes from that snapshot: the same
    /// snapshot, session events and `rec_id` give the same list, and no impression is
    /// recorded (a reproduction is not a showing).
    pub async fn recommend(&self, request: &RecommendRequest) -> Result<Ranked, EngineError> {
        let pinned = request.model_version.as_ref();
        let models = match pinned {
            Some(version) => self.pinned_models(version).await?,
            None => self.models(),
        };
        let model_version = models
            .name
            .clone()
            .unwrap_or_else(|| ServingState::version_name(models.version));
        // What the session has seen, from the live read side even for a pinned version:
        // a reproduction excludes what the session has met since.
        let live = if pinned.is_some() {
            self.models()
        } else {
            Arc::clone(&models)
        };
        let history = live.read.session(&request.session_id);
        let seen = |id: &str| {
            history.is_some_and(|h| live.read.item_index(id).is_some_and(|i| h.contains(i)))
        };
        let (items, shown) = self.rank(&models, request, &seen).await;
        if pinned.is_none() {
            self.shadow_decision(request, &seen, &items).await;
        }
        if !shown.is_empty() && pinned.is_none() {
            self.impressions().enqueue(Impression {
                rec_id: request.rec_id.clone(),
                session_id: request.session_id.clone(),
                user_id: request.user_id.clone(),
                // Event time, so decisions expire on the stream's clock, not the server's.
                ts: models.popularity.as_of,
                model_version: model_version.clone(),
                items: shown,
                traceparent: request.traceparent.clone(),
            });
        }
        Ok(Ranked {
            model_version,
            items,
        })
    }
}

/// Time spent in each stage of one request, into `streamrec_recommend_stage_seconds`.
struct StageClock(std::time::Instant);

impl StageClock {
    fn start() -> Self {
        Self(std::time::Instant::now())
    }

    /// Records the time since the previous lap as `stage`.
    fn lap(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        metrics::histogram!(STAGE_SECONDS, "stage" => stage)
            .record(now.duration_since(self.0).as_secs_f64());
        self.0 = now;
    }
}

/// Histogram of each request stage's time, labelled `stage`.
pub const STAGE_SECONDS: &str = "streamrec_recommend_stage_seconds";
/// The stages, in request order.
pub const STAGES: [&str; 4] = ["candidates", "rerank", "rules", "slate"];
