//! What a published version holds: the immutable serving models a request reads, and the
//! re-ranker configuration the learner, its trainer and the serving copy share.

use std::sync::Arc;

use streamrec_learner::candidates::{FEATURE_SET, FEATURES, RETRIEVAL_FEATURE};
use streamrec_learner::online::Bandit;
use streamrec_learner::online::{NamedTensor, OnlineConfig, OnlineCounters, OnlineModels};
use streamrec_learner::{PopularityView, ReadSide};
use streamrec_proto::{FeatureLog, StreamPosition};
use streamrec_ranker::{ComputeDevice, RerankError, Reranker, RerankerConfig, Weights};

/// What the request path reads: one immutable published version of every learner (the
/// read side: co-visitation lists, histories, vectors, popularity, bandit), the popularity
/// ranking, and the re-ranker's serving copy. Nothing in it is ever changed in place: the
/// learner publishes a new one, and a request keeps the one it started with.
#[derive(Clone)]
pub struct ServingModels {
    pub version: u64,
    /// A snapshot's version, when these models were loaded from one.
    pub name: Option<String>,
    pub popularity: PopularityView,
    pub read: ReadSide,
    pub reranker: Option<Arc<Reranker>>,
    /// The learners' counters as of this version (attribution, expiry).
    pub counters: OnlineCounters,
    /// How far the re-ranker had trained when this version was published.
    pub training: RerankerProgress,
    /// The stream positions the read side is as of: where its logged features were computed.
    pub as_of: StreamPosition,
}

/// The re-ranker's training, as `/v1/stats` and the storefront show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RerankerProgress {
    pub steps: u64,
    pub last_loss: Option<f32>,
}

impl RerankerProgress {
    pub fn of(models: &OnlineModels) -> Self {
        Self {
            steps: models.reranker.steps,
            last_loss: models.reranker.last_loss,
        }
    }
}

impl Default for ServingModels {
    fn default() -> Self {
        Self::loaded(None, &OnlineModels::new(OnlineConfig::default()), 0, None)
    }
}

impl ServingModels {
    /// Serving models for learners that will not change (a snapshot's), with the
    /// re-ranker's serving copy of their weights ([`serving_reranker`]).
    pub fn loaded(
        name: Option<String>,
        models: &OnlineModels,
        view_size: usize,
        reranker: Option<Arc<Reranker>>,
    ) -> Self {
        Self {
            version: 0,
            name,
            popularity: models.popularity_view(view_size),
            read: ReadSide::of(models),
            reranker,
            counters: models.counters(),
            training: RerankerProgress::of(models),
            as_of: position_of(models),
        }
    }

    pub fn bandit(&self) -> &Bandit {
        self.read.bandit()
    }
}

/// How far `models` have learned each stream.
pub fn position_of(models: &OnlineModels) -> StreamPosition {
    StreamPosition {
        events_seq: models.last_seq(),
        items_seq: models.catalog.last_seq(),
    }
}

/// The impression's record of where its items' features came from.
pub fn feature_log(models: &ServingModels) -> FeatureLog {
    FeatureLog {
        set: FEATURE_SET.to_owned(),
        as_of: models.as_of,
    }
}

/// The re-ranker over the candidate features, starting from stage one's order.
pub fn reranker_config() -> RerankerConfig {
    RerankerConfig::new(FEATURES).with_prior(RETRIEVAL_FEATURE, 10.0)
}

pub fn to_weights(tensors: &[NamedTensor]) -> Weights {
    tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.values.clone()))
        .collect()
}

/// The re-ranker of `models`, if it has been trained at all.
pub fn serving_reranker(
    models: &OnlineModels,
    device: ComputeDevice,
) -> Result<Option<Arc<Reranker>>, RerankError> {
    let state = &models.reranker;
    if state.weights.is_empty() {
        return Ok(None);
    }
    Reranker::from_weights(
        &reranker_config(),
        &to_weights(&state.weights),
        device,
        state.steps,
    )
    .map(|r| Some(Arc::new(r)))
}
