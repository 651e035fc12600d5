//! Online learners and streaming state of streamrec.
//!
//! Pure, synchronous and deterministic: no I/O, no runtime, no clock. Time is the event time
//! carried by the events themselves, so a replayed log yields the same state as the live run;
//! randomness comes from seeded generators that are part of the learner state.

pub mod bandit;
pub mod best_first;
pub mod candidates;
pub mod catalog;
pub mod covisit;
pub mod dedup;
pub mod drift;
pub mod embeddings;
pub mod event_clock;
pub mod features;
pub mod ftrl;
pub mod history;
pub mod intent;
pub mod journal;
pub mod obd;
pub mod online;
pub mod ope;
mod ordered_map;
pub mod persist;
pub mod popularity;
pub mod read_side;
pub mod window_features;
pub mod windows;

pub use dedup::RecentIds;
pub use features::{Example, FeatureSpace, Namespace};
pub use ftrl::{Ftrl, FtrlConfig, log_loss, sigmoid};
pub use history::{Histories, ItemHistory};
pub use popularity::{Popularity, PopularityConfig, PopularityView};
pub use read_side::ReadSide;
