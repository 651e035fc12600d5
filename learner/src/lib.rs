//! Online learners and streaming state of streamrec.
//!
//! Pure, synchronous and deterministic: no I/O, no runtime, no clock. Time is the event time
//! carried by the events themselves, so a replayed log yields the same state as the live run.

pub mod dedup;
pub mod popularity;
pub mod session;

pub use dedup::RecentIds;
pub use popularity::{Popularity, PopularityConfig, PopularityView};
pub use session::SessionHistory;
