//! The ANN index over item embeddings that intent candidates come from, kept fresh beside
//! the learner: the learner notes which embedding rows each publish moved; a background task
//! copies those rows, read from the published read side (never from the learner), into the
//! index's exact delta (visible to the next query), inserts new items into the graph a
//! little at a time beside the queries, and, once enough vectors have moved, builds a new
//! graph off the request path and swaps it in.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use streamrec_ranker::{AnnIndex, FreshIndex, HnswParams};

use streamrec_pipeline::{IntentSearch, ServingModels};

/// Rows copied into the index per write lock.
const SYNC_CHUNK: usize = 256;
/// Time per refresh (every 100 ms by default) spent inserting new items into the graph,
/// beside queries, under the read lock: until they are in, every query scans them exactly.
/// Most of a core, since the refresher runs at background priority and requests preempt it.
const GROW_BUDGET: Duration = Duration::from_millis(80);

struct Indexed {
    index: FreshIndex,
    ids: Vec<String>,
    positions: HashMap<String, u32>,
}

/// Embedding rows published but not yet in the index.
#[derive(Default)]
struct Pending {
    rows: Vec<u32>,
    /// Every row: the read side was rebuilt whole.
    all: bool,
}

/// Shared between the refresher (writer) and the request path (readers).
#[derive(Default)]
pub struct IntentIndex {
    inner: RwLock<Option<Indexed>>,
    pending: Mutex<Pending>,
}

impl IntentSearch for IntentIndex {
    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(&str) -> bool) -> Vec<(String, f32)> {
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
}

impl IntentIndex {
    pub fn len(&self) -> usize {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map_or(0, |i| i.ids.len())
    }

    /// Items every query scans exactly (new and not yet in the graph, or moved far).
    pub fn exact_len(&self) -> usize {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map_or(0, |i| i.index.delta_len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records the rows a publish moved (`None`: all of them); the learner's only contact
    /// with the index, a push under a lock nobody holds for longer.
    pub fn note_changed(&self, rows: Option<Vec<u32>>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match rows {
            Some(rows) if !pending.all => pending.rows.extend(rows),
            Some(_) => {}
            None => {
                pending.all = true;
                pending.rows = Vec::new();
            }
        }
    }

    /// Brings the index up to the published vectors: changed and new ones into the delta,
    /// or a full build when there is no index yet.
    pub(crate) fn sync(&self, published: &ArcSwap<ServingModels>, params: HnswParams) {
        let (mut rows, all) = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let taken = std::mem::take(&mut *pending);
            (taken.rows, taken.all)
        };
        // Loaded after the notes were taken: at least as new as every row they name.
        let models = published.load_full();
        let read = &models.read;
        let built = self
            .inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if !built {
            if read.vector_rows() == 0 {
                return;
            }
            let (ids, vectors): (Vec<String>, Vec<Vec<f32>>) = read
                .vectors()
                .map(|(id, v)| (id.to_owned(), v.to_vec()))
                .unzip();
            match FreshIndex::build(read.dim(), &vectors, params) {
                Ok(index) => {
                    *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Some(Indexed {
                        index,
                        positions: ids_positions(&ids),
                        ids,
                    });
                }
                Err(error) => tracing::warn!(%error, "cannot build the intent index"),
            }
            return;
        }
        if all {
            rows = (0..read.vector_rows() as u32).collect();
        }
        if rows.is_empty() {
            return;
        }
        rows.sort_unstable();
        rows.dedup();
        // A few hundred rows per write lock: queries wait at most that long for a batch of
        // changes, however many the learner made.
        for chunk in rows.chunks(SYNC_CHUNK) {
            let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
            let Some(indexed) = guard.as_mut() else {
                return;
            };
            for &row in chunk {
                let Some((id, v)) = read.vector_row(row) else {
                    continue;
                };
                let position = match indexed.positions.get(id) {
                    Some(&p) => p,
                    None => {
                        let p = indexed.ids.len() as u32;
                        indexed.ids.push(id.to_owned());
                        indexed.positions.insert(id.to_owned(), p);
                        p
                    }
                };
                if !indexed.index.holds(position, v)
                    && let Err(error) = indexed.index.upsert(position, v)
                {
                    tracing::warn!(%error, "cannot index an item vector");
                }
            }
        }
    }

    /// Inserts new items into the graph for up to [`GROW_BUDGET`], then serves them from it.
    pub(crate) fn grow(&self) {
        let grown = {
            let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some(indexed) if indexed.index.ungrown() > 0 => indexed.index.grow(GROW_BUDGET),
                _ => return,
            }
        };
        match grown {
            Ok(0) => {}
            Ok(_) => {
                let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
                if let Some(indexed) = guard.as_mut() {
                    indexed.index.absorb_grown();
                }
            }
            Err(error) => tracing::warn!(%error, "cannot grow the intent index"),
        }
    }

    /// Rebuilds the graph (readers keep the old one meanwhile) when the delta asks for it;
    /// whether it did.
    pub(crate) fn rebuild_if_wanted(&self) -> bool {
        let _span = tracing::debug_span!("intent_index_rebuild").entered();
        let rebuilt = {
            let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                // New items first: growing takes them in a few at a time, so queries get
                // cheaper as it goes; a rebuild would hold this thread for the whole graph's
                // length while they wait (a cold start of 100k items: about a minute).
                Some(indexed) if indexed.index.ungrown() == 0 && indexed.index.wants_rebuild() => {
                    indexed.index.rebuilt()
                }
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
                metrics::counter!("streamrec_ann_rebuilds_total").increment(1);
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
