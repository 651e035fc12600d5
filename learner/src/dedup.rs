//! A bounded set of recently applied event ids: the learners' half of exactly-once.
//!
//! JetStream de-duplicates publishes inside its window; this catches what gets past it
//! (a re-publish after the window, a replay overlapping the live stream).

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

/// Remembers the last `capacity` distinct ids, forgetting the oldest first. Serialised as
/// its order alone; the set is rebuilt from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RecentIdsState", into = "RecentIdsState")]
pub struct RecentIds {
    capacity: usize,
    order: VecDeque<String>,
    members: HashSet<String>,
}

#[derive(Serialize, Deserialize)]
struct RecentIdsState {
    capacity: usize,
    order: VecDeque<String>,
}

impl From<RecentIdsState> for RecentIds {
    fn from(state: RecentIdsState) -> Self {
        let members = state.order.iter().cloned().collect();
        Self {
            capacity: state.capacity.max(1),
            order: state.order,
            members,
        }
    }
}

impl From<RecentIds> for RecentIdsState {
    fn from(ids: RecentIds) -> Self {
        Self {
            capacity: ids.capacity,
            order: ids.order,
        }
    }
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            members: HashSet::new(),
        }
    }

    /// Records `id`; returns `false` if it was already among the remembered ids.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.members.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.members.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.members.insert(id.to_owned());
        true
    }

    pub fn contains(&self, id: &str) -> bool {
        self.members.contains(id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_repeat_is_refused() {
        let mut ids = RecentIds::new(4);
        assert!(ids.insert("a"));
        assert!(!ids.insert("a"));
    }

    #[test]
    fn the_oldest_is_forgotten_first() {
        let mut ids = RecentIds::new(2);
        ids.insert("a");
        ids.insert("b");
        ids.insert("c");
        assert!(!ids.contains("a"));
        assert!(ids.contains("b") && ids.contains("c"));
        assert!(ids.insert("a"), "forgotten ids count as new");
    }

    proptest! {
        /// Within the window the set agrees with an unbounded reference set.
        #[test]
        fn agrees_with_a_full_set_inside_the_window(seq in prop::collection::vec(0u8..20, 0..200)) {
            let mut ids = RecentIds::new(1000);
            let mut reference = HashSet::new();
            for x in seq {
                let id = x.to_string();
                prop_assert_eq!(ids.insert(&id), reference.insert(id));
            }
            prop_assert_eq!(ids.len(), reference.len());
        }

        #[test]
        fn never_exceeds_capacity(seq in prop::collection::vec(0u16..500, 0..300), cap in 1usize..50) {
            let mut ids = RecentIds::new(cap);
            for x in seq {
                ids.insert(&x.to_string());
                prop_assert!(ids.len() <= cap);
            }
        }
    }
}
