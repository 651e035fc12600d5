//! `streamrec train`: learners warm-started offline. MovieLens-100K goes through the same
//! apply-then-train code as the learner actor (co-visitation, embeddings, popularity,
//! bandit, the re-ranker's online steps), and the result is written as a snapshot detached
//! from any stream position, so `serve --data-dir` starts from it and then learns the live
//! stream from its first message.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use streamrec_learner::online::{OnlineConfig, OnlineModels};
use streamrec_pipeline::Replayer;
use streamrec_ranker::ComputeDevice;
use streamrec_snapshot::write_snapshot;

use crate::cli::DataArgs;
use crate::movielens;

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The data directory `serve --data-dir` will use; the snapshot goes in its `snapshots/`.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// cpu or gpu (a build with `--features gpu`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub covisit: crate::cli::CovisitArgs,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let events = movielens::load_events(&args.data.data)?;
    let device = ComputeDevice::parse(&args.device)?;
    let mut config = OnlineConfig::default();
    args.covisit.apply(&mut config);
    let mut replayer = Replayer::new(OnlineModels::new(config), device)?;
    for (i, event) in events.iter().enumerate() {
        replayer.apply_event(i as u64 + 1, event)?;
    }
    let mut models = replayer.into_models();
    models.detach_from_stream();
    let root = crate::snapshot_cli::snapshots_dir(&args.data_dir);
    let manifest = write_snapshot(&root, &models, None)?;
    let report = serde_json::json!({
        "version": manifest.version,
        "path": root.join(manifest.version.as_str()),
        "events": events.len(),
        "reranker_steps": models.reranker.steps,
        "reranker_last_loss": models.reranker.last_loss,
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    println!("{report}");
    Ok(())
}
