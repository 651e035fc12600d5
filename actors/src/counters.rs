//! What the engine counts as it goes: stream positions, ingest counts and freshness. Every
//! actor that counts gets the one `Arc<Counters>` in its arguments; `/v1/stats` and
//! `/readyz` read it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters of the ingest path. Each also feeds the Prometheus metric of the same name.
#[derive(Default)]
pub struct Counters {
    /// Last stream sequence the learner has applied: where a consumer (re)starts after it.
    pub applied_seq: AtomicU64,
    /// Last sequence of the items stream the catalog has applied.
    pub items_seq: AtomicU64,
    /// Sequence of the snapshot the learner last restored (0: none).
    pub restored_seq: AtomicU64,
    events_applied: AtomicU64,
    duplicates_skipped: AtomicU64,
    redeliveries: AtomicU64,
    dead_lettered: AtomicU64,
    late_events: AtomicU64,
    items_upserted: AtomicU64,
    impressions: AtomicU64,
    impressions_dropped: AtomicU64,
    bandit_rewards: AtomicU64,
    snapshots_written: AtomicU64,
    snapshots_skipped: AtomicU64,
    state_digests_checked: AtomicU64,
    state_divergences: AtomicU64,
    /// Bus append to learned, in milliseconds, of the newest event of the last batch.
    freshness_ms: AtomicU64,
    /// The generation of the learner whose writes count: a killed learner's batch may still
    /// finish on its thread after its successor has restored, and must not then move
    /// `applied_seq` (where the restarted consumers resume) or the published version.
    learner: Mutex<u64>,
}

impl Counters {
    /// Makes the caller the learner whose writes count from now on; its generation.
    pub fn new_learner(&self) -> u64 {
        let mut current = self.learner.lock().unwrap_or_else(|p| p.into_inner());
        *current += 1;
        *current
    }

    /// Runs `write` if `generation` is still the current learner's, holding the fence
    /// while it runs so that no successor takes over in the middle of it.
    pub fn if_current_learner<R>(&self, generation: u64, write: impl FnOnce() -> R) -> Option<R> {
        let current = self.learner.lock().unwrap_or_else(|p| p.into_inner());
        (*current == generation).then(write)
    }

    /// Bus append to learned of the newest event just learned (`published_ms`: when the bus
    /// stored it). Its version is served within one publish interval after.
    pub fn record_freshness(&self, published_ms: i64) {
        let now = streamrec_proto::now_millis();
        let ms = u64::try_from(now.saturating_sub(published_ms)).unwrap_or(0);
        self.freshness_ms.store(ms, Ordering::Relaxed);
        metrics::gauge!("streamrec_freshness_seconds").set(ms as f64 / 1000.0);
    }

    /// See [`Self::record_freshness`]; 0 before any event.
    pub fn freshness_ms(&self) -> u64 {
        self.freshness_ms.load(Ordering::Relaxed)
    }
}

/// A point-in-time copy of [`Counters`]' counts, as served by `GET /v1/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub events_applied: u64,
    pub duplicates_skipped: u64,
    pub redeliveries: u64,
    pub dead_lettered: u64,
    /// Events stamped behind the watermark: in no window, republished to `streamrec.late.*`.
    pub late_events: u64,
    pub items_upserted: u64,
    pub impressions: u64,
    pub impressions_dropped: u64,
    pub bandit_rewards: u64,
    pub snapshots_written: u64,
    /// Snapshots found corrupt at restore and skipped.
    pub snapshots_skipped: u64,
    /// State digests compared with the cluster's (equal, or the first at their sequence).
    pub state_digests_checked: u64,
    /// State digests that differed from the cluster's (each announced).
    pub state_divergences: u64,
}

macro_rules! counter_methods {
    ($($field:ident => $metric:literal),* $(,)?) => {
        impl Counters {
            $(
                pub fn $field(&self, n: u64) {
                    self.$field.fetch_add(n, Ordering::Relaxed);
                    metrics::counter!($metric).increment(n);
                }
            )*

            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($field: self.$field.load(Ordering::Relaxed)),* }
            }
        }
    };
}

counter_methods! {
    events_applied => "streamrec_events_applied_total",
    duplicates_skipped => "streamrec_events_duplicate_total",
    redeliveries => "streamrec_bus_redeliveries_total",
    dead_lettered => "streamrec_dead_lettered_total",
    late_events => "streamrec_late_events_total",
    items_upserted => "streamrec_items_upserted_total",
    impressions => "streamrec_impressions_total",
    impressions_dropped => "streamrec_impressions_dropped_total",
    bandit_rewards => "streamrec_bandit_rewards_total",
    snapshots_written => "streamrec_snapshots_written_total",
    snapshots_skipped => "streamrec_snapshots_skipped_total",
    state_digests_checked => "streamrec_state_digests_checked_total",
    state_divergences => "streamrec_state_divergences_total",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_learner_writes() {
        let counters = Counters::default();
        let old = counters.new_learner();
        assert_eq!(counters.if_current_learner(old, || 1), Some(1));
        let new = counters.new_learner();
        assert_ne!(old, new);
        assert_eq!(counters.if_current_learner(old, || 2), None);
        assert_eq!(counters.if_current_learner(new, || 3), Some(3));
    }
}
