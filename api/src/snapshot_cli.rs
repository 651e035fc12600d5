//! `streamrec snapshot …`: list, show, diff, export, pin, and take snapshots.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use streamrec_actors::snapshot::{LEARNERS, SnapshotStore, diff, summarize};
use streamrec_learner::online::OnlineModels;
use streamrec_proto::SnapshotVersion;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Snapshots in the data directory, oldest first.
    List(StoreArgs),
    /// A snapshot's manifest and a summary of each learner.
    Show {
        version: SnapshotVersion,
        #[command(flatten)]
        store: StoreArgs,
        /// Also list this item's nearest items by embedding.
        #[arg(long)]
        item: Option<String>,
    },
    /// What moved between two snapshots, per learner.
    Diff {
        old: SnapshotVersion,
        new: SnapshotVersion,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Writes a snapshot's learners as files numpy/pandas open directly.
    Export {
        version: SnapshotVersion,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, value_enum, default_value = "npy")]
        format: ExportFormat,
        /// Folder to write into (created).
        #[arg(long)]
        out: PathBuf,
    },
    /// Keeps a snapshot through retention (or releases it with --off).
    Pin {
        version: SnapshotVersion,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        off: bool,
    },
    /// Asks a running server to write a snapshot now.
    Create {
        /// Base URL of the server, e.g. http://127.0.0.1:8080
        #[arg(long)]
        server: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Json,
    Npy,
    Parquet,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The server's data directory (snapshots live in its `snapshots/` folder).
    #[arg(long, default_value = "data/streamrec")]
    pub data_dir: PathBuf,
}

impl StoreArgs {
    fn store(&self) -> SnapshotStore {
        SnapshotStore::new(snapshots_dir(&self.data_dir), usize::MAX)
    }
}

/// Where a data directory keeps its snapshots.
pub fn snapshots_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::List(args) => print(&json!({"snapshots": args.store().list()})),
        SnapshotCommand::Show {
            version,
            store,
            item,
        } => {
            let (manifest, models) = store.store().load(&version)?;
            let learners: serde_json::Map<String, Value> = LEARNERS
                .iter()
                .filter_map(|l| Some(((*l).to_owned(), summarize(&models, l, item.as_deref())?)))
                .collect();
            print(&json!({"manifest": manifest, "learners": learners}))
        }
        SnapshotCommand::Diff { old, new, store } => {
            let store = store.store();
            let (_, a) = store.load(&old)?;
            let (_, b) = store.load(&new)?;
            print(&json!({"old": old, "new": new, "diff": diff(&a, &b)}))
        }
        SnapshotCommand::Export {
            version,
            store,
            format,
            out,
        } => {
            let (manifest, models) = store.store().load(&version)?;
            std::fs::create_dir_all(&out)?;
            std::fs::write(
                out.join("manifest.json"),
                serde_json::to_vec_pretty(&manifest)?,
            )?;
            match format {
                ExportFormat::Json => export_json(&models, &out)?,
                ExportFormat::Npy => export_npy(&models, &out)?,
                ExportFormat::Parquet => crate::parquet_export::export(&models, &out)?,
            }
            println!("exported {version} to {}", out.display());
            Ok(())
        }
        SnapshotCommand::Pin {
            version,
            store,
            off,
        } => {
            store.store().pin(&version, !off)?;
            println!("{version} {}", if off { "unpinned" } else { "pinned" });
            Ok(())
        }
        SnapshotCommand::Create { server } => {
            let url = format!("{}/v1/snapshots", server.trim_end_matches('/'));
            let response = reqwest::Client::new().post(&url).send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
            print(&body)
        }
    }
}

fn export_json(models: &OnlineModels, out: &Path) -> anyhow::Result<()> {
    let parts = models.clone().into_parts();
    std::fs::write(
        out.join("popularity.json"),
        serde_json::to_vec(&parts.popularity)?,
    )?;
    std::fs::write(
        out.join("embeddings.json"),
        serde_json::to_vec(&parts.embeddings)?,
    )?;
    std::fs::write(out.join("bandit.json"), serde_json::to_vec(&parts.bandit)?)?;
    std::fs::write(out.join("stream.json"), serde_json::to_vec(&parts.stream)?)?;
    Ok(())
}

/// Tensors as `.npy`, ids as JSON lists aligned with their rows.
fn export_npy(models: &OnlineModels, out: &Path) -> anyhow::Result<()> {
    use crate::npy::write;
    let e = &models.embeddings;
    write(
        &out.join("embeddings_input.npy"),
        e.matrix(),
        &[e.len(), e.dim()],
    )?;
    write(
        &out.join("embeddings_output.npy"),
        e.context_matrix(),
        &[e.len(), e.dim()],
    )?;
    std::fs::write(
        out.join("embeddings_ids.json"),
        serde_json::to_vec(e.ids())?,
    )?;

    let view = models.popularity.view(usize::MAX);
    let ids: Vec<&str> = view.ranked.iter().map(|(id, _)| &**id).collect();
    let scores: Vec<f64> = view.ranked.iter().map(|(_, s)| *s).collect();
    write(&out.join("popularity_scores.npy"), &scores, &[scores.len()])?;
    std::fs::write(out.join("popularity_ids.json"), serde_json::to_vec(&ids)?)?;

    let arms: Vec<_> = models.bandit.model().arms().collect();
    let d = models.bandit.dim();
    let keys: Vec<u64> = arms.iter().map(|(k, _)| **k).collect();
    // Row-major d × d per arm (nalgebra stores columns; A⁻¹ is symmetric, so both agree).
    let a_inv: Vec<f64> = arms
        .iter()
        .flat_map(|(_, a)| a.a_inv.transpose().iter().copied().collect::<Vec<_>>())
        .collect();
    let b: Vec<f64> = arms
        .iter()
        .flat_map(|(_, a)| a.b.iter().copied().collect::<Vec<_>>())
        .collect();
    let pulls: Vec<u64> = arms.iter().map(|(_, a)| a.pulls).collect();
    write(&out.join("bandit_keys.npy"), &keys, &[keys.len()])?;
    write(&out.join("bandit_a_inv.npy"), &a_inv, &[keys.len(), d, d])?;
    write(&out.join("bandit_b.npy"), &b, &[keys.len(), d])?;
    write(&out.join("bandit_pulls.npy"), &pulls, &[keys.len()])?;
    Ok(())
}
