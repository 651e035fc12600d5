//! The read side of the learners: an immutable version of everything a request reads
//! (item ids, co-visitation lists, session and user histories, item vectors, popularity,
//! the bandit), in persistent maps and vectors that share every part that did not change.
//!
//! The learner owns the write side and, at each publish, brings its copy of the read side
//! up to date with what its journals say changed: O(changed), never O(catalog). Cloning the
//! result is O(1), so a published version costs a pointer swap, and no request ever takes a
//! lock the learner holds.

use std::ops::Bound;
use std::sync::Arc;

use streamrec_proto::Item;

use crate::candidates::{CandidateConfig, CandidateReads, Context, WindowInputs, ctr_of};
use crate::catalog::Catalog;
use crate::covisit::CovisitLists;
use crate::drift::DriftReport;
use crate::history::{Histories, ItemHistory};
use crate::intent::{DEFAULT_DECAY, DEFAULT_DEPTH, blend_intent};
use crate::online::{Bandit, OnlineModels};
use crate::window_features::{
    ItemFeatures, SessionFeatures, UserFeatures, WindowReads, categories_of,
};

/// Fx, not SipHash: keys are ids the learner already accepted, and a request does dozens of
/// lookups (SipHash was 3% of serving).
type Map<K, V> =
    imbl::GenericHashMap<K, V, rustc_hash::FxBuildHasher, imbl::shared_ptr::DefaultSharedPtr>;
type List = Arc<[(u32, f32)]>;

/// An item without an embedding row (yet).
const NO_ROW: u32 = u32::MAX;

#[derive(Clone)]
pub struct ReadSide {
    items: imbl::Vector<Arc<str>>,
    item_index: Map<Arc<str>, u32>,
    neighbours: imbl::Vector<List>,
    transitions: imbl::Vector<List>,
    sessions: Map<Arc<str>, Arc<ItemHistory>>,
    users: Map<Arc<str>, Arc<ItemHistory>>,
    vector_index: Map<Arc<str>, u32>,
    vector_ids: imbl::Vector<Arc<str>>,
    vectors: imbl::Vector<Arc<[f32]>>,
    /// Each item's embedding row by its dense id ([`NO_ROW`]: none yet), and its popularity
    /// sum likewise: a candidate's features read them without hashing and comparing its id
    /// (string-keyed lookups were about a seventh of a request's CPU).
    vector_row_of: imbl::Vector<u32>,
    popularity_of: imbl::Vector<Option<f64>>,
    /// The embeddings' update count these vectors are as of.
    vector_updates: u64,
    dim: usize,
    popularity: Map<Arc<str>, f64>,
    popularity_decay: f64,
    bandit: Bandit,
    candidates: CandidateConfig,
    catalog: Map<Arc<str>, Arc<Item>>,
    /// The catalog's ids in order, for listing it page by page.
    catalog_ids: imbl::OrdSet<Arc<str>>,
    /// Items deleted from the catalog: never served, whatever the learners know of them.
    deleted: imbl::OrdSet<Arc<str>>,
    windows: WindowReads,
    drift: Option<Arc<DriftReport>>,
    drift_window_ms: i64,
}

impl ReadSide {
    /// The read side of `models`, built whole (a restore, a snapshot's pinned version). The
    /// journals of `models` are not consumed: use [`Self::catch_up`] from then on.
    pub fn of(models: &OnlineModels) -> Self {
        let covisit = &models.covisit;
        let embeddings = &models.embeddings;
        let dim = embeddings.dim();
        let mut read = Self {
            items: imbl::Vector::new(),
            item_index: Map::default(),
            neighbours: imbl::Vector::new(),
            transitions: imbl::Vector::new(),
            sessions: histories_of(models.sessions()),
            users: histories_of(models.users()),
            vector_index: Map::default(),
            vector_ids: imbl::Vector::new(),
            vectors: embeddings
                .matrix()
                .chunks_exact(dim.max(1))
                .map(Arc::from)
                .collect(),
            vector_row_of: imbl::Vector::new(),
            popularity_of: imbl::Vector::new(),
            vector_updates: embeddings.updates(),
            dim,
            popularity: models
                .popularity
                .sums()
                .map(|(k, v)| (Arc::clone(k), v))
                .collect(),
            popularity_decay: models.popularity.decay_to_watermark(),
            bandit: models.bandit.clone(),
            candidates: models.config().candidates.clone(),
            catalog: catalog_of(&models.catalog),
            catalog_ids: models
                .catalog
                .iter()
                .map(|i| Arc::from(i.item_id.as_str()))
                .collect(),
            deleted: models.catalog.deleted().map(Arc::from).collect(),
            windows: WindowReads::of(models.windows()),
            drift: models.drift().report().cloned().map(Arc::new),
            drift_window_ms: models.drift().window_ms(),
        };
        for (row, id) in embeddings.ids().iter().enumerate() {
            let id: Arc<str> = Arc::from(id.as_str());
            read.vector_index.insert(Arc::clone(&id), row as u32);
            read.vector_ids.push_back(id);
        }
        read.add_items(models);
        for row in 0..covisit.len() as u32 {
            read.set_lists(models, row);
        }
        read
    }

    /// Brings this read side up to `models`, reading (and clearing) their journals; the
    /// embedding rows whose vector moved (`None`: all), for the ANN index that follows them.
    pub fn catch_up(
        &mut self,
        models: &mut OnlineModels,
        bandit_changed: bool,
    ) -> Option<Vec<u32>> {
        self.add_items(models);
        match models.covisit.take_changed() {
            Some(rows) => {
                for row in rows {
                    self.set_lists(models, row);
                }
            }
            None => {
                for row in 0..models.covisit.len() as u32 {
                    self.set_lists(models, row);
                }
            }
        }
        catch_up_histories(&mut self.sessions, models.sessions_mut());
        catch_up_histories(&mut self.users, models.users_mut());
        match models.popularity.take_changed() {
            Some(items) => {
                for item in items {
                    if let Some(sum) = models.popularity.sum(&item) {
                        if let Some(&at) = self.item_index.get(&*item) {
                            self.popularity_of.set(at as usize, Some(sum));
                        }
                        self.popularity.insert(item, sum);
                    }
                }
            }
            None => {
                self.popularity = models
                    .popularity
                    .sums()
                    .map(|(k, v)| (Arc::clone(k), v))
                    .collect();
                self.popularity_of = self
                    .items
                    .iter()
                    .map(|id| self.popularity.get(id).copied())
                    .collect();
            }
        }
        self.popularity_decay = models.popularity.decay_to_watermark();
        self.windows.catch_up(models.windows_mut());
        if models.drift_mut().take_changed() {
            self.drift = models.drift().report().cloned().map(Arc::new);
        }
        if bandit_changed {
            self.bandit = models.bandit.clone();
        }
        match models.catalog.take_changed() {
            Some(ids) => {
                for id in ids {
                    let key: Arc<str> = Arc::from(id.as_str());
                    if models.catalog.is_deleted(&id) {
                        self.deleted.insert(Arc::clone(&key));
                    } else {
                        self.deleted.remove(&key);
                    }
                    match models.catalog.get(&id) {
                        Some(item) => {
                            self.catalog.insert(Arc::clone(&key), Arc::clone(item));
                            self.catalog_ids.insert(key);
                        }
                        None => {
                            self.catalog.remove(&key);
                            self.catalog_ids.remove(&key);
                        }
                    }
                }
            }
            None => {
                self.catalog = catalog_of(&models.catalog);
                self.catalog_ids = self.catalog.keys().cloned().collect();
                self.deleted = models.catalog.deleted().map(Arc::from).collect();
            }
        }
        self.catch_up_vectors(models)
    }

    fn add_items(&mut self, models: &OnlineModels) {
        let ids = models.covisit.ids();
        for (row, id) in ids.iter().enumerate().skip(self.items.len()) {
            let id: Arc<str> = Arc::from(id.as_str());
            self.item_index.insert(Arc::clone(&id), row as u32);
            // Rows and sums the item already has; those it gains later are set as they come.
            self.vector_row_of
                .push_back(self.vector_index.get(&id).copied().unwrap_or(NO_ROW));
            self.popularity_of
                .push_back(self.popularity.get(&id).copied());
            self.items.push_back(id);
        }
    }

    fn set_lists(&mut self, models: &OnlineModels, row: u32) {
        let covisit = &models.covisit;
        let at = row as usize;
        let neighbours: List = Arc::from(covisit.neighbours(row));
        let transitions: List = Arc::from(covisit.transitions(row));
        if at < self.neighbours.len() {
            self.neighbours.set(at, neighbours);
            self.transitions.set(at, transitions);
        } else {
            while self.neighbours.len() < at {
                self.neighbours.push_back(Arc::from(Vec::new()));
                self.transitions.push_back(Arc::from(Vec::new()));
            }
            self.neighbours.push_back(neighbours);
            self.transitions.push_back(transitions);
        }
    }

    fn catch_up_vectors(&mut self, models: &OnlineModels) -> Option<Vec<u32>> {
        let embeddings = &models.embeddings;
        let dim = self.dim.max(1);
        let matrix = embeddings.matrix();
        let row_of = |row: u32| -> Option<Arc<[f32]>> {
            matrix
                .get(row as usize * dim..(row as usize + 1) * dim)
                .map(Arc::from)
        };
        let known = self.vectors.len();
        for (row, id) in embeddings.ids().iter().enumerate().skip(known) {
            if let Some(v) = row_of(row as u32) {
                let id: Arc<str> = Arc::from(id.as_str());
                if let Some(&at) = self.item_index.get(&id) {
                    self.vector_row_of.set(at as usize, row as u32);
                }
                self.vector_index.insert(Arc::clone(&id), row as u32);
                self.vector_ids.push_back(id);
                self.vectors.push_back(v);
            }
        }
        let changed = embeddings.rows_changed_since(self.vector_updates);
        self.vector_updates = embeddings.updates();
        match changed {
            Some(mut rows) => {
                rows.extend(known as u32..self.vectors.len() as u32);
                rows.sort_unstable();
                rows.dedup();
                for &row in &rows {
                    if let Some(v) = row_of(row)
                        && (row as usize) < self.vectors.len()
                    {
                        self.vectors.set(row as usize, v);
                    }
                }
                Some(rows)
            }
            None => {
                self.vectors = matrix.chunks_exact(dim).map(Arc::from).collect();
                None
            }
        }
    }

    /// The features' drift in the latest closed drift window.
    pub fn drift(&self) -> Option<&DriftReport> {
        self.drift.as_deref()
    }

    /// The width of a drift window (event time).
    pub fn drift_window_ms(&self) -> i64 {
        self.drift_window_ms
    }

    /// What the event-time windows answer.
    pub fn windows(&self) -> &WindowReads {
        &self.windows
    }

    /// A history's items as ids of the wire, most recent first.
    pub fn item_ids<'a>(&'a self, history: &'a ItemHistory) -> impl Iterator<Item = &'a str> + 'a {
        history
            .recent()
            .filter_map(|i| self.items.get(i as usize).map(|id| &**id))
    }

    /// Whether the learners have met the item.
    pub fn knows_item(&self, item_id: &str) -> bool {
        self.item_index.contains_key(item_id)
    }

    /// Whether the catalog deleted the item (and it was not upserted since).
    pub fn is_deleted(&self, item_id: &str) -> bool {
        self.deleted.contains(item_id)
    }

    /// An item's windowed features as of the watermark, if the learners know the item.
    pub fn item_features(&self, item_id: &str) -> Option<ItemFeatures> {
        self.windows.item_by_index(*self.item_index.get(item_id)?)
    }

    /// The session's windowed features, and the mix of catalog categories over the items
    /// its history holds (read here, where the catalog is: the learners' windows never read
    /// the catalog, a stream of its own).
    pub fn session_features(&self, session_id: &str) -> Option<SessionFeatures> {
        let mut features = self.windows.session(session_id)?;
        let attributes = self.windows.category_attributes();
        let mut items = 0_u64;
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        for id in self
            .session(session_id)
            .into_iter()
            .flat_map(|h| self.item_ids(h))
        {
            items += 1;
            if let Some(item) = self.catalog.get(id) {
                for category in categories_of(item, attributes) {
                    *counts.entry(category).or_insert(0) += 1;
                }
            }
        }
        features.categories = counts
            .into_iter()
            .map(|(c, n)| (c, n as f64 / items.max(1) as f64))
            .collect();
        Some(features)
    }

    pub fn user_features(&self, user_id: &str) -> Option<UserFeatures> {
        self.windows.user(user_id)
    }

    /// Sessions remembered.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The session's history.
    pub fn session(&self, session_id: &str) -> Option<&ItemHistory> {
        self.sessions.get(session_id).map(|h| &**h)
    }

    /// The history that stands for the user: the named user's, or the session's.
    pub fn user_role_history(&self, user: Option<&str>, session_id: &str) -> Option<&ItemHistory> {
        match user {
            Some(user) => self.users.get(user).map(|h| &**h),
            None => self.session(session_id),
        }
    }

    /// The session's intent: its recent items' vectors, recency-weighted, unit length.
    pub fn session_intent(&self, session_id: &str) -> Option<Vec<f32>> {
        let recent = self.session(session_id)?;
        // By dense id: every id a history holds is an item's.
        blend_intent(
            recent.recent(),
            self.dim,
            |i| self.vector_at(i),
            DEFAULT_DECAY,
            DEFAULT_DEPTH,
        )
    }

    /// The request's context (see [`OnlineModels::context`]).
    pub fn context(&self, user: Option<&str>, session_id: &str) -> Context {
        Context {
            history: self
                .user_role_history(user, session_id)
                .map(|h| h.recent().collect())
                .unwrap_or_default(),
            intent: self.session_intent(session_id),
        }
    }

    pub fn candidate_config(&self) -> &CandidateConfig {
        &self.candidates
    }

    pub fn bandit(&self) -> &Bandit {
        &self.bandit
    }

    /// Dense item ids given so far: `0..item_count()`.
    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// Every item with a vector, in row order: (id, vector).
    pub fn vectors(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.vector_ids
            .iter()
            .zip(self.vectors.iter())
            .map(|(id, v)| (&**id, &**v))
    }

    /// The item and vector of an embedding row.
    pub fn vector_row(&self, row: u32) -> Option<(&str, &[f32])> {
        let id = self.vector_ids.get(row as usize)?;
        let v = self.vectors.get(row as usize)?;
        Some((&**id, &**v))
    }

    /// Embedding rows held.
    pub fn vector_rows(&self) -> usize {
        self.vectors.len()
    }

    /// The item's catalog entry, expired or not.
    pub fn catalog_item(&self, item_id: &str) -> Option<&Arc<Item>> {
        self.catalog.get(item_id)
    }

    /// The item's catalog entry unless it has expired at `now_ms`.
    pub fn live_item(&self, item_id: &str, now_ms: i64) -> Option<&Arc<Item>> {
        self.catalog.get(item_id).filter(|i| !i.expired(now_ms))
    }

    /// Whether the item may not be served at `now_ms`: the catalog marks it unavailable, it
    /// has expired, or it was deleted. Items the catalog does not know are available: events
    /// may name an item before its catalog entry arrives.
    pub fn is_unavailable(&self, item_id: &str, now_ms: i64) -> bool {
        self.servable(item_id, now_ms).is_none()
    }

    /// `Some` with the item's catalog entry (if any) when it may be served at `now_ms`:
    /// one lookup for a request's availability check and its filters.
    pub fn servable(&self, item_id: &str, now_ms: i64) -> Option<Option<&Arc<Item>>> {
        // Without a catalog every item may be served: no need to hash the id.
        if self.catalog.is_empty() && self.deleted.is_empty() {
            return Some(None);
        }
        match self.catalog.get(item_id) {
            Some(item) => (item.available && !item.expired(now_ms)).then_some(Some(item)),
            None => (self.deleted.is_empty() || !self.deleted.contains(item_id)).then_some(None),
        }
    }

    /// Up to `limit` live catalog entries (not expired at `now_ms`) in id order, after the id
    /// `after` when given. An id is a cursor that stays valid while other items come and go:
    /// the next page starts after it whether or not it is still in the catalog.
    pub fn catalog_page(&self, after: Option<&str>, limit: usize, now_ms: i64) -> Vec<Arc<Item>> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.catalog_ids
            .range::<_, str>((start, Bound::Unbounded))
            .filter_map(|id| self.catalog.get(id).filter(|i| !i.expired(now_ms)).cloned())
            .take(limit)
            .collect()
    }

    pub fn catalog_len(&self) -> usize {
        self.catalog.len()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
}

fn catalog_of(catalog: &Catalog) -> Map<Arc<str>, Arc<Item>> {
    catalog
        .iter()
        .map(|i| (Arc::from(i.item_id.as_str()), Arc::clone(i)))
        .collect()
}

fn histories_of(store: &Histories) -> Map<Arc<str>, Arc<ItemHistory>> {
    store
        .iter()
        .map(|(k, h)| (Arc::from(k), Arc::new(h.clone())))
        .collect()
}

fn catch_up_histories(read: &mut Map<Arc<str>, Arc<ItemHistory>>, store: &mut Histories) {
    match store.take_changed() {
        Some(keys) => {
            for key in keys {
                match store.get(&key) {
                    Some(history) => {
                        read.insert(Arc::from(key), Arc::new(history.clone()));
                    }
                    None => {
                        read.remove(&*key);
                    }
                }
            }
        }
        None => *read = histories_of(store),
    }
}

impl CovisitLists for ReadSide {
    fn neighbours(&self, item: u32) -> &[(u32, f32)] {
        self.neighbours.get(item as usize).map_or(&[], |l| &**l)
    }

    fn transitions(&self, item: u32) -> &[(u32, f32)] {
        self.transitions.get(item as usize).map_or(&[], |l| &**l)
    }
}

impl CandidateReads for ReadSide {
    fn item(&self, index: u32) -> Option<&str> {
        self.items.get(index as usize).map(|s| &**s)
    }

    fn item_index(&self, item: &str) -> Option<u32> {
        self.item_index.get(item).copied()
    }

    fn vector(&self, item: &str) -> Option<&[f32]> {
        let row = *self.vector_index.get(item)?;
        self.vectors.get(row as usize).map(|v| &**v)
    }

    fn vector_at(&self, index: u32) -> Option<&[f32]> {
        let row = *self.vector_row_of.get(index as usize)?;
        self.vectors.get(row as usize).map(|v| &**v)
    }

    fn popularity(&self, item: &str) -> f64 {
        self.popularity
            .get(item)
            .map_or(0.0, |sum| sum * self.popularity_decay)
    }

    fn popularity_at(&self, index: u32) -> f64 {
        self.popularity_of
            .get(index as usize)
            .copied()
            .flatten()
            .map_or(0.0, |sum| sum * self.popularity_decay)
    }

    fn ctr(&self, item: &str) -> f32 {
        ctr_of(&self.bandit, item)
    }

    fn window_inputs(&self, index: u32) -> WindowInputs {
        if self.candidates.window_features {
            self.windows.window_inputs(index)
        } else {
            WindowInputs::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::OnlineConfig;

    fn item(id: &str) -> Item {
        Item {
            item_id: id.to_owned(),
            title: Some(format!("title {id}")),
            attributes: None,
            available: true,
            expires_at: None,
            details: Default::default(),
        }
    }

    fn ids(page: &[Arc<Item>]) -> Vec<&str> {
        page.iter().map(|i| i.item_id.as_str()).collect()
    }

    #[test]
    fn catalog_pages_are_in_id_order_and_a_cursor_survives_new_items() {
        let mut models = OnlineModels::new(OnlineConfig::default());
        for (seq, id) in ["c", "a", "e"].into_iter().enumerate() {
            models.apply_item(seq as u64 + 1, item(id));
        }
        let mut read = ReadSide::of(&models);
        assert_eq!(ids(&read.catalog_page(None, 2, 0)), ["a", "c"]);
        // An item inserted before the cursor does not shift the next page; one after it is
        // on it.
        models.apply_item(4, item("b"));
        models.apply_item(5, item("d"));
        read.catch_up(&mut models, false);
        assert_eq!(ids(&read.catalog_page(Some("c"), 2, 0)), ["d", "e"]);
        assert!(read.catalog_page(Some("e"), 2, 0).is_empty());
        // A cursor that is not (or no longer) an id still pages from where it sorts.
        assert_eq!(ids(&read.catalog_page(Some("bb"), 10, 0)), ["c", "d", "e"]);
        assert_eq!(read.catalog_len(), 5);
        // Built whole from the models, the read side lists the same.
        assert_eq!(
            ids(&ReadSide::of(&models).catalog_page(None, 10, 0)),
            ids(&read.catalog_page(None, 10, 0))
        );
    }

    #[test]
    fn deleted_and_expired_items_are_not_served_and_a_new_upsert_brings_one_back() {
        let mut models = OnlineModels::new(OnlineConfig::default());
        let mut expiring = item("b");
        expiring.expires_at = Some(1_000);
        models.apply_item(1, item("a"));
        models.apply_item(2, expiring);
        let mut read = ReadSide::of(&models);
        assert!(!read.is_unavailable("b", 999) && read.is_unavailable("b", 1_000));
        assert_eq!(ids(&read.catalog_page(None, 10, 1_000)), ["a"]);
        assert!(read.live_item("b", 1_000).is_none() && read.live_item("b", 0).is_some());
        models.apply_item_deletion(3, "a");
        models.apply_item_deletion(4, "only-in-events");
        read.catch_up(&mut models, false);
        assert!(read.is_unavailable("a", 0) && read.is_unavailable("only-in-events", 0));
        assert!(read.catalog_item("a").is_none());
        assert!(
            ReadSide::of(&models).is_unavailable("only-in-events", 0),
            "built whole"
        );
        models.apply_item(5, item("a"));
        read.catch_up(&mut models, false);
        assert!(!read.is_unavailable("a", 0));
    }
}
