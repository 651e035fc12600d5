//! Item-to-item co-visitation learned online: the incremental form of cosine item-kNN
//! (Sarwar et al. 2001) and of a first-order Markov chain, both updated by every event.
//!
//! Each user (the session when an event names none) is an implicit binary vector over
//! items. When a user meets an item for the first time, its co-occurrence with each item of
//! the user's window goes up by one, so `co(i, j) / sqrt(n_i · n_j)` is at every moment the
//! cosine similarity a batch item-kNN would compute from the same interactions (exactly,
//! while no user outgrows `user_window`). The transition counts `last → next` are the
//! sequential signal the kNN lacks.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::online::SessionWindows;
use crate::session::SessionHistory;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CovisitConfig {
    /// Items of a user that new items co-occur with (the most recent ones).
    pub user_window: usize,
    /// Users remembered; the least recently active are forgotten first.
    pub max_users: usize,
}

impl Default for CovisitConfig {
    fn default() -> Self {
        Self {
            user_window: 1_000,
            max_users: 200_000,
        }
    }
}

/// Sparse counts per item, keyed by the other item's index.
type Row = FxHashMap<u32, u32>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "CovisitState", into = "CovisitState")]
pub struct Covisitation {
    config: CovisitConfig,
    ids: Vec<String>,
    index: FxHashMap<String, u32>,
    /// Users that met each item.
    users_of: Vec<u32>,
    co: Vec<Row>,
    next: Vec<Row>,
    users: SessionWindows,
}

/// Rows in compressed sparse form, sorted, so equal learners serialise to equal bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseCounts {
    pub offsets: Vec<u64>,
    pub columns: Vec<u32>,
    pub counts: Vec<u32>,
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
        (0..n)
            .map(|i| {
                let span = |k: usize| self.offsets.get(k).map_or(0, |&o| o as usize);
                let (lo, hi) = (span(i), span(i + 1).min(self.columns.len()));
                (lo..hi.max(lo))
                    .map(|k| (self.columns[k], self.counts[k]))
                    .collect()
            })
            .collect()
    }
}

/// The learner taken apart: what a snapshot stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CovisitState {
    pub config: CovisitConfig,
    pub ids: Vec<String>,
    pub users_of: Vec<u32>,
    pub co: SparseCounts,
    pub next: SparseCounts,
    pub users: SessionWindows,
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
        let mut users_of = s.users_of;
        users_of.resize(n, 0);
        Self {
            config: s.config,
            index,
            users_of,
            co: s.co.into_rows(n),
            next: s.next.into_rows(n),
            users: s.users,
            ids: s.ids,
        }
    }
}

impl From<Covisitation> for CovisitState {
    fn from(c: Covisitation) -> Self {
        Self {
            co: SparseCounts::from_rows(&c.co),
            next: SparseCounts::from_rows(&c.next),
            config: c.config,
            ids: c.ids,
            users_of: c.users_of,
            users: c.users,
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

impl Covisitation {
    pub fn new(config: CovisitConfig) -> Self {
        Self {
            users: SessionWindows::new(config.max_users, config.user_window),
            config,
            ids: Vec::new(),
            index: FxHashMap::default(),
            users_of: Vec::new(),
            co: Vec::new(),
            next: Vec::new(),
        }
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

    pub fn index_of(&self, item: &str) -> Option<u32> {
        self.index.get(item).copied()
    }

    fn intern(&mut self, item: &str) -> u32 {
        if let Some(&i) = self.index.get(item) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(item.to_owned());
        self.index.insert(item.to_owned(), i);
        self.users_of.push(0);
        self.co.push(Row::default());
        self.next.push(Row::default());
        i
    }

    /// Learns that `user` met `item`.
    pub fn observe(&mut self, user: &str, item: &str) {
        let i = self.intern(item);
        let history = self.users.history(user);
        let last = history
            .and_then(|h| h.recent().next())
            .and_then(|l| self.index_of(l));
        let first_time = !history.is_some_and(|h| h.has_seen(item));
        let previous: Vec<u32> = match history {
            Some(h) if first_time => h.recent().filter_map(|p| self.index_of(p)).collect(),
            _ => Vec::new(),
        };
        if let Some(last) = last
            && last != i
        {
            *self.next[last as usize].entry(i).or_default() += 1;
        }
        if first_time {
            self.users_of[i as usize] += 1;
            for j in previous {
                *self.co[i as usize].entry(j).or_default() += 1;
                *self.co[j as usize].entry(i).or_default() += 1;
            }
        }
        self.users.push_item(user, item);
    }

    /// The user's items, most recent first.
    pub fn user_history(&self, user: &str) -> Option<&SessionHistory> {
        self.users.history(user)
    }

    pub fn cosine(&self, a: u32, b: u32) -> f32 {
        let (Some(row), Some(&na), Some(&nb)) = (
            self.co.get(a as usize),
            self.users_of.get(a as usize),
            self.users_of.get(b as usize),
        ) else {
            return 0.0;
        };
        match row.get(&b) {
            Some(&c) if na > 0 && nb > 0 => c as f32 / ((na as f32) * (nb as f32)).sqrt(),
            _ => 0.0,
        }
    }

    /// Every item related to `history` (most recent first; `depth` items with weight
    /// `decay^steps-back`), with each signal's score. Unknown history items are skipped.
    pub fn related(&self, history: &[&str], decay: f32, depth: usize) -> FxHashMap<u32, Related> {
        let mut out: FxHashMap<u32, Related> = FxHashMap::default();
        let known: Vec<u32> = history
            .iter()
            .take(depth)
            .filter_map(|h| self.index_of(h))
            .collect();
        let mut weight = 1.0f32;
        for (step, &h) in known.iter().enumerate() {
            let nh = self.users_of[h as usize].max(1) as f32;
            for (&j, &c) in &self.co[h as usize] {
                let nj = self.users_of[j as usize].max(1) as f32;
                let sim = c as f32 / (nh * nj).sqrt();
                let r = out.entry(j).or_default();
                r.knn += weight * sim;
                if step == 0 {
                    r.last_item = sim;
                }
            }
            if step == 0 {
                let row = &self.next[h as usize];
                let total: u32 = row.values().sum();
                for (&j, &c) in row {
                    out.entry(j).or_default().transition = c as f32 / total.max(1) as f32;
                }
            }
            weight *= decay;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learner(interactions: &[(&str, &str)]) -> Covisitation {
        let mut c = Covisitation::new(CovisitConfig::default());
        for (u, i) in interactions {
            c.observe(u, i);
        }
        c
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

    #[test]
    fn online_cosine_equals_batch_cosine() {
        let log = [
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
        let c = learner(&log);
        for a in ["a", "b", "c"] {
            for b in ["a", "b", "c"] {
                if a == b {
                    continue;
                }
                let (ia, ib) = (
                    c.index_of(a).expect("known item"),
                    c.index_of(b).expect("known item"),
                );
                let want = batch_cosine(&log, a, b);
                assert!((c.cosine(ia, ib) - want).abs() < 1e-6, "{a} {b}");
            }
        }
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
        let related = c.related(&["a"], 0.5, 10);
        let b = related[&c.index_of("b").expect("known item")];
        let cc = related[&c.index_of("c").expect("known item")];
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
        let related = c.related(&["b", "a"], 0.5, 10);
        let x = related[&c.index_of("x").expect("known item")].knn;
        let y = related[&c.index_of("y").expect("known item")].knn;
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
        assert_eq!(back, c);
        let once = serde_json::to_vec(&state).expect("known item");
        let twice = serde_json::to_vec(&back.into_state()).expect("known item");
        assert_eq!(once, twice);
    }
}
