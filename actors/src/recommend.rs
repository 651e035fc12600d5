//! The engine's request path: the pure stages of `streamrec_pipeline` over the latest
//! published version (or a pinned snapshot's), with the live intent index for ANN and the
//! micro-batcher for the re-ranker; then the decision goes onto the event stream as an
//! impression, so the click that answers it is learned in stream order.

use std::sync::{Arc, Mutex};

use streamrec_pipeline::{
    ExactIntent, IntentSearch, RankInputs, Ranked, RankedItem, RecommendRequest, ServingModels,
    SessionSeen, Stage, feature_log, rank,
};
use streamrec_proto::{Impression, ShownItem, SnapshotVersion};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::serving::ServingState;
use crate::shadow::{ShadowReport, ShadowRun, with_run};

impl Engine {
    /// Stages 1–4 for one request on `models`; the answer and the slots to record.
    async fn rank(
        &self,
        models: &ServingModels,
        request: &RecommendRequest,
        seen: SessionSeen<'_>,
    ) -> (Vec<RankedItem>, Vec<ShownItem>) {
        let live = self.models();
        let inputs = RankInputs {
            models,
            catalog: &live.read,
            request,
            seen,
            now_ms: streamrec_proto::now_millis(),
        };
        // A snapshot's vectors are in no live index: its answer must not depend on one.
        let exact = ExactIntent(&models.read);
        let intent: &dyn IntentSearch = match models.name {
            Some(_) => &exact,
            None => &self.serving().intent_index,
        };
        let scorer = self.reranks().then(|| self.batcher());
        let mut clock = StageClock::start();
        let ranking = rank(&inputs, intent, scorer, &mut |stage| clock.lap(stage)).await;
        if let Some(error) = ranking.rerank_error {
            tracing::warn!(%error, "re-ranker failed; serving stage-one order");
        }
        (ranking.items, ranking.shown)
    }

    /// Ranks the same request with the shadow candidate, if one runs, and records both.
    async fn shadow_decision(
        &self,
        request: &RecommendRequest,
        seen: SessionSeen<'_>,
        live: &[RankedItem],
    ) {
        let shadow = &self.serving().shadow;
        // Rank outside the lock; take it only to record.
        let Some(models) = with_run(shadow, |run| Arc::clone(run.models())) else {
            return;
        };
        let rec_id = request.rec_id.as_str();
        let (candidate, _) = self.rank(&models, request, seen).await;
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
        let seen = SessionSeen::of(&live.read, &request.session_id);
        let (items, shown) = self.rank(&models, request, seen).await;
        if pinned.is_none() {
            self.shadow_decision(request, seen, &items).await;
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
                logged: Some(feature_log(&models)),
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

    /// Records the time since the previous lap as `stage`'s.
    fn lap(&mut self, stage: Stage) {
        let now = std::time::Instant::now();
        metrics::histogram!(STAGE_SECONDS, "stage" => stage.name())
            .record(now.duration_since(self.0).as_secs_f64());
        self.0 = now;
    }
}

/// Histogram of each request stage's time, labelled `stage`.
pub const STAGE_SECONDS: &str = "streamrec_recommend_stage_seconds";
