//! One configuration for `serve`: built-in defaults, then a TOML file (`--config FILE`),
//! then `STREAMREC_*` environment variables, then flags, each layer overriding the one
//! before (figment). Every setting of the engine, the learners and the HTTP server lives
//! here; a key nothing reads is an error that names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use streamrec_actors::{AnnBackend, ComputeDevice, EngineConfig, HnswParams};
use streamrec_learner::online::OnlineConfig;

use crate::server::HttpLimits;

/// Everything `serve` reads, in the sections of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServeConfig {
    pub server: ServerSection,
    pub bus: BusSection,
    pub storage: StorageSection,
    pub snapshots: SnapshotSection,
    pub reranker: RerankerSection,
    pub ann: AnnSection,
    pub auth: AuthSection,
    pub cors: CorsSection,
    pub engine: EngineSection,
    /// The online learners: sessions, popularity, embeddings, co-visitation, the bandit
    /// (`bandit`, `bandit_params`), candidates, the re-ranker's replay buffer, windows
    /// (`decision_ttl_ms`), and their bounds (`max_catalog_items`, `max_learned_items`).
    pub learners: OnlineConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSection {
    pub listen: SocketAddr,
    /// Connections served by the full API; a further 32 may ask only /healthz and /readyz.
    pub max_connections: usize,
    pub header_timeout_s: f64,
    pub request_timeout_s: f64,
    /// On SIGTERM: stop accepting, drain, write a final snapshot, within this.
    pub shutdown_timeout_s: f64,
    /// Requests beyond these are shed with 503 and Retry-After.
    pub max_in_flight_recommendations: usize,
    pub max_in_flight_writes: usize,
    /// Shed while a ready task waits longer than this for a worker (0: never).
    pub max_scheduling_lag_ms: u64,
    /// `/readyz` answers 503 while the learner is further behind the bus than this.
    pub max_learner_lag: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BusSection {
    /// NATS server URL, or several separated by commas (the client fails over between
    /// them); without it, the embedded bus.
    pub nats: Option<String>,
    /// Prefix of the durable JetStream consumers.
    pub consumer: String,
    /// This node of a cluster: its consumers are `<consumer>-<node_id>-…`, so every node
    /// reads the whole stream on its own.
    pub node_id: Option<String>,
    /// Replicas of the streams and buckets; without it, the cluster's servers up to 3.
    pub replicas: Option<usize>,
    /// For servers that require them: a user and password, or a `.creds` file.
    pub user: Option<String>,
    pub password: Option<String>,
    pub creds_file: Option<PathBuf>,
    /// The CA the servers' certificates chain to (TLS is then required), and this
    /// client's certificate and key for servers that verify clients.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub retention_max_age_s: u64,
    pub retention_max_bytes: u64,
    /// Events-stream sequences between two digests of the learners' state, compared with
    /// the other nodes' at the same sequence (0: never).
    pub state_digest_every: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageSection {
    /// Snapshots (and the embedded bus's log) live here; none kept without it.
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotSection {
    /// Seconds between periodic snapshots (0: only on demand).
    pub every_s: f64,
    /// Unpinned snapshots kept.
    pub retain: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RerankerSection {
    /// Off: requests are served in stage-one order (the re-ranker still trains).
    pub enabled: bool,
    /// `cpu` or `gpu` (a build with `--features gpu`).
    pub device: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnnSection {
    /// `hnsw` (hnsw_rs) or `faiss` (a build with `--features faiss`).
    pub backend: String,
    pub max_connections: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    pub rebuild_fraction: f64,
    pub drift_cosine: f32,
    pub drifted_fraction: f64,
    /// How often the index catches up with the embeddings.
    pub refresh_ms: u64,
    /// Fewest seconds between two rebuilds.
    pub rebuild_every_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSection {
    /// `key:scope[+scope]` entries (scopes read, write, admin). Empty: the API is open.
    pub keys: Vec<String>,
    /// `/healthz`, `/readyz` and `/metrics` ask for the read scope too (open by default).
    pub guard_operations: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsSection {
    /// Browser origins allowed to call the API (`scheme://host[:port]`).
    pub origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineSection {
    /// How soon a learned batch is served.
    pub publish_interval_ms: u64,
    /// Messages the learner applies per batch.
    pub batch_size: usize,
    pub poll_wait_ms: u64,
    /// Events stamped further ahead of their arrival are dead-lettered.
    pub max_future_skew_s: u64,
    /// Items in each published popularity ranking.
    pub popularity_view_size: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let engine = EngineConfig::default();
        let limits = HttpLimits::default();
        let ann = engine.ann;
        Self {
            server: ServerSection {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                max_connections: limits.max_connections,
                header_timeout_s: limits.header_timeout.as_secs_f64(),
                request_timeout_s: limits.request_timeout.as_secs_f64(),
                shutdown_timeout_s: 10.0,
                max_in_flight_recommendations: limits.max_in_flight_recommendations,
                max_in_flight_writes: limits.max_in_flight_writes,
                max_scheduling_lag_ms: limits
                    .max_scheduling_lag
                    .map_or(0, |d| d.as_millis() as u64),
                max_learner_lag: engine.max_learner_lag,
            },
            bus: BusSection {
                nats: None,
                consumer: "streamrec".to_owned(),
                node_id: None,
                replicas: None,
                user: None,
                password: None,
                creds_file: None,
                ca_file: None,
                cert_file: None,
                key_file: None,
                retention_max_age_s: 7 * 24 * 3600,
                retention_max_bytes: 8 << 30,
                state_digest_every: engine.state_digest_every,
            },
            storage: StorageSection::default(),
            snapshots: SnapshotSection {
                every_s: engine.snapshot_interval.map_or(0.0, |d| d.as_secs_f64()),
                retain: engine.snapshot_retain,
            },
            reranker: RerankerSection {
                enabled: engine.rerank,
                device: "cpu".to_owned(),
            },
            ann: AnnSection {
                backend: "hnsw".to_owned(),
                max_connections: ann.max_connections,
                ef_construction: ann.ef_construction,
                ef_search: ann.ef_search,
                rebuild_fraction: ann.rebuild_fraction,
                drift_cosine: ann.drift_cosine,
                drifted_fraction: ann.drifted_fraction,
                refresh_ms: engine.ann_refresh.as_millis() as u64,
                rebuild_every_s: engine.ann_rebuild_every.as_secs_f64(),
            },
            auth: AuthSection::default(),
            cors: CorsSection::default(),
            engine: EngineSection {
                publish_interval_ms: engine.publish_interval.as_millis() as u64,
                batch_size: engine.batch_size,
                poll_wait_ms: engine.poll_wait.as_millis() as u64,
                max_future_skew_s: engine.max_future_skew.as_secs(),
                popularity_view_size: engine.popularity_view_size,
            },
            learners: engine.online,
        }
    }
}

/// Each section's defaults are its part of [`ServeConfig::default`], so a file that names a
/// section but not all its keys keeps the rest.
macro_rules! section_defaults {
    ($($section:ident => $field:ident),* $(,)?) => {
        $(impl Default for $section {
            fn default() -> Self {
                ServeConfig::default().$field
            }
        })*
    };
}

section_defaults! {
    ServerSection => server,
    BusSection => bus,
    SnapshotSection => snapshots,
    RerankerSection => reranker,
    AnnSection => ann,
    EngineSection => engine,
}

/// Why a configuration cannot be used: every problem found, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(problem: impl Into<String>) -> Self {
        Self {
            problems: vec![problem.into()],
        }
    }
}

/// The layers above `file`: environment variables and flags, as partial configs (nested
/// JSON objects holding only what they set).
#[derive(Debug, Clone)]
pub struct Overrides {
    pub env: serde_json::Value,
    pub flags: serde_json::Value,
}

impl Default for Overrides {
    fn default() -> Self {
        Self {
            env: serde_json::Value::Object(Default::default()),
            flags: serde_json::Value::Object(Default::default()),
        }
    }
}

/// Environment variables that set any key: `STREAMREC_SECTION__KEY` (two underscores
/// between levels), e.g. `STREAMREC_LEARNERS__MAX_SESSIONS=50000`.
const NESTED_ENV_PREFIX: &str = "STREAMREC_";

/// Layers the configuration: defaults < `file` < `STREAMREC_*` < flags.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<ServeConfig, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(ServeConfig::default()));
    if let Some(file) = file {
        if !file.is_file() {
            return Err(ConfigError::one(format!(
                "config file {} does not exist",
                file.display()
            )));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    figment = figment
        .merge(
            Env::prefixed(NESTED_ENV_PREFIX)
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        )
        .merge(Serialized::defaults(&overrides.env))
        .merge(Serialized::defaults(&overrides.flags));
    let merged: serde_json::Value = figment
        .extract()
        .map_err(|e| ConfigError::one(figment_message(e)))?;
    let mut unknown = Vec::new();
    // Unknown keys are collected (all of them); a wrong type stops there, named by its path.
    let parsed: Result<ServeConfig, _> = serde_path_to_error::deserialize(
        serde_ignored::Deserializer::new(merged, &mut |path: serde_ignored::Path<'_>| {
            unknown.push(path.to_string())
        }),
    );
    let mut problems: Vec<String> = unknown
        .into_iter()
        .map(|key| format!("unknown key `{key}`"))
        .collect();
    match parsed {
        Ok(config) => {
            problems.extend(config.validate());
            if problems.is_empty() {
                Ok(config)
            } else {
                Err(ConfigError { problems })
            }
        }
        Err(e) => {
            problems.push(format!("`{}`: {}", e.path(), e.inner()));
            Err(ConfigError { problems })
        }
    }
}

fn figment_message(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServeConfig {
    /// Every value out of its range, each named by its key.
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut positive = |key: &str, value: f64| {
            if !(value.is_finite() && value > 0.0) {
                problems.push(format!(
                    "`{key}` must be a positive number of seconds, got {value}"
                ));
            }
        };
        positive("server.header_timeout_s", self.server.header_timeout_s);
        positive("server.request_timeout_s", self.server.request_timeout_s);
        positive("server.shutdown_timeout_s", self.server.shutdown_timeout_s);
        positive("ann.rebuild_every_s", self.ann.rebuild_every_s);
        // Past this a seconds value is a unit mix-up, and a Duration cannot hold some of it.
        const MAX_SECONDS: f64 = 1e9;
        for (key, value) in [
            ("server.header_timeout_s", self.server.header_timeout_s),
            ("server.request_timeout_s", self.server.request_timeout_s),
            ("server.shutdown_timeout_s", self.server.shutdown_timeout_s),
            ("snapshots.every_s", self.snapshots.every_s),
            ("ann.rebuild_every_s", self.ann.rebuild_every_s),
        ] {
            if value > MAX_SECONDS {
                problems.push(format!(
                    "`{key}` must be at most {MAX_SECONDS} seconds, got {value}"
                ));
            }
        }
        if let Some(id) = &self.bus.node_id
            && !valid_node_id(id)
        {
            problems.push(format!(
                "`bus.node_id` must be 1 to 64 letters, digits, `-` or `_`, got {id:?}"
            ));
        }
        let bus = &self.bus;
        if bus.user.is_some() != bus.password.is_some() {
            problems.push(
                "`bus.user` and `bus.password` (STREAMREC_NATS_PASSWORD) go together".to_owned(),
            );
        }
        if bus.cert_file.is_some() != bus.key_file.is_some() {
            problems.push("`bus.cert_file` and `bus.key_file` go together".to_owned());
        }
        if let Some(n) = self.bus.replicas
            && !(1..=5).contains(&n)
        {
            problems.push(format!(
                "`bus.replicas` must be 1 to 5 (JetStream's limit), got {n}"
            ));
        }
        if let Some(ttl) = self.learners.session_ttl_ms
            && ttl <= 0
        {
            problems.push(format!(
                "`learners.session_ttl_ms` must be positive, got {ttl}"
            ));
        }
        let windows = &self.learners.windows;
        if windows.allowed_lateness_ms < 0 {
            problems.push(format!(
                "`learners.windows.allowed_lateness_ms` must be >= 0, got {}",
                windows.allowed_lateness_ms
            ));
        }
        for (name, gap) in [
            ("session_gap_ms", windows.session_gap_ms),
            ("user_gap_ms", windows.user_gap_ms),
        ] {
            if gap <= 0 {
                problems.push(format!(
                    "`learners.windows.{name}` must be positive, got {gap}"
                ));
            }
        }
        if !(windows.ctr_prior_strength.is_finite() && windows.ctr_prior_strength >= 0.0) {
            problems.push(format!(
                "`learners.windows.ctr_prior_strength` must be a finite number >= 0, got {}",
                windows.ctr_prior_strength
            ));
        }
        let every = self.bus.state_digest_every;
        if every != 0 && every < 1_000 {
            problems.push(format!(
                "`bus.state_digest_every` must be 0 (off) or at least 1000 sequences (each digest encodes every learner), got {every}"
            ));
        }
        let drift = &self.learners.drift;
        if !(1..=streamrec_learner::drift::MAX_WINDOW_MS).contains(&drift.window_ms) {
            problems.push(format!(
                "`learners.drift.window_ms` must be 1 ms to 7 days, got {}",
                drift.window_ms
            ));
        }
        if !(2..=1000).contains(&drift.bins) {
            problems.push(format!(
                "`learners.drift.bins` must be 2 to 1000, got {}",
                drift.bins
            ));
        }
        let params = self.learners.bandit_params;
        if let Some(x) = params.exploration
            && !(x.is_finite() && x >= 0.0)
        {
            problems.push(format!(
                "`learners.bandit_params.exploration` must be a finite number >= 0, got {x}"
            ));
        }
        if let Some(x) = params.regularization
            && !(x.is_finite() && x > 0.0)
        {
            problems.push(format!(
                "`learners.bandit_params.regularization` must be a finite number > 0, got {x}"
            ));
        }
        if !(self.snapshots.every_s.is_finite() && self.snapshots.every_s >= 0.0) {
            problems.push("`snapshots.every_s` must be a non-negative number of seconds".into());
        }
        if ComputeDevice::parse(&self.reranker.device).is_err() {
            problems.push(format!(
                "`reranker.device` must be cpu or gpu, got {:?}",
                self.reranker.device
            ));
        }
        if AnnBackend::parse(&self.ann.backend).is_err() {
            problems.push(format!(
                "`ann.backend` must be hnsw or faiss, got {:?}",
                self.ann.backend
            ));
        }
        if let Err(e) =
            crate::auth::Access::new(Some(&self.auth.keys.join(",")), &self.cors.origins)
        {
            problems.push(format!("`auth.keys` / `cors.origins`: {e}"));
        }
        problems
    }

    /// The engine's configuration.
    pub fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let ann = &self.ann;
        let defaults = EngineConfig::default();
        Ok(EngineConfig {
            online: self.learners.clone(),
            popularity_view_size: self.engine.popularity_view_size,
            publish_interval: Duration::from_millis(self.engine.publish_interval_ms),
            batch_size: self.engine.batch_size.max(1),
            poll_wait: Duration::from_millis(self.engine.poll_wait_ms),
            max_future_skew: Duration::from_secs(self.engine.max_future_skew_s),
            snapshot_dir: self
                .storage
                .data_dir
                .as_deref()
                .map(crate::snapshot_cli::snapshots_dir),
            snapshot_interval: (self.snapshots.every_s > 0.0)
                .then(|| Duration::from_secs_f64(self.snapshots.every_s)),
            snapshot_retain: self.snapshots.retain,
            rerank_device: ComputeDevice::parse(&self.reranker.device)?,
            rerank: self.reranker.enabled,
            ann: HnswParams {
                backend: AnnBackend::parse(&ann.backend)?,
                max_connections: ann.max_connections,
                ef_construction: ann.ef_construction,
                ef_search: ann.ef_search,
                rebuild_fraction: ann.rebuild_fraction,
                drift_cosine: ann.drift_cosine,
                drifted_fraction: ann.drifted_fraction,
            },
            ann_refresh: Duration::from_millis(ann.refresh_ms.max(1)),
            ann_rebuild_every: Duration::from_secs_f64(ann.rebuild_every_s),
            max_learner_lag: self.server.max_learner_lag,
            state_digest_every: self.bus.state_digest_every,
            ..defaults
        })
    }

    /// The HTTP server's limits.
    pub fn http_limits(&self) -> HttpLimits {
        let s = &self.server;
        let shutdown = Duration::from_secs_f64(s.shutdown_timeout_s);
        HttpLimits {
            max_connections: s.max_connections.max(1),
            header_timeout: Duration::from_secs_f64(s.header_timeout_s),
            request_timeout: Duration::from_secs_f64(s.request_timeout_s),
            // Draining gets at most 40% of the bound; the final snapshot needs the rest.
            drain_timeout: shutdown.mul_f64(0.4),
            max_in_flight_recommendations: s.max_in_flight_recommendations.max(1),
            max_in_flight_writes: s.max_in_flight_writes.max(1),
            max_scheduling_lag: (s.max_scheduling_lag_ms > 0)
                .then(|| Duration::from_millis(s.max_scheduling_lag_ms)),
            ..HttpLimits::default()
        }
    }

    /// The configuration as TOML, every API key's secret masked (its scopes shown).
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.bus.nats = shown.bus.nats.as_deref().map(redact_url);
        if shown.bus.password.is_some() {
            shown.bus.password = Some("********".to_owned());
        }
        for key in &mut shown.auth.keys {
            let scopes = key.rsplit_once(':').map_or("?", |(_, scopes)| scopes);
            *key = format!("********:{scopes}");
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

pub use streamrec_actors::bus::redact_url;

/// A node id becomes part of consumer names: JetStream refuses `.`, `*`, `>` and spaces.
fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl BusSection {
    /// The credentials and TLS files the NATS client uses.
    pub fn security(&self) -> streamrec_actors::NatsSecurity {
        streamrec_actors::NatsSecurity {
            user: self.user.clone(),
            password: self.password.clone(),
            creds_file: self.creds_file.clone(),
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }

    /// The prefix of this node's durable consumers.
    pub fn consumer_prefix(&self) -> String {
        match &self.node_id {
            Some(node) => format!("{}-{node}", self.consumer),
            None => self.consumer.clone(),
        }
    }
}

/// Sets `path` (dotted) to `value` in a nested JSON object.
pub fn set(root: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_object() {
            *node = serde_json::Value::Object(Default::default());
        }
        let Some(map) = node.as_object_mut() else {
            return;
        };
        if parts.peek().is_none() {
            map.insert(part.to_owned(), value);
            return;
        }
        node = map
            .entry(part.to_owned())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    #[test]
    fn credentials_in_a_url_are_never_printed() {
        assert_eq!(
            redact_url("nats://user:pw@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(
            redact_url("nats://tok@host:4222/x@y"),
            "nats://***@host:4222/x@y"
        );
        assert_eq!(redact_url("nats://host:4222"), "nats://host:4222");
        assert_eq!(
            redact_url("nats://a:4222,nats://u:p@b:4222"),
            "nats://a:4222,nats://***@b:4222"
        );
        let mut config = ServeConfig::default();
        config.bus.nats = Some("nats://user:secret@host:4222".into());
        assert!(!config.to_masked_toml().contains("secret"));
    }

    #[test]
    fn defaults_are_the_engines() {
        let config = load(None, &Overrides::default()).expect("defaults are valid");
        assert_eq!(config, ServeConfig::default());
        let engine = config.engine_config().expect("engine");
        assert_eq!(engine.online, OnlineConfig::default());
        assert_eq!(
            engine.publish_interval,
            EngineConfig::default().publish_interval
        );
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let f = file(
            "[server]\nmax_connections = 10\nmax_learner_lag = 7\n[learners]\nmax_sessions = 5\n[learners.popularity]\nhalf_life_ms = 1000.0\n",
        );
        let mut overrides = Overrides::default();
        set(&mut overrides.env, "server.max_connections", json!(20));
        set(&mut overrides.env, "learners.max_sessions", json!(6));
        set(&mut overrides.flags, "server.max_connections", json!(30));
        let config = load(Some(f.path()), &overrides).expect("valid");
        assert_eq!(config.server.max_connections, 30, "the flag");
        assert_eq!(config.learners.max_sessions, 6, "the environment");
        assert_eq!(config.server.max_learner_lag, 7, "the file");
        assert_eq!(
            config.learners.popularity.half_life_ms, 1000.0,
            "a nested section"
        );
        assert_eq!(
            config.learners.popularity.view_weight,
            OnlineConfig::default().popularity.view_weight,
            "what no layer sets keeps its default"
        );
    }

    #[test]
    fn unknown_keys_are_errors_that_name_them() {
        let f = file("[server]\nlisten_port = 1\n[learners]\nmax_sesions = 5\n[nope]\nx = 1\n");
        let error = load(Some(f.path()), &Overrides::default()).expect_err("unknown keys");
        let text = error.to_string();
        for key in ["server.listen_port", "learners.max_sesions", "nope"] {
            assert!(text.contains(&format!("`{key}`")), "{key} in {text}");
        }
    }

    #[test]
    fn wrong_types_and_ranges_name_their_key() {
        let f = file("[server]\nmax_connections = \"many\"\n");
        let text = load(Some(f.path()), &Overrides::default())
            .expect_err("type")
            .to_string();
        assert!(text.contains("max_connections"), "{text}");
        let f = file("[server]\nrequest_timeout_s = 0\n[reranker]\ndevice = \"tpu\"\n");
        let e = load(Some(f.path()), &Overrides::default()).expect_err("ranges");
        assert_eq!(e.problems.len(), 2, "{e}");
        let f = file("[learners.drift]\nwindow_ms = 0\nbins = 1\n");
        let e = load(Some(f.path()), &Overrides::default()).expect_err("drift ranges");
        let text = e.to_string();
        assert!(
            text.contains("learners.drift.window_ms") && text.contains("learners.drift.bins"),
            "{text}"
        );
        let missing = load(
            Some(Path::new("/nonexistent/streamrec.toml")),
            &Overrides::default(),
        );
        assert!(
            missing
                .expect_err("missing")
                .to_string()
                .contains("does not exist")
        );
    }

    #[test]
    fn keys_come_from_the_file_and_are_masked_when_shown() {
        let f = file("[auth]\nkeys = [\"0123456789abcdef-secret:read+write\"]\n");
        let config = load(Some(f.path()), &Overrides::default()).expect("valid");
        assert_eq!(config.auth.keys.len(), 1);
        let shown = config.to_masked_toml();
        assert!(
            !shown.contains("secret") && shown.contains("********:read+write"),
            "{shown}"
        );
        let f = file("[auth]\nkeys = [\"short:read\"]\n");
        assert!(
            load(Some(f.path()), &Overrides::default()).is_err(),
            "a short key is refused"
        );
    }

    #[test]
    fn the_annotated_example_is_valid_and_complete() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/streamrec.example.toml");
        let config = load(Some(&example), &Overrides::default()).expect("the example loads");
        // It sets every default explicitly (apart from the optional ones), so it documents them all.
        let mut want = ServeConfig::default();
        want.bus.nats = config.bus.nats.clone();
        want.storage.data_dir = config.storage.data_dir.clone();
        want.auth = config.auth.clone();
        want.cors = config.cors.clone();
        assert_eq!(config, want);
    }
}
