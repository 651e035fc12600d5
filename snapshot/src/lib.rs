//! Versioned snapshots of the learners: one file per learner (safetensors for tensors, JSON
//! for the rest), a manifest naming each file with its SHA-256 and the stream sequence the
//! state has applied, written atomically, restored by replaying the stream from there.

mod files;
mod store;
mod summary;

pub use files::{
    LEARNERS, MANIFEST, Manifest, SnapshotError, decode_learners, is_snapshot_file, learner_file,
    parse_manifest, read_snapshot, state_digest, write_snapshot,
};
pub use store::{SnapshotInfo, SnapshotStore};
pub use summary::{diff, summarize};

#[cfg(test)]
mod tests;
