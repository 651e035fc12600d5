//! The request path: candidates from the published popularity ranking, minus what the
//! session has seen and what the catalog marks unavailable; then the bandit's slate, with the
//! propensity of each position. The decision goes onto the event stream as an impression, so
//! the click that answers it is learned in stream order.

use std::sync::{Arc, Mutex};

use streamrec_learner::online::choose_slate;
use streamrec_proto::{Impression, ShownItem};
use streamrec_ranker::top_k;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::learner::ServingModels;
use crate::shadow::{ShadowReport, ShadowRun, with_run};
use crate::shared::Shared;

/// Largest list a request may ask for.
pub const MAX_K: usize = 500;
/// Fewest candidates the bandit chooses among.
const MIN_POOL: usize = 50;

#[derive(Debug, Clone, PartialEq)]
pub struct RankedItem {
    pub item_id: String,
    /// Candidate score: decayed popularity.
    pub score: f64,
    pub propensity: f64,
}

/// A ranked answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub model_version: String,
    pub items: Vec<RankedItem>,
}

/// One model's answer: candidates from its popularity ranking minus `excluded`, then its
/// bandit's slate; the items as answered and as recorded in an impression.
fn rank(
    models: &ServingModels,
    excluded: &impl Fn(&str) -> bool,
    k: usize,
    rec_id: &str,
) -> (Vec<RankedItem>, Vec<ShownItem>) {
    let pool = (k * 5).clamp(MIN_POOL, MAX_K);
    let candidates: Vec<(String, f64)> = top_k(
        models.popularity.ranked.iter().map(|(id, s)| (&**id, *s)),
        pool,
        excluded,
    )
    .into_iter()
    .map(|(id, score)| (id.to_owned(), score))
    .collect();
    let slots = choose_slate(models.bandit.as_ref(), &candidates, k, rec_id);
    let items = slots
        .iter()
        .map(|slot| RankedItem {
            item_id: slot.shown.item_id.clone(),
            score: candidates[slot.candidate].1,
            propensity: slot.shown.propensity,
        })
        .collect();
    let shown = slots.into_iter().map(|slot| slot.shown).collect();
    (items, shown)
}

impl Engine {
    /// Ranks the same request with the shadow candidate, if one runs, and records both.
    fn shadow_decision(
        &self,
        rec_id: &str,
        excluded: &impl Fn(&str) -> bool,
        k: usize,
        live: &[RankedItem],
    ) {
        let shadow = &self.shared().shadow;
        // Rank outside the lock; take it only to record.
        let Some(models) = with_run(shadow, |run| Arc::clone(run.models())) else {
            return;
        };
        let (candidate, _) = rank(&models, excluded, k, rec_id);
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
    pub async fn set_shadow(&self, version: &str) -> Result<ShadowReport, EngineError> {
        let models = self.pinned_models(version).await?;
        let run = ShadowRun::new(version.to_owned(), models);
        let report = run.report();
        self.shared().shadow.store(Some(Arc::new(Mutex::new(run))));
        Ok(report)
    }

    /// Stops the shadow run; returns its final report.
    pub fn clear_shadow(&self) -> Option<ShadowReport> {
        let run = self.shared().shadow.swap(None)?;
        let run = run.lock().unwrap_or_else(|p| p.into_inner());
        Some(run.report())
    }

    pub fn shadow_report(&self) -> Option<ShadowReport> {
        with_run(&self.shared().shadow, |run| run.report())
    }

    /// The top `k` items for `session_id`, decided under `rec_id`. An unknown session gets
    /// the popular items, re-ranked by the bandit. With `pinned`, the answer comes from that
    /// snapshot: the same snapshot, session events and `rec_id` give the same list, and no
    /// impression is recorded (a reproduction is not a showing).
    pub async fn recommend(
        &self,
        session_id: &str,
        k: usize,
        rec_id: &str,
        pinned: Option<&str>,
    ) -> Result<Ranked, EngineError> {
        let models = match pinned {
            Some(version) => self.pinned_models(version).await?,
            None => self.models(),
        };
        let model_version = models
            .name
            .clone()
            .unwrap_or_else(|| Shared::version_name(models.version));
        let history = self.session(session_id).await?;
        let seen = |id: &str| history.as_ref().is_some_and(|h| h.has_seen(id));
        let excluded = |id: &str| seen(id) || self.is_unavailable(id);
        let (items, shown) = rank(&models, &excluded, k, rec_id);
        if pinned.is_none() {
            self.shadow_decision(rec_id, &excluded, k, &items);
        }
        if !shown.is_empty() && pinned.is_none() {
            self.impressions().enqueue(Impression {
                rec_id: rec_id.to_owned(),
                session_id: session_id.to_owned(),
                // Event time, so decisions expire on the stream's clock, not the server's.
                ts: models.popularity.as_of,
                model_version: model_version.clone(),
                items: shown,
            });
        }
        Ok(Ranked {
            model_version,
            items,
        })
    }
}
