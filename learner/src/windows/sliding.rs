//! Tumbling and sliding windows per key, kept as panes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Aggregate, Window, WindowSpec, WindowSpecError, floor_to};
use crate::journal::Journal;

/// A key's open panes and where its next window closes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "A: Serialize", deserialize = "A: DeserializeOwned"))]
struct KeyPanes<A> {
    /// `(start, aggregate)`, ascending; each `slide` wide.
    panes: VecDeque<(i64, A)>,
    /// End of the next window to close: this key's one timer.
    next_close: i64,
    /// The latest closed window, while it held events.
    last: Option<(Window, A)>,
}

/// Windows of `size` every `slide` (tumbling: `slide == size`), per key, closed by the
/// watermark. Memory: one pane per key and slide within the last `size` plus the lateness,
/// and the latest closed window per key, until a later one closes empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, A: Serialize",
    deserialize = "K: DeserializeOwned + Ord, A: DeserializeOwned"
))]
pub struct SlidingWindows<K: Ord, A> {
    size_ms: i64,
    slide_ms: i64,
    keys: BTreeMap<K, KeyPanes<A>>,
    /// `(end of the next window to close, key)`: closing walks it in order of time.
    timers: BTreeSet<(i64, K)>,
    /// Keys whose latest closed window changed: for the read side.
    #[serde(skip)]
    changed: Journal<K>,
}

impl<K: Ord + Clone, A: Aggregate> SlidingWindows<K, A> {
    pub fn new(spec: WindowSpec) -> Result<Self, WindowSpecError> {
        let (size_ms, slide_ms) = match spec.check()? {
            WindowSpec::Tumbling { size_ms } => (size_ms, size_ms),
            WindowSpec::Sliding { size_ms, slide_ms } => (size_ms, slide_ms),
            WindowSpec::Session { .. } => return Err(WindowSpecError::NotPositive),
        };
        Ok(Self {
            size_ms,
            slide_ms,
            keys: BTreeMap::new(),
            timers: BTreeSet::new(),
            changed: Journal::default(),
        })
    }

    pub fn spec(&self) -> WindowSpec {
        if self.size_ms == self.slide_ms {
            WindowSpec::Tumbling {
                size_ms: self.size_ms,
            }
        } else {
            WindowSpec::Sliding {
                size_ms: self.size_ms,
                slide_ms: self.slide_ms,
            }
        }
    }

    /// Adds `value` at event time `ts` to every window of `key` that holds it. The caller
    /// has checked that `ts` is not late (see [`super::Watermark`]): its windows are open.
    pub fn add(&mut self, key: &K, ts: i64, value: &A) {
        let pane = floor_to(ts, self.slide_ms);
        let state = self.keys.entry(key.clone()).or_insert_with(|| KeyPanes {
            panes: VecDeque::new(),
            next_close: i64::MAX,
            last: None,
        });
        match state.panes.binary_search_by_key(&pane, |(start, _)| *start) {
            Ok(at) => state.panes[at].1.merge(value),
            Err(at) => state.panes.insert(at, (pane, value.clone())),
        }
        // The first window holding the pane ends one slide after it starts.
        let due = pane.saturating_add(self.slide_ms);
        if due < state.next_close {
            if state.next_close != i64::MAX {
                self.timers.remove(&(state.next_close, key.clone()));
            }
            state.next_close = due;
            self.timers.insert((due, key.clone()));
        }
    }

    /// Closes every window ending at or before `watermark`, in order of end, handing each
    /// that held events to `emit`.
    pub fn close_through(&mut self, watermark: i64, mut emit: impl FnMut(&K, Window, &A)) {
        while let Some((end, _)) = self.timers.first()
            && *end <= watermark
        {
            let Some((end, key)) = self.timers.pop_first() else {
                break;
            };
            if let Some(next) = self.close_window(&key, end, &mut emit) {
                self.timers.insert((next, key));
            }
        }
    }

    /// What [`Self::close_through`] leaves, without handing out the windows: each key's
    /// windows close one after another, so its timer leaves and rejoins the queue once per
    /// call instead of once per window (a key's windows never depend on another key's, so
    /// the order across keys changes nothing). For stores whose closed windows only serve
    /// as `latest_closed`.
    pub fn advance_to(&mut self, watermark: i64) {
        while let Some((end, _)) = self.timers.first()
            && *end <= watermark
        {
            let Some((end, key)) = self.timers.pop_first() else {
                break;
            };
            if let Some(next) = self.advance_key(&key, end, watermark) {
                self.timers.insert((next, key));
            }
        }
    }

    /// Closes `key`'s windows from the one ending at `end` (its timer, taken off the
    /// queue) through the last ending at or before `watermark`, as [`Self::close_window`]
    /// would one by one, but totalling only the last: the only one a later read sees. A
    /// key's 24 h windows slide hourly, so this is one pass over its panes where closing
    /// each window was 24. The end of its next window to close, or `None` once forgotten.
    fn advance_key(&mut self, key: &K, mut end: i64, watermark: i64) -> Option<i64> {
        let (size, slide) = (self.size_ms, self.slide_ms);
        let state = self.keys.get_mut(key)?;
        let mut had_last = state.last.is_some();
        let mut changed = false;
        loop {
            let start = end - size;
            // Panes before a closed window's successor are dropped as it closes, so what
            // is left of them starts inside the window (the check keeps it exact anyway).
            let in_window = |(pane, _): &&(i64, A)| *pane >= start;
            let held = state
                .panes
                .iter()
                .take_while(|(pane, _)| *pane < end)
                .any(|p| in_window(&p));
            changed |= had_last || held;
            let kept = state
                .panes
                .partition_point(|(pane, _)| *pane < start + slide);
            let next = match state.panes.get(kept) {
                Some((pane, _)) => Some((end + slide).max(pane + slide)),
                None if held => Some(end + slide),
                None => None,
            };
            let last_window = next.is_none_or(|next| next > watermark);
            if last_window {
                let mut total: Option<A> = None;
                for (_, value) in state
                    .panes
                    .iter()
                    .take_while(|(pane, _)| *pane < end)
                    .filter(in_window)
                {
                    total.get_or_insert_with(A::default).merge(value);
                }
                state.last = total.map(|total| (Window { start, end }, total));
            }
            state.panes.drain(..kept);
            let Some(next) = next else {
                self.keys.remove(key);
                if changed {
                    self.changed.record(key.clone());
                }
                return None;
            };
            state.next_close = next;
            if last_window {
                if changed {
                    self.changed.record(key.clone());
                }
                return Some(next);
            }
            had_last = held;
            end = next;
        }
    }

    /// Closes `key`'s window ending at `end` (its timer, taken off the queue): the end of
    /// its next window to close, or `None` once the key is forgotten.
    fn close_window(
        &mut self,
        key: &K,
        end: i64,
        emit: &mut impl FnMut(&K, Window, &A),
    ) -> Option<i64> {
        let state = self.keys.get_mut(key)?;
        let window = Window {
            start: end - self.size_ms,
            end,
        };
        let mut total: Option<A> = None;
        for (start, value) in &state.panes {
            if *start >= end {
                break;
            }
            if *start >= window.start {
                total.get_or_insert_with(A::default).merge(value);
            }
        }
        let had_last = state.last.is_some();
        if let Some(total) = &total {
            emit(key, window, total);
        }
        state.last = total.map(|total| (window, total));
        if had_last || state.last.is_some() {
            self.changed.record(key.clone());
        }
        // Panes before the next window's start belong to no window still open.
        let next_start = window.start + self.slide_ms;
        while state
            .panes
            .front()
            .is_some_and(|(start, _)| *start < next_start)
        {
            state.panes.pop_front();
        }
        let next = match state.panes.front() {
            Some((pane, _)) => (end + self.slide_ms).max(pane + self.slide_ms),
            // One more timer, to forget the key once its last window is no longer the latest.
            None if state.last.is_some() => end + self.slide_ms,
            None => {
                self.keys.remove(key);
                return None;
            }
        };
        state.next_close = next;
        Some(next)
    }

    /// The latest window closed as of `watermark` (the one ending at the last slide
    /// boundary at or before it) and what it held; `None` when it held no event of `key`.
    /// Only exact once [`Self::close_through`] has run for `watermark`.
    pub fn latest_closed(&self, key: &K, watermark: i64) -> Option<(Window, &A)> {
        self.last_closed(key)
            .filter(|(window, _)| window.end == self.latest_end(watermark))
    }

    /// The end of the latest window closed as of `watermark`.
    pub fn latest_end(&self, watermark: i64) -> i64 {
        floor_to(watermark, self.slide_ms)
    }

    /// The last window of `key` that closed holding events, however long ago (a read side
    /// copies it, and checks it against its own watermark with [`Self::latest_end`]).
    pub fn last_closed(&self, key: &K) -> Option<(Window, &A)> {
        let (window, value) = self.keys.get(key)?.last.as_ref()?;
        Some((*window, value))
    }

    /// The open windows of `key` with events, and what each holds so far.
    pub fn open(&self, key: &K) -> Vec<(Window, A)> {
        let Some(state) = self.keys.get(key) else {
            return Vec::new();
        };
        let mut windows: BTreeMap<Window, A> = BTreeMap::new();
        for (pane, value) in &state.panes {
            for window in self.spec().windows_of(*pane) {
                if window.end >= state.next_close {
                    windows.entry(window).or_default().merge(value);
                }
            }
        }
        windows.into_iter().collect()
    }

    /// Keys with any state, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.keys.keys()
    }

    /// Keys with any state (open panes, or a latest closed window).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys whose latest closed window changed since the last call; `None`: any may have.
    pub fn take_changed(&mut self) -> Option<Vec<K>> {
        self.changed.take()
    }
}
