//! Session windows per key: a key's events less than a gap apart, merged into one window.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Aggregate, Window, WindowSpec, WindowSpecError};
use crate::journal::Journal;

/// A session window still open: `[start, last + gap)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSession<A> {
    /// Its earliest event time.
    pub start: i64,
    /// Its latest event time.
    pub last: i64,
    pub value: A,
}

/// Session windows of every key, closed by the watermark once `gap` of event time passed
/// after their latest event. Memory: the open sessions only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, A: Serialize",
    deserialize = "K: DeserializeOwned + Ord, A: DeserializeOwned"
))]
pub struct SessionWindows<K: Ord, A> {
    gap_ms: i64,
    /// Each key's open sessions, by start; disjoint.
    open: BTreeMap<K, Vec<OpenSession<A>>>,
    /// `(end, key)` of every open session.
    timers: BTreeSet<(i64, K)>,
    /// Keys whose open sessions changed: for the read side.
    #[serde(skip)]
    changed: Journal<K>,
}

impl<K: Ord + Clone, A: Aggregate> SessionWindows<K, A> {
    pub fn new(spec: WindowSpec) -> Result<Self, WindowSpecError> {
        let WindowSpec::Session { gap_ms } = spec.check()? else {
            return Err(WindowSpecError::NotPositive);
        };
        Ok(Self::with_gap(gap_ms))
    }

    /// Sessions ending `gap_ms` (at least 1) after their latest event.
    pub fn with_gap(gap_ms: i64) -> Self {
        Self {
            gap_ms: gap_ms.max(1),
            open: BTreeMap::new(),
            timers: BTreeSet::new(),
            changed: Journal::default(),
        }
    }

    pub fn gap_ms(&self) -> i64 {
        self.gap_ms
    }

    /// Adds `value` at event time `ts` (not late) to `key`'s session holding it, merging the
    /// sessions it bridges, or opens one. Past `max_keys` keys with open sessions, the key
    /// whose session ends first is closed early (by stream order alone, like any eviction
    /// here).
    pub fn add(&mut self, key: &K, ts: i64, value: &A, max_keys: usize) {
        let gap = self.gap_ms;
        let overlaps = |s: &OpenSession<A>| {
            s.start < ts.saturating_add(gap) && ts < s.last.saturating_add(gap)
        };
        if let Some(sessions) = self.open.get_mut(key) {
            // The usual case: one open session, and the event extends it.
            if let [only] = sessions.as_mut_slice()
                && overlaps(only)
            {
                only.value.merge(value);
                only.start = only.start.min(ts);
                if ts > only.last {
                    self.timers
                        .remove(&(only.last.saturating_add(gap), key.clone()));
                    only.last = ts;
                    self.timers.insert((ts.saturating_add(gap), key.clone()));
                }
                self.changed.record(key.clone());
                return;
            }
        } else {
            while self.open.len() >= max_keys.max(1) {
                let Some((end, first)) = self.timers.pop_first() else {
                    break;
                };
                if let Some(sessions) = self.open.get_mut(&first) {
                    sessions.retain(|s| s.last.saturating_add(gap) != end);
                    if sessions.is_empty() {
                        self.open.remove(&first);
                    }
                }
                self.changed.record(first);
            }
        }
        let sessions = self.open.entry(key.clone()).or_default();
        let mut joined = OpenSession {
            start: ts,
            last: ts,
            value: value.clone(),
        };
        let mut kept = Vec::with_capacity(sessions.len());
        for session in sessions.drain(..) {
            if overlaps(&session) {
                self.timers
                    .remove(&(session.last.saturating_add(gap), key.clone()));
                joined.start = joined.start.min(session.start);
                joined.last = joined.last.max(session.last);
                joined.value.merge(&session.value);
            } else {
                kept.push(session);
            }
        }
        self.timers
            .insert((joined.last.saturating_add(gap), key.clone()));
        let at = kept.partition_point(|s| s.start < joined.start);
        kept.insert(at, joined);
        *sessions = kept;
        self.changed.record(key.clone());
    }

    /// Forgets every open session of `key`.
    pub fn remove(&mut self, key: &K) {
        if let Some(sessions) = self.open.remove(key) {
            for session in sessions {
                self.timers
                    .remove(&(session.last.saturating_add(self.gap_ms), key.clone()));
            }
            self.changed.record(key.clone());
        }
    }

    /// Closes every session ending at or before `watermark`, in order of end, handing each
    /// to `emit`.
    pub fn close_through(&mut self, watermark: i64, mut emit: impl FnMut(&K, Window, &A)) {
        while let Some((end, _)) = self.timers.first()
            && *end <= watermark
        {
            let Some((end, key)) = self.timers.pop_first() else {
                break;
            };
            let Some(sessions) = self.open.get_mut(&key) else {
                continue;
            };
            if let Some(at) = sessions
                .iter()
                .position(|s| s.last.saturating_add(self.gap_ms) == end)
            {
                let session = sessions.remove(at);
                emit(
                    &key,
                    Window {
                        start: session.start,
                        end,
                    },
                    &session.value,
                );
            }
            if sessions.is_empty() {
                self.open.remove(&key);
            }
            self.changed.record(key);
        }
    }

    /// `key`'s open sessions, by start.
    pub fn open(&self, key: &K) -> &[OpenSession<A>] {
        self.open.get(key).map_or(&[], Vec::as_slice)
    }

    /// `key`'s most recent open session.
    pub fn current(&self, key: &K) -> Option<&OpenSession<A>> {
        self.open(key).iter().max_by_key(|s| s.last)
    }

    /// Keys with an open session, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.open.keys()
    }

    /// Keys with an open session.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Keys whose open sessions changed since the last call; `None`: any may have.
    pub fn take_changed(&mut self) -> Option<Vec<K>> {
        self.changed.take()
    }
}
