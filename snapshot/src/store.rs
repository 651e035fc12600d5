//! A folder of snapshots: listing, the newest valid one, pins and retention.

use std::path::{Path, PathBuf};

use serde::Serialize;
use streamrec_learner::online::OnlineModels;
use streamrec_proto::SnapshotVersion;

use super::files::{Manifest, SnapshotError, read_manifest, read_snapshot, write_snapshot};

/// A pinned snapshot has this file in its folder; retention never removes it.
const PIN: &str = "pinned";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotInfo {
    pub version: SnapshotVersion,
    pub created_at: String,
    pub last_seq: u64,
    pub pinned: bool,
    /// Where it lies on the server's disk: for the CLI, never served to clients.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
    /// Unpinned snapshots kept, newest first.
    retain: usize,
}

impl SnapshotStore {
    pub fn new(root: impl Into<PathBuf>, retain: usize) -> Self {
        Self {
            root: root.into(),
            retain: retain.max(1),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of `version`: the type holds no separator and no `..`, so this stays
    /// inside the root.
    pub fn path(&self, version: &SnapshotVersion) -> PathBuf {
        self.root.join(version.as_str())
    }

    /// Every snapshot whose manifest reads, oldest first (by stream position, then time).
    pub fn list(&self) -> Vec<SnapshotInfo> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut infos: Vec<SnapshotInfo> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<SnapshotVersion>().is_ok())
            })
            .filter_map(|e| {
                let manifest = read_manifest(&e.path()).ok()?;
                Some(SnapshotInfo {
                    last_seq: manifest.last_seq(),
                    created_at: manifest.created_at,
                    version: manifest.version,
                    pinned: e.path().join(PIN).exists(),
                    path: e.path(),
                })
            })
            .collect();
        infos.sort_by(|a, b| (a.last_seq, &a.created_at).cmp(&(b.last_seq, &b.created_at)));
        infos
    }

    pub fn latest(&self) -> Option<SnapshotInfo> {
        self.list().pop()
    }

    pub fn manifest(&self, version: &SnapshotVersion) -> Result<Manifest, SnapshotError> {
        read_manifest(&self.path(version))
    }

    pub fn load(
        &self,
        version: &SnapshotVersion,
    ) -> Result<(Manifest, OnlineModels), SnapshotError> {
        read_snapshot(&self.path(version))
    }

    /// The newest snapshot that verifies, and the errors of the newer ones that did not.
    pub fn restore_latest(&self) -> (Option<(Manifest, OnlineModels)>, Vec<SnapshotError>) {
        let mut skipped = Vec::new();
        for info in self.list().into_iter().rev() {
            match read_snapshot(&info.path) {
                Ok(restored) => return (Some(restored), skipped),
                Err(e) => skipped.push(e),
            }
        }
        (None, skipped)
    }

    /// Writes a snapshot (its parent: the newest one) and applies retention.
    pub fn write(&self, models: &OnlineModels) -> Result<Manifest, SnapshotError> {
        let parent = self.latest().map(|i| i.version);
        let manifest = write_snapshot(&self.root, models, parent)?;
        self.apply_retention();
        Ok(manifest)
    }

    pub fn pin(&self, version: &SnapshotVersion, pinned: bool) -> Result<(), SnapshotError> {
        let dir = self.path(version);
        read_manifest(&dir)?;
        let marker = dir.join(PIN);
        let result = if pinned {
            std::fs::write(&marker, b"")
        } else {
            std::fs::remove_file(&marker).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
        };
        result.map_err(|source| SnapshotError::Io {
            path: marker,
            source,
        })
    }

    /// Removes unpinned snapshots beyond the newest `retain`.
    pub fn apply_retention(&self) {
        let unpinned: Vec<SnapshotInfo> = self.list().into_iter().filter(|i| !i.pinned).collect();
        let excess = unpinned.len().saturating_sub(self.retain);
        for old in unpinned.into_iter().take(excess) {
            if let Err(e) = std::fs::remove_dir_all(&old.path) {
                tracing::warn!(version = %old.version, error = %e, "cannot remove an old snapshot");
            }
        }
    }
}
