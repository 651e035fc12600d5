//! The ANN index over item embeddings that intent candidates come from, kept fresh beside
//! the learner: a background task copies vectors that changed into the index's exact delta
//! (visible to the next query) and, once the delta grows past its threshold, builds a new
//! graph off the request path and swaps it in.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use streamrec_ranker::{AnnIndex, FreshIndex, HnswParams};

use crate::learner::ServingModels;
use crate::shared::Shared;

struct Indexed {
    index: FreshIndex,
    ids: Vec<String>,
    positions: HashMap<String, u32>,
    /// The embeddings' update count the index last caught up with.
    synced_updates: u64,
}

/// Shared between the refresher (writer) and the request path (readers).
#[derive(Default)]
pub struct IntentIndex {
    inner: RwLock<Option<Indexed>>,
}

impl IntentIndex {
    /// The `k` items nearest to `query` that `keep` accepts: (item, cosine).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Vec<(String, f32)> {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let Some(indexed) = guard.as_ref() else {
            return Vec::new();
        };
        let ids = &indexed.ids;
        indexed
            .index
            .search(query, k, &|i| {
                ids.get(i as usize).is_some_and(|id| keep(id))
            })
            .into_iter()
            .filter_map(|(i, sim)| ids.get(i as usize).map(|id| (id.clone(), sim)))
            .collect()
    }

    pub fn len(&self) -> usize {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map_or(0, |i| i.ids.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Brings the index up to the live embeddings: changed and new vectors into the delta,
    /// or a full build when there is no index yet.
    fn sync(&self, models: &ServingModels, params: HnswParams) {
        let learners = models.learners.read().unwrap_or_else(|p| p.into_inner());
        let embeddings = &learners.embeddings;
        let updates = embeddings.updates();
        {
            let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
            if guard
                .as_ref()
                .is_some_and(|i| i.synced_updates == updates && i.ids.len() == embeddings.len())
            {
                return;
            }
        }
        let dim = embeddings.dim();
        let ids = embeddings.ids();
        let matrix = embeddings.matrix();
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(indexed) => {
                // Rows the journal names, and any the index has not met; every row when the
                // journal cannot say (after a restore, or a follower too far behind).
                let rows: Vec<u32> = match embeddings.rows_changed_since(indexed.synced_updates) {
                    Some(mut rows) => {
                        rows.extend(indexed.ids.len() as u32..ids.len() as u32);
                        rows.sort_unstable();
                        rows.dedup();
                        rows
                    }
                    None => (0..ids.len() as u32).collect(),
                };
                for row in rows {
                    let (Some(id), Some(v)) = (
                        ids.get(row as usize),
                        matrix.get(row as usize * dim..(row as usize + 1) * dim),
                    ) else {
                        continue;
                    };
                    let position = match indexed.positions.get(id) {
                        Some(&p) => p,
                        None => {
                            let p = indexed.ids.len() as u32;
                            indexed.ids.push(id.clone());
                            indexed.positions.insert(id.clone(), p);
                            p
                        }
                    };
                    if !indexed.index.holds(position, v)
                        && let Err(error) = indexed.index.upsert(position, v)
                    {
                        tracing::warn!(%error, "cannot index an item vector");
                    }
                }
                indexed.synced_updates = updates;
            }
            None if !ids.is_empty() => {
                let vectors: Vec<Vec<f32>> =
                    matrix.chunks_exact(dim).map(<[f32]>::to_vec).collect();
                let ids = ids.to_vec();
                drop(learners);
                match FreshIndex::build(dim, &vectors, params) {
                    Ok(index) => {
                        *guard = Some(Indexed {
                            index,
                            positions: ids_positions(&ids),
                            ids,
                            synced_updates: updates,
                        });
                    }
                    Err(error) => tracing::warn!(%error, "cannot build the intent index"),
                }
            }
            None => {}
        }
    }

    /// Rebuilds the graph (readers keep the old one meanwhile) when the delta asks for it;
    /// whether it did.
    fn rebuild_if_wanted(&self) -> bool {
        let rebuilt = {
            let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some(indexed) if indexed.index.wants_rebuild() => indexed.index.rebuilt(),
                _ => return false,
            }
        };
        match rebuilt {
            Ok(index) => {
                let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
                if let Some(indexed) = guard.as_mut() {
                    // Only this task writes, so nothing changed since the copy was taken.
                    indexed.index = index;
                }
                metrics::counter!("streamrec_ann_rebuilds").increment(1);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot rebuild the intent index");
                false
            }
        }
    }
}

fn ids_positions(ids: &[String]) -> HashMap<String, u32> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i as u32))
        .collect()
}

/// Keeps `shared.intent_index` in step with the live embeddings until the engine stops:
/// changed vectors every `every`; a graph rebuild at most every `rebuild_every` (the delta
/// is searched exactly meanwhile, so answers stay fresh; a rebuild only restores speed).
pub fn spawn_refresher(
    shared: Arc<Shared>,
    every: Duration,
    rebuild_every: Duration,
    params: HnswParams,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_rebuild = std::time::Instant::now();
        loop {
            tick.tick().await;
            let shared = Arc::clone(&shared);
            let rebuild = last_rebuild.elapsed() >= rebuild_every;
            let done = tokio::task::spawn_blocking(move || {
                let models = shared.models.load_full();
                shared.intent_index.sync(&models, params);
                rebuild && shared.intent_index.rebuild_if_wanted()
            })
            .await;
            match done {
                Ok(true) => last_rebuild = std::time::Instant::now(),
                Ok(false) => {}
                Err(_) => {
                    tracing::error!("intent index refresh panicked; retrying at the next tick")
                }
            }
        }
    })
}
