//! Drift of what the engine sees and serves: the population stability index (PSI) of each
//! monitored feature, each closed event-time window against the previous one.
//!
//! Monitored: the events' item mix and kind mix, and, from the impressions (their logged
//! features, see `streamrec_proto::logged_features`), every re-ranker input and the
//! re-ranker's score. Windows are tumbling, of [`DriftConfig::window_ms`] event time, and
//! close by the same watermark as every other window, so a replay reports the same drift at
//! the same point. Drift is for operators: nothing learned reads it.

mod psi;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
pub use streamrec_proto::drift::{MAJOR_PSI, MODERATE_PSI};
use streamrec_proto::{
    DriftAlert, DriftStatus, EventKind, EventTimeSpan, FeatureDrift, Impression,
};

use crate::candidates::{FEATURE_NAMES, FEATURE_SET, FEATURES};
use crate::windows::{SlidingWindows, Window, WindowSpec};

pub use psi::{BinCounts, FINE_BINS, PSI_FLOOR, categorical_psi, fine_bin, numeric_psi};

// Every field defaults, so a config file names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftConfig {
    /// Width of a drift window, in event time.
    pub window_ms: i64,
    /// Bins per feature.
    pub bins: usize,
    /// Values a window needs (and its reference) before its PSI is reported: below it the
    /// PSI is mostly sampling noise (about `(bins − 1) · 2 / n` for an unchanged mix).
    pub min_count: u64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            window_ms: 60 * 60 * 1000,
            bins: 10,
            min_count: 200,
        }
    }
}

impl DriftConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Every monitored feature's drift in the latest closed window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub window: Window,
    pub features: Vec<FeatureDrift>,
}

/// Alerts not yet taken, and whether the report changed since the read side looked: an
/// outbox, not state (a restored learner starts with none), so it never takes part in
/// comparing two learners.
#[derive(Debug, Clone, Default)]
struct Outbox {
    alerts: Vec<DriftAlert>,
    changed: bool,
}

impl PartialEq for Outbox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The widest drift window: a week (wider ones would hardly ever close).
pub const MAX_WINDOW_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Alerts kept for a caller that never takes them (an offline replay).
const MAX_PENDING_ALERTS: usize = 64;

/// The monitored features, by id: the item mix, the kind mix, the re-ranker's inputs, its
/// score.
const ITEM: u16 = 0;
const KIND: u16 = 1;
const FIRST_INPUT: u16 = 2;
const RERANK_SCORE: u16 = FIRST_INPUT + FEATURES as u16;
const MONITORED: u16 = RERANK_SCORE + 1;

/// The name of monitored feature `id`.
fn feature_name(id: u16) -> String {
    match id {
        ITEM => "item".to_owned(),
        KIND => "kind".to_owned(),
        RERANK_SCORE => "rerank_score".to_owned(),
        input => FEATURE_NAMES
            .get(usize::from(input - FIRST_INPUT))
            .map_or_else(|| format!("feature_{input}"), |n| format!("candidate.{n}")),
    }
}

fn is_categorical(id: u16) -> bool {
    id == ITEM || id == KIND
}

/// The names of the monitored features, in report order.
pub fn monitored_features() -> Vec<String> {
    (0..MONITORED).map(feature_name).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredDrift")]
pub struct DriftMonitor {
    windows: SlidingWindows<u16, BinCounts>,
    bins: usize,
    min_count: u64,
    /// Per feature, its latest closed window that held values: the next one's reference.
    last: BTreeMap<u16, (Window, BinCounts)>,
    report: Option<DriftReport>,
    #[serde(skip)]
    outbox: Outbox,
}

/// [`DriftMonitor`] as stored, before it is checked.
#[derive(Deserialize)]
struct StoredDrift {
    windows: SlidingWindows<u16, BinCounts>,
    bins: usize,
    min_count: u64,
    last: BTreeMap<u16, (Window, BinCounts)>,
    report: Option<DriftReport>,
}

impl TryFrom<StoredDrift> for DriftMonitor {
    type Error = String;

    fn try_from(s: StoredDrift) -> Result<Self, String> {
        let WindowSpec::Tumbling { size_ms } = s.windows.spec() else {
            return Err("drift windows that are not tumbling".to_owned());
        };
        if !(1..=MAX_WINDOW_MS).contains(&size_ms) || !(2..=1000).contains(&s.bins) {
            return Err("a drift window or bin count out of range".to_owned());
        }
        Ok(Self {
            windows: s.windows,
            bins: s.bins,
            min_count: s.min_count,
            last: s.last,
            report: s.report,
            outbox: Outbox::default(),
        })
    }
}

impl Default for DriftMonitor {
    fn default() -> Self {
        Self::new(&DriftConfig::default())
    }
}

impl DriftMonitor {
    /// A monitor for `config` (an out-of-range window or bin count takes the default's:
    /// the API's config check refuses them first).
    pub fn new(config: &DriftConfig) -> Self {
        let defaults = DriftConfig::default();
        let size_ms = if (1..=MAX_WINDOW_MS).contains(&config.window_ms) {
            config.window_ms
        } else {
            defaults.window_ms
        };
        Self {
            windows: tumbling(size_ms),
            bins: if (2..=1000).contains(&config.bins) {
                config.bins
            } else {
                defaults.bins
            },
            min_count: config.min_count,
            last: BTreeMap::new(),
            report: None,
            outbox: Outbox::default(),
        }
    }

    /// Counts an event (not late: the caller checked) on `item` (its dense id).
    pub fn observe_event(&mut self, ts: i64, item: u32, kind: EventKind) {
        let mut items = BinCounts::default();
        items.add(item);
        self.windows.add(&ITEM, ts, &items);
        let mut kinds = BinCounts::default();
        kinds.add(EventKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u32);
        self.windows.add(&KIND, ts, &kinds);
    }

    /// Counts what an impression logged, at event time `ts` (not late: the caller moved it to
    /// the watermark if it was): each shown item's re-ranker inputs and its score, when
    /// logged in this build's layout.
    pub fn observe_impression(&mut self, ts: i64, impression: &Impression) {
        let layout_known = impression
            .logged
            .as_ref()
            .is_some_and(|log| log.set == FEATURE_SET);
        let mut inputs = vec![BinCounts::default(); FEATURES];
        let mut scores = BinCounts::default();
        for item in &impression.items {
            if let Some(features) = item.candidate_features.as_ref().filter(|_| layout_known)
                && features.0.len() == FEATURES
            {
                for (counts, value) in inputs.iter_mut().zip(&features.0) {
                    if let Some(bin) = fine_bin(f64::from(*value)) {
                        counts.add(bin);
                    }
                }
            }
            // A score of another layout's inputs is another model's: not this one's drift.
            if let Some(bin) = item
                .rerank_score
                .filter(|_| layout_known)
                .and_then(|s| fine_bin(f64::from(s)))
            {
                scores.add(bin);
            }
        }
        for (n, counts) in inputs.iter().enumerate() {
            if !counts.is_empty() {
                self.windows.add(&(FIRST_INPUT + n as u16), ts, counts);
            }
        }
        if !scores.is_empty() {
            self.windows.add(&RERANK_SCORE, ts, &scores);
        }
    }

    /// Closes the windows ending at or before `watermark`, reporting each against its
    /// reference.
    pub fn close_through(&mut self, watermark: i64) {
        let mut closed: Vec<(u16, Window, BinCounts)> = Vec::new();
        self.windows.close_through(watermark, |id, window, counts| {
            closed.push((*id, window, counts.clone()));
        });
        // Emitted in order of end: each window's features together.
        let mut rest = closed.as_slice();
        while let Some((_, window, _)) = rest.first() {
            let n = rest.iter().take_while(|(_, w, _)| w == window).count();
            let (this, after) = rest.split_at(n);
            self.report_window(*window, this);
            rest = after;
        }
    }

    fn report_window(&mut self, window: Window, closed: &[(u16, Window, BinCounts)]) {
        let previous = self.report.take();
        let features: Vec<FeatureDrift> = (0..MONITORED)
            .map(|id| {
                let counts = closed.iter().find(|(c, _, _)| *c == id).map(|(_, _, c)| c);
                self.feature_drift(id, counts)
            })
            .collect();
        for drift in &features {
            let was_major = previous.as_ref().is_some_and(|p| {
                p.features
                    .iter()
                    .any(|f| f.name == drift.name && f.status == DriftStatus::Major)
            });
            if let (DriftStatus::Major, false, Some(psi), Some(reference)) =
                (drift.status, was_major, drift.psi, drift.reference)
            {
                if self.outbox.alerts.len() >= MAX_PENDING_ALERTS {
                    self.outbox.alerts.remove(0);
                }
                self.outbox.alerts.push(DriftAlert {
                    feature: drift.name.clone(),
                    psi,
                    status: DriftStatus::Major,
                    window: span(window),
                    reference,
                });
            }
        }
        for (id, _, counts) in closed {
            self.last.insert(*id, (window, counts.clone()));
        }
        self.report = Some(DriftReport { window, features });
        self.outbox.changed = true;
    }

    fn feature_drift(&self, id: u16, counts: Option<&BinCounts>) -> FeatureDrift {
        let count = counts.map_or(0, BinCounts::total);
        let reference = self.last.get(&id);
        let reference_count = reference.map_or(0, |(_, c)| c.total());
        let psi = match (counts, reference) {
            (Some(now), Some((_, before)))
                if count >= self.min_count.max(1) && reference_count >= self.min_count.max(1) =>
            {
                Some(if is_categorical(id) {
                    categorical_psi(before, now, self.bins)
                } else {
                    numeric_psi(before, now, self.bins)
                })
            }
            _ => None,
        };
        FeatureDrift {
            name: feature_name(id),
            psi,
            status: psi.map_or(DriftStatus::NoData, DriftStatus::of),
            count,
            reference: reference.map(|(w, _)| span(*w)),
            reference_count,
        }
    }

    /// The latest closed window's report.
    pub fn report(&self) -> Option<&DriftReport> {
        self.report.as_ref()
    }

    pub fn window_ms(&self) -> i64 {
        self.windows.spec().size_ms()
    }

    /// Takes the alerts raised since the last call.
    pub fn take_alerts(&mut self) -> Vec<DriftAlert> {
        std::mem::take(&mut self.outbox.alerts)
    }

    /// Whether the report changed since the last call.
    pub(crate) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.outbox.changed)
    }
}

fn span(window: Window) -> EventTimeSpan {
    EventTimeSpan {
        start: window.start,
        end: window.end,
    }
}

/// Tumbling windows of `size_ms` (positive: the caller checked).
fn tumbling(size_ms: i64) -> SlidingWindows<u16, BinCounts> {
    match SlidingWindows::new(WindowSpec::Tumbling { size_ms }) {
        Ok(windows) => windows,
        Err(_) => unreachable!("a tumbling window of positive width is valid"),
    }
}
