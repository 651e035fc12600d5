//! The concurrent half of streamrec: the ractor supervision tree that ingests events from the
//! bus and feeds the learners, and the bus adapters themselves.
//!
//! ```text
//! RootSupervisor
//! ├── LearnerActor               learns every event and impression once, in stream order;
//! │                              publishes serving versions (ArcSwap)
//! ├── SnapshotActor              periodic and on-demand snapshots of the learner
//! ├── IngestActor(items)         catalog upserts
//! └── IngestActor(events)        validate -> dead-letter | learn -> route -> ack
//! ```
//!
//! Beside the tree: the intent index refresher (ANN over the live embeddings) and the
//! re-ranker's micro-batching worker.

pub mod background;
pub mod bus;
pub mod counters;
pub mod engine;
pub mod engine_config;
pub mod error;
pub mod impressions;
pub mod ingest;
pub mod intent_index;
pub mod intent_refresher;
pub mod learner;
pub mod recommend;
pub mod rerank_batcher;
pub mod rerank_trainer;
pub mod root;
pub mod serving;
pub mod shadow;
pub mod snapshot_actor;

pub use bus::{
    Bus, Consumer, DeadLetter, Delivery, DurableRecovery, InProcessBus, NatsBus, NatsBusConfig,
    NatsSecurity, Outbound, Readiness, Retention, StreamLimits, Topic,
};
pub use counters::{Counters, StatsSnapshot};
pub use engine::{Engine, EngineReadiness};
pub use engine_config::EngineConfig;
pub use error::{BusError, EngineError};
pub use learner::LearnerGate;
pub use rerank_batcher::BatcherConfig;
pub use serving::ServingState;
pub use streamrec_pipeline::{
    Explanation, MAX_K, Ranked, RankedItem, RecommendRequest, ServingModels,
};
pub use streamrec_ranker::{AnnBackend, ComputeDevice, HnswParams};
/// Snapshots, re-exported: the engine writes and restores them.
pub use streamrec_snapshot as snapshot;

#[cfg(test)]
mod tests;
