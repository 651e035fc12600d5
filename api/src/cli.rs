//! The `streamrec` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use streamrec_actors::{Bus, InProcessBus, NatsBus, NatsBusConfig, Retention, StreamLimits};

use crate::app::RunningServer;

#[derive(Debug, Parser)]
#[command(
    name = "streamrec",
    version,
    about = "Real-time recommendations that learn from every event"
)]
pub struct Cli {
    /// Log lines as text (colours only on a terminal) or as JSON objects, one per line.
    #[arg(long, global = true, value_enum, default_value_t = crate::telemetry::LogFormat::Text, env = "STREAMREC_LOG_FORMAT")]
    pub log_format: crate::telemetry::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine and its HTTP API.
    Serve(Box<ServeArgs>),
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
    /// Check a config file and print the configuration `serve` would run with.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the HTTP API's OpenAPI 3.1 spec (what `GET /openapi.json` serves).
    Openapi,
    /// Inspect, diff, export and take learner snapshots.
    #[command(subcommand)]
    Snapshot(crate::snapshot_cli::SnapshotCommand),
}

/// `serve`'s flags. Each overrides the same setting of the config file (and of the
/// environment: a flag's own variable, or `STREAMREC_SECTION__KEY` for any key); what no
/// layer sets keeps its default (`streamrec config check` prints them all).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML config file (docs/streamrec.example.toml lists every key).
    #[arg(long, env = "STREAMREC_CONFIG")]
    pub config: Option<PathBuf>,
    /// NATS server URL, or several separated by commas (the client fails over between
    /// them); without it, the in-process bus is used. [bus.nats]
    #[arg(long, env = "STREAMREC_NATS")]
    pub nats: Option<String>,
    /// Address to serve HTTP on (default 127.0.0.1:8080). [server.listen]
    #[arg(long, env = "STREAMREC_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Prefix of this engine's durable JetStream consumers. [bus.consumer]
    #[arg(long)]
    pub consumer: Option<String>,
    /// This node's id in a cluster: its consumers become `<consumer>-<node-id>`. [bus.node_id]
    #[arg(long, env = "STREAMREC_NODE_ID")]
    pub node_id: Option<String>,
    /// Replicas of the streams, the KV bucket and the object store (existing ones are
    /// updated); default: the cluster's servers, up to 3. [bus.replicas]
    #[arg(long)]
    pub replicas: Option<usize>,
    /// NATS user (the password from STREAMREC_NATS_PASSWORD, never a flag). [bus.user]
    #[arg(long, env = "STREAMREC_NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS credentials file (JWT + NKey seed). [bus.creds_file]
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificate of the NATS servers; given, TLS is required. [bus.ca_file]
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate for NATS servers that verify clients (with --nats-key). [bus.cert_file]
    #[arg(long, value_name = "FILE")]
    pub nats_cert: Option<PathBuf>,
    /// The client certificate's key. [bus.key_file]
    #[arg(long, value_name = "FILE")]
    pub nats_key: Option<PathBuf>,
    /// Folder for snapshots (in its `snapshots/`); the newest valid one is restored at start
    /// and the stream replayed after it. Without NATS, the embedded bus keeps its log here
    /// too (in `bus/`), so nothing it accepted is lost. Without it, no snapshots are kept
    /// and the embedded bus lives in memory only. [storage.data_dir]
    #[arg(long, env = "STREAMREC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Events and items are kept this many seconds (default 7 days). [bus.retention_max_age_s]
    #[arg(long, env = "STREAMREC_RETENTION_MAX_AGE")]
    pub retention_max_age: Option<u64>,
    /// Events and items are kept up to this many bytes per stream (default 8 GiB).
    /// [bus.retention_max_bytes]
    #[arg(long, env = "STREAMREC_RETENTION_MAX_BYTES")]
    pub retention_max_bytes: Option<u64>,
    /// Seconds between periodic snapshots (0: only on demand; default 60). [snapshots.every_s]
    #[arg(long)]
    pub snapshot_every: Option<f64>,
    /// Unpinned snapshots kept (default 5). [snapshots.retain]
    #[arg(long)]
    pub snapshot_retain: Option<usize>,
    /// Where the re-ranker trains and serves: cpu (burn's flex backend) or gpu (wgpu; needs
    /// a build with `--features gpu`). [reranker.device]
    #[arg(long, env = "STREAMREC_DEVICE")]
    pub device: Option<String>,
    /// On SIGTERM or Ctrl-C: seconds to stop accepting, drain in-flight requests, write a
    /// final snapshot and exit 0 (default 10). [server.shutdown_timeout_s]
    #[arg(long, env = "STREAMREC_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<f64>,
    /// Connections served by the full API (default 1024). [server.max_connections]
    #[arg(long, env = "STREAMREC_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a request's headers may take (default 10). [server.header_timeout_s]
    #[arg(long, env = "STREAMREC_HEADER_TIMEOUT")]
    pub header_timeout: Option<f64>,
    /// Seconds a whole request may take, body included (default 30). [server.request_timeout_s]
    #[arg(long, env = "STREAMREC_REQUEST_TIMEOUT")]
    pub request_timeout: Option<f64>,
    /// /readyz answers 503 while the learner is more than this many events behind the bus
    /// (default 100000). [server.max_learner_lag]
    #[arg(long, env = "STREAMREC_MAX_LEARNER_LAG")]
    pub max_learner_lag: Option<u64>,
    /// Browser origins allowed to call the API (CORS), comma-separated. [cors.origins]
    #[arg(long, env = "STREAMREC_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Items the catalog holds (default 1000000). [learners.max_catalog_items]
    #[arg(long, env = "STREAMREC_MAX_CATALOG_ITEMS")]
    pub max_catalog_items: Option<usize>,
    /// Distinct items the learners know (default 2000000). [learners.max_learned_items]
    #[arg(long, env = "STREAMREC_MAX_LEARNED_ITEMS")]
    pub max_learned_items: Option<usize>,
    /// The ANN library intent candidates come from: hnsw or faiss (needs a build with
    /// `--features faiss`). [ann.backend]
    #[arg(long, env = "STREAMREC_ANN")]
    pub ann: Option<String>,
}

impl ServeArgs {
    /// The settings given as flags and as their environment variables, each a layer of its
    /// own (keys, which only the environment or the file may give, included).
    pub fn overrides(&self, matches: &clap::ArgMatches) -> crate::config::Overrides {
        use clap::parser::ValueSource;
        use serde_json::json;
        let mut overrides = crate::config::Overrides::default();
        let mut put = |id: &str, key: &str, value: Option<serde_json::Value>| {
            let Some(value) = value else { return };
            let layer = match matches.value_source(id) {
                Some(ValueSource::EnvVariable) => &mut overrides.env,
                _ => &mut overrides.flags,
            };
            crate::config::set(layer, key, value);
        };
        put("nats", "bus.nats", self.nats.as_ref().map(|v| json!(v)));
        put(
            "listen",
            "server.listen",
            self.listen.map(|v| json!(v.to_string())),
        );
        put(
            "consumer",
            "bus.consumer",
            self.consumer.as_ref().map(|v| json!(v)),
        );
        put(
            "node_id",
            "bus.node_id",
            self.node_id.as_ref().map(|v| json!(v)),
        );
        put("replicas", "bus.replicas", self.replicas.map(|v| json!(v)));
        put(
            "nats_user",
            "bus.user",
            self.nats_user.as_ref().map(|v| json!(v)),
        );
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| json!(p.display().to_string()));
        put("nats_creds", "bus.creds_file", path(&self.nats_creds));
        put("nats_ca", "bus.ca_file", path(&self.nats_ca));
        put("nats_cert", "bus.cert_file", path(&self.nats_cert));
        put("nats_key", "bus.key_file", path(&self.nats_key));
        put(
            "data_dir",
            "storage.data_dir",
            self.data_dir.as_ref().map(|v| json!(v)),
        );
        put(
            "retention_max_age",
            "bus.retention_max_age_s",
            self.retention_max_age.map(|v| json!(v)),
        );
        put(
            "retention_max_bytes",
            "bus.retention_max_bytes",
            self.retention_max_bytes.map(|v| json!(v)),
        );
        put(
            "snapshot_every",
            "snapshots.every_s",
            self.snapshot_every.map(|v| json!(v)),
        );
        put(
            "snapshot_retain",
            "snapshots.retain",
            self.snapshot_retain.map(|v| json!(v)),
        );
        put(
            "device",
            "reranker.device",
            self.device.as_ref().map(|v| json!(v)),
        );
        put(
            "shutdown_timeout",
            "server.shutdown_timeout_s",
            self.shutdown_timeout.map(|v| json!(v)),
        );
        put(
            "max_connections",
            "server.max_connections",
            self.max_connections.map(|v| json!(v)),
        );
        put(
            "header_timeout",
            "server.header_timeout_s",
            self.header_timeout.map(|v| json!(v)),
        );
        put(
            "request_timeout",
            "server.request_timeout_s",
            self.request_timeout.map(|v| json!(v)),
        );
        put(
            "max_learner_lag",
            "server.max_learner_lag",
            self.max_learner_lag.map(|v| json!(v)),
        );
        put(
            "cors_origins",
            "cors.origins",
            self.cors_origins.as_ref().map(|v| json!(v)),
        );
        put(
            "max_catalog_items",
            "learners.max_catalog_items",
            self.max_catalog_items.map(|v| json!(v)),
        );
        put(
            "max_learned_items",
            "learners.max_learned_items",
            self.max_learned_items.map(|v| json!(v)),
        );
        put("ann", "ann.backend", self.ann.as_ref().map(|v| json!(v)));
        // Keys come from the file or the environment only: a flag would show them to anyone
        // who lists processes.
        if let Ok(keys) = std::env::var("STREAMREC_API_KEYS") {
            let keys: Vec<&str> = keys
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .collect();
            crate::config::set(&mut overrides.env, "auth.keys", json!(keys));
        }
        // The NATS password: never a flag, which would show in the process list.
        if let Ok(password) = std::env::var("STREAMREC_NATS_PASSWORD") {
            crate::config::set(&mut overrides.env, "bus.password", json!(password));
        }
        overrides
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration `serve` would run with, given the same file, environment
    /// and flags (secrets masked), or every error in it.
    Check {
        /// The config file (else `--config`, else $STREAMREC_CONFIG, else none).
        file: Option<PathBuf>,
        #[command(flatten)]
        serve: Box<ServeArgs>,
    },
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
    /// Entries a count row is cut back to once it holds twice as many (0: unbounded).
    #[arg(long)]
    pub covisit_row_capacity: Option<usize>,
    /// Events per co-visitation epoch: an epoch's meetings are counted once the next one
    /// ends (0: each as it comes).
    #[arg(long)]
    pub covisit_epoch: Option<u64>,
    /// Events per item2vec epoch: an epoch's events are trained once the next one ends
    /// (0: each as it comes).
    #[arg(long)]
    pub embeddings_epoch: Option<u64>,
    /// Share of events the re-ranker gets a training group for (by a hash of event_id).
    #[arg(long)]
    pub group_share: Option<f64>,
    /// The re-ranker with the event-time window inputs (`events_1h`, `events_24h`,
    /// `trend`; off by default, held at 0): the ablation.
    #[arg(long)]
    pub window_features: bool,
}

impl CovisitArgs {
    pub fn apply(&self, online: &mut streamrec_learner::online::OnlineConfig) {
        let c = &mut online.covisit;
        c.neighbours = self.covisit_neighbours.unwrap_or(c.neighbours);
        c.transitions = self.covisit_transitions.unwrap_or(c.transitions);
        c.refresh = self.covisit_refresh.unwrap_or(c.refresh);
        c.user_window = self.covisit_user_window.unwrap_or(c.user_window);
        c.row_capacity = self.covisit_row_capacity.unwrap_or(c.row_capacity);
        c.epoch = self.covisit_epoch.unwrap_or(c.epoch);
        let e = &mut online.embeddings;
        e.epoch = self.embeddings_epoch.unwrap_or(e.epoch);
        let replay = &mut online.replay;
        replay.group_share = self.group_share.unwrap_or(replay.group_share);
        if self.window_features {
            online.candidates.window_features = true;
        }
    }
}

/// Parses the command line and runs it.
pub async fn run_from_args() -> anyhow::Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.exit())?;
    // Where each of `serve`'s values came from (environment or flag): `serve` and `config
    // check` both read them.
    let serve_matches = match matches.subcommand() {
        Some(("serve", m)) => m.clone(),
        Some(("config", m)) => match m.subcommand() {
            Some(("check", check)) => check.clone(),
            _ => clap::ArgMatches::default(),
        },
        _ => clap::ArgMatches::default(),
    };
    run(cli, &serve_matches).await
}

/// Runs `cli`; `serve_matches` are `serve`'s parsed arguments (where each value came from).
pub async fn run(cli: Cli, serve_matches: &clap::ArgMatches) -> anyhow::Result<()> {
    crate::telemetry::init_logging(cli.log_format);
    crate::telemetry::prometheus();
    match cli.command {
        Command::Serve(args) => serve(*args, serve_matches).await,
        Command::Config(ConfigCommand::Check { file, serve }) => {
            config_check(file, &serve, serve_matches)
        }
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Evaluate(command) => crate::evaluate::evaluate(command).await,
        Command::Simulate(command) => crate::evaluate::simulate(command),
        Command::Snapshot(command) => crate::snapshot_cli::run(command).await,
        Command::Train(args) => crate::train::run(args),
        Command::Openapi => {
            println!("{}", crate::openapi::spec_json());
            Ok(())
        }
    }
}

fn config_check(
    file: Option<PathBuf>,
    args: &ServeArgs,
    matches: &clap::ArgMatches,
) -> anyhow::Result<()> {
    let file = file.or_else(|| args.config.clone());
    let overrides = args.overrides(matches);
    match crate::config::load(file.as_deref(), &overrides) {
        Ok(config) => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        Err(error) => {
            for problem in &error.problems {
                eprintln!("error: {problem}");
            }
            eprintln!("{} problem(s) in the configuration", error.problems.len());
            std::process::exit(1)
        }
    }
}

async fn serve(args: ServeArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let settings = crate::config::load(args.config.as_deref(), &args.overrides(matches))?;
    let config = settings.engine_config()?;
    let limits = settings.http_limits();
    let shutdown_timeout = std::time::Duration::from_secs_f64(settings.server.shutdown_timeout_s);
    let access =
        crate::auth::Access::new(Some(&settings.auth.keys.join(",")), &settings.cors.origins)?
            .guarding_operations(settings.auth.guard_operations);
    if access.keys.is_empty() {
        tracing::warn!(
            "no API keys configured (auth.keys or STREAMREC_API_KEYS): the API is open to anyone who can reach it"
        );
        println!("auth: OPEN, no API keys (set STREAMREC_API_KEYS=key:scope[+scope],...)");
    } else {
        tracing::info!(keys = access.keys.len(), "API keys required");
    }
    // Bound before the bus: while NATS is unreachable the port answers (503, naming the URL)
    // instead of refusing connections.
    let listener = std::net::TcpListener::bind(settings.server.listen)?;
    listener.set_nonblocking(true)?;
    let (bus, nats): (Arc<dyn Bus>, _) = match &settings.bus.nats {
        Some(url) => {
            let bus = wait_for_nats(&settings, url, &listener).await?;
            let client = bus.client();
            (Arc::new(bus), Some(client))
        }
        None => (open_embedded_bus(&settings).await?, None),
    };
    let kind = bus.kind();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let server = RunningServer::start_on(listener, bus, config, limits, access).await?;
    // Dropped at shutdown, before the engine: requests go to the other nodes.
    let rpc = match nats {
        Some(client) => Some(crate::nats_rpc::start(client, server.state.clone()).await?),
        None => None,
    };
    // Scripts and tests read this line to find the port.
    println!(
        "streamrec listening on http://{} (bus: {kind})",
        server.addr
    );
    shutdown_signal().await;
    tracing::info!(timeout = ?shutdown_timeout, "shutting down");
    drop(rpc);
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

fn nats_config(settings: &crate::config::ServeConfig, url: &str) -> NatsBusConfig {
    let bus = &settings.bus;
    let mut config = NatsBusConfig::new(url);
    config.consumer_prefix = bus.consumer_prefix();
    config.replicas = bus.replicas;
    config.security = bus.security();
    // Renewed at each snapshot: it outlives three periods, so one slow or skipped snapshot
    // does not hand the writing to another node.
    let period = std::time::Duration::from_secs_f64(settings.snapshots.every_s.max(0.0));
    config.snapshot_lease = config.snapshot_lease.max(period * 3);
    if bus.node_id.is_none() && url.contains(',') {
        tracing::warn!(
            "several NATS servers but no --node-id: nodes started alike share one durable consumer; give each node its own id"
        );
    }
    config.snapshots_kept = settings.snapshots.retain;
    config.retention = StreamLimits {
        max_age: std::time::Duration::from_secs(bus.retention_max_age_s),
        max_bytes: i64::try_from(bus.retention_max_bytes).unwrap_or(i64::MAX),
    };
    config
}

/// Connects to NATS, retrying (with backoff, each failure logged with the URL) until it
/// answers; meanwhile `listener` serves the waiting page (see [`crate::bus_wait`]). A stop
/// signal while waiting ends the process.
async fn wait_for_nats(
    settings: &crate::config::ServeConfig,
    url: &str,
    listener: &std::net::TcpListener,
) -> anyhow::Result<NatsBus> {
    let waiting = crate::bus_wait::Waiting::new(url);
    let shown = crate::config::redact_url(url);
    let placeholder = tokio::net::TcpListener::from_std(listener.try_clone()?)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut page = tokio::spawn(
        axum::serve(placeholder, crate::bus_wait::router(waiting.clone()))
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    // Scripts read "streamrec listening on http://…" once it serves; this line comes first.
    println!(
        "streamrec connecting to NATS at {shown}; HTTP on {} answers 503 until it is reachable",
        listener.local_addr()?
    );
    let connect = async {
        let mut backoff = std::time::Duration::from_secs(1);
        loop {
            match NatsBus::connect(nats_config(settings, url)).await {
                Ok(bus) => return bus,
                Err(error) => {
                    waiting.failed(&error);
                    tracing::warn!(url = %shown, %error, retry_in = ?backoff, "NATS is not reachable; HTTP answers 503 until it is");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
    };
    let bus = tokio::select! {
        bus = connect => bus,
        () = shutdown_signal() => {
            tracing::info!("stopped while waiting for NATS");
            std::process::exit(0)
        }
    };
    let _ = stop.send(());
    // A client holding a keep-alive connection to the waiting page does not delay the start;
    // the page must be gone before the engine accepts on the same socket.
    if tokio::time::timeout(std::time::Duration::from_secs(2), &mut page)
        .await
        .is_err()
    {
        page.abort();
    }
    Ok(bus)
}

async fn open_embedded_bus(settings: &crate::config::ServeConfig) -> anyhow::Result<Arc<dyn Bus>> {
    let bus = &settings.bus;
    let max_age = std::time::Duration::from_secs(bus.retention_max_age_s);
    let Some(data_dir) = &settings.storage.data_dir else {
        tracing::warn!(
            "embedded bus in memory only: events it accepted are lost when the process ends (give --data-dir to keep them)"
        );
        println!("bus: in memory, NOT durable (give --data-dir to keep accepted events)");
        return Ok(Arc::new(InProcessBus::new()));
    };
    let retention = Retention {
        max_age,
        max_bytes: bus.retention_max_bytes,
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
