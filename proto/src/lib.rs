//! Wire contract of streamrec, version 1: events, items, API bodies, and their validation.
//!
//! Everything that crosses a process boundary is defined here, so the server, the emitters'
//! tests and the data scientist's tools agree on one shape. Unknown fields are accepted and
//! ignored, so newer emitters can talk to older servers.

pub mod api;
pub mod divergence;
pub mod drift;
pub mod erasure;
pub mod event;
pub mod features;
pub mod impression;
pub mod item;
pub mod json_schema;
pub mod logged_features;
pub mod snapshot_version;
pub mod subjects;
mod timestamp;
pub mod unique_json;
pub mod validation;

pub use api::{
    Accepted, DeletionAccepted, ErrorBody, ErrorDetail, FieldError, ItemDetail, Recommendation,
    RecommendationResponse, SessionDetail,
};
pub use divergence::DivergenceAlert;
pub use drift::{
    DriftAlert, DriftResponse, DriftStatus, DriftThresholds, DriftWindow, EventTimeSpan,
    FeatureDrift,
};
pub use erasure::{ItemDeletion, UserErasure};
pub use event::{Event, EventDetails, EventKind};
pub use features::{ItemFeatures, SessionFeatures, UserFeatures, WindowCounts};
pub use impression::{Impression, ShownItem};
pub use item::{Item, ItemDetails};
pub use logged_features::{FeatureLog, PackedFeatures, StreamPosition};
pub use snapshot_version::{InvalidVersion, SnapshotVersion};
pub use timestamp::{EpochMillis, now_millis, parse_timestamp};
pub use validation::{Reason, ValidationError};

/// Newest version of the wire contract (events and items) this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 2;
/// Every version read: a payload's `schema_version` (absent means 1). Version 2 only adds
/// optional fields, so a version 1 payload is read as it always was.
pub const SCHEMA_VERSIONS: std::ops::RangeInclusive<u32> = 1..=SCHEMA_VERSION;
/// Most items a list view (an event's `items`, version 2) names.
pub const MAX_LIST_ITEMS: usize = 100;
/// Largest accepted payload of one event or item, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Longest accepted identifier, in bytes.
pub const MAX_ID_BYTES: usize = 256;
