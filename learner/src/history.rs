//! What each session (or user) has met, as dense item ids: its recent items, most recent
//! last, for intent, co-visitation and the embeddings' context; and a sorted copy of them,
//! so "has it seen this item?" is a binary search, not a string comparison per entry.
//!
//! One store per kind of key, least recently active keys forgotten first. This is the one
//! home of session state: the learners read it, snapshots store it, and the request path
//! reads the published copy of it.

use std::collections::VecDeque;

use hashlink::LinkedHashMap;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

use crate::journal::Journal;

/// Users remembered per session history; a session named by more is erased with any user.
const MAX_OWNERS: usize = 8;

/// The items one key has met: at most the store's capacity, no repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(from = "HistoryState", into = "HistoryState")]
pub struct ItemHistory {
    /// Most recent last.
    recent: VecDeque<u32>,
    /// The same items, sorted.
    seen: Vec<u32>,
    events: u64,
    /// The users whose events it holds (a session's), so erasing any of them finds it.
    owners: Vec<Box<str>>,
    /// More than [`MAX_OWNERS`] users named it: erasing any user erases it.
    shared: bool,
    /// Event time of its latest item, when the store expires idle keys (0 otherwise).
    last_ts: i64,
}

/// The stored form: the sorted copy is derived on load.
#[derive(Serialize, Deserialize)]
struct HistoryState {
    recent: Vec<u32>,
    events: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    owners: Vec<Box<str>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    shared: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    last_ts: i64,
}

fn is_zero(ts: &i64) -> bool {
    *ts == 0
}

impl From<HistoryState> for ItemHistory {
    fn from(s: HistoryState) -> Self {
        let mut seen = s.recent.clone();
        seen.sort_unstable();
        seen.dedup();
        Self {
            recent: s.recent.into(),
            seen,
            events: s.events,
            owners: s.owners,
            shared: s.shared,
            last_ts: s.last_ts,
        }
    }
}

impl From<ItemHistory> for HistoryState {
    fn from(h: ItemHistory) -> Self {
        Self {
            recent: h.recent.into(),
            events: h.events,
            owners: h.owners,
            shared: h.shared,
            last_ts: h.last_ts,
        }
    }
}

impl ItemHistory {
    /// Records that the key met `item` (again: it moves to the most recent place); keeps at
    /// most `capacity` items.
    pub fn push(&mut self, item: u32, capacity: usize) {
        self.events += 1;
        match self.seen.binary_search(&item) {
            Ok(_) => {
                if let Some(pos) = self.recent.iter().rposition(|&i| i == item) {
                    self.recent.remove(pos);
                }
            }
            Err(at) => self.seen.insert(at, item),
        }
        self.recent.push_back(item);
        while self.recent.len() > capacity.max(1) {
            if let Some(evicted) = self.recent.pop_front()
                && let Ok(at) = self.seen.binary_search(&evicted)
            {
                self.seen.remove(at);
            }
        }
    }

    /// Items, most recent first.
    pub fn recent(&self) -> impl ExactSizeIterator<Item = u32> + Clone + '_ {
        self.recent.iter().rev().copied()
    }

    pub fn last(&self) -> Option<u32> {
        self.recent.back().copied()
    }

    pub fn contains(&self, item: u32) -> bool {
        self.seen.binary_search(&item).is_ok()
    }

    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    /// Whether erasing `user` must erase this history.
    fn holds_events_of(&self, user: &str) -> bool {
        self.shared || self.owners.iter().any(|o| **o == *user)
    }
}

/// Histories by key, least recently active first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histories {
    capacity: usize,
    max_keys: usize,
    /// Serialised in activity order, so equal streams write equal bytes.
    by_key: LinkedHashMap<Box<str>, ItemHistory, FxBuildHasher>,
    /// Keys changed, created or forgotten since the read side last looked.
    #[serde(skip)]
    changed: Journal<Box<str>>,
}

impl Histories {
    /// At most `max_keys` keys of at most `capacity` items each.
    pub fn new(max_keys: usize, capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            max_keys: max_keys.max(1),
            by_key: LinkedHashMap::with_hasher(FxBuildHasher),
            changed: Journal::default(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&ItemHistory> {
        self.by_key.get(key)
    }

    /// Records that `key` met `item`, marks the key most recently active, and forgets the
    /// least recent keys beyond the limit; answers how many it forgot.
    pub fn push(&mut self, key: &str, item: u32) -> usize {
        let capacity = self.capacity;
        match self.by_key.to_back(key) {
            Some(history) => history.push(item, capacity),
            None => {
                let mut history = ItemHistory::default();
                history.push(item, capacity);
                self.by_key.insert(key.into(), history);
            }
        }
        self.changed.record(key.into());
        let mut forgotten = 0;
        while self.by_key.len() > self.max_keys {
            if let Some((key, _)) = self.by_key.pop_front() {
                self.changed.record(key);
                forgotten += 1;
            }
        }
        forgotten
    }

    /// Records that `key` met `item` for `owner` (a user, when the event named one) at event
    /// time `ts` (kept only when idle keys expire): as [`Self::push`], and the history
    /// remembers whose it is and when it was last active.
    pub fn push_owned(
        &mut self,
        key: &str,
        item: u32,
        owner: Option<&str>,
        ts: Option<i64>,
    ) -> usize {
        let forgotten = self.push(key, item);
        if let Some(history) = self.by_key.get_mut(key) {
            if let Some(owner) = owner
                && !history.shared
                && !history.owners.iter().any(|o| **o == *owner)
            {
                if history.owners.len() < MAX_OWNERS {
                    history.owners.push(owner.into());
                } else {
                    history.shared = true;
                    history.owners.clear();
                }
            }
            if let Some(ts) = ts {
                history.last_ts = history.last_ts.max(ts);
            }
        }
        forgotten
    }

    /// Forgets the least recently active keys whose latest event is older than `cutoff`
    /// (event time), stopping at the first that is not; answers how many it forgot.
    pub fn expire_idle(&mut self, cutoff: i64) -> usize {
        let mut forgotten = 0;
        while let Some((_, oldest)) = self.by_key.front()
            && oldest.last_ts < cutoff
        {
            if let Some((key, _)) = self.by_key.pop_front() {
                self.changed.record(key);
                forgotten += 1;
            }
        }
        forgotten
    }

    /// Forgets `key`'s history; answers whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let removed = self.by_key.remove(key).is_some();
        if removed {
            self.changed.record(key.into());
        }
        removed
    }

    /// Forgets every history owned by `owner`; answers their keys.
    pub fn remove_owned_by(&mut self, owner: &str) -> Vec<Box<str>> {
        let keys: Vec<Box<str>> = self
            .by_key
            .iter()
            .filter(|(_, h)| h.holds_events_of(owner))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            self.remove(key);
        }
        keys
    }

    /// Keys whose history changed (or went) since the last call; `None`: any may have.
    pub fn take_changed(&mut self) -> Option<Vec<Box<str>>> {
        self.changed.take()
    }

    /// Every key with its history, least recently active first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ItemHistory)> {
        self.by_key.iter().map(|(k, h)| (&**k, h))
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn recent_moves_repeats_to_the_front_and_capacity_bounds_seen() {
        let mut h = ItemHistory::default();
        for i in [1, 2, 1, 3] {
            h.push(i, 3);
        }
        assert_eq!(h.recent().collect::<Vec<_>>(), [3, 1, 2]);
        h.push(4, 3);
        assert!(!h.contains(2), "the oldest left with its membership");
        assert!(h.contains(1) && h.contains(3) && h.contains(4));
        assert_eq!(h.events(), 5);
    }

    #[test]
    fn least_recent_key_is_forgotten_and_order_survives_serde() {
        let mut s = Histories::new(2, 5);
        assert_eq!(s.push("a", 1), 0);
        assert_eq!(s.push("b", 2), 0);
        assert_eq!(s.push("a", 3), 0);
        assert_eq!(s.push("c", 4), 1);
        assert!(s.get("b").is_none(), "b was the least recently active");
        assert_eq!(s.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "c"]);
        let json = serde_json::to_string(&s).expect("serialises");
        let back: Histories = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, s);
        assert_eq!(serde_json::to_string(&back).expect("again"), json);
    }

    #[test]
    fn owned_histories_are_removed_with_their_owner_and_survive_serde() {
        let mut s = Histories::new(10, 5);
        s.push_owned("s1", 1, Some("u1"), None);
        s.push_owned("s2", 2, Some("u2"), None);
        s.push_owned("s3", 3, None, None);
        s.push_owned("s3", 4, Some("u1"), None);
        let back: Histories =
            serde_json::from_str(&serde_json::to_string(&s).expect("ser")).expect("de");
        assert_eq!(back, s);
        s.take_changed();
        assert_eq!(
            s.remove_owned_by("u1"),
            ["s1".into(), "s3".into()] as [Box<str>; 2]
        );
        assert_eq!(s.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["s2"]);
        assert_eq!(
            s.take_changed().map(|k| k.len()),
            Some(2),
            "the read side hears of it"
        );
        assert!(s.remove("s2") && !s.remove("s2"));
        // A session two users named goes with either of them.
        s.push_owned("shared", 5, Some("u3"), None);
        s.push_owned("shared", 6, Some("u4"), None);
        assert_eq!(s.remove_owned_by("u3"), ["shared".into()] as [Box<str>; 1]);
        // One named by more users than are remembered goes with any user.
        for n in 0..=MAX_OWNERS {
            s.push_owned("crowded", 7, Some(&format!("c{n}")), None);
        }
        s.push_owned("other", 8, Some("c0"), None);
        assert_eq!(
            s.remove_owned_by("someone-else"),
            ["crowded".into()] as [Box<str>; 1]
        );
        // An unowned history writes what it wrote before owners existed.
        let mut plain = Histories::new(2, 2);
        plain.push("a", 1);
        assert!(
            !serde_json::to_string(&plain)
                .expect("ser")
                .contains("owner")
        );
    }

    #[test]
    fn idle_keys_expire_by_event_time_least_recent_first() {
        let mut s = Histories::new(10, 5);
        s.push_owned("a", 1, None, Some(1_000));
        s.push_owned("b", 2, None, Some(2_000));
        s.push_owned("c", 3, None, Some(3_000));
        s.push_owned("a", 4, None, Some(3_500));
        assert_eq!(
            s.expire_idle(2_500),
            1,
            "b, the least recently active and idle since 2000"
        );
        assert_eq!(s.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["c", "a"]);
        assert_eq!(s.expire_idle(2_500), 0);
        let back: Histories =
            serde_json::from_str(&serde_json::to_string(&s).expect("ser")).expect("de");
        assert_eq!(back, s, "the times are state");
        assert_eq!(s.expire_idle(4_000), 2);
        assert!(s.is_empty());
    }

    proptest! {
        /// Against the obvious model: a list, most recent last, without repeats.
        #[test]
        fn matches_a_plain_list(items in proptest::collection::vec(0u32..20, 0..200), cap in 1usize..12) {
            let mut h = ItemHistory::default();
            let mut model: Vec<u32> = Vec::new();
            for &i in &items {
                h.push(i, cap);
                model.retain(|&m| m != i);
                model.push(i);
                if model.len() > cap {
                    model.remove(0);
                }
            }
            let recent: Vec<u32> = h.recent().collect();
            let want: Vec<u32> = model.iter().rev().copied().collect();
            prop_assert_eq!(recent, want);
            for i in 0..20 {
                prop_assert_eq!(h.contains(i), model.contains(&i));
            }
        }
    }
}
