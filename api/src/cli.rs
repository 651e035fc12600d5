//! The `streamrec` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use streamrec_actors::{
    Bus, EngineConfig, InProcessBus, NatsBus, NatsBusConfig, Retention, StreamLimits,
};

use crate::app::RunningServer;
use crate::server::HttpLimits;

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
    /// and the stream replayed after it. Without NATS, the embedded bus keeps its log here
    /// too (in `bus/`), so nothing it accepted is lost. Without it, no snapshots are kept
    /// and the embedded bus lives in memory only.
    #[arg(long, env = "STREAMREC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Events and items are kept this many seconds (JetStream's `max_age`, or the embedded
    /// bus's log); older ones are discarded. Default: 7 days.
    #[arg(long, default_value_t = 7 * 24 * 3600, env = "STREAMREC_RETENTION_MAX_AGE")]
    pub retention_max_age: u64,
    /// Events and items are kept up to this many bytes per stream, oldest discarded first.
    /// Default: 8 GiB.
    #[arg(long, default_value_t = 8 << 30, env = "STREAMREC_RETENTION_MAX_BYTES")]
    pub retention_max_bytes: u64,
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
    /// On SIGTERM or Ctrl-C: seconds to stop accepting, drain in-flight requests, write a
    /// final snapshot and exit 0; whatever is unfinished by then is dropped (the bus keeps
    /// every event for the next start).
    #[arg(long, default_value_t = 10.0, env = "STREAMREC_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: f64,
    /// Connections served by the full API; a further 32 may ask only /healthz and /readyz,
    /// and past those new connections are closed at once.
    #[arg(long, default_value_t = 1024, env = "STREAMREC_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Seconds a request's headers may take to arrive (also how long an idle keep-alive
    /// connection is kept).
    #[arg(long, default_value_t = 10.0, env = "STREAMREC_HEADER_TIMEOUT")]
    pub header_timeout: f64,
    /// Seconds a whole request may take, body included (408 past it).
    #[arg(long, default_value_t = 30.0, env = "STREAMREC_REQUEST_TIMEOUT")]
    pub request_timeout: f64,
    /// /readyz answers 503 (`learner_lagging`) while the learner is more than this many
    /// events behind the bus.
    #[arg(long, default_value_t = 100_000, env = "STREAMREC_MAX_LEARNER_LAG")]
    pub max_learner_lag: u64,
    /// Browser origins allowed to call the API (CORS), comma-separated
    /// (`https://shop.example,http://localhost:3000`); none by default.
    #[arg(long, env = "STREAMREC_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Items the catalog holds; upserts of new items beyond it are dead-lettered
    /// `catalog_full` (known items can always be updated).
    #[arg(long, default_value_t = 1_000_000, env = "STREAMREC_MAX_CATALOG_ITEMS")]
    pub max_catalog_items: usize,
    /// Distinct items the learners know; events on new items beyond it are dead-lettered
    /// `item_limit` (events on known items are always learned).
    #[arg(long, default_value_t = 2_000_000, env = "STREAMREC_MAX_LEARNED_ITEMS")]
    pub max_learned_items: usize,
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
    let bus = open_bus(&args).await?;
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
        max_learner_lag: args.max_learner_lag,
        online: streamrec_learner::online::OnlineConfig {
            max_catalog_items: args.max_catalog_items,
            max_learned_items: args.max_learned_items,
            ..Default::default()
        },
        ..EngineConfig::default()
    };
    let shutdown_timeout = seconds("--shutdown-timeout", args.shutdown_timeout)?;
    let limits = HttpLimits {
        max_connections: args.max_connections.max(1),
        header_timeout: seconds("--header-timeout", args.header_timeout)?,
        request_timeout: seconds("--request-timeout", args.request_timeout)?,
        // Draining gets at most 40% of the bound; the final snapshot needs the rest.
        drain_timeout: shutdown_timeout.mul_f64(0.4),
        ..HttpLimits::default()
    };
    // Keys come from the environment only: a flag would show them to anyone who lists
    // processes.
    let keys = std::env::var("STREAMREC_API_KEYS").ok();
    let access = crate::auth::Access::new(keys.as_deref(), &args.cors_origins)?;
    if access.keys.is_empty() {
        tracing::warn!(
            "no API keys configured (STREAMREC_API_KEYS): the API is open to anyone who can reach it"
        );
        println!("auth: OPEN, no API keys (set STREAMREC_API_KEYS=key:scope[+scope],...)");
    } else {
        tracing::info!(keys = access.keys.len(), "API keys required");
    }
    let server = RunningServer::start_with_access(bus, config, args.listen, limits, access).await?;
    // Scripts and tests read this line to find the port.
    println!(
        "streamrec listening on http://{} (bus: {kind})",
        server.addr
    );
    shutdown_signal().await;
    tracing::info!(timeout = ?shutdown_timeout, "shutting down");
    let started = std::time::Instant::now();
    match tokio::time::timeout(shutdown_timeout, server.shutdown_within(shutdown_timeout)).await {
        Ok(Ok(snapshot)) => {
            tracing::info!(?snapshot, elapsed = ?started.elapsed(), "stopped");
        }
        Ok(Err(error)) => tracing::warn!(%error, "stopped with an error"),
        Err(_) => tracing::warn!("shutdown deadline passed; exiting now"),
    }
    // Freeing a large catalog and every model can take seconds; the process is ending.
    std::process::exit(0)
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<std::time::Duration> {
    anyhow::ensure!(
        value.is_finite() && value > 0.0,
        "{flag} must be a positive number of seconds"
    );
    Ok(std::time::Duration::from_secs_f64(value))
}

async fn open_bus(args: &ServeArgs) -> anyhow::Result<Arc<dyn Bus>> {
    let max_age = std::time::Duration::from_secs(args.retention_max_age);
    if let Some(url) = &args.nats {
        let mut config = NatsBusConfig::new(url);
        config.consumer_prefix = args.consumer.clone();
        config.snapshots_kept = args.snapshot_retain;
        config.retention = StreamLimits {
            max_age,
            max_bytes: i64::try_from(args.retention_max_bytes).unwrap_or(i64::MAX),
        };
        return Ok(Arc::new(NatsBus::connect(config).await?));
    }
    let Some(data_dir) = &args.data_dir else {
        tracing::warn!(
            "embedded bus in memory only: events it accepted are lost when the process ends (give --data-dir to keep them)"
        );
        println!("bus: in memory, NOT durable (give --data-dir to keep accepted events)");
        return Ok(Arc::new(InProcessBus::new()));
    };
    let retention = Retention {
        max_age,
        max_bytes: args.retention_max_bytes,
        ..Retention::default()
    };
    let dir = data_dir.join("bus");
    let (bus, recovery) =
        tokio::task::spawn_blocking(move || InProcessBus::open(&dir, retention)).await??;
    for (topic, found) in [("events", &recovery.events), ("items", &recovery.items)] {
        tracing::info!(
            topic,
            records = found.records,
            last_seq = found.last_seq,
            torn_bytes_cut = found.truncated_bytes,
            "embedded bus log opened"
        );
    }
    Ok(Arc::new(bus))
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
