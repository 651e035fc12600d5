//! The history of each recent session, in stream order, least recently active sessions
//! forgotten first: the context the embeddings learn from, and what session actors are
//! seeded with after a restore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use streamrec_proto::Event;

use crate::session::SessionHistory;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionWindows {
    max_sessions: usize,
    /// Items remembered per session.
    depth: usize,
    windows: BTreeMap<String, (u64, SessionHistory)>,
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

    /// Records `event` in its session; returns the session's items before it, most recent
    /// first, at most `limit` of them.
    pub fn push(&mut self, event: &Event, limit: usize) -> Vec<String> {
        let mut previous = Vec::new();
        self.update(&event.session_id, |history| {
            previous = history.recent().take(limit).map(str::to_owned).collect();
            history.apply(event);
        });
        previous
    }

    /// Records that `key` (a session, or a user) met `item`.
    pub fn push_item(&mut self, key: &str, item: &str) {
        self.update(key, |history| history.push(item));
    }

    /// The remembered history of `key`.
    pub fn history(&self, key: &str) -> Option<&SessionHistory> {
        self.windows.get(key).map(|(_, h)| h)
    }

    /// Changes the history of `key` (creating it), marks it most recently active, and
    /// forgets the least recent beyond the limit.
    fn update(&mut self, key: &str, change: impl FnOnce(&mut SessionHistory)) {
        self.tick += 1;
        let tick = self.tick;
        let depth = self.depth;
        let (last_touch, history) = self
            .windows
            .entry(key.to_owned())
            .or_insert_with(|| (tick, SessionHistory::new(depth)));
        self.order.remove(last_touch);
        *last_touch = tick;
        change(history);
        self.order.insert(tick, key.to_owned());
        while self.windows.len() > self.max_sessions {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.windows.remove(&oldest);
        }
    }

    /// The session's items, most recent first.
    pub fn recent(&self, session: &str) -> Option<Vec<String>> {
        self.windows
            .get(session)
            .map(|(_, h)| h.recent().map(str::to_owned).collect())
    }

    /// Every remembered session's history, least recently active first.
    pub fn histories(&self) -> impl Iterator<Item = (&str, &SessionHistory)> {
        self.order
            .values()
            .filter_map(|s| self.windows.get(s).map(|(_, h)| (s.as_str(), h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamrec_proto::EventKind;

    fn ev(session: &str, item: &str) -> Event {
        Event {
            event_id: format!("{session}{item}"),
            session_id: session.into(),
            user_id: None,
            kind: EventKind::View,
            item_id: item.into(),
            ts: 0,
            rec_id: None,
            position: None,
            value: None,
            context: None,
        }
    }

    #[test]
    fn keeps_depth_items_and_evicts_the_least_recent_session() {
        let mut w = SessionWindows::new(2, 2);
        assert!(w.push(&ev("a", "1"), 5).is_empty());
        assert_eq!(w.push(&ev("a", "2"), 5), ["1"]);
        assert_eq!(w.push(&ev("a", "3"), 1), ["2"]);
        assert_eq!(w.recent("a"), Some(vec!["3".to_owned(), "2".to_owned()]));
        w.push(&ev("b", "x"), 5);
        w.push(&ev("a", "4"), 5);
        w.push(&ev("c", "y"), 5);
        assert!(w.recent("b").is_none(), "b was the least recently active");
        let order: Vec<&str> = w.histories().map(|(s, _)| s).collect();
        assert_eq!(order, ["a", "c"]);
    }
}
