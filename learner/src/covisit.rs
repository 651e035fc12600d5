//! Item-to-item co-visitation learned online: the incremental form of cosine item-kNN
//! (Sarwar et al. 2001) and of a first-order Markov chain, both updated by every event.
//!
//! Each user (the session when an event names none) is an implicit binary vector over
//! items. When a user meets an item for the first time, its co-occurrence with each item of
//! the user's window goes up by one, so `co(i, j) / sqrt(n_i · n_j)` is at every moment the
//! cosine similarity a batch item-kNN would compute from the same interactions (exactly,
//! while no user outgrows the window and no row has been cut to its capacity: a pair cut
//! from a row starts again from one there). The transition counts `last → next` are the
//! sequential signal the kNN lacks.
//!
//! Reads never walk those counts. Each item keeps its `neighbours` best items by cosine and
//! its `transitions` most frequent successors, re-ranked from its counts once the row has
//! taken `1/refresh` of its length in new counts since the last time (so a re-rank costs
//! O(1) per count, amortised). Between re-ranks a list keeps the scores it was ranked with:
//! what serving reads is what training read, and both are a function of the stream alone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::best_first::{Scratch, by_score_then_id};
use crate::journal::Journal;

mod counts;
use counts::Counts;

// Every field defaults, so a config file names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CovisitConfig {
    /// Items of a user that new items co-occur with (the most recent ones).
    pub user_window: usize,
    /// Users remembered; the least recently active are forgotten first.
    pub max_users: usize,
    /// Neighbours kept per item, by cosine.
    #[serde(default = "default_neighbours")]
    pub neighbours: usize,
    /// Successors kept per item, by count.
    #[serde(default = "default_transitions")]
    pub transitions: usize,
    /// A row is re-ranked after `len / refresh` new counts (at least one).
    #[serde(default = "default_refresh")]
    pub refresh: u32,
    /// Entries a count row keeps when it is cut: a row that reaches twice this many keeps
    /// this many, the strongest (cosine for co-occurrence, count for successors; ties: the
    /// lower id). Bounds each item's memory whatever the stream; 0: unbounded.
    #[serde(default = "default_row_capacity")]
    pub row_capacity: usize,
    /// Events per epoch when lists are published by epoch (0: a re-ranked list is read at
    /// once). By epoch, an epoch's meetings are counted when it ends and the lists they
    /// re-rank are read from the end of the next one: every read sees the lists of one to
    /// two epochs back, and one epoch's counting can run beside the next one's events.
    /// Left out of a state while 0, so such a state is byte for byte what it was before
    /// epochs existed.
    #[serde(skip_serializing_if = "is_zero")]
    pub epoch: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn default_neighbours() -> usize {
    100
}

fn default_transitions() -> usize {
    50
}

fn default_row_capacity() -> usize {
    ROW_CAPACITY
}

/// See [`CovisitConfig::row_capacity`]. MovieLens-100K next-item HR@10 by capacity
/// (`scripts/covisit-tradeoff`): unbounded 0.2089, 1,000 the same, 750 0.2100, 500 0.2078,
/// 250 0.1994.
const ROW_CAPACITY: usize = 750;

fn default_refresh() -> u32 {
    // 8 re-ranked twice as often for no better lists (scripts/covisit-tradeoff).
    4
}

impl Default for CovisitConfig {
    fn default() -> Self {
        Self {
            user_window: 1_000,
            max_users: 200_000,
            neighbours: default_neighbours(),
            transitions: default_transitions(),
            refresh: default_refresh(),
            row_capacity: default_row_capacity(),
            epoch: 0,
        }
    }
}

/// Meetings waiting to be counted, in stream order, as parallel columns: each one's item,
/// previous item ([`NO_ITEM`]: none) and, for a first meeting, the user's window before it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meetings {
    items: Vec<u32>,
    lasts: Vec<u32>,
    /// `windows[window_offsets[k]..window_offsets[k + 1]]` is meeting k's window; a
    /// meeting that was not the user's first with its item has none (`firsts[k]` false).
    firsts: Vec<bool>,
    window_offsets: Vec<u64>,
    windows: Vec<u32>,
}

/// An item index that is none.
const NO_ITEM: u32 = u32::MAX;

impl Meetings {
    fn push(
        &mut self,
        item: u32,
        last: Option<u32>,
        window: Option<impl IntoIterator<Item = u32>>,
    ) {
        if self.window_offsets.is_empty() {
            self.window_offsets.push(0);
        }
        self.items.push(item);
        self.lasts.push(last.unwrap_or(NO_ITEM));
        self.firsts.push(window.is_some());
        if let Some(window) = window {
            self.windows.extend(window);
        }
        self.window_offsets.push(self.windows.len() as u64);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empties it, keeping its room.
    fn clear(&mut self) {
        self.items.clear();
        self.lasts.clear();
        self.firsts.clear();
        self.window_offsets.clear();
        self.windows.clear();
    }

    /// Whether these are meetings among `n` items, their columns of one length and their
    /// windows in order (what a restore checks).
    pub fn fits(&self, n: usize) -> bool {
        let len = self.items.len();
        let known = |i: &u32| (*i as usize) < n;
        self.lasts.len() == len
            && self.firsts.len() == len
            && (self.window_offsets.len() == len + 1 || len == 0 && self.window_offsets.len() <= 1)
            && self.window_offsets.first().is_none_or(|&o| o == 0)
            && self.window_offsets.windows(2).all(|w| w[0] <= w[1])
            && self
                .window_offsets
                .last()
                .is_none_or(|&o| o as usize == self.windows.len())
            && self.items.iter().all(known)
            && self.lasts.iter().all(|l| *l == NO_ITEM || known(l))
            && self.windows.iter().all(known)
    }
}

/// What publishing lists by epoch keeps: the lists the last epoch's counting re-ranked
/// (read once the epoch under way ends), and the meetings of the epoch under way.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deferred {
    pub staged_neighbours: BTreeMap<u32, Ranked>,
    pub staged_transitions: BTreeMap<u32, Ranked>,
    pub open: Meetings,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.staged_neighbours.is_empty()
            && self.staged_transitions.is_empty()
            && self.open.is_empty()
    }
}

/// Sparse counts per item, keyed by the other item's index.
type Row = FxHashMap<u32, u32>;

/// One item's ranked list: (other item, score), best first.
pub type Ranked = Vec<(u32, f32)>;

#[derive(Debug, Serialize, Deserialize)]
#[serde(from = "CovisitState", into = "CovisitState")]
pub struct Covisitation {
    config: CovisitConfig,
    ids: Vec<String>,
    index: FxHashMap<String, u32>,
    /// Best neighbours by cosine, as read: as of each row's last re-rank (with lists by
    /// epoch, the last one counted two epochs back at most).
    neighbours: Vec<Ranked>,
    /// Most frequent successors with P(successor | item), likewise.
    transitions: Vec<Ranked>,
    /// The counts, behind a lock only while an epoch is counted beside the next one.
    counts: Arc<Mutex<Counts>>,
    /// Meetings of the epoch under way (with lists by epoch).
    open: Meetings,
    /// Rows whose lists were re-ranked (or created) since the read side last took them.
    #[serde(skip)]
    changed: Journal<u32>,
}

impl Clone for Covisitation {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            ids: self.ids.clone(),
            index: self.index.clone(),
            neighbours: self.neighbours.clone(),
            transitions: self.transitions.clone(),
            counts: Arc::new(Mutex::new(self.settled().clone())),
            open: self.open.clone(),
            changed: self.changed.clone(),
        }
    }
}

impl PartialEq for Covisitation {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
            && self.ids == other.ids
            && self.neighbours == other.neighbours
            && self.transitions == other.transitions
            && self.open == other.open
            && (Arc::ptr_eq(&self.counts, &other.counts) || *self.settled() == *other.settled())
    }
}

/// Rows in compressed sparse form, sorted, so equal learners serialise to equal bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseCounts {
    pub offsets: Vec<u64>,
    pub columns: Vec<u32>,
    pub counts: Vec<u32>,
}

/// Ranked lists in compressed sparse form, in their rank order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseLists {
    pub offsets: Vec<u64>,
    pub items: Vec<u32>,
    pub scores: Vec<f32>,
}

fn span(offsets: &[u64], i: usize, len: usize) -> std::ops::Range<usize> {
    let at = |k: usize| offsets.get(k).map_or(0, |&o| o as usize).min(len);
    let lo = at(i);
    lo..at(i + 1).max(lo)
}

impl SparseCounts {
    fn from_rows(rows: &[Row]) -> Self {
        let mut out = SparseCounts {
            offsets: Vec::with_capacity(rows.len() + 1),
            ..Self::default()
        };
        out.offsets.push(0);
        for row in rows {
            let mut entries: Vec<(u32, u32)> = row.iter().map(|(&c, &n)| (c, n)).collect();
            entries.sort_unstable();
            for (c, n) in entries {
                out.columns.push(c);
                out.counts.push(n);
            }
            out.offsets.push(out.columns.len() as u64);
        }
        out
    }

    fn into_rows(self, n: usize) -> Vec<Row> {
        let len = self.columns.len().min(self.counts.len());
        (0..n)
            .map(|i| {
                span(&self.offsets, i, len)
                    .map(|k| (self.columns[k], self.counts[k]))
                    .collect()
            })
            .collect()
    }

    /// Whether these are the rows of `n` items.
    pub fn fits(&self, n: usize) -> bool {
        let last = self.offsets.last().copied().unwrap_or(0) as usize;
        self.offsets.len() == n + 1
            && self.columns.len() == self.counts.len()
            && last == self.columns.len()
            && self.offsets.windows(2).all(|w| w[0] <= w[1])
            && self.columns.iter().all(|&c| (c as usize) < n)
    }

    /// Whether every row's counts add up within a `u32` (the successor totals a restore
    /// rebuilds from them).
    pub fn row_sums_fit(&self) -> bool {
        self.offsets.windows(2).all(|w| {
            let span = w[0] as usize..(w[1] as usize).min(self.counts.len());
            self.counts
                .get(span)
                .unwrap_or_default()
                .iter()
                .try_fold(0u32, |sum, &c| sum.checked_add(c))
                .is_some()
        })
    }
}

impl SparseLists {
    fn from_lists(lists: &[Ranked]) -> Self {
        let mut out = SparseLists {
            offsets: Vec::with_capacity(lists.len() + 1),
            ..Self::default()
        };
        out.offsets.push(0);
        for list in lists {
            for &(item, score) in list {
                out.items.push(item);
                out.scores.push(score);
            }
            out.offsets.push(out.items.len() as u64);
        }
        out
    }

    fn into_lists(self, n: usize) -> Vec<Ranked> {
        let len = self.items.len().min(self.scores.len());
        (0..n)
            .map(|i| {
                span(&self.offsets, i, len)
                    .map(|k| (self.items[k], self.scores[k]))
                    .collect()
            })
            .collect()
    }

    /// Whether these are the lists of `n` items.
    pub fn fits(&self, n: usize) -> bool {
        let last = self.offsets.last().copied().unwrap_or(0) as usize;
        self.offsets.len() == n + 1
            && self.items.len() == self.scores.len()
            && last == self.items.len()
            && self.offsets.windows(2).all(|w| w[0] <= w[1])
            && self.items.iter().all(|&c| (c as usize) < n)
            && self.scores.iter().all(|s| s.is_finite())
    }
}

/// The learner taken apart: what a snapshot stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CovisitState {
    pub config: CovisitConfig,
    pub ids: Vec<String>,
    #[serde(default)]
    pub users_of: Vec<u32>,
    #[serde(default)]
    pub co: SparseCounts,
    #[serde(default)]
    pub next: SparseCounts,
    #[serde(default)]
    pub neighbours: SparseLists,
    #[serde(default)]
    pub transitions: SparseLists,
    #[serde(default)]
    pub co_stale: Vec<u32>,
    #[serde(default)]
    pub next_stale: Vec<u32>,
    /// Absent when nothing waits (always, with lists read at once): such a state is what
    /// it was before epochs existed, byte for byte.
    #[serde(default, skip_serializing_if = "Deferred::is_empty")]
    pub deferred: Deferred,
}

impl From<CovisitState> for Covisitation {
    fn from(s: CovisitState) -> Self {
        let n = s.ids.len();
        let index = s
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        let resized = |mut v: Vec<u32>| {
            v.resize(n, 0);
            v
        };
        let next = s.next.into_rows(n);
        let counts = Counts {
            config: s.config.clone(),
            users_of: resized(s.users_of),
            co: s.co.into_rows(n),
            next_total: next.iter().map(|r| r.values().sum()).collect(),
            next,
            co_stale: resized(s.co_stale),
            next_stale: resized(s.next_stale),
            staged_neighbours: s.deferred.staged_neighbours,
            staged_transitions: s.deferred.staged_transitions,
            pending: None,
            spent: Meetings::default(),
            scratch: Scratch::default(),
        };
        Self {
            config: s.config,
            index,
            neighbours: s.neighbours.into_lists(n),
            transitions: s.transitions.into_lists(n),
            counts: Arc::new(Mutex::new(counts)),
            open: s.deferred.open,
            changed: Journal::default(),
            ids: s.ids,
        }
    }
}

impl From<Covisitation> for CovisitState {
    fn from(c: Covisitation) -> Self {
        let mut counts = std::mem::take(&mut *c.settled());
        Self {
            co: SparseCounts::from_rows(&counts.co),
            next: SparseCounts::from_rows(&counts.next),
            neighbours: SparseLists::from_lists(&c.neighbours),
            transitions: SparseLists::from_lists(&c.transitions),
            config: c.config,
            ids: c.ids,
            users_of: std::mem::take(&mut counts.users_of),
            co_stale: std::mem::take(&mut counts.co_stale),
            next_stale: std::mem::take(&mut counts.next_stale),
            deferred: Deferred {
                staged_neighbours: counts.staged_neighbours,
                staged_transitions: counts.staged_transitions,
                open: c.open,
            },
        }
    }
}

/// Scores of items related to a history, by source signal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Related {
    /// Σ decay^steps-back · cosine(history item, item).
    pub knn: f32,
    /// cosine(last item, item).
    pub last_item: f32,
    /// P(item | last item) from the transition counts.
    pub transition: f32,
}

/// Keeps the `capacity` strongest entries of `row` (ties: the lower id), so the kept set is
/// a function of the counts alone, never of the map's order; the sum of the counts dropped.
fn cut(row: &mut Row, capacity: usize, strength: impl Fn(u32, u32) -> f32) -> u32 {
    if row.len() <= capacity {
        return 0;
    }
    let mut ranked: Ranked = row.iter().map(|(&j, &c)| (j, strength(j, c))).collect();
    ranked.select_nth_unstable_by(capacity, by_score_then_id);
    let mut dropped = 0;
    for &(j, _) in &ranked[capacity..] {
        dropped += row.remove(&j).unwrap_or(0);
    }
    row.shrink_to(capacity.saturating_mul(2));
    dropped
}

impl Covisitation {
    pub fn new(config: CovisitConfig) -> Self {
        Self {
            counts: Arc::new(Mutex::new(Counts {
                config: config.clone(),
                ..Counts::default()
            })),
            config,
            ids: Vec::new(),
            index: FxHashMap::default(),
            neighbours: Vec::new(),
            transitions: Vec::new(),
            open: Meetings::default(),
            changed: Journal::default(),
        }
    }

    /// The counts with everything handed over counted (waiting for a count under way), and
    /// a row for every item interned: an item met since the epoch began has no row until
    /// its meeting is counted, and an empty row is what counting would start it from, so
    /// every state saved, cloned or compared has the same rows whenever it is taken.
    fn settled(&self) -> MutexGuard<'_, Counts> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.settle();
        counts.grow(self.ids.len());
        counts
    }

    pub fn config(&self) -> &CovisitConfig {
        &self.config
    }

    pub fn into_state(self) -> CovisitState {
        self.into()
    }

    pub fn from_state(state: CovisitState) -> Self {
        state.into()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn id(&self, index: u32) -> Option<&str> {
        self.ids.get(index as usize).map(String::as_str)
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn index_of(&self, item: &str) -> Option<u32> {
        self.index.get(item).copied()
    }

    /// The dense id of `item`, given on first sight: the item ids every history holds.
    pub fn intern(&mut self, item: &str) -> u32 {
        if let Some(&i) = self.index.get(item) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(item.to_owned());
        self.index.insert(item.to_owned(), i);
        // The count rows grow when counting reaches the item.
        self.neighbours.push(Ranked::new());
        self.transitions.push(Ranked::new());
        self.changed.record(i);
        i
    }

    /// [`Self::observe`], or when lists are published by epoch (`config.epoch`), kept to
    /// be counted when the epoch ends ([`Self::close_epoch`]).
    pub fn meet(
        &mut self,
        item: u32,
        last: Option<u32>,
        previous: Option<impl IntoIterator<Item = u32>>,
    ) {
        if self.config.epoch == 0 {
            return self.observe(item, last, previous);
        }
        let window = self.config.user_window;
        self.open
            .push(item, last, previous.map(|p| p.into_iter().take(window)));
    }

    /// Ends an epoch: the lists the previous epoch's counting re-ranked are read from now
    /// on, and this epoch's meetings are counted on another thread while the next epoch's
    /// events are learned (or by whichever reader of the counts comes first: the counts
    /// are the same either way).
    pub fn close_epoch(&mut self) {
        let items = self.ids.len();
        let spent = self.counting(|counts| std::mem::take(&mut counts.spent));
        let open = std::mem::replace(&mut self.open, spent);
        let counts = Arc::clone(&self.counts);
        counts.lock().unwrap_or_else(|p| p.into_inner()).pending = Some((items, open));
        let spawned = std::thread::Builder::new()
            .name("covisit-count".into())
            .spawn(move || {
                counts.lock().unwrap_or_else(|p| p.into_inner()).settle();
            });
        // Without a thread, the next reader counts them.
        drop(spawned);
    }

    /// Runs `f` on the settled counts (see [`Self::settled`]), then reads the lists it and
    /// any count before it staged.
    fn counting<T>(&mut self, f: impl FnOnce(&mut Counts) -> T) -> T {
        let counts = Arc::clone(&self.counts);
        let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.settle();
        counts.grow(self.ids.len());
        let out = f(&mut counts);
        self.install(&mut counts);
        out
    }

    /// Reads the lists counting has staged.
    fn install(&mut self, counts: &mut Counts) {
        for (row, list) in std::mem::take(&mut counts.staged_neighbours) {
            if let Some(slot) = self.neighbours.get_mut(row as usize) {
                *slot = list;
                self.changed.record(row);
            }
        }
        for (row, list) in std::mem::take(&mut counts.staged_transitions) {
            if let Some(slot) = self.transitions.get_mut(row as usize) {
                *slot = list;
                self.changed.record(row);
            }
        }
    }

    /// Meetings of the epoch under way (with lists by epoch).
    pub fn open_meetings(&self) -> &Meetings {
        &self.open
    }

    /// Lists re-ranked and not read yet (with lists by epoch): neighbours, successors.
    pub fn staged(&self) -> (usize, usize) {
        let counts = self.settled();
        (
            counts.staged_neighbours.len(),
            counts.staged_transitions.len(),
        )
    }

    /// Learns that a user met `item` (an id from [`Self::intern`]): `last` is the user's
    /// previous item, `previous` the user's window before this event (most recent first),
    /// given only when the user meets `item` for the first time. Counted and read at once,
    /// whatever `config.epoch`.
    pub fn observe(
        &mut self,
        item: u32,
        last: Option<u32>,
        previous: Option<impl IntoIterator<Item = u32>>,
    ) {
        self.counting(|counts| counts.observe(item, last, previous));
    }

    /// Re-ranks every row now (for tests and offline tools that want exact lists).
    pub fn rerank_all(&mut self) {
        let items = self.ids.len() as u32;
        self.counting(|counts| {
            for i in 0..items {
                counts.rerank_neighbours(i);
                counts.rerank_transitions(i);
            }
        });
    }

    /// The item's neighbours by cosine, best first.
    pub fn neighbours(&self, item: u32) -> &[(u32, f32)] {
        self.neighbours
            .get(item as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// The item's most frequent successors with their probability, best first.
    pub fn transitions(&self, item: u32) -> &[(u32, f32)] {
        self.transitions
            .get(item as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// Rows whose lists changed since the last call, each once, in id order; `None`:
    /// every row may have.
    pub fn take_changed(&mut self) -> Option<Vec<u32>> {
        let mut rows = self.changed.take()?;
        rows.sort_unstable();
        rows.dedup();
        Some(rows)
    }

    /// The cosine of two items from the counts as they stand (for tests and inspection):
    /// exact until a cut drops the pair from `a`'s row.
    pub fn cosine(&self, a: u32, b: u32) -> f32 {
        self.settled().cosine(a, b)
    }
}

/// What reading co-visitation needs: each item's ranked lists. The learner and its
/// published read-side copy both provide them, so serving and training score alike.
pub trait CovisitLists {
    fn neighbours(&self, item: u32) -> &[(u32, f32)];
    fn transitions(&self, item: u32) -> &[(u32, f32)];
}

impl CovisitLists for Covisitation {
    fn neighbours(&self, item: u32) -> &[(u32, f32)] {
        Covisitation::neighbours(self, item)
    }

    fn transitions(&self, item: u32) -> &[(u32, f32)] {
        Covisitation::transitions(self, item)
    }
}

/// Every item related to `history` (most recent first; `depth` items with weight
/// `decay^steps-back`), with each signal's score: O(depth × neighbours), whatever the
/// catalog or the counts.
pub fn related<L: CovisitLists + ?Sized>(
    lists: &L,
    history: impl IntoIterator<Item = u32, IntoIter: Clone>,
    decay: f32,
    depth: usize,
) -> FxHashMap<u32, Related> {
    let mut out = FxHashMap::default();
    related_into(lists, history, decay, depth, &mut out);
    out
}

/// Scores of related items by dense id, whichever store holds them.
pub trait RelatedLookup {
    fn scores(&self, item: u32) -> Option<&Related>;
    /// Every related item with its scores, in no order a caller may depend on.
    fn entries(&self) -> impl Iterator<Item = (u32, &Related)>;
}

impl RelatedLookup for FxHashMap<u32, Related> {
    fn scores(&self, item: u32) -> Option<&Related> {
        self.get(&item)
    }

    fn entries(&self) -> impl Iterator<Item = (u32, &Related)> {
        self.iter().map(|(&i, r)| (i, r))
    }
}

/// Where [`related_into`] accumulates.
pub trait RelatedSink {
    /// Empties it, for about `bound` entries.
    fn reset(&mut self, bound: usize);
    fn slot(&mut self, item: u32) -> &mut Related;
}

impl RelatedSink for FxHashMap<u32, Related> {
    fn reset(&mut self, bound: usize) {
        self.clear();
        self.reserve(bound);
    }

    fn slot(&mut self, item: u32) -> &mut Related {
        self.entry(item).or_default()
    }
}

/// [`related`]'s scores in arrays indexed by dense id, for a caller that builds them for
/// nearly every event (the learner's training groups): an array slot per entry where a
/// hash map probed, and emptied by a new stamp instead of a pass. It grows to the largest
/// id met, so it is kept and reused, never built per call.
#[derive(Debug, Default)]
pub struct DenseRelated {
    scores: Vec<Related>,
    /// The fill a slot was written in: only slots of the current one hold scores.
    stamps: Vec<u32>,
    stamp: u32,
    /// The ids written in the current fill, in the order met.
    items: Vec<u32>,
}

impl RelatedSink for DenseRelated {
    fn reset(&mut self, _bound: usize) {
        self.items.clear();
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.stamps.fill(0);
            self.stamp = 1;
        }
    }

    fn slot(&mut self, item: u32) -> &mut Related {
        let i = item as usize;
        if i >= self.stamps.len() {
            let len = (i + 1).max(self.stamps.len() * 2);
            self.stamps.resize(len, 0);
            self.scores.resize(len, Related::default());
        }
        if self.stamps[i] != self.stamp {
            self.stamps[i] = self.stamp;
            self.scores[i] = Related::default();
            self.items.push(item);
        }
        &mut self.scores[i]
    }
}

impl RelatedLookup for DenseRelated {
    fn scores(&self, item: u32) -> Option<&Related> {
        let i = item as usize;
        // Stamp 0 is never a fill's: an array never filled holds nothing.
        (self.stamp != 0 && self.stamps.get(i) == Some(&self.stamp)).then(|| &self.scores[i])
    }

    fn entries(&self) -> impl Iterator<Item = (u32, &Related)> {
        self.items.iter().map(|&i| (i, &self.scores[i as usize]))
    }
}

/// [`related`] into `out` (emptied first), so a caller that builds one per event can keep
/// its allocation.
pub fn related_into<L: CovisitLists + ?Sized>(
    lists: &L,
    history: impl IntoIterator<Item = u32, IntoIter: Clone>,
    decay: f32,
    depth: usize,
    out: &mut impl RelatedSink,
) {
    // Walked twice rather than copied: this runs for every request and training group.
    let history = history.into_iter().take(depth);
    // Sized for every entry the lists hold: rehashing as it fills cost more than the
    // counting. (Callers never depend on the map's order.)
    let bound = history
        .clone()
        .map(|h| lists.neighbours(h).len())
        .sum::<usize>()
        + history
            .clone()
            .next()
            .map_or(0, |h| lists.transitions(h).len());
    out.reset(bound);
    let mut weight = 1.0f32;
    for (step, h) in history.enumerate() {
        for &(j, sim) in lists.neighbours(h) {
            let r = out.slot(j);
            r.knn += weight * sim;
            if step == 0 {
                r.last_item = sim;
            }
        }
        if step == 0 {
            for &(j, p) in lists.transitions(h) {
                out.slot(j).transition = p;
            }
        }
        weight *= decay;
    }
}

/// Whether `item` is a key of what [`related`] gives for `history` (same `depth`): a
/// neighbour of one of its first `depth` items, or a successor of the first. A scan of the
/// lists, without building the scores: most events' items are related to nothing.
pub fn relates<L: CovisitLists + ?Sized>(
    lists: &L,
    history: impl IntoIterator<Item = u32, IntoIter: Clone>,
    item: u32,
    depth: usize,
) -> bool {
    let history = history.into_iter().take(depth);
    let is_item = |(j, _): &(u32, f32)| *j == item;
    history
        .clone()
        .next()
        .is_some_and(|last| lists.transitions(last).iter().any(is_item))
        || history
            .clone()
            .any(|h| lists.neighbours(h).iter().any(is_item))
}

/// The history item that relates `item` most strongly: the one with the largest share of
/// its co-visitation score in [`related`] (same `decay` and `depth`), else the last item
/// when `item` follows it. What "co-visited with …" names in an explanation.
pub fn strongest_anchor<L: CovisitLists + ?Sized>(
    lists: &L,
    history: &[u32],
    item: u32,
    decay: f32,
    depth: usize,
) -> Option<u32> {
    let mut best: Option<(f32, u32)> = None;
    let mut weight = 1.0f32;
    for &h in history.iter().take(depth) {
        if let Some(&(_, sim)) = lists.neighbours(h).iter().find(|(j, _)| *j == item) {
            let share = weight * sim;
            if best.is_none_or(|(b, _)| share > b) {
                best = Some((share, h));
            }
        }
        weight *= decay;
    }
    best.map(|(_, h)| h).or_else(|| {
        let last = *history.first()?;
        lists
            .transitions(last)
            .iter()
            .any(|(j, _)| *j == item)
            .then_some(last)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Histories;

    #[derive(Debug)]
    struct Lists {
        neighbours: FxHashMap<u32, Vec<(u32, f32)>>,
        transitions: FxHashMap<u32, Vec<(u32, f32)>>,
    }

    impl CovisitLists for Lists {
        fn neighbours(&self, item: u32) -> &[(u32, f32)] {
            self.neighbours.get(&item).map_or(&[], Vec::as_slice)
        }
        fn transitions(&self, item: u32) -> &[(u32, f32)] {
            self.transitions.get(&item).map_or(&[], Vec::as_slice)
        }
    }

    fn lists() -> impl proptest::strategy::Strategy<Value = Lists> {
        use proptest::prelude::*;
        let list = || prop::collection::vec((0u32..40, 0.0f32..1.0), 0..12);
        (
            prop::collection::vec(list(), 20),
            prop::collection::vec(list(), 20),
        )
            .prop_map(|(n, t)| Lists {
                neighbours: n
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| (i as u32, l))
                    .collect(),
                transitions: t
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| (i as u32, l))
                    .collect(),
            })
    }

    proptest::proptest! {
        #[test]
        fn dense_related_holds_what_the_map_holds_fill_after_fill(
            lists in lists(),
            histories in proptest::collection::vec(proptest::collection::vec(0u32..25, 0..16), 1..5),
            depth in 0usize..14,
        ) {
            let mut dense = DenseRelated::default();
            for history in &histories {
                let map = related(&lists, history.iter().copied(), 0.5, depth);
                related_into(&lists, history.iter().copied(), 0.5, depth, &mut dense);
                let bits = |r: &Related| [r.knn.to_bits(), r.last_item.to_bits(), r.transition.to_bits()];
                let mut from_dense: Vec<(u32, [u32; 3])> = dense.entries().map(|(i, r)| (i, bits(r))).collect();
                let mut from_map: Vec<(u32, [u32; 3])> = map.entries().map(|(i, r)| (i, bits(r))).collect();
                from_dense.sort_unstable();
                from_map.sort_unstable();
                proptest::prop_assert_eq!(&from_dense, &from_map);
                for item in 0u32..45 {
                    proptest::prop_assert_eq!(dense.scores(item).map(bits), map.scores(item).map(bits));
                }
            }
        }

        #[test]
        fn relates_says_what_related_holds(
            lists in lists(),
            history in proptest::collection::vec(0u32..25, 0..16),
            item in 0u32..40,
            depth in 0usize..14,
        ) {
            let related = related(&lists, history.iter().copied(), 0.5, depth);
            proptest::prop_assert_eq!(
                relates(&lists, history.iter().copied(), item, depth),
                related.contains_key(&item)
            );
        }
    }

    #[test]
    fn the_anchor_is_the_history_item_that_contributes_most() {
        let lists = Lists {
            // 9 is close to 1 (0.9) and to 2 (0.5); 7 only follows 2.
            neighbours: [(1, vec![(9, 0.9)]), (2, vec![(9, 0.5), (8, 0.1)])]
                .into_iter()
                .collect(),
            transitions: [(2, vec![(7, 1.0)])].into_iter().collect(),
        };
        // History most recent first: 2, then 1. Undecayed, 1 gives 9 more.
        assert_eq!(strongest_anchor(&lists, &[2, 1], 9, 1.0, 10), Some(1));
        // Decayed hard, the recent 2 gives more (0.5 against 0.9 × 0.1).
        assert_eq!(strongest_anchor(&lists, &[2, 1], 9, 0.1, 10), Some(2));
        // Past the depth, 1 does not count.
        assert_eq!(strongest_anchor(&lists, &[2, 1], 9, 1.0, 1), Some(2));
        // A transition names the last item; an unrelated item has no anchor.
        assert_eq!(strongest_anchor(&lists, &[2, 1], 7, 1.0, 10), Some(2));
        assert_eq!(strongest_anchor(&lists, &[1, 2], 7, 1.0, 10), None);
        assert_eq!(strongest_anchor(&lists, &[2, 1], 5, 1.0, 10), None);
    }

    proptest::proptest! {
        /// `due` skips the division it replaced; it must decide as the division did.
        #[test]
        fn due_decides_as_the_division_did(stale in 0u32..5_000, len in 0usize..200_000, refresh in 0u32..100) {
            let c = Counts { config: CovisitConfig { refresh, ..CovisitConfig::default() }, ..Counts::default() };
            let threshold = (len / refresh.max(1) as usize).max(1);
            proptest::prop_assert_eq!(c.due(stale, len), stale as usize >= threshold);
        }
    }

    /// Drives the learner as the online models do: per-user windows from a history store.
    fn learner(interactions: &[(&str, &str)]) -> Covisitation {
        let mut c = Covisitation::new(CovisitConfig::default());
        let mut users = Histories::new(100, 1_000);
        for (u, item) in interactions {
            feed(&mut c, &mut users, u, item);
        }
        c
    }

    fn feed(c: &mut Covisitation, users: &mut Histories, user: &str, item: &str) {
        let i = c.intern(item);
        let history = users.get(user);
        let last = history.and_then(|h| h.last());
        let first = !history.is_some_and(|h| h.contains(i));
        let previous: Option<Vec<u32>> =
            first.then(|| history.map(|h| h.recent().collect()).unwrap_or_default());
        c.observe(i, last, previous.as_deref().map(|p| p.iter().copied()));
        users.push(user, i);
    }

    /// A hub item seen by every user: 30 users also see three "strong" items with it, and
    /// 200 more see it followed by an item of their own (each a count of one).
    fn hub_log() -> Vec<(String, String)> {
        let mut log = Vec::new();
        for u in 0..30 {
            let user = format!("s{u}");
            log.push((user.clone(), "hub".to_owned()));
            for strong in ["s1", "s2", "s3"] {
                log.push((user.clone(), strong.to_owned()));
            }
        }
        for u in 0..200 {
            let user = format!("t{u}");
            log.push((user.clone(), "hub".to_owned()));
            log.push((user, format!("tail{u}")));
        }
        log
    }

    fn capped(capacity: usize) -> Covisitation {
        Covisitation::new(CovisitConfig {
            row_capacity: capacity,
            ..CovisitConfig::default()
        })
    }

    #[test]
    fn rows_stay_bounded_and_keep_their_strongest_entries() {
        let mut c = capped(8);
        let mut users = Histories::new(1_000, 1_000);
        for (u, item) in hub_log() {
            feed(&mut c, &mut users, &u, &item);
            let counts = c.settled();
            for row in counts.co.iter().chain(&counts.next) {
                assert!(row.len() < 16, "a row of {} entries", row.len());
            }
        }
        let hub = id(&c, "hub") as usize;
        let counts = c.settled();
        for strong in ["s1", "s2", "s3"] {
            let s = id(&c, strong);
            assert_eq!(
                counts.co[hub].get(&s),
                Some(&30),
                "{strong} kept with its count"
            );
        }
        // 3 strong items + 200 tails met the hub: most tails were cut.
        assert!(counts.co[hub].len() <= 15);
        // Successors: "s1" follows the hub 30 times, each tail once.
        assert_eq!(counts.next[hub].get(&id(&c, "s1")), Some(&30));
        for (row, total) in counts.next.iter().zip(&counts.next_total) {
            assert_eq!(
                row.values().sum::<u32>(),
                *total,
                "totals count what rows hold"
            );
        }
        drop(counts);
        c.rerank_all();
        let best: Vec<&str> = c.neighbours(hub as u32)[..3]
            .iter()
            .filter_map(|&(j, _)| c.id(j))
            .collect();
        assert_eq!(best, ["s1", "s2", "s3"]);
    }

    #[test]
    fn unbounded_rows_keep_every_entry() {
        let mut c = capped(0);
        let mut users = Histories::new(1_000, 1_000);
        for (u, item) in hub_log() {
            feed(&mut c, &mut users, &u, &item);
        }
        assert_eq!(c.settled().co[id(&c, "hub") as usize].len(), 203);
    }

    #[test]
    fn a_learner_restored_between_cuts_learns_on_byte_for_byte() {
        let log = hub_log();
        let (first, second) = log.split_at(log.len() / 2 + 7);
        let mut straight = capped(8);
        let mut users = Histories::new(1_000, 1_000);
        for (u, item) in &log {
            feed(&mut straight, &mut users, u, item);
        }
        let mut restored = capped(8);
        let mut users = Histories::new(1_000, 1_000);
        for (u, item) in first {
            feed(&mut restored, &mut users, u, item);
        }
        let mut restored = Covisitation::from_state(restored.into_state());
        for (u, item) in second {
            feed(&mut restored, &mut users, u, item);
        }
        assert_eq!(restored.settled().next_total, straight.settled().next_total);
        let bytes = |c: Covisitation| serde_json::to_vec(&c.into_state()).expect("serialises");
        assert_eq!(bytes(restored), bytes(straight));
    }

    fn id(c: &Covisitation, item: &str) -> u32 {
        c.index_of(item).expect("known item")
    }

    /// Cosine over binary user vectors, computed from scratch.
    fn batch_cosine(interactions: &[(&str, &str)], a: &str, b: &str) -> f32 {
        let users = |item: &str| -> std::collections::BTreeSet<&str> {
            interactions
                .iter()
                .filter(|(_, i)| *i == item)
                .map(|(u, _)| *u)
                .collect()
        };
        let (ua, ub) = (users(a), users(b));
        let both = ua.intersection(&ub).count() as f32;
        both / ((ua.len() * ub.len()) as f32).sqrt()
    }

    const LOG: [(&str, &str); 9] = [
        ("u1", "a"),
        ("u1", "b"),
        ("u2", "a"),
        ("u2", "c"),
        ("u3", "b"),
        ("u3", "a"),
        ("u3", "c"),
        ("u1", "a"),
        ("u4", "c"),
    ];

    #[test]
    fn online_cosine_equals_batch_cosine() {
        let c = learner(&LOG);
        for a in ["a", "b", "c"] {
            for b in ["a", "b", "c"] {
                if a != b {
                    let want = batch_cosine(&LOG, a, b);
                    assert!(
                        (c.cosine(id(&c, a), id(&c, b)) - want).abs() < 1e-6,
                        "{a} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn reranked_lists_hold_the_exact_cosines_best_first() {
        let mut c = learner(&LOG);
        c.rerank_all();
        for a in ["a", "b", "c"] {
            let list = c.neighbours(id(&c, a));
            assert!(list.windows(2).all(|w| w[0].1 >= w[1].1), "{a}: {list:?}");
            for &(j, sim) in list {
                let other = c.id(j).expect("id");
                assert!((sim - batch_cosine(&LOG, a, other)).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn lists_keep_the_best_neighbours_only() {
        let config = CovisitConfig {
            neighbours: 2,
            ..CovisitConfig::default()
        };
        let mut c = Covisitation::new(config);
        let mut users = Histories::new(100, 1_000);
        // "x" co-occurs with y (3 users), z (2 users), w (1 user).
        let log = [
            ("u1", "x"),
            ("u1", "y"),
            ("u1", "z"),
            ("u2", "x"),
            ("u2", "y"),
            ("u2", "z"),
            ("u3", "x"),
            ("u3", "y"),
            ("u4", "x"),
            ("u4", "w"),
        ];
        for (u, item) in log {
            let i = c.intern(item);
            let h = users.get(u);
            let previous: Option<Vec<u32>> = (!h.is_some_and(|h| h.contains(i)))
                .then(|| h.map(|h| h.recent().collect()).unwrap_or_default());
            c.observe(
                i,
                h.and_then(|h| h.last()),
                previous.as_deref().map(|p| p.iter().copied()),
            );
            users.push(u, i);
        }
        c.rerank_all();
        let names: Vec<&str> = c
            .neighbours(id(&c, "x"))
            .iter()
            .filter_map(|&(j, _)| c.id(j))
            .collect();
        assert_eq!(names, ["y", "z"]);
    }

    #[test]
    fn transitions_follow_each_users_order() {
        let c = learner(&[
            ("u1", "a"),
            ("u1", "b"),
            ("u2", "a"),
            ("u2", "c"),
            ("u3", "a"),
            ("u3", "b"),
        ]);
        let r = related(&c, [id(&c, "a")], 0.5, 10);
        let b = r[&id(&c, "b")];
        let cc = r[&id(&c, "c")];
        assert!((b.transition - 2.0 / 3.0).abs() < 1e-6);
        assert!((cc.transition - 1.0 / 3.0).abs() < 1e-6);
        assert!(b.knn > cc.knn);
    }

    #[test]
    fn recent_history_weighs_more() {
        let c = learner(&[
            ("u1", "a"),
            ("u1", "x"),
            ("u2", "b"),
            ("u2", "y"),
            ("u3", "a"),
            ("u3", "b"),
        ]);
        let r = related(&c, [id(&c, "b"), id(&c, "a")], 0.5, 10);
        let x = r[&id(&c, "x")].knn;
        let y = r[&id(&c, "y")].knn;
        assert!(y > x, "y neighbours the latest item: {y} vs {x}");
    }

    #[test]
    fn state_round_trips_and_serialises_canonically() {
        let c = learner(&[
            ("u1", "a"),
            ("u1", "b"),
            ("u2", "b"),
            ("u2", "c"),
            ("u2", "a"),
        ]);
        let state = c.clone().into_state();
        let back = Covisitation::from_state(state.clone());
        assert_eq!(back.neighbours, c.neighbours);
        assert_eq!(back, c);
        let once = serde_json::to_vec(&state).expect("serialises");
        let twice = serde_json::to_vec(&back.into_state()).expect("serialises");
        assert_eq!(once, twice);
    }
}
