//! The last few items of each recent session, least recently active sessions forgotten
//! first: the context the embeddings learn from.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionWindows {
    max_sessions: usize,
    depth: usize,
    windows: BTreeMap<String, (u64, VecDeque<String>)>,
    /// Last touch → session: the least recent first.
    order: BTreeMap<u64, String>,
    tick: u64,
}

impl SessionWindows {
    pub fn new(max_sessions: usize, depth: usize) -> Self {
        Self {
            max_sessions: max_sessions.max(1),
            depth: depth.max(1),
            windows: BTreeMap::new(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }

    /// Appends `item` to the session; returns the items before it, most recent first.
    pub fn push(&mut self, session: &str, item: &str) -> Vec<String> {
        self.tick += 1;
        let tick = self.tick;
        let (last_touch, window) = self
            .windows
            .entry(session.to_owned())
            .or_insert_with(|| (tick, VecDeque::new()));
        self.order.remove(last_touch);
        *last_touch = tick;
        let previous: Vec<String> = window.iter().rev().cloned().collect();
        window.push_back(item.to_owned());
        if window.len() > self.depth {
            window.pop_front();
        }
        self.order.insert(tick, session.to_owned());
        while self.windows.len() > self.max_sessions {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.windows.remove(&oldest);
        }
        previous
    }

    /// The session's items, most recent first.
    pub fn recent(&self, session: &str) -> Option<Vec<String>> {
        self.windows
            .get(session)
            .map(|(_, w)| w.iter().rev().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_depth_items_and_evicts_the_least_recent_session() {
        let mut w = SessionWindows::new(2, 2);
        assert!(w.push("a", "1").is_empty());
        assert_eq!(w.push("a", "2"), ["1"]);
        assert_eq!(w.push("a", "3"), ["2", "1"]);
        assert_eq!(w.recent("a"), Some(vec!["3".to_owned(), "2".to_owned()]));
        w.push("b", "x");
        w.push("a", "4");
        w.push("c", "y");
        assert!(w.recent("b").is_none(), "b was the least recently active");
        assert!(w.recent("a").is_some() && w.recent("c").is_some());
    }
}
