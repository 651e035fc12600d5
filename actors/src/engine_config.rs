//! How an engine is set up: learners, publishing, ingest, snapshots, re-ranking and the
//! intent index.

use std::time::Duration;

use streamrec_learner::online::OnlineConfig;
use streamrec_ranker::{ComputeDevice, HnswParams};

use crate::learner::LearnerGate;
use crate::rerank_batcher::BatcherConfig;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The online learners: popularity, embeddings, bandit.
    pub online: OnlineConfig,
    /// Items kept in each published popularity ranking.
    pub popularity_view_size: usize,
    pub publish_interval: Duration,
    pub batch_size: usize,
    pub poll_wait: Duration,
    /// Events stamped further than this ahead of their arrival are dead-lettered
    /// `future_timestamp`.
    pub max_future_skew: Duration,
    /// Where snapshots are written and restored from; `None` disables them.
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// How often a snapshot is written; `None`: only on demand.
    pub snapshot_interval: Option<Duration>,
    /// Unpinned snapshots kept.
    pub snapshot_retain: usize,
    /// Where the re-ranker trains and serves.
    pub rerank_device: ComputeDevice,
    /// Whether requests are re-ranked (it trains either way); off: stage-one order.
    pub rerank: bool,
    pub batcher: BatcherConfig,
    /// The intent index: graph parameters, and how often it catches up with the embeddings.
    pub ann: HnswParams,
    pub ann_refresh: Duration,
    /// Fewest seconds between two graph rebuilds.
    pub ann_rebuild_every: Duration,
    /// `/readyz` turns 503 when the learner is further than this many events behind the bus.
    pub max_learner_lag: u64,
    /// Events-stream sequences between two digests of the learners' state, compared across
    /// the nodes of a cluster (0: never).
    pub state_digest_every: u64,
    /// Test hook: when set and closed, the learner stops inside its next batch.
    #[doc(hidden)]
    pub learner_gate: Option<LearnerGate>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            online: OnlineConfig::default(),
            popularity_view_size: 2_000,
            publish_interval: Duration::from_millis(5),
            batch_size: 512,
            poll_wait: Duration::from_millis(100),
            max_future_skew: Duration::from_secs(5 * 60),
            snapshot_dir: None,
            snapshot_interval: Some(Duration::from_secs(60)),
            snapshot_retain: 5,
            rerank_device: ComputeDevice::Cpu,
            rerank: true,
            batcher: BatcherConfig::default(),
            ann: HnswParams::default(),
            ann_refresh: Duration::from_millis(100),
            ann_rebuild_every: Duration::from_secs(10),
            max_learner_lag: 100_000,
            state_digest_every: 100_000,
            learner_gate: None,
        }
    }
}
