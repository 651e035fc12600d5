//! Windowed features over event time, for the re-ranker, `explain=true` and the API: per
//! item, events, clicks and impressions over 1 min, 5 min, 1 h and 24 h (CTR smoothed toward
//! the whole stream's, a trend of the short window over the long one); per session, its
//! length, kinds and (from its items, on the read side) the catalog's categories; per user,
//! activity and recency.
//!
//! Every figure is read from closed windows as of the watermark (see [`crate::windows`]),
//! so it is final: a replay of the stream computes the same values at the same point. The
//! exception is a session's (and a user's) own activity, read from its open session window
//! as of the latest event time: what the visitor is doing now is the point of it.

mod read;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use streamrec_proto::{Event, EventKind, Item};

use crate::windows::{Aggregate, SessionWindows, SlidingWindows, Watermark, WindowSpec};

pub use read::{
    ItemFeatures, ItemWindows, SessionFeatures, UserFeatures, WindowCounts, WindowReads,
};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// The item windows, shortest first: `(label, spec)`. Each slides by a twelfth or so of its
/// size, so a figure is at most that stale beyond the lateness.
pub const ITEM_WINDOWS: [(&str, WindowSpec); 4] = [
    ("1m", WindowSpec::Tumbling { size_ms: MINUTE_MS }),
    (
        "5m",
        WindowSpec::Sliding {
            size_ms: 5 * MINUTE_MS,
            slide_ms: MINUTE_MS,
        },
    ),
    (
        "1h",
        WindowSpec::Sliding {
            size_ms: HOUR_MS,
            slide_ms: 5 * MINUTE_MS,
        },
    ),
    (
        "24h",
        WindowSpec::Sliding {
            size_ms: 24 * HOUR_MS,
            slide_ms: HOUR_MS,
        },
    ),
];

/// Categories of one item counted in a session's mix.
const CATEGORIES_PER_ITEM: usize = 4;

// Every field defaults, so a config file names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowConfig {
    /// How far behind the latest event time an event may arrive and still count.
    pub allowed_lateness_ms: i64,
    /// Idle time (event time) that ends a session's window.
    pub session_gap_ms: i64,
    /// Idle time that ends a user's activity window.
    pub user_gap_ms: i64,
    /// Impressions' worth of the stream's CTR an item's CTR starts from.
    pub ctr_prior_strength: f64,
    /// Sessions with an open window; past it the one ending first is closed early.
    pub max_sessions: usize,
    /// Users with an open activity window, likewise.
    pub max_users: usize,
    /// Catalog attributes naming an item's categories (a string or a list of strings), the
    /// first present wins.
    pub category_attributes: Vec<String>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            allowed_lateness_ms: 5 * MINUTE_MS,
            session_gap_ms: 30 * MINUTE_MS,
            user_gap_ms: 24 * HOUR_MS,
            ctr_prior_strength: 20.0,
            max_sessions: 100_000,
            max_users: 100_000,
            category_attributes: ["category", "categories", "genres"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl WindowConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// What an item's window holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCounts {
    pub events: u64,
    pub clicks: u64,
    pub impressions: u64,
}

impl Aggregate for ItemCounts {
    fn merge(&mut self, other: &Self) {
        self.events = self.events.saturating_add(other.events);
        self.clicks = self.clicks.saturating_add(other.clicks);
        self.impressions = self.impressions.saturating_add(other.impressions);
    }
}

/// What a session's window holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCounts {
    pub events: u64,
    /// Events per kind, in [`EventKind::ALL`] order.
    pub kinds: [u64; 5],
}

impl Aggregate for SessionCounts {
    fn merge(&mut self, other: &Self) {
        self.events = self.events.saturating_add(other.events);
        for (mine, theirs) in self.kinds.iter_mut().zip(other.kinds) {
            *mine = mine.saturating_add(theirs);
        }
    }
}

/// Keys whose windows changed since the read side last looked (`None`: any may have).
#[derive(Debug, Default)]
pub(crate) struct Changed {
    pub items: Option<Vec<u32>>,
    pub sessions: Option<Vec<String>>,
    pub users: Option<Vec<String>>,
}

/// The window layer's state: learner state like any other, snapshotted with the stream.
/// A stored state is checked as it is read: windows of another layout (or a tampered file)
/// are an error, never a division by zero later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredWindows")]
pub struct WindowedFeatures {
    watermark: Watermark,
    ctr_prior_strength: f64,
    category_attributes: Vec<String>,
    /// Per item (dense id), one store per [`ITEM_WINDOWS`] entry.
    items: Vec<SlidingWindows<u32, ItemCounts>>,
    /// The whole stream (key 0), likewise: the CTR prior.
    totals: Vec<SlidingWindows<u8, ItemCounts>>,
    sessions: SessionWindows<String, SessionCounts>,
    users: SessionWindows<String, u64>,
    max_sessions: usize,
    max_users: usize,
    late_events: u64,
    late_impressions: u64,
}

/// [`WindowedFeatures`] as stored, before it is checked.
#[derive(Deserialize)]
struct StoredWindows {
    watermark: Watermark,
    ctr_prior_strength: f64,
    category_attributes: Vec<String>,
    /// Per item (dense id), one store per [`ITEM_WINDOWS`] entry.
    items: Vec<SlidingWindows<u32, ItemCounts>>,
    /// The whole stream (key 0), likewise: the CTR prior.
    totals: Vec<SlidingWindows<u8, ItemCounts>>,
    sessions: SessionWindows<String, SessionCounts>,
    users: SessionWindows<String, u64>,
    max_sessions: usize,
    max_users: usize,
    late_events: u64,
    late_impressions: u64,
}

impl TryFrom<StoredWindows> for WindowedFeatures {
    type Error = String;

    fn try_from(s: StoredWindows) -> Result<Self, String> {
        let layout: Vec<WindowSpec> = ITEM_WINDOWS.iter().map(|(_, spec)| *spec).collect();
        let specs = |stores: &[SlidingWindows<_, _>]| -> Vec<WindowSpec> {
            stores.iter().map(SlidingWindows::spec).collect()
        };
        if specs(&s.items) != layout
            || s.totals
                .iter()
                .map(SlidingWindows::spec)
                .collect::<Vec<_>>()
                != layout
        {
            return Err("item windows of another layout than this build computes".to_owned());
        }
        if s.sessions.gap_ms() <= 0 || s.users.gap_ms() <= 0 || s.watermark.lateness_ms() < 0 {
            return Err("a session gap or the lateness is out of range".to_owned());
        }
        Ok(Self {
            watermark: s.watermark,
            ctr_prior_strength: s.ctr_prior_strength,
            category_attributes: s.category_attributes,
            items: s.items,
            totals: s.totals,
            sessions: s.sessions,
            users: s.users,
            max_sessions: s.max_sessions,
            max_users: s.max_users,
            late_events: s.late_events,
            late_impressions: s.late_impressions,
        })
    }
}

impl Default for WindowedFeatures {
    fn default() -> Self {
        Self::new(&WindowConfig::default())
    }
}

impl WindowedFeatures {
    pub fn new(config: &WindowConfig) -> Self {
        Self {
            watermark: Watermark::new(config.allowed_lateness_ms),
            ctr_prior_strength: config.ctr_prior_strength.max(0.0),
            category_attributes: config.category_attributes.clone(),
            items: fixed_stores(),
            totals: fixed_stores(),
            sessions: SessionWindows::with_gap(config.session_gap_ms),
            users: SessionWindows::with_gap(config.user_gap_ms),
            max_sessions: config.max_sessions,
            max_users: config.max_users,
            late_events: 0,
            late_impressions: 0,
        }
    }

    /// Counts an event on `item` (its dense id) into its windows, unless it is late: then
    /// nothing changes and its lateness (ms behind the watermark) is returned. Only the
    /// event is read (not the catalog, a stream of its own), so the windows are a function
    /// of the events stream's order alone.
    pub fn observe_event(&mut self, event: &Event, item: u32) -> Option<i64> {
        let watermark = match self.watermark.observe(event.ts) {
            Ok(watermark) => watermark,
            Err(late_by) => {
                self.late_events += 1;
                return Some(late_by);
            }
        };
        let counts = ItemCounts {
            events: 1,
            clicks: u64::from(event.kind == EventKind::Click),
            impressions: 0,
        };
        for (store, total) in self.items.iter_mut().zip(&mut self.totals) {
            store.add(&item, event.ts, &counts);
            total.add(&0, event.ts, &counts);
        }
        let mut session = SessionCounts {
            events: 1,
            ..SessionCounts::default()
        };
        if let Some(at) = EventKind::ALL.iter().position(|k| *k == event.kind) {
            session.kinds[at] = 1;
        }
        self.sessions
            .add(&event.session_id, event.ts, &session, self.max_sessions);
        if let Some(user) = &event.user_id {
            self.users.add(user, event.ts, &1, self.max_users);
        }
        self.close_through(watermark);
        None
    }

    /// Counts one impression of each of `items` at `ts`. Impressions carry the server's
    /// time, so they never move the watermark; one stamped behind it is not counted.
    pub fn observe_impression(&mut self, ts: i64, items: impl IntoIterator<Item = u32>) -> bool {
        if self.watermark.lateness_of(ts).is_some() {
            self.late_impressions += 1;
            return false;
        }
        let shown = ItemCounts {
            impressions: 1,
            ..ItemCounts::default()
        };
        let mut total = ItemCounts::default();
        for item in items {
            for store in &mut self.items {
                store.add(&item, ts, &shown);
            }
            total.impressions += 1;
        }
        for store in &mut self.totals {
            store.add(&0, ts, &total);
        }
        true
    }

    fn close_through(&mut self, watermark: i64) {
        for store in &mut self.items {
            store.advance_to(watermark);
        }
        for store in &mut self.totals {
            store.advance_to(watermark);
        }
        self.sessions.close_through(watermark, |_, _, _| {});
        self.users.close_through(watermark, |_, _, _| {});
    }

    /// Forgets a user's activity window and the session windows of `sessions` (an
    /// erasure). Item and stream counts keep what they counted: no one user is in them.
    pub fn forget_user(&mut self, user_id: &str, sessions: &[Box<str>]) {
        self.users.remove(&user_id.to_owned());
        for session in sessions {
            self.sessions.remove(&session.to_string());
        }
    }

    pub fn watermark(&self) -> &Watermark {
        &self.watermark
    }

    /// Events that arrived behind the watermark, and impressions likewise.
    pub fn late_counts(&self) -> (u64, u64) {
        (self.late_events, self.late_impressions)
    }

    /// Open session windows (sessions active within the gap).
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The re-ranker's inputs for `item`, from the write side (training groups).
    pub fn window_inputs(&self, item: u32) -> crate::candidates::WindowInputs {
        self.item_windows(item).inputs(self.watermark.current())
    }

    /// What the read side copies of `item`.
    pub fn item_windows(&self, item: u32) -> ItemWindows {
        ItemWindows::of(&self.items, &item)
    }

    /// An item's features as of the watermark, read from the write side (offline use).
    pub fn item_features(&self, item: u32) -> Option<ItemFeatures> {
        let reads = WindowReads::of(self);
        reads.item(&self.item_windows(item))
    }

    /// Takes what changed since the read side last looked.
    pub(crate) fn take_changed(&mut self) -> Changed {
        let mut items = Some(Vec::new());
        for store in &mut self.items {
            match (store.take_changed(), items.as_mut()) {
                (Some(keys), Some(all)) => all.extend(keys),
                _ => items = None,
            }
        }
        for store in &mut self.totals {
            let _ = store.take_changed();
        }
        if let Some(items) = items.as_mut() {
            items.sort_unstable();
            items.dedup();
        }
        Changed {
            items,
            sessions: self.sessions.take_changed(),
            users: self.users.take_changed(),
        }
    }

    pub(crate) fn item_stores(&self) -> &[SlidingWindows<u32, ItemCounts>] {
        &self.items
    }

    pub(crate) fn total_stores(&self) -> &[SlidingWindows<u8, ItemCounts>] {
        &self.totals
    }

    pub(crate) fn session_store(&self) -> &SessionWindows<String, SessionCounts> {
        &self.sessions
    }

    pub(crate) fn user_store(&self) -> &SessionWindows<String, u64> {
        &self.users
    }

    pub(crate) fn category_attributes(&self) -> &[String] {
        &self.category_attributes
    }

    pub(crate) fn ctr_prior_strength(&self) -> f64 {
        self.ctr_prior_strength
    }
}

/// One store per [`ITEM_WINDOWS`] entry (constants, each valid: a unit test checks).
fn fixed_stores<K: Ord + Clone, A: Aggregate>() -> Vec<SlidingWindows<K, A>> {
    ITEM_WINDOWS
        .iter()
        .filter_map(|(_, spec)| SlidingWindows::new(*spec).ok())
        .collect()
}

/// The categories the catalog gives `item`: the first of `attributes` it has, as a string
/// or a list of strings; at most [`CATEGORIES_PER_ITEM`].
pub fn categories_of(item: &Item, attributes: &[String]) -> Vec<String> {
    let Some(found) = item
        .attributes
        .as_ref()
        .and_then(|a| attributes.iter().find_map(|name| a.get(name)))
    else {
        return Vec::new();
    };
    match found {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(values) => values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .take(CATEGORIES_PER_ITEM)
            .collect(),
        _ => Vec::new(),
    }
}
