//! The concurrent half of streamrec: the ractor supervision tree that ingests events from the
//! bus and feeds the learners, and the bus adapters themselves.
//!
//! ```text
//! RootSupervisor
//! ├── PopularityActor            learns every event once, publishes rankings (ArcSwap)
//! ├── SessionSupervisor
//! │   └── SessionActor × live    one per session: its history; restarted on failure
//! ├── IngestActor(items)         catalog upserts
//! └── IngestActor(events)        validate -> dead-letter | learn -> route -> ack
//! ```

pub mod bus;
pub mod engine;
pub mod error;
pub mod ingest;
pub mod popularity;
pub mod recommend;
pub mod root;
pub mod session;
pub mod session_supervisor;
pub mod shared;

pub use bus::{
    Bus, Consumer, DeadLetter, Delivery, InProcessBus, NatsBus, NatsBusConfig, Outbound, Readiness,
    Topic,
};
pub use engine::{Engine, EngineConfig};
pub use error::{BusError, EngineError};
pub use recommend::{MAX_K, Ranked};
pub use shared::{Shared, StatsSnapshot};

#[cfg(test)]
mod tests;
