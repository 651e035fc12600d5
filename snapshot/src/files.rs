//! The on-disk form of one snapshot: `manifest.json` plus one file per learner. What each
//! file holds is the learner's own declaration (`streamrec_learner::persist::Persistent`);
//! this module only lays states out as safetensors or JSON, and checks them against the
//! manifest.
//!
//! | learner | file | holds |
//! |---|---|---|
//! | popularity | `popularity.json` | decayed sums per item |
//! | embeddings | `embeddings.safetensors` | `input`, `output` [items × dim] f32; the ids, noise buffer and RNG as JSON metadata `state` |
//! | bandit | `bandit.safetensors` | `keys` [arms] u64, `a_inv` [arms × d × d] f64, `b` [arms × d] f64, `pulls` u64, `reward_sum` f64; the policy as metadata `state` |
//! | covisitation | `covisitation.safetensors` | `users_of`, `co_stale`, `next_stale` [items] u32; co-occurrence and transition counts as CSR (`*_offsets` u64, `*_columns` u32, `*_counts` u32); each item's ranked neighbours and successors as CSR (`neighbours_*`, `transitions_*`: `_offsets` u64, `_items` u32, `_scores` f32); ids and config as metadata `state` |
//! | reranker | `reranker.safetensors` | the MLP's weights (`first.weight` [inputs × hidden] …) f32; steps, last loss and the replay buffer as metadata `state` |
//! | catalog | `catalog.json` | the items (as the wire writes them, by id) and the items stream's last applied sequence |
//! | stream | `stream.json` | last applied sequence, watermark, de-dup window, session and user histories (dense item ids), pending decisions |

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use le_bytes::{decode_f32, decode_f64, decode_u32, decode_u64, encode};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use streamrec_learner::Popularity;
use streamrec_learner::catalog::Catalog;
use streamrec_learner::covisit::Covisitation;
use streamrec_learner::embeddings::ItemEmbeddings;
use streamrec_learner::online::{
    Bandit, OnlineConfig, OnlineCounters, OnlineModels, OnlineParts, RerankerState, StreamState,
};
use streamrec_learner::persist::{LearnerState, Persistent, StateFormat, StateTensor, TensorData};
use streamrec_proto::SnapshotVersion;

/// Each learner and the file it is stored in, in manifest order, as the learners declare
/// them: a manifest may name no other file (so no path outside the snapshot's folder can be
/// read through one).
const LEARNER_FILES: [(&str, &str); 7] = [
    (Popularity::NAME, Popularity::FILE),
    (ItemEmbeddings::NAME, ItemEmbeddings::FILE),
    (Bandit::NAME, Bandit::FILE),
    (Covisitation::NAME, Covisitation::FILE),
    (RerankerState::NAME, RerankerState::FILE),
    (StreamState::NAME, StreamState::FILE),
    (Catalog::NAME, Catalog::FILE),
];
/// Learner names, in manifest order.
pub const LEARNERS: [&str; 7] = {
    let mut names = [""; 7];
    let mut i = 0;
    while i < names.len() {
        names[i] = LEARNER_FILES[i].0;
        i += 1;
    }
    names
};
pub const MANIFEST: &str = "manifest.json";

/// The file `learner` is stored in.
pub fn learner_file(learner: &str) -> Option<&'static str> {
    LEARNER_FILES
        .iter()
        .find(|(name, _)| *name == learner)
        .map(|(_, file)| *file)
}

/// Whether `file` may appear in a snapshot folder: the manifest or a learner's file.
pub fn is_snapshot_file(file: &str) -> bool {
    file == MANIFEST || LEARNER_FILES.iter().any(|(_, f)| *f == file)
}
const FORMAT: u32 = 3;
const STATE_KEY: &str = "state";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {version} is corrupt: {reason}")]
    Corrupt { version: String, reason: String },
    #[error("no snapshot {0}")]
    NotFound(String),
    #[error("cannot encode snapshot: {0}")]
    Encode(String),
}

impl SnapshotError {
    /// The error as a client may see it: without the server's paths.
    pub fn public_message(&self) -> String {
        match self {
            SnapshotError::Io { .. } => "snapshot storage I/O failed".to_owned(),
            other => other.to_string(),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnerFile {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: SnapshotVersion,
    pub parent: Option<SnapshotVersion>,
    pub created_at: String,
    /// Last stream sequence applied, per stream (partition).
    pub stream: BTreeMap<String, u64>,
    pub config_hash: String,
    pub code_version: String,
    /// Observability counters at the time of the snapshot (not learner state).
    pub counters: OnlineCounters,
    pub config: OnlineConfig,
    pub learners: BTreeMap<String, LearnerFile>,
}

impl Manifest {
    pub fn last_seq(&self) -> u64 {
        self.stream
            .get(streamrec_proto::subjects::EVENTS_STREAM)
            .copied()
            .unwrap_or(0)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Tensors are little-endian byte buffers; these helpers stay in this module.
mod le_bytes {
    pub fn encode<T: Copy>(values: &[T], to_le: impl Fn(T) -> Vec<u8>) -> Vec<u8> {
        values.iter().flat_map(|&v| to_le(v)).collect()
    }

    fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        bytes.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    }

    pub fn decode_f32(bytes: &[u8]) -> Vec<f32> {
        chunks::<4>(bytes).map(f32::from_le_bytes).collect()
    }

    pub fn decode_f64(bytes: &[u8]) -> Vec<f64> {
        chunks::<8>(bytes).map(f64::from_le_bytes).collect()
    }

    pub fn decode_u64(bytes: &[u8]) -> Vec<u64> {
        chunks::<8>(bytes).map(u64::from_le_bytes).collect()
    }

    pub fn decode_u32(bytes: &[u8]) -> Vec<u32> {
        chunks::<4>(bytes).map(u32::from_le_bytes).collect()
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, SnapshotError> {
    serde_json::to_vec(value).map_err(|e| SnapshotError::Encode(e.to_string()))
}

/// A learner's state as a safetensors file, its JSON as the `state` metadata.
fn safetensors_file(state: LearnerState) -> Result<Vec<u8>, SnapshotError> {
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = state
        .tensors
        .into_iter()
        .map(|t| {
            let (dtype, bytes) = match &t.data {
                TensorData::F32(v) => (Dtype::F32, encode(v, |x: f32| x.to_le_bytes().to_vec())),
                TensorData::F64(v) => (Dtype::F64, encode(v, |x: f64| x.to_le_bytes().to_vec())),
                TensorData::U32(v) => (Dtype::U32, encode(v, |x: u32| x.to_le_bytes().to_vec())),
                TensorData::U64(v) => (Dtype::U64, encode(v, |x: u64| x.to_le_bytes().to_vec())),
            };
            (t.name, dtype, t.shape, bytes)
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.as_str(), v))
                .map_err(|e| SnapshotError::Encode(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([(STATE_KEY.to_owned(), state.json)]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| SnapshotError::Encode(e.to_string()))
}

/// A learner's state back from its safetensors file.
fn read_safetensors(bytes: &[u8]) -> Result<LearnerState, String> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY).cloned())
        .ok_or("no state metadata")?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        let data = match view.dtype() {
            Dtype::F32 => TensorData::F32(decode_f32(view.data())),
            Dtype::F64 => TensorData::F64(decode_f64(view.data())),
            Dtype::U32 => TensorData::U32(decode_u32(view.data())),
            Dtype::U64 => TensorData::U64(decode_u64(view.data())),
            other => return Err(format!("tensor {name}: unexpected type {other:?}")),
        };
        tensors.push(StateTensor {
            shape: view.shape().to_vec(),
            name,
            data,
        });
    }
    Ok(LearnerState { tensors, json })
}

/// One learner file about to be written: learner name, file name, bytes.
struct EncodedFile {
    learner: &'static str,
    file: &'static str,
    bytes: Vec<u8>,
}

fn encode_file<P: Persistent>(learner: P) -> Result<EncodedFile, SnapshotError> {
    let state = learner
        .save()
        .map_err(|e| SnapshotError::Encode(format!("{}: {e}", P::NAME)))?;
    let bytes = match P::FORMAT {
        StateFormat::Json => state.json.into_bytes(),
        StateFormat::Tensors => safetensors_file(state)?,
    };
    Ok(EncodedFile {
        learner: P::NAME,
        file: P::FILE,
        bytes,
    })
}

fn decode_file<P: Persistent>(bytes: &[u8]) -> Result<P, String> {
    let state = match P::FORMAT {
        StateFormat::Json => LearnerState {
            tensors: Vec::new(),
            json: String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())?,
        },
        StateFormat::Tensors => read_safetensors(bytes)?,
    };
    P::load(state).map_err(|e| e.to_string())
}

/// The bytes of each learner file.
fn encode_learners(models: &OnlineModels) -> Result<Vec<EncodedFile>, SnapshotError> {
    encode_parts(models.clone().into_parts())
}

fn encode_parts(parts: OnlineParts) -> Result<Vec<EncodedFile>, SnapshotError> {
    Ok(vec![
        encode_file(parts.popularity)?,
        encode_file(parts.embeddings)?,
        encode_file(parts.bandit)?,
        encode_file(parts.covisit)?,
        encode_file(parts.reranker)?,
        encode_file(parts.stream)?,
        encode_file(parts.catalog)?,
    ])
}

/// Each learner's SHA-256 as a snapshot would store it: what the nodes of a cluster compare
/// at the same events-stream sequence. Left out: the re-ranker's weights and loss (a live
/// learner's trail its trainer by a few steps; its groups and step count are in), and the
/// catalog (the items stream's own position differs between nodes at one events
/// sequence). Learner name to hex digest, in manifest order.
pub fn state_digest(models: OnlineModels) -> Result<BTreeMap<String, String>, SnapshotError> {
    let mut parts = models.into_parts();
    parts.reranker.weights.clear();
    parts.reranker.last_loss = None;
    // Empty, so encoding it costs nothing; left out below.
    parts.catalog = Catalog::default();
    Ok(encode_parts(parts)?
        .iter()
        .filter(|f| f.learner != Catalog::NAME)
        .map(|f| (f.learner.to_owned(), sha256_hex(&f.bytes)))
        .collect())
}

/// Writes a snapshot of `models` under `root/<version>/`, atomically: the folder appears
/// complete or not at all. Returns its manifest; an identical snapshot already there is kept.
pub fn write_snapshot(
    root: &Path,
    models: &OnlineModels,
    parent: Option<SnapshotVersion>,
) -> Result<Manifest, SnapshotError> {
    let files = encode_learners(models)?;
    let config_hash = sha256_hex(&to_json(models.config())?);
    let learners: BTreeMap<String, LearnerFile> = files
        .iter()
        .map(|f| {
            (
                f.learner.to_owned(),
                LearnerFile {
                    file: f.file.to_owned(),
                    sha256: sha256_hex(&f.bytes),
                    bytes: f.bytes.len() as u64,
                },
            )
        })
        .collect();
    let content = sha256_hex(&to_json(&(&learners, &config_hash))?);
    let last_seq = models.last_seq();
    let version = SnapshotVersion::new(last_seq, &content)
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    let manifest = Manifest {
        format: FORMAT,
        version: version.clone(),
        parent,
        created_at: chrono::Utc::now().to_rfc3339(),
        stream: BTreeMap::from([(
            streamrec_proto::subjects::EVENTS_STREAM.to_owned(),
            last_seq,
        )]),
        config_hash,
        code_version: env!("CARGO_PKG_VERSION").to_owned(),
        counters: models.counters(),
        config: models.config().clone(),
        learners,
    };
    let final_dir = root.join(version.as_str());
    if final_dir.join(MANIFEST).exists() {
        return read_manifest(&final_dir);
    }
    std::fs::create_dir_all(root).map_err(io(root))?;
    let tmp = root.join(format!(".tmp-{version}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    for f in &files {
        write_synced(&tmp.join(f.file), &f.bytes)?;
    }
    write_synced(
        &tmp.join(MANIFEST),
        &serde_json::to_vec_pretty(&manifest).map_err(|e| SnapshotError::Encode(e.to_string()))?,
    )?;
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    // Make the rename itself durable.
    if let Ok(dir) = std::fs::File::open(root) {
        let _ = dir.sync_all();
    }
    Ok(manifest)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

pub(crate) fn read_manifest(dir: &Path) -> Result<Manifest, SnapshotError> {
    let path = dir.join(MANIFEST);
    let version = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SnapshotError::NotFound(version.clone()),
        _ => SnapshotError::Io {
            path: path.clone(),
            source: e,
        },
    })?;
    parse_manifest(&bytes, &version)
}

/// Decodes the manifest of the snapshot stored as `version`. Pure: a fuzz target runs it.
pub fn parse_manifest(bytes: &[u8], version: &str) -> Result<Manifest, SnapshotError> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| SnapshotError::Corrupt {
        version: version.to_owned(),
        reason: format!("manifest: {e}"),
    })?;
    if manifest.version != version {
        return Err(SnapshotError::Corrupt {
            version: version.to_owned(),
            reason: "manifest names another version than its folder".to_owned(),
        });
    }
    for (name, entry) in &manifest.learners {
        if learner_file(name) != Some(entry.file.as_str()) {
            return Err(SnapshotError::Corrupt {
                version: version.to_owned(),
                reason: format!(
                    "the {name} learner must be stored in {}",
                    learner_file(name).unwrap_or("its own file")
                ),
            });
        }
    }
    Ok(manifest)
}

/// Reads and verifies every learner file of the snapshot in `dir`.
pub fn read_snapshot(dir: &Path) -> Result<(Manifest, OnlineModels), SnapshotError> {
    let manifest = read_manifest(dir)?;
    let mut files = BTreeMap::new();
    for name in LEARNERS {
        let Some(entry) = manifest.learners.get(name) else {
            continue;
        };
        let bytes = std::fs::read(dir.join(&entry.file)).map_err(|e| SnapshotError::Corrupt {
            version: manifest.version.to_string(),
            reason: format!("{}: {e}", entry.file),
        })?;
        files.insert(name.to_owned(), bytes);
    }
    let models = decode_learners(&manifest, &files)?;
    Ok((manifest, models))
}

/// Rebuilds the learners from their files' bytes (by learner name), checking each against
/// the manifest's SHA-256 first. Pure: a fuzz target runs it on mutated files.
pub fn decode_learners(
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<OnlineModels, SnapshotError> {
    let corrupt = |reason: String| SnapshotError::Corrupt {
        version: manifest.version.to_string(),
        reason,
    };
    let mut contents: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for name in LEARNERS {
        // File names were checked when the manifest was parsed; here only bytes matter.
        let entry = manifest
            .learners
            .get(name)
            .ok_or_else(|| corrupt(format!("no {name} learner")))?;
        let bytes = files
            .get(name)
            .ok_or_else(|| corrupt(format!("{}: missing", entry.file)))?;
        let hash = sha256_hex(bytes);
        if hash != entry.sha256 {
            return Err(corrupt(format!(
                "{}: SHA-256 {hash} does not match the manifest's {}",
                entry.file, entry.sha256
            )));
        }
        contents.insert(name, bytes);
    }
    fn part<P: Persistent>(
        contents: &BTreeMap<&str, &[u8]>,
        corrupt: impl Fn(String) -> SnapshotError,
    ) -> Result<P, SnapshotError> {
        let bytes = contents.get(P::NAME).copied().unwrap_or_default();
        decode_file(bytes).map_err(|e| corrupt(format!("{}: {e}", P::NAME)))
    }
    let models = OnlineModels::from_parts(OnlineParts {
        config: manifest.config.clone(),
        popularity: part(&contents, corrupt)?,
        embeddings: part(&contents, corrupt)?,
        bandit: part(&contents, corrupt)?,
        covisit: part(&contents, corrupt)?,
        reranker: part(&contents, corrupt)?,
        stream: part(&contents, corrupt)?,
        counters: manifest.counters,
        catalog: part(&contents, corrupt)?,
    });
    Ok(models)
}
