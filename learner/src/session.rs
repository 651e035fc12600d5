//! What a session has done: its recent items (for intent) and the items it has seen (to
//! exclude them from its recommendations). Bounded, so an idle session stays small.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use streamrec_proto::Event;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionHistory {
    capacity: usize,
    /// Most recent last; at most `capacity` entries, no repeats.
    recent: VecDeque<String>,
    /// Ordered, so equal histories serialise to equal bytes.
    seen: BTreeSet<String>,
    events: u64,
}

impl SessionHistory {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            recent: VecDeque::new(),
            seen: BTreeSet::new(),
            events: 0,
        }
    }

    /// Records one event of this session.
    pub fn apply(&mut self, event: &Event) {
        self.push(&event.item_id);
    }

    /// Records that the session met `item_id` (again: it moves to the front).
    pub fn push(&mut self, item_id: &str) {
        self.events += 1;
        if self.seen.contains(item_id)
            && let Some(pos) = self.recent.iter().position(|i| i == item_id)
        {
            self.recent.remove(pos);
        }
        self.recent.push_back(item_id.to_owned());
        self.seen.insert(item_id.to_owned());
        if self.recent.len() > self.capacity
            && let Some(evicted) = self.recent.pop_front()
        {
            self.seen.remove(&evicted);
        }
    }

    /// Items of the session, most recent first.
    pub fn recent(&self) -> impl Iterator<Item = &str> {
        self.recent.iter().rev().map(String::as_str)
    }

    pub fn has_seen(&self, item_id: &str) -> bool {
        self.seen.contains(item_id)
    }

    pub fn seen(&self) -> &BTreeSet<String> {
        &self.seen
    }

    pub fn events(&self) -> u64 {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamrec_proto::{EpochMillis, EventKind};

    fn ev(item: &str, ts: EpochMillis) -> Event {
        Event {
            event_id: format!("{item}{ts}"),
            session_id: "s".into(),
            user_id: None,
            kind: EventKind::Click,
            item_id: item.into(),
            ts,
            rec_id: None,
            position: None,
            value: None,
            context: None,
        }
    }

    #[test]
    fn recent_is_most_recent_first_without_repeats() {
        let mut h = SessionHistory::new(10);
        for (i, item) in ["a", "b", "a", "c"].into_iter().enumerate() {
            h.apply(&ev(item, i as i64));
        }
        assert_eq!(h.recent().collect::<Vec<_>>(), ["c", "a", "b"]);
        assert_eq!(h.events(), 4);
    }

    #[test]
    fn capacity_bounds_both_recent_and_seen() {
        let mut h = SessionHistory::new(2);
        for (i, item) in ["a", "b", "c"].into_iter().enumerate() {
            h.apply(&ev(item, i as i64));
        }
        assert!(!h.has_seen("a"));
        assert!(h.has_seen("b") && h.has_seen("c"));
        assert_eq!(h.seen().len(), 2);
    }
}
