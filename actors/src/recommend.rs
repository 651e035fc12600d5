//! The request path of this slice: the published popularity ranking, minus what the session
//! has seen and what the catalog marks unavailable.

use streamrec_ranker::top_k;

use crate::engine::Engine;
use crate::error::EngineError;

/// Largest list a request may ask for.
pub const MAX_K: usize = 500;

/// A ranked answer, before it gets its `rec_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub model_version: String,
    pub items: Vec<(String, f64)>,
    /// Whether the session had a live history (otherwise: popular items only).
    pub known_session: bool,
}

impl Engine {
    /// The top `k` items for `session_id`. An unknown session gets the popular items.
    pub async fn recommend(&self, session_id: &str, k: usize) -> Result<Ranked, EngineError> {
        // Read the version before the ranking: the version reported is never newer than
        // the ranking used.
        let model_version = self.model_version();
        let view = self.popularity();
        let history = self.session(session_id).await?;
        let seen = |id: &str| history.as_ref().is_some_and(|h| h.has_seen(id));
        let excluded = |id: &str| seen(id) || self.is_unavailable(id);
        let items = top_k(view.ranked.iter().map(|(id, s)| (&**id, *s)), k, &excluded)
            .into_iter()
            .map(|(id, score)| (id.to_owned(), score))
            .collect();
        Ok(Ranked {
            model_version,
            items,
            known_session: history.is_some(),
        })
    }
}
