//! Wire contract of streamrec, version 1: events, items, API bodies, and their validation.
//!
//! Everything that crosses a process boundary is defined here, so the server, the emitters'
//! tests and the data scientist's tools agree on one shape. Unknown fields are accepted and
//! ignored, so newer emitters can talk to older servers.

pub mod api;
pub mod erasure;
pub mod event;
pub mod impression;
pub mod item;
pub mod snapshot_version;
pub mod subjects;
mod timestamp;
pub mod unique_json;
pub mod validation;

pub use api::{
    Accepted, DeletionAccepted, ErrorBody, ErrorDetail, FieldError, Recommendation,
    RecommendationResponse,
};
pub use erasure::{ItemDeletion, UserErasure};
pub use event::{Event, EventKind};
pub use impression::{Impression, ShownItem};
pub use item::Item;
pub use snapshot_version::{InvalidVersion, SnapshotVersion};
pub use timestamp::{EpochMillis, now_millis, parse_timestamp};
pub use validation::{Reason, ValidationError};

/// Version of the wire contract implemented by this crate.
pub const SCHEMA_VERSION: u32 = 1;
/// Largest accepted payload of one event or item, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Longest accepted identifier, in bytes.
pub const MAX_ID_BYTES: usize = 256;
