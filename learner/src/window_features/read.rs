//! The read side of the window layer: what a request reads, copied at each publish for the
//! keys whose windows changed, and the features computed from it.

use std::collections::BTreeMap;
use std::sync::Arc;

use streamrec_proto::EventKind;
pub use streamrec_proto::{ItemFeatures, SessionFeatures, UserFeatures, WindowCounts};

use super::{Changed, ITEM_WINDOWS, ItemCounts, SessionCounts, WindowedFeatures};
use crate::candidates::WindowInputs;
use crate::windows::{OpenSession, SlidingWindows, Window};

type Map<K, V> =
    imbl::GenericHashMap<K, V, rustc_hash::FxBuildHasher, imbl::shared_ptr::DefaultSharedPtr>;

/// An item's latest closed window per [`ITEM_WINDOWS`] entry (`None`: none with events).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemWindows {
    latest: [Option<(Window, ItemCounts)>; ITEM_WINDOWS.len()],
}

/// Where `1h` and `24h` are in [`ITEM_WINDOWS`].
const HOUR: usize = 2;
const DAY: usize = 3;

impl ItemWindows {
    pub(super) fn of<K: Ord + Clone>(stores: &[SlidingWindows<K, ItemCounts>], key: &K) -> Self {
        let mut windows = Self::default();
        for (latest, store) in windows.latest.iter_mut().zip(stores) {
            *latest = store.last_closed(key).map(|(w, c)| (w, *c));
        }
        windows
    }

    fn is_empty(&self) -> bool {
        self.latest.iter().all(Option::is_none)
    }

    /// What window `n` of [`ITEM_WINDOWS`] that closed last as of `watermark` held.
    fn current(&self, n: usize, watermark: i64) -> ItemCounts {
        let slide = ITEM_WINDOWS[n].1.slide_ms();
        let end = watermark.div_euclid(slide) * slide;
        match self.latest.get(n).copied().flatten() {
            Some((window, counts)) if window.end == end => counts,
            _ => ItemCounts::default(),
        }
    }

    /// Events in the last hour over the hourly rate of the last day, both +1 smoothed.
    fn trend(&self, watermark: i64) -> f64 {
        let hour = self.current(HOUR, watermark).events as f64;
        let day = self.current(DAY, watermark).events as f64;
        (hour + 1.0) / (day / 24.0 + 1.0)
    }

    /// The re-ranker's inputs from these windows.
    pub(super) fn inputs(&self, watermark: Option<i64>) -> WindowInputs {
        let Some(watermark) = watermark else {
            return WindowInputs::default();
        };
        WindowInputs::of(
            self.current(HOUR, watermark).events,
            self.current(DAY, watermark).events,
            self.trend(watermark),
        )
    }
}

/// An immutable copy of what the window layer answers, shared between versions.
#[derive(Debug, Clone)]
pub struct WindowReads {
    watermark: Option<i64>,
    max_event_ts: Option<i64>,
    allowed_lateness_ms: i64,
    ctr_prior_strength: f64,
    category_attributes: Arc<[String]>,
    totals: ItemWindows,
    items: Map<u32, Arc<ItemWindows>>,
    sessions: Map<Arc<str>, Arc<OpenSession<SessionCounts>>>,
    users: Map<Arc<str>, Arc<OpenSession<u64>>>,
    late_events: u64,
}

impl WindowReads {
    /// The read side of `features`, built whole.
    pub fn of(features: &WindowedFeatures) -> Self {
        let mut reads = Self {
            watermark: None,
            max_event_ts: None,
            allowed_lateness_ms: features.watermark().lateness_ms(),
            ctr_prior_strength: features.ctr_prior_strength(),
            category_attributes: Arc::from(features.category_attributes()),
            totals: ItemWindows::default(),
            items: Map::default(),
            sessions: Map::default(),
            users: Map::default(),
            late_events: 0,
        };
        reads.refresh(features, Changed::default());
        reads
    }

    /// Brings this copy up to `features`, reading (and clearing) their journals.
    pub fn catch_up(&mut self, features: &mut WindowedFeatures) {
        let changed = features.take_changed();
        self.refresh(features, changed);
    }

    fn refresh(&mut self, features: &WindowedFeatures, changed: Changed) {
        let watermark = features.watermark();
        self.watermark = watermark.current();
        self.max_event_ts = watermark.max_event_ts();
        self.late_events = features.late_counts().0;
        self.totals = ItemWindows::of(features.total_stores(), &0);
        let stores = features.item_stores();
        let copy_item = |reads: &mut Self, item: u32| {
            let windows = ItemWindows::of(stores, &item);
            if windows.is_empty() {
                reads.items.remove(&item);
            } else {
                reads.items.insert(item, Arc::new(windows));
            }
        };
        match changed.items {
            Some(items) => items.into_iter().for_each(|item| copy_item(self, item)),
            None => {
                self.items = Map::default();
                let mut keys: Vec<u32> = Vec::new();
                for store in stores {
                    keys.extend(store.keys().copied());
                }
                keys.sort_unstable();
                keys.dedup();
                keys.into_iter().for_each(|item| copy_item(self, item));
            }
        }
        copy_open(
            &mut self.sessions,
            changed.sessions,
            features.session_store(),
        );
        copy_open(&mut self.users, changed.users, features.user_store());
    }

    /// The watermark the figures are as of (`None` before the first event).
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// The latest event time seen.
    pub fn max_event_ts(&self) -> Option<i64> {
        self.max_event_ts
    }

    /// Catalog attributes naming an item's categories.
    pub fn category_attributes(&self) -> &[String] {
        &self.category_attributes
    }

    pub fn allowed_lateness_ms(&self) -> i64 {
        self.allowed_lateness_ms
    }

    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Features of the item with dense id `index`: zeros (and the stream's CTR) for an item
    /// with no event in any closed window.
    pub fn item_by_index(&self, index: u32) -> Option<ItemFeatures> {
        let empty = ItemWindows::default();
        let windows = self.items.get(&index).map_or(&empty, |w| &**w);
        self.item(windows)
    }

    /// The re-ranker's inputs for the item with dense id `index`.
    pub fn window_inputs(&self, index: u32) -> WindowInputs {
        self.items
            .get(&index)
            .map_or_else(WindowInputs::default, |w| w.inputs(self.watermark))
    }

    /// Features from an item's latest closed windows, as of this copy's watermark.
    pub fn item(&self, windows: &ItemWindows) -> Option<ItemFeatures> {
        let watermark = self.watermark?;
        let counts: Vec<WindowCounts> = ITEM_WINDOWS
            .iter()
            .enumerate()
            .map(|(n, (label, spec))| {
                let slide = spec.slide_ms();
                let end = watermark.div_euclid(slide) * slide;
                let own = windows.current(n, watermark);
                let total = self.totals.current(n, watermark);
                let prior = if total.impressions > 0 {
                    (total.clicks as f64 / total.impressions as f64).min(1.0)
                } else {
                    0.0
                };
                let m = self.ctr_prior_strength;
                // Clicks can outnumber impressions (clicks the engine did not show): a rate
                // stays a rate.
                let ctr = if own.impressions as f64 + m > 0.0 {
                    (own.clicks as f64 + m * prior) / (own.impressions as f64 + m)
                } else {
                    prior
                }
                .min(1.0);
                WindowCounts {
                    window: (*label).to_owned(),
                    start: end - spec.size_ms(),
                    end,
                    events: own.events,
                    clicks: own.clicks,
                    impressions: own.impressions,
                    ctr,
                }
            })
            .collect();
        Some(ItemFeatures {
            watermark,
            windows: counts,
            trend: windows.trend(watermark),
        })
    }

    /// The session's features, while its session window is open; `categories` is left to
    /// the caller, who holds the session's items and the catalog.
    pub fn session(&self, session_id: &str) -> Option<SessionFeatures> {
        let open = self.sessions.get(session_id)?;
        let events = open.value.events.max(1) as f64;
        let share = |n: u64| n as f64 / events;
        Some(SessionFeatures {
            events: open.value.events,
            started_at: open.start,
            last_event_at: open.last,
            since_last_event_ms: self.since(open.last),
            kinds: EventKind::ALL
                .iter()
                .zip(open.value.kinds)
                .filter(|(_, n)| *n > 0)
                .map(|(kind, n)| (kind.as_str().to_owned(), share(n)))
                .collect(),
            categories: BTreeMap::new(),
        })
    }

    /// The user's activity, while the user's activity window is open.
    pub fn user(&self, user_id: &str) -> Option<UserFeatures> {
        let open = self.users.get(user_id)?;
        Some(UserFeatures {
            events: open.value,
            last_event_at: open.last,
            since_last_event_ms: self.since(open.last),
        })
    }

    fn since(&self, ts: i64) -> i64 {
        self.max_event_ts
            .map_or(0, |now| now.saturating_sub(ts).max(0))
    }
}

/// Copies the current open window of each changed key (all: `None`) into `map`.
fn copy_open<A: crate::windows::Aggregate>(
    map: &mut Map<Arc<str>, Arc<OpenSession<A>>>,
    changed: Option<Vec<String>>,
    store: &crate::windows::SessionWindows<String, A>,
) {
    let keys: Vec<String> = match changed {
        Some(keys) => keys,
        None => {
            *map = Map::default();
            store.keys().cloned().collect()
        }
    };
    for key in keys {
        match store.current(&key) {
            Some(open) => {
                map.insert(Arc::from(key.as_str()), Arc::new(open.clone()));
            }
            None => {
                map.remove(key.as_str());
            }
        }
    }
}
