//! The learners' clock in event time, which no single event can move.
//!
//! Taking the latest event time as "now" lets one event stamped far ahead (or a few, up to
//! the allowed skew) move every time-decayed model there: its own weight is inflated and
//! every other item's relative weight collapses. This clock is the K-th latest event time
//! seen (K = 4): it advances when K events agree that time has passed, so fewer than K
//! outliers cannot move it, and in an ordered stream it trails the newest event by K events
//! only. The price: after a jump in time, the first K - 1 events of the new time are counted
//! at the old one.
//! It is learner state, a function of the stream alone, so replays agree on it.

use serde::{Deserialize, Serialize};

/// Events that must agree before the clock moves.
pub const AGREEING_EVENTS: usize = 4;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventClock {
    /// The latest event times seen, ascending, at most [`AGREEING_EVENTS`].
    latest: Vec<i64>,
    /// The clock once K events were seen; it never goes back.
    #[serde(default)]
    settled: Option<i64>,
}

impl EventClock {
    /// Records an event at `ts`; returns the time its contribution is counted at: `ts`, or
    /// the clock if `ts` is ahead of it.
    pub fn observe(&mut self, ts: i64) -> i64 {
        if self.latest.len() < AGREEING_EVENTS {
            let at = self.latest.partition_point(|&t| t <= ts);
            self.latest.insert(at, ts);
        } else if ts > self.latest[0] {
            self.latest.remove(0);
            let at = self.latest.partition_point(|&t| t <= ts);
            self.latest.insert(at, ts);
        }
        if self.latest.len() == AGREEING_EVENTS {
            self.settled = self.settled.max(self.latest.first().copied());
        }
        ts.min(self.now().unwrap_or(ts))
    }

    /// The clock: the K-th latest event time, never going back; before K events, the
    /// earliest seen (`None` before any).
    pub fn now(&self) -> Option<i64> {
        self.settled.or_else(|| self.latest.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_event_from_the_future_does_not_move_the_clock() {
        let mut clock = EventClock::default();
        for ts in 0..100 {
            clock.observe(ts * 1_000);
        }
        assert_eq!(clock.now(), Some(96_000));
        // Counted at the clock, which moves by one honest event's place, not to 2096.
        assert_eq!(clock.observe(4_000_000_000_000), 97_000);
        assert_eq!(clock.now(), Some(97_000));
    }

    #[test]
    fn an_ordered_stream_moves_it_along_trailing_by_the_agreeing_events() {
        let mut clock = EventClock::default();
        for ts in 0..1_000 {
            clock.observe(ts);
        }
        assert_eq!(clock.now(), Some(1_000 - AGREEING_EVENTS as i64));
    }

    proptest! {
        #[test]
        fn fewer_outliers_than_agreeing_events_cannot_move_it(
            honest in proptest::collection::vec(0_i64..1_000_000, AGREEING_EVENTS..200),
            outliers in proptest::collection::vec(
                (10_000_000_i64..i64::MAX / 2, any::<usize>()),
                0..AGREEING_EVENTS,
            ),
        ) {
            let mut clock = EventClock::default();
            let mut all = honest.clone();
            for &(ts, at) in &outliers {
                all.insert(at % (all.len() + 1), ts);
            }
            for &ts in &all {
                let counted = clock.observe(ts);
                prop_assert!(counted <= ts);
            }
            // Never past the latest honest time, however the outliers are placed.
            let latest_honest = honest.iter().copied().max().unwrap_or(0);
            prop_assert!(clock.now().unwrap_or(0) <= latest_honest);
        }
    }
}
