//! Windowed features as the API shows them: an item's (`GET /v1/items/{id}`), a session's
//! (`GET /v1/sessions/{id}`), a user's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An item's windowed features, read from windows closed as of `watermark` (final: a
/// replay of the stream computes the same values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ItemFeatures {
    /// Event time (epoch ms) the figures are as of.
    pub watermark: i64,
    /// The latest closed window of each size, shortest first.
    pub windows: Vec<WindowCounts>,
    /// Events in the last hour over the hourly rate of the last 24 h (both +1 smoothed):
    /// above 1, the item is rising.
    pub trend: f64,
}

/// What one window of an item held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WindowCounts {
    /// `1m`, `5m`, `1h` or `24h`.
    pub window: String,
    /// Event time (epoch ms), inclusive.
    pub start: i64,
    /// Event time (epoch ms), exclusive.
    pub end: i64,
    pub events: u64,
    pub clicks: u64,
    /// Times the engine showed the item.
    pub impressions: u64,
    /// Clicks per impression, smoothed toward the whole stream's CTR in the same window.
    pub ctr: f64,
}

/// A session's features, from its open session window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionFeatures {
    /// Events in the session window.
    pub events: u64,
    /// Event time (epoch ms) of its first and latest event.
    pub started_at: i64,
    pub last_event_at: i64,
    /// From its latest event to the latest event time of the stream.
    pub since_last_event_ms: i64,
    /// Share of its events per kind.
    pub kinds: BTreeMap<String, f64>,
    /// Share of its events per catalog category.
    pub categories: BTreeMap<String, f64>,
}

/// A user's activity, from the user's open activity window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserFeatures {
    /// Events since the user's activity began (a window closed by a day's silence).
    pub events: u64,
    pub last_event_at: i64,
    pub since_last_event_ms: i64,
}
