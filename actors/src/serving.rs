//! The read side of the engine: what a request reads without a mailbox round trip. The
//! learner replaces the published version with a pointer swap; nothing here is a lock the
//! learner holds for longer.

use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;

use crate::intent_index::IntentIndex;
use crate::shadow::ShadowSlot;
use crate::snapshot::SnapshotStore;
use streamrec_pipeline::ServingModels;

pub struct ServingState {
    /// The serving models, replaced as a whole by the learner actor.
    pub models: ArcSwap<ServingModels>,
    /// Monotonic id of the published version.
    pub model_version_number: AtomicU64,
    /// Where snapshots live, when they are enabled (pinned requests read them).
    pub snapshots: Option<SnapshotStore>,
    /// The candidate version run in shadow, if any.
    pub shadow: ShadowSlot,
    /// ANN over the live item embeddings, for intent candidates.
    pub intent_index: IntentIndex,
}

impl ServingState {
    pub fn new(snapshots: Option<SnapshotStore>) -> Self {
        Self {
            models: ArcSwap::from_pointee(ServingModels::default()),
            model_version_number: AtomicU64::new(0),
            snapshots,
            shadow: ShadowSlot::empty(),
            intent_index: IntentIndex::default(),
        }
    }

    /// Name of a published version.
    pub fn version_name(number: u64) -> String {
        format!("online-{number}")
    }

    /// Name of the version the request path currently reads.
    pub fn model_version(&self) -> String {
        Self::version_name(self.models.load().version)
    }
}

impl Default for ServingState {
    fn default() -> Self {
        Self::new(None)
    }
}
