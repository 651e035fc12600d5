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

use streamrec_learner::candidates::CandidateReads;
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
    /// The read side's dense id of each position ([`NO_ITEM`] for an id it has none for):
    /// what a search answers, and what its filter is asked about.
    items: Vec<u32>,
}

/// A position whose item has no dense id on the read side (never given: every vector's item
/// is interned first).
const NO_ITEM: u32 = u32::MAX;

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
    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)> {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let Some(indexed) = guard.as_ref() else {
            return Vec::new();
        };
        let item = |position: u32| {
            indexed
                .items
                .get(position as usize)
                .copied()
                .filter(|&i| i != NO_ITEM)
        };
        indexed
            .index
            .search(query, k, &|p| item(p).is_some_and(keep))
            .into_iter()
            .filter_map(|(p, sim)| Some((item(p)?, sim)))
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
                        items: ids
                            .iter()
                            .map(|id| read.item_index(id).unwrap_or(NO_ITEM))
                            .collect(),
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
                // The dense id too, for a position already held: a learner restarted from
                // an older snapshot may have given its items other ids.
                let item = read.item_index(id).unwrap_or(NO_ITEM);
                let position = match indexed.positions.get(id) {
                    Some(&p) => {
                        if let Some(slot) = indexed.items.get_mut(p as usize) {
                            *slot = item;
                        }
                        p
                    }
                    None => {
                        let p = indexed.ids.len() as u32;
                        indexed.ids.push(id.to_owned());
                        indexed.positions.insert(id.to_owned(), p);
                        indexed.items.push(item);
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

#[cfg(test)]
mod tests {
    use arc_swap::ArcSwap;
    use streamrec_learner::candidates::CandidateReads;
    use streamrec_learner::embeddings::cosine;
    use streamrec_learner::online::{OnlineConfig, OnlineModels};
    use streamrec_pipeline::{ExactIntent, IntentSearch, ServingModels};
    use streamrec_proto::{Event, EventKind};
    use streamrec_ranker::HnswParams;

    use super::IntentIndex;

    fn click(n: usize, session: &str, item: &str) -> Event {
        Event {
            event_id: format!("e{n}"),
            session_id: session.to_owned(),
            user_id: None,
            kind: EventKind::Click,
            item_id: item.to_owned(),
            ts: 1_700_000_000_000 + n as i64 * 1_000,
            rec_id: None,
            position: None,
            value: None,
            context: None,
            details: Default::default(),
        }
    }

    /// The live index answers with the read side's dense ids and asks its filter by them,
    /// as the exact scan does: over a catalog smaller than a graph search, the same answer.
    #[test]
    fn the_index_answers_and_filters_by_the_read_sides_dense_ids() {
        let mut models = OnlineModels::new(OnlineConfig::default());
        let mut n = 0;
        for s in 0..30 {
            for step in 0..5 {
                n += 1;
                // Items met in an order that differs from their ids' order.
                let item = format!("item{}", (s * 7 + step * 3) % 40);
                models.apply_event(n as u64, &click(n, &format!("s{s}"), &item));
            }
        }
        let published = ArcSwap::from_pointee(ServingModels::loaded(None, &models, 100, None));
        let index = IntentIndex::default();
        index.sync(&published, HnswParams::default());
        let serving = published.load_full();
        let read = &serving.read;
        assert_eq!(index.len(), read.vector_rows());
        let query = read.session_intent("s3").expect("an intent");
        let odd = |i: u32| i % 2 == 1;
        let live = index.search(&query, 10, &odd);
        let exact = ExactIntent(read).search(&query, 10, &odd);
        assert_eq!(live.len(), 10);
        assert!(live.iter().all(|(i, _)| odd(*i)), "{live:?}");
        let ids = |hits: &[(u32, f32)]| -> Vec<u32> { hits.iter().map(|h| h.0).collect() };
        assert_eq!(ids(&live), ids(&exact));
        for (i, sim) in &live {
            let id = read.item(*i).expect("an id");
            let vector = read.vector_at(*i).expect("a vector");
            let expected = cosine(&query, vector);
            assert!((sim - expected).abs() < 1e-4, "{id}: {sim} vs {expected}");
        }
    }
}
