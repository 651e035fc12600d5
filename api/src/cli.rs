//! The `streamrec` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use streamrec_actors::{Bus, EngineConfig, InProcessBus, NatsBus, NatsBusConfig};

use crate::app::RunningServer;

#[derive(Debug, Parser)]
#[command(
    name = "streamrec",
    version,
    about = "Real-time recommendations that learn from every event"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine and its HTTP API.
    Serve(ServeArgs),
    /// Serve on the embedded bus while replaying MovieLens-100K through it.
    Demo(crate::demo::DemoArgs),
    /// Evaluate a policy offline over a logged dataset; prints JSON.
    #[command(subcommand)]
    Evaluate(crate::evaluate::EvaluateCommand),
    /// Run policies against a simulator calibrated on a logged dataset; prints JSON.
    #[command(subcommand)]
    Simulate(crate::evaluate::SimulateCommand),
    /// Warm-start the learners offline: replay MovieLens-100K through them (re-ranker
    /// training included) and write a snapshot that `serve --data-dir` restores.
    Train(crate::train::TrainArgs),
    /// Inspect, diff, export and take learner snapshots.
    #[command(subcommand)]
    Snapshot(crate::snapshot_cli::SnapshotCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// NATS server URL; without it, the in-process bus is used.
    #[arg(long, env = "STREAMREC_NATS")]
    pub nats: Option<String>,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "STREAMREC_LISTEN")]
    pub listen: SocketAddr,
    /// Prefix of this engine's durable JetStream consumers.
    #[arg(long, default_value = "streamrec")]
    pub consumer: String,
    /// Folder for snapshots (in its `snapshots/`); the newest valid one is restored at start
    /// and the stream replayed after it. Without it, no snapshots are kept.
    #[arg(long, env = "STREAMREC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seconds between periodic snapshots (0: only on demand).
    #[arg(long, default_value_t = 60.0)]
    pub snapshot_every: f64,
    /// Unpinned snapshots kept.
    #[arg(long, default_value_t = 5)]
    pub snapshot_retain: usize,
    /// Where the re-ranker trains and serves: cpu (burn's flex backend) or gpu (wgpu; needs
    /// a build with `--features gpu`).
    #[arg(long, default_value = "cpu", env = "STREAMREC_DEVICE")]
    pub device: String,
    /// The ANN library intent candidates come from: hnsw (hnsw_rs) or faiss (FAISS-HNSW;
    /// needs a build with `--features faiss`).
    #[arg(long, default_value = "hnsw", env = "STREAMREC_ANN")]
    pub ann: String,
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// Folder holding ml-100k.inter and ml-100k.item.
    #[arg(long, default_value = "data/ml-100k")]
    pub data: PathBuf,
}

/// Co-visitation's pruning and refresh: what `train` and `evaluate` can trade speed for
/// quality with (defaults: the engine's).
#[derive(Debug, Args)]
pub struct CovisitArgs {
    /// Neighbours kept per item, by cosine.
    #[arg(long)]
    pub covisit_neighbours: Option<usize>,
    /// Successors kept per item.
    #[arg(long)]
    pub covisit_transitions: Option<usize>,
    /// A row's lists are re-ranked after len/refresh new counts.
    #[arg(long)]
    pub covisit_refresh: Option<u32>,
    /// Most recent items of a user each new item is counted with.
    #[arg(long)]
    pub covisit_user_window: Option<usize>,
    /// Share of events the re-ranker gets a training group for (by a hash of event_id).
    #[arg(long)]
    pub group_share: Option<f64>,
}

impl CovisitArgs {
    pub fn apply(&self, online: &mut streamrec_learner::online::OnlineConfig) {
        let c = &mut online.covisit;
        c.neighbours = self.covisit_neighbours.unwrap_or(c.neighbours);
        c.transitions = self.covisit_transitions.unwrap_or(c.transitions);
        c.refresh = self.covisit_refresh.unwrap_or(c.refresh);
        c.user_window = self.covisit_user_window.unwrap_or(c.user_window);
        let replay = &mut online.replay;
        replay.group_share = self.group_share.unwrap_or(replay.group_share);
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    crate::telemetry::init_logging();
    crate::telemetry::prometheus();
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Evaluate(command) => crate::evaluate::evaluate(command).await,
        Command::Simulate(command) => crate::evaluate::simulate(command),
        Command::Snapshot(command) => crate::snapshot_cli::run(command).await,
        Command::Train(args) => crate::train::run(args),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let bus: Arc<dyn Bus> = match &args.nats {
        Some(url) => {
            let mut config = NatsBusConfig::new(url);
            config.consumer_prefix = args.consumer.clone();
            Arc::new(NatsBus::connect(config).await?)
        }
        None => Arc::new(InProcessBus::new()),
    };
    let kind = bus.kind();
    anyhow::ensure!(
        args.snapshot_every.is_finite() && args.snapshot_every >= 0.0,
        "--snapshot-every must be a non-negative number of seconds"
    );
    let config = EngineConfig {
        rerank_device: streamrec_actors::ComputeDevice::parse(&args.device)?,
        ann: streamrec_actors::HnswParams {
            backend: streamrec_actors::AnnBackend::parse(&args.ann)?,
            ..streamrec_actors::HnswParams::default()
        },
        snapshot_dir: args
            .data_dir
            .as_deref()
            .map(crate::snapshot_cli::snapshots_dir),
        snapshot_interval: (args.snapshot_every > 0.0)
            .then(|| std::time::Duration::from_secs_f64(args.snapshot_every)),
        snapshot_retain: args.snapshot_retain,
        ..EngineConfig::default()
    };
    let server = RunningServer::start(bus, config, args.listen).await?;
    // Scripts and tests read this line to find the port.
    println!(
        "streamrec listening on http://{} (bus: {kind})",
        server.addr
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
