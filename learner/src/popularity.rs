//! Time-decayed popularity per item: the first learner, and the fallback for unknown sessions.
//!
//! Uses forward decay (Cormode et al., ICDE 2009): an event at time `t` adds
//! `w · 2^((t − L)/h)` to its item, for a landmark `L` and half-life `h`. The decayed count
//! at any time `T` is that sum times `2^(−(T − L)/h)`, a factor common to all items, so
//! ranking needs no pass over the items per event, and late events are weighted exactly.
//! When the exponent grows large, every sum is rescaled to a new landmark.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::event_clock::EventClock;
use crate::journal::Journal;
use streamrec_proto::{EpochMillis, Event, EventKind};

/// Beyond this exponent (2^60) the sums are rescaled, long before an f64 loses precision.
const MAX_EXPONENT: f64 = 60.0;

// Every field defaults, so a config file names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PopularityConfig {
    /// Time for an event's weight to halve.
    pub half_life_ms: f64,
    pub view_weight: f64,
    pub click_weight: f64,
    pub add_to_cart_weight: f64,
    pub purchase_weight: f64,
    pub rate_weight: f64,
}

impl Default for PopularityConfig {
    fn default() -> Self {
        Self {
            half_life_ms: 7.0 * 24.0 * 3600.0 * 1000.0,
            view_weight: 1.0,
            click_weight: 2.0,
            add_to_cart_weight: 4.0,
            purchase_weight: 8.0,
            rate_weight: 1.0,
        }
    }
}

impl PopularityConfig {
    pub fn weight(&self, kind: EventKind) -> f64 {
        match kind {
            EventKind::View => self.view_weight,
            EventKind::Click => self.click_weight,
            EventKind::AddToCart => self.add_to_cart_weight,
            EventKind::Purchase => self.purchase_weight,
            EventKind::Rate => self.rate_weight,
        }
    }
}

/// The learner: forward-decayed sums per item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "PopularityRecord", into = "PopularityRecord")]
pub struct Popularity {
    config: PopularityConfig,
    landmark: Option<EpochMillis>,
    /// The clock (see [`EventClock`]): scores are reported as of this time.
    watermark: EpochMillis,
    clock: EventClock,
    sums: FxHashMap<Arc<str>, f64>,
    events_applied: u64,
    /// `sums` by decreasing sum, then id: every item's decay factor is the same, so this is
    /// the ranking, kept per event so a view costs its length rather than the catalog's.
    ranking: BTreeSet<(Descending, Arc<str>)>,
    /// Items whose sum changed since the read side last looked.
    changed: Journal<Arc<str>>,
}

/// A sum ordered from high to low (sums are finite and non-negative).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Descending(f64);

impl Eq for Descending {}

impl PartialOrd for Descending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Descending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.total_cmp(&self.0)
    }
}

/// What a snapshot stores: the learner without its derived ranking.
#[derive(Serialize, Deserialize)]
struct PopularityRecord {
    config: PopularityConfig,
    landmark: Option<EpochMillis>,
    watermark: EpochMillis,
    #[serde(default)]
    clock: EventClock,
    /// Serialised in key order, so equal histories write equal bytes.
    #[serde(serialize_with = "crate::ordered_map::serialize")]
    sums: FxHashMap<Arc<str>, f64>,
    events_applied: u64,
}

impl From<PopularityRecord> for Popularity {
    fn from(record: PopularityRecord) -> Self {
        let ranking = ranking_of(&record.sums);
        Self {
            config: record.config,
            landmark: record.landmark,
            watermark: record.watermark,
            clock: record.clock,
            sums: record.sums,
            events_applied: record.events_applied,
            ranking,
            changed: Journal::default(),
        }
    }
}

impl From<Popularity> for PopularityRecord {
    fn from(p: Popularity) -> Self {
        Self {
            config: p.config,
            landmark: p.landmark,
            watermark: p.watermark,
            clock: p.clock,
            sums: p.sums,
            events_applied: p.events_applied,
        }
    }
}

fn ranking_of(sums: &FxHashMap<Arc<str>, f64>) -> BTreeSet<(Descending, Arc<str>)> {
    sums.iter()
        .map(|(id, sum)| (Descending(*sum), Arc::clone(id)))
        .collect()
}

/// An immutable ranking published for the request path.
#[derive(Debug, Clone, Default)]
pub struct PopularityView {
    /// Number of events learned when the view was made.
    pub events_applied: u64,
    /// Event time the scores are decayed to.
    pub as_of: EpochMillis,
    /// Items by decreasing score, ties by increasing id.
    pub ranked: Vec<(Arc<str>, f64)>,
}

impl Popularity {
    pub fn new(config: PopularityConfig) -> Self {
        Self {
            config,
            landmark: None,
            watermark: EpochMillis::MIN,
            clock: EventClock::default(),
            sums: FxHashMap::default(),
            events_applied: 0,
            ranking: BTreeSet::new(),
            changed: Journal::default(),
        }
    }

    pub fn config(&self) -> &PopularityConfig {
        &self.config
    }

    pub fn events_applied(&self) -> u64 {
        self.events_applied
    }

    pub fn item_count(&self) -> usize {
        self.sums.len()
    }

    /// Learns one event, counted no later than the clock: an event stamped ahead of the
    /// stream weighs what an event of now weighs.
    pub fn apply(&mut self, event: &Event) {
        let weight = self.config.weight(event.kind);
        let ts = self.clock.observe(event.ts);
        let landmark = *self.landmark.get_or_insert(ts);
        let mut exponent = self.exponent(ts, landmark);
        if exponent > MAX_EXPONENT {
            self.rescale(ts);
            exponent = 0.0;
        }
        let contribution = weight * exponent.exp2();
        match self.sums.get_key_value(event.item_id.as_str()) {
            Some((id, &sum)) => {
                let id = Arc::clone(id);
                self.ranking.remove(&(Descending(sum), Arc::clone(&id)));
                let updated = sum + contribution;
                self.sums.insert(Arc::clone(&id), updated);
                self.changed.record(Arc::clone(&id));
                self.ranking.insert((Descending(updated), id));
            }
            None => {
                let id: Arc<str> = Arc::from(event.item_id.as_str());
                self.sums.insert(Arc::clone(&id), contribution);
                self.changed.record(Arc::clone(&id));
                self.ranking.insert((Descending(contribution), id));
            }
        }
        self.watermark = self.watermark.max(self.clock.now().unwrap_or(ts));
        self.events_applied += 1;
    }

    /// Items whose sum changed since the last call; `None`: any may have.
    pub fn take_changed(&mut self) -> Option<Vec<Arc<str>>> {
        self.changed.take()
    }

    /// Each item's undecayed sum; multiplied by [`Self::decay_to_watermark`], its score.
    pub fn sum(&self, item_id: &str) -> Option<f64> {
        self.sums.get(item_id).copied()
    }

    /// Every item with its undecayed sum.
    pub fn sums(&self) -> impl Iterator<Item = (&Arc<str>, f64)> {
        self.sums.iter().map(|(k, v)| (k, *v))
    }

    /// Decayed count of `item_id` as of the latest event time.
    pub fn score(&self, item_id: &str) -> f64 {
        self.sums
            .get(item_id)
            .map_or(0.0, |sum| sum * self.decay_to_watermark())
    }

    /// The `limit` most popular items, decayed to the latest event time.
    pub fn view(&self, limit: usize) -> PopularityView {
        let decay = self.decay_to_watermark();
        let ranked = self
            .ranking
            .iter()
            .take(limit)
            .map(|(sum, id)| (Arc::clone(id), sum.0 * decay))
            .collect();
        PopularityView {
            events_applied: self.events_applied,
            as_of: self.watermark,
            ranked,
        }
    }

    fn exponent(&self, ts: EpochMillis, landmark: EpochMillis) -> f64 {
        (ts - landmark) as f64 / self.config.half_life_ms
    }

    pub fn decay_to_watermark(&self) -> f64 {
        match self.landmark {
            Some(landmark) => (-self.exponent(self.watermark, landmark)).exp2(),
            None => 0.0,
        }
    }

    fn rescale(&mut self, new_landmark: EpochMillis) {
        let Some(landmark) = self.landmark else {
            return;
        };
        let factor = (-self.exponent(new_landmark, landmark)).exp2();
        for sum in self.sums.values_mut() {
            *sum *= factor;
        }
        // One factor for all keeps the order, but the keys hold the old sums.
        self.ranking = ranking_of(&self.sums);
        self.landmark = Some(new_landmark);
        self.changed.mark_everything();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_clock::AGREEING_EVENTS;
    use proptest::prelude::*;

    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_000_000_000_000;

    fn event(item: &str, kind: EventKind, ts: EpochMillis) -> Event {
        Event {
            event_id: format!("{item}-{ts}"),
            session_id: "s".into(),
            user_id: None,
            kind,
            item_id: item.into(),
            ts,
            rec_id: None,
            position: None,
            value: None,
            context: None,
            details: Default::default(),
        }
    }

    fn hourly() -> PopularityConfig {
        PopularityConfig {
            half_life_ms: HOUR as f64,
            ..PopularityConfig::default()
        }
    }

    /// The time each event is counted at and the time scores are reported at, computed
    /// directly: the clock is the K-th latest time seen so far (never going back once K were
    /// seen; before that, the earliest seen), and the report time the latest clock reading.
    fn reference_clock(times: &[i64]) -> (Vec<i64>, i64) {
        let mut seen: Vec<i64> = Vec::new();
        let mut counted = Vec::new();
        let mut settled: Option<i64> = None;
        let mut reported = i64::MIN;
        for &ts in times {
            seen.push(ts);
            seen.sort_unstable_by(|a, b| b.cmp(a));
            if seen.len() >= AGREEING_EVENTS {
                settled = settled.max(Some(seen[AGREEING_EVENTS - 1]));
            }
            let clock = settled.unwrap_or(seen[seen.len() - 1]);
            counted.push(ts.min(clock));
            reported = reported.max(clock);
        }
        (counted, reported)
    }

    #[test]
    fn an_event_halves_after_one_half_life() {
        let mut p = Popularity::new(hourly());
        p.apply(&event("a", EventKind::View, T0));
        // The clock moves an hour once enough events agree; the first of them are counted
        // at the old time (so weigh half).
        for _ in 0..AGREEING_EVENTS {
            p.apply(&event("b", EventKind::View, T0 + HOUR));
        }
        assert!((p.score("a") - 0.5).abs() < 1e-12);
        let b = (AGREEING_EVENTS - 1) as f64 * 0.5 + 1.0;
        assert!((p.score("b") - b).abs() < 1e-12, "{}", p.score("b"));
    }

    #[test]
    fn one_event_from_the_future_does_not_inflate_its_item() {
        let mut p = Popularity::new(hourly());
        for i in 0..700 {
            p.apply(&event("real", EventKind::Purchase, T0 + i * 1_000));
        }
        // A century ahead: counted at the clock, like any event of now.
        p.apply(&event(
            "forged",
            EventKind::View,
            T0 + 100 * 365 * 24 * HOUR,
        ));
        let view = p.view(2);
        assert_eq!(&*view.ranked[0].0, "real", "{:?}", view.ranked);
        assert!(
            view.ranked[0].1 > 100.0 * view.ranked[1].1,
            "{:?}",
            view.ranked
        );
        assert!(view.as_of < T0 + HOUR, "the clock stayed in the present");
    }

    #[test]
    fn recent_beats_old_and_weights_count() {
        let mut p = Popularity::new(hourly());
        for i in 0..3 {
            p.apply(&event("old", EventKind::View, T0 + i));
        }
        for _ in 0..AGREEING_EVENTS {
            p.apply(&event("new", EventKind::View, T0 + 3 * HOUR));
        }
        for _ in 0..AGREEING_EVENTS {
            p.apply(&event("bought", EventKind::Purchase, T0 + 3 * HOUR));
        }
        let view = p.view(10);
        let order: Vec<&str> = view.ranked.iter().map(|(id, _)| &**id).collect();
        assert_eq!(order, ["bought", "new", "old"]);
    }

    #[test]
    fn ties_are_broken_by_id_so_views_are_deterministic() {
        let mut p = Popularity::new(hourly());
        for item in ["c", "a", "b"] {
            p.apply(&event(item, EventKind::View, T0));
        }
        let view = p.view(2);
        let order: Vec<&str> = view.ranked.iter().map(|(id, _)| &**id).collect();
        assert_eq!(order, ["a", "b"]);
    }

    #[test]
    fn years_of_events_stay_finite() {
        let mut p = Popularity::new(PopularityConfig {
            half_life_ms: 60_000.0,
            ..PopularityConfig::default()
        });
        for day in 0..400 {
            p.apply(&event("x", EventKind::View, T0 + day * 24 * HOUR));
        }
        let s = p.score("x");
        assert!(s.is_finite() && (1.0..1.01).contains(&s), "score {s}");
    }

    proptest! {
        /// Forward decay with rescaling equals the direct sum of w·2^(−(T−t)/h), whatever the
        /// order of the events, with t each event's time capped at the clock and T the clock.
        #[test]
        fn matches_the_direct_sum(
            evs in prop::collection::vec((0usize..5, 0usize..5, 0i64..(200 * HOUR)), 1..80),
            half_life_hours in 1i64..24,
        ) {
            let config = PopularityConfig { half_life_ms: (half_life_hours * HOUR) as f64, ..PopularityConfig::default() };
            let mut p = Popularity::new(config.clone());
            let events: Vec<Event> = evs.iter()
                .map(|&(item, kind, dt)| event(&format!("i{item}"), EventKind::ALL[kind], T0 + dt))
                .collect();
            for e in &events {
                p.apply(e);
            }
            let times: Vec<i64> = events.iter().map(|e| e.ts).collect();
            let (counted, now) = reference_clock(&times);
            for item in 0..5 {
                let id = format!("i{item}");
                let direct: f64 = events.iter()
                    .zip(&counted)
                    .filter(|(e, _)| e.item_id == id)
                    .map(|(e, &at)| config.weight(e.kind) * (-((now - at) as f64) / config.half_life_ms).exp2())
                    .sum();
                let got = p.score(&id);
                prop_assert!((got - direct).abs() <= 1e-9 * direct.max(1.0), "{id}: {got} vs {direct}");
            }
        }

        /// A view is the full ranking, cut: sorted, and never missing a better item.
        #[test]
        fn view_is_the_sorted_prefix(
            evs in prop::collection::vec((0usize..30, 0i64..(10 * HOUR)), 1..100),
            limit in 0usize..40,
        ) {
            let mut p = Popularity::new(hourly());
            for &(item, dt) in &evs {
                p.apply(&event(&format!("i{item}"), EventKind::View, T0 + dt));
            }
            let full = p.view(usize::MAX).ranked;
            let cut = p.view(limit).ranked;
            prop_assert_eq!(cut.len(), limit.min(full.len()));
            prop_assert_eq!(&full[..cut.len()], &cut[..]);
            prop_assert!(full.windows(2).all(|w| w[0].1 >= w[1].1));
        }

        /// The ranking kept per event equals sorting every item's score afresh, and survives a
        /// snapshot round trip (which stores only the sums).
        #[test]
        fn kept_ranking_equals_a_fresh_sort(
            evs in prop::collection::vec((0usize..30, 0i64..(2_000 * HOUR)), 1..200),
        ) {
            let mut sorted_evs = evs.clone();
            sorted_evs.sort_by_key(|e| e.1);
            let mut p = Popularity::new(hourly());
            for &(item, dt) in &sorted_evs {
                p.apply(&event(&format!("i{item}"), EventKind::View, T0 + dt));
            }
            let mut fresh: Vec<(String, f64)> = p
                .sums
                .keys()
                .map(|id| (id.to_string(), p.score(id)))
                .collect();
            fresh.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let kept: Vec<(String, f64)> = p
                .view(usize::MAX)
                .ranked
                .iter()
                .map(|(id, s)| (id.to_string(), *s))
                .collect();
            // Equal scores may come from sums that differ below rounding (or underflow), so
            // the order is checked by score, and membership as sets.
            let scores = |v: &[(String, f64)]| v.iter().map(|e| e.1).collect::<Vec<f64>>();
            prop_assert_eq!(scores(&kept), scores(&fresh));
            let ids = |v: &[(String, f64)]| {
                v.iter().map(|e| e.0.clone()).collect::<std::collections::BTreeSet<String>>()
            };
            prop_assert_eq!(ids(&kept), ids(&fresh));
            let json = serde_json::to_string(&p).expect("serialises");
            let restored: Popularity = serde_json::from_str(&json).expect("parses");
            prop_assert_eq!(&restored, &p);
            prop_assert!(!json.contains("ranking"));
        }
    }
}
