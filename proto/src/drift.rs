//! Drift of the features, as `GET /v1/drift` reports it and `streamrec.alerts.drift`
//! announces it: the population stability index of each monitored feature, one closed
//! event-time window against the one before.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// PSI at or above this: moderate drift.
pub const MODERATE_PSI: f64 = 0.1;
/// PSI at or above this: major drift, and an alert.
pub const MAJOR_PSI: f64 = 0.25;

/// Where a PSI stands: below 0.1 stable, below 0.25 moderate, else major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    Stable,
    Moderate,
    Major,
    /// The window or its reference held too few values to compare.
    NoData,
}

impl DriftStatus {
    pub fn of(psi: f64) -> Self {
        if psi >= MAJOR_PSI {
            Self::Major
        } else if psi >= MODERATE_PSI {
            Self::Moderate
        } else {
            Self::Stable
        }
    }
}

/// A span of event time, `[start, end)`, epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventTimeSpan {
    pub start: i64,
    pub end: i64,
}

/// One feature's drift in a closed window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeatureDrift {
    /// `item` and `kind` (the events' mix), `candidate.<input>` (a re-ranker input, from the
    /// impressions' logged features), `rerank_score`.
    pub name: String,
    /// Null when the window or its reference held too few values.
    pub psi: Option<f64>,
    pub status: DriftStatus,
    /// Values counted in the window.
    pub count: u64,
    /// The window compared with: this feature's previous window that held values.
    pub reference: Option<EventTimeSpan>,
    pub reference_count: u64,
}

impl FeatureDrift {
    /// A feature with nothing to compare yet.
    pub fn no_data(name: String) -> Self {
        Self {
            name,
            psi: None,
            status: DriftStatus::NoData,
            count: 0,
            reference: None,
            reference_count: 0,
        }
    }
}

/// The window `GET /v1/drift` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftWindow {
    pub start: i64,
    pub end: i64,
    pub size_ms: i64,
}

/// `200` answer to `GET /v1/drift`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftResponse {
    /// The latest closed drift window; null before the first closes.
    pub window: Option<DriftWindow>,
    /// PSI thresholds: `moderate` and `major`.
    pub thresholds: DriftThresholds,
    pub features: Vec<FeatureDrift>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftThresholds {
    pub moderate: f64,
    pub major: f64,
}

impl Default for DriftThresholds {
    fn default() -> Self {
        Self {
            moderate: MODERATE_PSI,
            major: MAJOR_PSI,
        }
    }
}

/// What `streamrec.alerts.drift` carries: a feature that turned major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftAlert {
    pub feature: String,
    pub psi: f64,
    pub status: DriftStatus,
    pub window: EventTimeSpan,
    pub reference: EventTimeSpan,
}

impl DriftAlert {
    /// The bus's de-duplication id: one alert per feature and window, however many nodes
    /// or replays raise it.
    pub fn msg_id(&self) -> String {
        format!("drift:{}:{}", self.feature, self.window.end)
    }
}
