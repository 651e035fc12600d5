//! Event-time windows: tumbling, sliding (hopping) and session windows over keyed streams,
//! closed by a watermark. One implementation serves every windowed feature.
//!
//! The watermark is the latest event time seen minus the allowed lateness. An event stamped
//! before it is *late*: it enters no window. Every other event is applied to each of its
//! windows, and all of them are still open (a window `[start, end)` closes once `end` is at
//! or before the watermark, and an event at or after the watermark lies in windows ending
//! after it). So a closed window is final: nothing arriving later can change it. This is
//! Kafka Streams' grace period and Flink's bounded out-of-orderness with one bound for the
//! whole stream.
//!
//! Windows are aligned to the epoch (`[k·slide, k·slide + size)`). A sliding window is the
//! sum of its panes (`slide` wide), so an event updates one pane per key, not `size/slide`
//! windows; a window is summed once, when it closes. State is a function of the in-order
//! stream alone (ordered maps, no clock, no randomness), so replays reach equal state.

mod sessions;
mod sliding;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use sessions::{OpenSession, SessionWindows};
pub use sliding::SlidingWindows;

/// What a window accumulates: merging is associative and commutative, and the default is
/// its identity, so a window's value does not depend on the order its events arrived in.
pub trait Aggregate: Clone + Default + PartialEq {
    fn merge(&mut self, other: &Self);
}

impl Aggregate for u64 {
    fn merge(&mut self, other: &Self) {
        *self = self.saturating_add(*other);
    }
}

/// A half-open span of event time, `[start, end)`, in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    pub fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }

    /// Closed as of `watermark`: no event that is not late can fall in it any more.
    pub fn is_closed(&self, watermark: i64) -> bool {
        self.end <= watermark
    }
}

/// Where event time stands: the latest event time seen, and how far behind it an event may
/// arrive and still count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    lateness_ms: i64,
    max_event_ts: Option<i64>,
}

impl Watermark {
    pub fn new(lateness_ms: i64) -> Self {
        Self {
            lateness_ms: lateness_ms.max(0),
            max_event_ts: None,
        }
    }

    /// The watermark: `None` before the first event.
    pub fn current(&self) -> Option<i64> {
        self.max_event_ts
            .map(|ts| ts.saturating_sub(self.lateness_ms))
    }

    pub fn max_event_ts(&self) -> Option<i64> {
        self.max_event_ts
    }

    pub fn lateness_ms(&self) -> i64 {
        self.lateness_ms
    }

    /// How late an event at `ts` is (ms behind the watermark), if it is.
    pub fn lateness_of(&self, ts: i64) -> Option<i64> {
        let watermark = self.current()?;
        (ts < watermark).then(|| watermark - ts)
    }

    /// Records an event at `ts` (not late, or this returns its lateness and changes
    /// nothing); returns the watermark after it.
    pub fn observe(&mut self, ts: i64) -> Result<i64, i64> {
        if let Some(late_by) = self.lateness_of(ts) {
            return Err(late_by);
        }
        self.max_event_ts = Some(self.max_event_ts.map_or(ts, |max| max.max(ts)));
        Ok(self.current().unwrap_or(ts))
    }
}

/// The spans of a window layout, checked once: widths are positive, and a sliding window is
/// a whole number of slides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowSpec {
    /// Back-to-back windows of `size_ms`.
    Tumbling { size_ms: i64 },
    /// Windows of `size_ms` starting every `slide_ms` (a hopping window).
    Sliding { size_ms: i64, slide_ms: i64 },
    /// A key's events closer than `gap_ms` to each other, merged.
    Session { gap_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowSpecError {
    #[error("window widths must be positive")]
    NotPositive,
    #[error(
        "a sliding window's size ({size_ms} ms) must be a multiple of its slide ({slide_ms} ms)"
    )]
    Misaligned { size_ms: i64, slide_ms: i64 },
}

impl WindowSpec {
    pub fn check(self) -> Result<Self, WindowSpecError> {
        match self {
            Self::Tumbling { size_ms } | Self::Session { gap_ms: size_ms } if size_ms <= 0 => {
                Err(WindowSpecError::NotPositive)
            }
            Self::Sliding { size_ms, slide_ms } if size_ms <= 0 || slide_ms <= 0 => {
                Err(WindowSpecError::NotPositive)
            }
            Self::Sliding { size_ms, slide_ms } if size_ms % slide_ms != 0 => {
                Err(WindowSpecError::Misaligned { size_ms, slide_ms })
            }
            ok => Ok(ok),
        }
    }

    /// How far apart windows start (a session window: its gap).
    pub fn slide_ms(self) -> i64 {
        match self {
            Self::Tumbling { size_ms } => size_ms,
            Self::Sliding { slide_ms, .. } => slide_ms,
            Self::Session { gap_ms } => gap_ms,
        }
    }

    /// How long a window lasts (a session window: at least its gap).
    pub fn size_ms(self) -> i64 {
        match self {
            Self::Tumbling { size_ms } | Self::Sliding { size_ms, .. } => size_ms,
            Self::Session { gap_ms } => gap_ms,
        }
    }

    /// The fixed windows holding `ts` (none for session windows, whose bounds depend on
    /// the other events): what a brute-force recomputation assigns an event to.
    pub fn windows_of(self, ts: i64) -> Vec<Window> {
        if let Self::Session { .. } = self {
            return Vec::new();
        }
        let (size, slide) = (self.size_ms(), self.slide_ms());
        let last_start = floor_to(ts, slide);
        (0..size / slide)
            .map(|k| {
                let start = last_start - k * slide;
                Window {
                    start,
                    end: start + size,
                }
            })
            .collect()
    }
}

/// `ts` rounded down to a multiple of `step` (also for negative times).
pub(crate) fn floor_to(ts: i64, step: i64) -> i64 {
    ts.div_euclid(step) * step
}
