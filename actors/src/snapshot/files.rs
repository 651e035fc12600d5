//! The on-disk form of one snapshot: `manifest.json` plus one file per learner.
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
use streamrec_learner::bandit::RidgeArm;
use streamrec_learner::catalog::{Catalog, CatalogRecord};
use streamrec_learner::covisit::{CovisitState, Covisitation, SparseCounts, SparseLists};
use streamrec_learner::embeddings::ItemEmbeddings;
use streamrec_learner::online::{
    Bandit, NamedTensor, OnlineConfig, OnlineCounters, OnlineModels, OnlineParts, RerankerState,
    StreamState,
};
use streamrec_proto::SnapshotVersion;

/// Learner names, in manifest order.
pub const LEARNERS: [&str; 7] = [
    "popularity",
    "embeddings",
    "bandit",
    "covisitation",
    "reranker",
    "stream",
    "catalog",
];
/// The file each learner is stored in: a manifest may name no other (so no path outside
/// the snapshot's folder can be read through one).
const LEARNER_FILES: [(&str, &str); 7] = [
    ("popularity", "popularity.json"),
    ("embeddings", "embeddings.safetensors"),
    ("bandit", "bandit.safetensors"),
    ("covisitation", "covisitation.safetensors"),
    ("reranker", "reranker.safetensors"),
    ("stream", "stream.json"),
    ("catalog", "catalog.json"),
];
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

fn safetensors_file(
    tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>,
    state: String,
) -> Result<Vec<u8>, SnapshotError> {
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (*name, v))
                .map_err(|e| SnapshotError::Encode(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([(STATE_KEY.to_owned(), state)]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| SnapshotError::Encode(e.to_string()))
}

/// One learner file about to be written: learner name, file name, bytes.
struct EncodedFile {
    learner: &'static str,
    file: &'static str,
    bytes: Vec<u8>,
}

/// The bytes of each learner file.
fn encode_learners(models: &OnlineModels) -> Result<Vec<EncodedFile>, SnapshotError> {
    let mut parts = models.clone().into_parts();
    let (input, output) = parts.embeddings.take_matrices();
    let (items, dim) = (parts.embeddings.len(), parts.embeddings.dim());
    let embeddings = safetensors_file(
        vec![
            (
                "input",
                Dtype::F32,
                vec![items, dim],
                encode(&input, |v: f32| v.to_le_bytes().to_vec()),
            ),
            (
                "output",
                Dtype::F32,
                vec![items, dim],
                encode(&output, |v: f32| v.to_le_bytes().to_vec()),
            ),
        ],
        String::from_utf8(to_json(&parts.embeddings)?)
            .map_err(|e| SnapshotError::Encode(e.to_string()))?,
    )?;
    let arms = parts.bandit.model_mut().take_arms();
    let d = parts.bandit.dim();
    let n = arms.len();
    let keys: Vec<u64> = arms.keys().copied().collect();
    let a_inv: Vec<f64> = arms
        .values()
        .flat_map(|a| a.a_inv.iter().copied().collect::<Vec<_>>())
        .collect();
    let b: Vec<f64> = arms
        .values()
        .flat_map(|a| a.b.iter().copied().collect::<Vec<_>>())
        .collect();
    let pulls: Vec<u64> = arms.values().map(|a| a.pulls).collect();
    let reward_sum: Vec<f64> = arms.values().map(|a| a.reward_sum).collect();
    let f64le = |v: f64| v.to_le_bytes().to_vec();
    let bandit = safetensors_file(
        vec![
            (
                "keys",
                Dtype::U64,
                vec![n],
                encode(&keys, |v: u64| v.to_le_bytes().to_vec()),
            ),
            ("a_inv", Dtype::F64, vec![n, d, d], encode(&a_inv, f64le)),
            ("b", Dtype::F64, vec![n, d], encode(&b, f64le)),
            (
                "pulls",
                Dtype::U64,
                vec![n],
                encode(&pulls, |v: u64| v.to_le_bytes().to_vec()),
            ),
            (
                "reward_sum",
                Dtype::F64,
                vec![n],
                encode(&reward_sum, f64le),
            ),
        ],
        String::from_utf8(to_json(&parts.bandit)?)
            .map_err(|e| SnapshotError::Encode(e.to_string()))?,
    )?;
    let covisitation = encode_covisitation(parts.covisit)?;
    let reranker = encode_reranker(parts.reranker)?;
    let file = |learner: &'static str, bytes| EncodedFile {
        learner,
        file: learner_file(learner).unwrap_or(learner),
        bytes,
    };
    Ok(vec![
        file("popularity", to_json(&parts.popularity)?),
        file("embeddings", embeddings),
        file("bandit", bandit),
        file("covisitation", covisitation),
        file("reranker", reranker),
        file("stream", to_json(&parts.stream)?),
        file("catalog", to_json(&parts.catalog.to_record())?),
    ])
}

fn u32le(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn u64le(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn f32le(v: f32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn json_string<T: Serialize>(value: &T) -> Result<String, SnapshotError> {
    String::from_utf8(to_json(value)?).map_err(|e| SnapshotError::Encode(e.to_string()))
}

fn encode_covisitation(covisit: Covisitation) -> Result<Vec<u8>, SnapshotError> {
    let mut state = covisit.into_state();
    let users_of = std::mem::take(&mut state.users_of);
    let co_stale = std::mem::take(&mut state.co_stale);
    let next_stale = std::mem::take(&mut state.next_stale);
    let mut tensors = Vec::new();
    for (name, values) in [
        ("users_of", users_of),
        ("co_stale", co_stale),
        ("next_stale", next_stale),
    ] {
        tensors.push((name, Dtype::U32, vec![values.len()], encode(&values, u32le)));
    }
    for (names, counts) in [
        (
            ["co_offsets", "co_columns", "co_counts"],
            std::mem::take(&mut state.co),
        ),
        (
            ["next_offsets", "next_columns", "next_counts"],
            std::mem::take(&mut state.next),
        ),
    ] {
        let [offsets, columns, counts_name] = names;
        tensors.push((
            offsets,
            Dtype::U64,
            vec![counts.offsets.len()],
            encode(&counts.offsets, u64le),
        ));
        tensors.push((
            columns,
            Dtype::U32,
            vec![counts.columns.len()],
            encode(&counts.columns, u32le),
        ));
        tensors.push((
            counts_name,
            Dtype::U32,
            vec![counts.counts.len()],
            encode(&counts.counts, u32le),
        ));
    }
    for (names, lists) in [
        (
            [
                "neighbours_offsets",
                "neighbours_items",
                "neighbours_scores",
            ],
            std::mem::take(&mut state.neighbours),
        ),
        (
            [
                "transitions_offsets",
                "transitions_items",
                "transitions_scores",
            ],
            std::mem::take(&mut state.transitions),
        ),
    ] {
        let [offsets, items, scores] = names;
        tensors.push((
            offsets,
            Dtype::U64,
            vec![lists.offsets.len()],
            encode(&lists.offsets, u64le),
        ));
        tensors.push((
            items,
            Dtype::U32,
            vec![lists.items.len()],
            encode(&lists.items, u32le),
        ));
        tensors.push((
            scores,
            Dtype::F32,
            vec![lists.scores.len()],
            encode(&lists.scores, f32le),
        ));
    }
    safetensors_file(tensors, json_string(&state)?)
}

fn encode_reranker(mut reranker: RerankerState) -> Result<Vec<u8>, SnapshotError> {
    let weights = std::mem::take(&mut reranker.weights);
    let tensors = weights
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                Dtype::F32,
                t.shape.clone(),
                encode(&t.values, f32le),
            )
        })
        .collect();
    safetensors_file(tensors, json_string(&reranker)?)
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
    let json = |name: &str| -> &[u8] { contents.get(name).copied().unwrap_or_default() };
    let popularity: Popularity = serde_json::from_slice(json("popularity"))
        .map_err(|e| corrupt(format!("popularity: {e}")))?;
    let stream: StreamState =
        serde_json::from_slice(json("stream")).map_err(|e| corrupt(format!("stream: {e}")))?;
    let catalog: CatalogRecord =
        serde_json::from_slice(json("catalog")).map_err(|e| corrupt(format!("catalog: {e}")))?;
    let catalog = Catalog::from_record(catalog).map_err(corrupt)?;

    let tensors = |name: &str| {
        SafeTensors::deserialize(json(name)).map_err(|e| corrupt(format!("{name}: {e}")))
    };
    let state = |name: &str| -> Result<String, SnapshotError> {
        let (_, meta) =
            SafeTensors::read_metadata(json(name)).map_err(|e| corrupt(format!("{name}: {e}")))?;
        meta.metadata()
            .as_ref()
            .and_then(|m| m.get(STATE_KEY).cloned())
            .ok_or_else(|| corrupt(format!("{name}: no state metadata")))
    };
    let data = |st: &SafeTensors, name: &str| -> Result<Vec<u8>, SnapshotError> {
        st.tensor(name)
            .map(|t| t.data().to_vec())
            .map_err(|e| corrupt(format!("tensor {name}: {e}")))
    };

    let emb_tensors = tensors("embeddings")?;
    let mut embeddings: ItemEmbeddings = serde_json::from_str(&state("embeddings")?)
        .map_err(|e| corrupt(format!("embeddings: {e}")))?;
    embeddings
        .set_matrices(
            decode_f32(&data(&emb_tensors, "input")?),
            decode_f32(&data(&emb_tensors, "output")?),
        )
        .map_err(corrupt)?;

    let bandit_tensors = tensors("bandit")?;
    let mut bandit: Bandit =
        serde_json::from_str(&state("bandit")?).map_err(|e| corrupt(format!("bandit: {e}")))?;
    let d = bandit.dim();
    let keys = decode_u64(&data(&bandit_tensors, "keys")?);
    let a_inv = decode_f64(&data(&bandit_tensors, "a_inv")?);
    let b = decode_f64(&data(&bandit_tensors, "b")?);
    let pulls = decode_u64(&data(&bandit_tensors, "pulls")?);
    let reward_sum = decode_f64(&data(&bandit_tensors, "reward_sum")?);
    let n = keys.len();
    if a_inv.len() != n * d * d || b.len() != n * d || pulls.len() != n || reward_sum.len() != n {
        return Err(corrupt(
            "bandit tensors disagree on the number of arms".to_owned(),
        ));
    }
    let arms = (0..n)
        .map(|i| {
            (
                keys[i],
                RidgeArm {
                    a_inv: nalgebra::DMatrix::from_column_slice(
                        d,
                        d,
                        &a_inv[i * d * d..(i + 1) * d * d],
                    ),
                    b: nalgebra::DVector::from_column_slice(&b[i * d..(i + 1) * d]),
                    pulls: pulls[i],
                    reward_sum: reward_sum[i],
                },
            )
        })
        .collect();
    bandit.model_mut().set_arms(arms);

    let covisit_tensors = tensors("covisitation")?;
    let mut covisit: CovisitState = serde_json::from_str(&state("covisitation")?)
        .map_err(|e| corrupt(format!("covisitation: {e}")))?;
    let u32s = |name: &str| data(&covisit_tensors, name).map(|b| decode_u32(&b));
    let u64s = |name: &str| data(&covisit_tensors, name).map(|b| decode_u64(&b));
    let f32s = |name: &str| data(&covisit_tensors, name).map(|b| decode_f32(&b));
    let n = covisit.ids.len();
    covisit.users_of = u32s("users_of")?;
    covisit.co_stale = u32s("co_stale")?;
    covisit.next_stale = u32s("next_stale")?;
    for prefix in ["co", "next"] {
        let counts = SparseCounts {
            offsets: u64s(&format!("{prefix}_offsets"))?,
            columns: u32s(&format!("{prefix}_columns"))?,
            counts: u32s(&format!("{prefix}_counts"))?,
        };
        if !counts.fits(n) {
            return Err(corrupt(format!(
                "covisitation: {prefix} counts do not fit {n} items"
            )));
        }
        match prefix {
            "co" => covisit.co = counts,
            _ => covisit.next = counts,
        }
    }
    for prefix in ["neighbours", "transitions"] {
        let lists = SparseLists {
            offsets: u64s(&format!("{prefix}_offsets"))?,
            items: u32s(&format!("{prefix}_items"))?,
            scores: f32s(&format!("{prefix}_scores"))?,
        };
        if !lists.fits(n) {
            return Err(corrupt(format!(
                "covisitation: {prefix} lists do not fit {n} items"
            )));
        }
        match prefix {
            "neighbours" => covisit.neighbours = lists,
            _ => covisit.transitions = lists,
        }
    }
    if [&covisit.users_of, &covisit.co_stale, &covisit.next_stale]
        .iter()
        .any(|v| v.len() != n)
    {
        return Err(corrupt(
            "covisitation: per-item counters do not fit the items".to_owned(),
        ));
    }
    let covisit = Covisitation::from_state(covisit);

    let reranker_tensors = tensors("reranker")?;
    let mut reranker: RerankerState =
        serde_json::from_str(&state("reranker")?).map_err(|e| corrupt(format!("reranker: {e}")))?;
    let mut names: Vec<String> = reranker_tensors
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    names.sort();
    for name in names {
        let view = reranker_tensors
            .tensor(&name)
            .map_err(|e| corrupt(format!("reranker {name}: {e}")))?;
        reranker.weights.push(NamedTensor {
            shape: view.shape().to_vec(),
            values: decode_f32(view.data()),
            name,
        });
    }

    let models = OnlineModels::from_parts(OnlineParts {
        config: manifest.config.clone(),
        popularity,
        embeddings,
        bandit,
        covisit,
        reranker,
        stream,
        counters: manifest.counters,
        catalog,
    });
    Ok(models)
}
