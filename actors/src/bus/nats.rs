//! The NATS JetStream bus: streams `STREAMREC_EVENTS`, `STREAMREC_ITEMS` and
//! `STREAMREC_DLQ` on file storage, one durable pull consumer per consumed stream.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, message::PublishMessage, stream};
use async_nats::{ConnectOptions, HeaderMap, ServerAddr};
use async_trait::async_trait;
use futures::{FutureExt, StreamExt, future::try_join_all};
use streamrec_proto::{DivergenceAlert, DriftAlert, subjects};

use super::{
    Bus, Consumer, DeadLetter, Delivery, DigestCheck, LateEvent, Outbound, Readiness, Topic,
};

/// Object store bucket holding snapshot files, as `<version>/<file>`.
pub const SNAPSHOT_BUCKET: &str = "STREAMREC_SNAPSHOTS";
/// Key-value bucket naming the current snapshot.
pub const STATE_BUCKET: &str = "STREAMREC_STATE";
/// Key (in [`STATE_BUCKET`]) holding the current snapshot's version.
pub const CURRENT_SNAPSHOT_KEY: &str = "current_snapshot";
use crate::error::BusError;

/// How the NATS bus names and tunes its streams and consumers.
#[derive(Debug, Clone)]
pub struct NatsBusConfig {
    /// One server, or several separated by commas: the client connects to any of them and
    /// fails over between them (and to the servers the cluster announces).
    pub url: String,
    /// Replicas of every stream and bucket; `None`: as many as the cluster has servers, up
    /// to 3 (a server outside a cluster: 1).
    pub replicas: Option<usize>,
    /// Credentials and TLS for servers that require them.
    pub security: NatsSecurity,
    /// How long the snapshot writer's lease lasts unless renewed: the nodes of a cluster
    /// share one object store, and one of them at a time writes it.
    pub snapshot_lease: Duration,
    /// Prefix of the durable consumer names (one engine = one prefix).
    pub consumer_prefix: String,
    /// Time JetStream waits for an ack before delivering a message again.
    pub ack_wait: Duration,
    /// Window inside which JetStream drops a publish whose `Nats-Msg-Id` it has seen.
    pub duplicate_window: Duration,
    pub max_batch: usize,
    /// Retention of the events and items streams: messages older than this, or past this
    /// size (oldest first), are discarded by JetStream.
    pub retention: StreamLimits,
    /// Retention of the dead-letter stream.
    pub dlq_retention: StreamLimits,
    /// Snapshots kept in the object store (the newest; at least the current one). Each
    /// snapshot is a full copy of the learners: unpruned, a snapshot every few seconds
    /// fills the server's disk.
    pub snapshots_kept: usize,
}

/// JetStream's answer when a stream's `max_bytes` exceeds the storage it can reserve.
fn storage_short(error: &jetstream::context::CreateStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::CreateStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STORAGE_RESOURCES_EXCEEDED
    )
}

/// How long a start waits for JetStream to accept the streams.
const STREAMS_READY_WITHIN: Duration = Duration::from_secs(30);

/// The smallest `max_bytes` a stream is created with when the server's storage is short.
const MIN_STREAM_BYTES: i64 = 64 * 1024 * 1024;

/// A stream's `max_age` and `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_age: Duration,
    pub max_bytes: i64,
}

impl StreamLimits {
    /// Events and items: a week, or 8 GiB.
    pub const STREAM: Self = Self {
        max_age: Duration::from_secs(7 * 24 * 3600),
        max_bytes: 8 * 1024 * 1024 * 1024,
    };
    /// Dead letters: 30 days, or 1 GiB (each keeps at most 4 KiB of payload).
    pub const DLQ: Self = Self {
        max_age: Duration::from_secs(30 * 24 * 3600),
        max_bytes: 1024 * 1024 * 1024,
    };
}

impl NatsBusConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            consumer_prefix: "streamrec".to_owned(),
            ack_wait: Duration::from_secs(10),
            duplicate_window: Duration::from_secs(120),
            max_batch: 512,
            retention: StreamLimits::STREAM,
            dlq_retention: StreamLimits::DLQ,
            snapshots_kept: 5,
            replicas: None,
            security: NatsSecurity::default(),
            snapshot_lease: Duration::from_secs(120),
        }
    }

    /// The servers named by [`Self::url`].
    pub fn servers(&self) -> Result<Vec<ServerAddr>, BusError> {
        let servers: Vec<ServerAddr> = self
            .url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|address| {
                address
                    .parse()
                    .map_err(|e: std::io::Error| BusError::BadServer {
                        address: crate::bus::redact_address(address),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        if servers.is_empty() {
            return Err(BusError::BadServer {
                address: self.url.clone(),
                message: "no server given".to_owned(),
            });
        }
        Ok(servers)
    }
}

/// How the client proves who it is, and whom it trusts.
#[derive(Clone, Default)]
pub struct NatsSecurity {
    pub user: Option<String>,
    pub password: Option<String>,
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes them.
    pub creds_file: Option<std::path::PathBuf>,
    /// The CA the servers' certificates chain to; given, TLS is required.
    pub ca_file: Option<std::path::PathBuf>,
    /// This client's certificate and key, for servers that verify clients.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for NatsSecurity {
    // Never the password: configs are logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSecurity")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("creds_file", &self.creds_file)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl NatsSecurity {
    async fn apply(&self, mut options: ConnectOptions) -> Result<ConnectOptions, BusError> {
        let bad = |what: &str, message: String| BusError::Security(format!("{what}: {message}"));
        if let Some(path) = &self.creds_file {
            options = options.credentials_file(path).await.map_err(|e| {
                bad(
                    &format!("credentials file {}", path.display()),
                    e.to_string(),
                )
            })?;
        }
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            (None, None) => {}
            _ => return Err(bad("user and password", "give both or neither".to_owned())),
        }
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                options = options
                    .add_client_certificate(cert.clone(), key.clone())
                    .require_tls(true);
            }
            (None, None) => {}
            _ => {
                return Err(bad(
                    "client certificate",
                    "give the certificate and its key".to_owned(),
                ));
            }
        }
        Ok(options)
    }
}

/// Key (in [`STATE_BUCKET`]) of the snapshot writer's lease.
pub const SNAPSHOT_LEASE_KEY: &str = "snapshot-writer";

/// What [`compare_and_set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cas {
    Written,
    /// The value there does not allow it.
    Refused,
    /// Someone else wrote the key between the read and the write.
    Lost,
}

/// Sets `key` to `value` if it is absent (or deleted), or if `allow` accepts the value it
/// holds, at the revision read: two writers never both succeed.
async fn compare_and_set(
    kv: &jetstream::kv::Store,
    key: &str,
    value: bytes::Bytes,
    allow: impl FnOnce(&[u8]) -> bool,
) -> Result<Cas, BusError> {
    let entry = kv
        .entry(key)
        .await
        .map_err(|e| BusError::jetstream("read key-value entry", e))?
        .filter(|e| e.operation == jetstream::kv::Operation::Put);
    let written = match entry {
        None => kv.create(key, value).await.is_ok(),
        Some(entry) if allow(&entry.value) => kv.update(key, value, entry.revision).await.is_ok(),
        Some(_) => return Ok(Cas::Refused),
    };
    Ok(if written { Cas::Written } else { Cas::Lost })
}

/// A node's learner digests at one events-stream sequence (key `digest.<seq>` in
/// [`STATE_BUCKET`]; the first node there is the reference).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StateDigest {
    node: String,
    learners: BTreeMap<String, String>,
}

/// Who writes the cluster's snapshots, until when (epoch ms, the writer's clock).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SnapshotLease {
    holder: String,
    until_ms: i64,
}

/// Replicas JetStream keeps of each stream at most, by its own limit.
const MAX_REPLICAS: usize = 5;
/// Replicas chosen when the cluster is larger: a quorum survives one lost server.
const AUTO_REPLICAS: usize = 3;

#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    config: NatsBusConfig,
    /// Who this process is in the snapshot lease: its consumer prefix and a per-process
    /// nonce, so nodes that share a prefix (no `--node-id`) still hold it one at a time.
    lease_holder: String,
}

impl NatsBus {
    /// Connects (reconnecting forever after a loss) and creates or updates the streams.
    pub async fn connect(config: NatsBusConfig) -> Result<Self, BusError> {
        let servers = config.servers()?;
        let options = config.security.apply(ConnectOptions::new()).await?;
        let client = options
            .name("streamrec")
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(None)
            // `--nats`'s order is the node's preference: each node of a cluster lists its
            // nearest server first, and falls back to the next only when that one is down.
            .retain_servers_order()
            .connect(servers)
            .await
            .map_err(|source| BusError::Connect {
                url: config.url.clone(),
                source,
            })?;
        let js = jetstream::new(client.clone());
        let lease_holder = format!(
            "{}@{}-{}",
            config.consumer_prefix,
            std::process::id(),
            streamrec_proto::now_millis()
        );
        let bus = Self {
            client,
            js,
            config,
            lease_holder,
        };
        // A server that has just (re)started listens before JetStream has recovered its
        // streams: keep asking for a while rather than fail the start.
        let deadline = tokio::time::Instant::now() + STREAMS_READY_WITHIN;
        let mut backoff = Duration::from_millis(100);
        loop {
            match bus.ensure_streams().await {
                Ok(()) => return Ok(bus),
                Err(error) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::warn!(%error, ?backoff, "JetStream not ready; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The connection, for what else speaks NATS beside the streams (the RPC service).
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// The server this client is connected to now (`host:port`, as it announces itself).
    pub fn connected_server(&self) -> String {
        let info = self.client.server_info();
        format!("{}:{}", info.host, info.port)
    }

    /// Replicas of every stream and bucket: `--replicas`, or the cluster's servers (as the
    /// server announces them, or as many as were named, whichever is more), up to 3.
    pub fn replicas(&self) -> usize {
        if let Some(n) = self.config.replicas {
            return n.clamp(1, MAX_REPLICAS);
        }
        let info = self.client.server_info();
        if info.cluster.is_none() {
            return 1;
        }
        let named = self.config.servers().map_or(1, |s| s.len());
        info.connect_urls.len().max(named).clamp(1, AUTO_REPLICAS)
    }

    /// Replicas for `stream`: [`Self::replicas`], but in automatic mode never fewer than it
    /// has (a node that sees part of the cluster must not scale a stream down).
    async fn replicas_for(&self, stream: &str) -> usize {
        let wanted = self.replicas();
        if self.config.replicas.is_some() {
            return wanted;
        }
        match self.js.get_stream(stream).await {
            Ok(mut existing) => match existing.info().await {
                Ok(info) => wanted.max(info.config.num_replicas),
                Err(_) => wanted,
            },
            Err(_) => wanted,
        }
    }

    async fn ensure_streams(&self) -> Result<(), BusError> {
        // The server's INFO arrives after `connect` returns (it retries in the background):
        // until then the cluster's size is unknown, and streams are not touched.
        if self.client.server_info().server_id.is_empty() {
            return Err(BusError::jetstream(
                "read the server's INFO",
                "not connected yet",
            ));
        }
        let streams = [
            (
                subjects::EVENTS_STREAM,
                vec![
                    subjects::EVENTS_SUBJECTS,
                    subjects::IMPRESSIONS_SUBJECT,
                    subjects::USER_ERASURES_SUBJECT,
                ],
            ),
            (
                subjects::ITEMS_STREAM,
                vec![subjects::ITEMS_SUBJECT, subjects::ITEM_DELETIONS_SUBJECT],
            ),
            (subjects::DLQ_STREAM, vec![subjects::DLQ_SUBJECTS]),
            (subjects::LATE_STREAM, vec![subjects::LATE_SUBJECTS]),
            (subjects::ALERTS_STREAM, vec![subjects::ALERTS_SUBJECTS]),
        ];
        for (name, captured) in streams {
            let replicas = self.replicas_for(name).await;
            let kept_apart = [
                subjects::DLQ_STREAM,
                subjects::LATE_STREAM,
                subjects::ALERTS_STREAM,
            ];
            let limits = if kept_apart.contains(&name) {
                self.config.dlq_retention
            } else {
                self.config.retention
            };
            let mut max_bytes = limits.max_bytes;
            loop {
                let created = self
                    .js
                    .create_or_update_stream(stream::Config {
                        name: name.to_owned(),
                        subjects: captured.iter().map(|s| (*s).to_owned()).collect(),
                        storage: stream::StorageType::File,
                        duplicate_window: self.config.duplicate_window,
                        max_age: limits.max_age,
                        max_bytes,
                        discard: stream::DiscardPolicy::Old,
                        num_replicas: replicas,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(_) => break,
                    // JetStream reserves a file stream's max_bytes up front. A stream that
                    // exists keeps the size it has: shrinking it would discard its oldest
                    // messages, which may not be learned yet, and a server restarted on a
                    // fuller disk may not grant even what it already holds. A new stream takes
                    // the largest halving that fits, and says so.
                    Err(e) if storage_short(&e) => {
                        if let Ok(existing) = self.js.get_stream(name).await {
                            tracing::warn!(
                                stream = name,
                                asked = max_bytes,
                                kept = existing.cached_info().config.max_bytes,
                                "JetStream has less storage than the retention asks; keeping the stream's current size"
                            );
                            break;
                        }
                        if max_bytes <= MIN_STREAM_BYTES {
                            return Err(BusError::jetstream("create stream", e));
                        }
                        max_bytes /= 2;
                        tracing::warn!(
                            stream = name,
                            max_bytes,
                            "JetStream has less storage than the retention asks; retrying with half"
                        );
                    }
                    Err(e) => return Err(BusError::jetstream("create stream", e)),
                }
            }
        }
        Ok(())
    }

    async fn snapshot_buckets(
        &self,
    ) -> Result<(jetstream::object_store::ObjectStore, jetstream::kv::Store), BusError> {
        let objects = match self.js.get_object_store(SNAPSHOT_BUCKET).await {
            Ok(store) => store,
            Err(_) => self
                .js
                .create_object_store(jetstream::object_store::Config {
                    bucket: SNAPSHOT_BUCKET.to_owned(),
                    description: Some("streamrec learner snapshots".to_owned()),
                    storage: stream::StorageType::File,
                    num_replicas: self.replicas(),
                    ..Default::default()
                })
                .await
                .map_err(|e| BusError::jetstream("create object store", e))?,
        };
        let kv = match self.js.get_key_value(STATE_BUCKET).await {
            Ok(kv) => kv,
            Err(_) => self
                .js
                .create_key_value(jetstream::kv::Config {
                    bucket: STATE_BUCKET.to_owned(),
                    description: "streamrec: which snapshot is current".to_owned(),
                    storage: stream::StorageType::File,
                    num_replicas: self.replicas(),
                    ..Default::default()
                })
                .await
                .map_err(|e| BusError::jetstream("create key-value bucket", e))?,
        };
        // Buckets made before the cluster grew (or with another `--replicas`) follow it.
        for bucket_stream in [
            format!("OBJ_{SNAPSHOT_BUCKET}"),
            format!("KV_{STATE_BUCKET}"),
        ] {
            self.set_replicas(&bucket_stream).await?;
        }
        Ok((objects, kv))
    }

    /// Takes or renews the snapshot writer's lease (key [`SNAPSHOT_LEASE_KEY`]): created if
    /// nobody holds it, updated at the revision read (compare-and-set) if this node holds
    /// it or it has expired. Whether this node holds it now.
    async fn hold_snapshot_lease(&self, kv: &jetstream::kv::Store) -> Result<bool, BusError> {
        let me = &self.lease_holder;
        let now = streamrec_proto::now_millis();
        let lease = SnapshotLease {
            holder: me.clone(),
            until_ms: now.saturating_add(
                i64::try_from(self.config.snapshot_lease.as_millis()).unwrap_or(i64::MAX),
            ),
        };
        let value: bytes::Bytes = serde_json::to_vec(&lease)
            .map_err(|e| BusError::jetstream("encode snapshot lease", e))?
            .into();
        let outcome = compare_and_set(kv, SNAPSHOT_LEASE_KEY, value, |current| {
            serde_json::from_slice::<SnapshotLease>(current)
                .ok()
                .is_none_or(|l| l.holder == *me || l.until_ms < now)
        })
        .await?;
        Ok(outcome == Cas::Written)
    }

    /// [`Self::hold_snapshot_lease`], with its gauge set whatever happens.
    async fn lease_held(&self, kv: &jetstream::kv::Store) -> Result<bool, BusError> {
        let held = self.hold_snapshot_lease(kv).await;
        let gauge = if matches!(held, Ok(true)) { 1.0 } else { 0.0 };
        metrics::gauge!("streamrec_snapshot_lease_held").set(gauge);
        held
    }

    /// Names `version` the current snapshot, only forward: a node that took the lease while
    /// behind does not move it back to an older sequence (compare-and-set on the key).
    async fn name_current(&self, kv: &jetstream::kv::Store, version: &str) -> Result<(), BusError> {
        let new: streamrec_proto::SnapshotVersion = version
            .parse()
            .map_err(|e| BusError::jetstream("name current snapshot", e))?;
        let outcome = compare_and_set(
            kv,
            CURRENT_SNAPSHOT_KEY,
            version.to_owned().into(),
            |current| {
                String::from_utf8_lossy(current)
                    .parse::<streamrec_proto::SnapshotVersion>()
                    .map_or(true, |current| current.seq() < new.seq())
            },
        )
        .await?;
        match outcome {
            Cas::Written => {}
            Cas::Refused => {
                tracing::info!(version, "the current snapshot is not older; left as it is")
            }
            Cas::Lost => tracing::warn!(
                version,
                "the current snapshot changed meanwhile; not named current"
            ),
        }
        Ok(())
    }

    /// Updates `stream` to [`Self::replicas`] if it has another count.
    async fn set_replicas(&self, stream: &str) -> Result<(), BusError> {
        let replicas = self.replicas_for(stream).await;
        let mut existing = self
            .js
            .get_stream(stream)
            .await
            .map_err(|e| BusError::jetstream("look up stream", e))?;
        let mut config = existing
            .info()
            .await
            .map_err(|e| BusError::jetstream("read stream info", e))?
            .config
            .clone();
        if config.num_replicas != replicas {
            tracing::info!(
                stream,
                from = config.num_replicas,
                to = replicas,
                "changing the stream's replicas"
            );
            config.num_replicas = replicas;
            self.js
                .update_stream(config)
                .await
                .map_err(|e| BusError::jetstream("update stream replicas", e))?;
        }
        Ok(())
    }

    /// Deletes every object of the snapshots older than the newest `snapshots_kept`, never
    /// those of `current`.
    async fn prune_snapshots(
        &self,
        objects: &jetstream::object_store::ObjectStore,
        current: &str,
    ) -> Result<(), BusError> {
        use futures::TryStreamExt;
        let listed: Vec<String> = objects
            .list()
            .await
            .map_err(|e| BusError::jetstream("list snapshot objects", e))?
            .map_ok(|info| info.name)
            .try_collect()
            .await
            .map_err(|e| BusError::jetstream("list snapshot objects", e))?;
        // Objects are `<version>/<file>`. A version is `<sequence>-<hash>` with the sequence
        // zero-padded to at least 12 digits: longer sequences are later ones.
        let mut versions: Vec<streamrec_proto::SnapshotVersion> = listed
            .iter()
            .filter_map(|name| name.split_once('/')?.0.parse().ok())
            .collect();
        versions.sort_by(|a, b| {
            let digits = |v: &streamrec_proto::SnapshotVersion| v.as_str().find('-');
            digits(a).cmp(&digits(b)).then(a.cmp(b))
        });
        versions.dedup();
        let stale = versions
            .len()
            .saturating_sub(self.config.snapshots_kept.max(1));
        for version in versions[..stale].iter().filter(|v| v.as_str() != current) {
            let prefix = format!("{}/", version.as_str());
            for name in listed.iter().filter(|n| n.starts_with(&prefix)) {
                objects
                    .delete(name)
                    .await
                    .map_err(|e| BusError::jetstream("delete snapshot object", e))?;
            }
        }
        Ok(())
    }

    fn stream_name(topic: Topic) -> &'static str {
        match topic {
            Topic::Events => subjects::EVENTS_STREAM,
            Topic::Items => subjects::ITEMS_STREAM,
        }
    }

    fn durable_name(&self, topic: Topic) -> String {
        let suffix = match topic {
            Topic::Events => "events",
            Topic::Items => "items",
        };
        format!("{}-{suffix}", self.config.consumer_prefix)
    }

    /// Recreates the durable consumer so that it delivers from `from_seq`.
    async fn reset_consumer(&self, topic: Topic, from_seq: u64) -> Result<(), BusError> {
        let stream = self
            .js
            .get_stream(Self::stream_name(topic))
            .await
            .map_err(|e| BusError::jetstream("get stream", e))?;
        let durable = self.durable_name(topic);
        // Absent on first start; any other failure shows up in the create below.
        let _ = stream.delete_consumer(&durable).await;
        let deliver_policy = if from_seq <= 1 {
            jetstream::consumer::DeliverPolicy::All
        } else {
            jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from_seq,
            }
        };
        stream
            .create_consumer(pull::Config {
                durable_name: Some(durable),
                deliver_policy,
                // Messages are applied strictly in order, so acking the last of a batch
                // acknowledges all of it: one ack per batch instead of one per message.
                ack_policy: jetstream::consumer::AckPolicy::All,
                ack_wait: self.config.ack_wait,
                max_ack_pending: 100_000,
                ..Default::default()
            })
            .await
            .map(drop)
            .map_err(|e| BusError::jetstream("create consumer", e))
    }

    async fn open_messages(&self, topic: Topic) -> Result<pull::Stream, BusError> {
        let stream = self
            .js
            .get_stream(Self::stream_name(topic))
            .await
            .map_err(|e| BusError::jetstream("get stream", e))?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_consumer(&self.durable_name(topic))
            .await
            .map_err(|e| BusError::jetstream("get consumer", e))?;
        consumer
            .stream()
            .max_messages_per_batch(self.config.max_batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| BusError::jetstream("pull", e))
    }
}

impl NatsBus {
    /// The end of the newest drift window already announced (alerts go out in window order,
    /// from every node); `i64::MIN` before the first. Alerts of that window itself are left
    /// to the message ids (a retry of a batch cut short).
    async fn alerts_through(&self) -> Result<i64, BusError> {
        let stream = self
            .js
            .get_stream(subjects::ALERTS_STREAM)
            .await
            .map_err(|e| BusError::jetstream("open the alerts stream", e))?;
        match stream
            .get_last_raw_message_by_subject(subjects::DRIFT_ALERTS_SUBJECT)
            .await
        {
            Ok(message) => Ok(serde_json::from_slice::<DriftAlert>(&message.payload)
                .map_or(i64::MIN, |alert| alert.window.end)),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(i64::MIN),
            Err(e) => Err(BusError::jetstream("read the newest drift alert", e)),
        }
    }

    /// The newest events-stream sequence already republished as late: the last message of
    /// `STREAMREC_LATE` says (late events are republished in stream order, by every node).
    async fn late_through(&self) -> Result<u64, BusError> {
        let mut stream = self
            .js
            .get_stream(subjects::LATE_STREAM)
            .await
            .map_err(|e| BusError::jetstream("open the late stream", e))?;
        let last = stream
            .info()
            .await
            .map_err(|e| BusError::jetstream("read the late stream", e))?
            .state
            .last_sequence;
        if last == 0 {
            return Ok(0);
        }
        let message = match stream.get_raw_message(last).await {
            Ok(message) => message,
            // Gone (age, size): nothing newer was republished after it either.
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => return Ok(0),
            Err(e) => {
                return Err(BusError::jetstream(
                    "read the late stream's newest message",
                    e,
                ));
            }
        };
        Ok(message
            .headers
            .get(subjects::LATE_SOURCE_SEQ_HEADER)
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or(0))
    }
}

fn headers_with_id(msg_id: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(id) = msg_id {
        headers.insert(subjects::MSG_ID_HEADER, id);
    }
    headers
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, messages: Vec<Outbound>) -> Result<(), BusError> {
        let mut acks = Vec::with_capacity(messages.len());
        for message in messages {
            let mut publish = PublishMessage::build().payload(message.payload);
            if let Some(id) = &message.msg_id {
                publish = publish.message_id(id);
            }
            let subject = message.subject;
            let ack = self
                .js
                .send_publish(subject.clone(), publish)
                .await
                .map_err(|e| BusError::Publish {
                    subject: subject.clone(),
                    message: e.to_string(),
                })?;
            acks.push(async move {
                ack.await.map_err(|e| BusError::Publish {
                    subject,
                    message: e.to_string(),
                })
            });
        }
        try_join_all(acks).await.map(drop)
    }

    async fn consumer(&self, topic: Topic, from_seq: u64) -> Result<Box<dyn Consumer>, BusError> {
        self.reset_consumer(topic, from_seq).await?;
        let messages = self.open_messages(topic).await?;
        Ok(Box::new(NatsConsumer {
            bus: self.clone(),
            topic,
            messages: Some(messages),
        }))
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), BusError> {
        // The id makes a redelivered bad message land in the DLQ once.
        let mut headers = headers_with_id(Some(&letter.id()));
        headers.insert(subjects::DLQ_REASON_HEADER, letter.reason.as_str());
        // Header values cannot hold line breaks.
        headers.insert(
            subjects::DLQ_ERROR_HEADER,
            letter.error.replace(['\r', '\n'], " ").as_str(),
        );
        headers.insert(subjects::DLQ_SOURCE_HEADER, letter.source_subject.as_str());
        if letter.is_truncated() {
            headers.insert(
                subjects::DLQ_PAYLOAD_BYTES_HEADER,
                letter.payload_bytes.to_string().as_str(),
            );
        }
        let subject = subjects::dlq_subject(&letter.reason);
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, letter.payload)
            .await
            .map_err(|e| BusError::Publish {
                subject: subject.clone(),
                message: e.to_string(),
            })?;
        ack.await.map(drop).map_err(|e| BusError::Publish {
            subject,
            message: e.to_string(),
        })
    }

    async fn late_events(&self, events: Vec<LateEvent>) -> Result<(), BusError> {
        let through = self.late_through().await?;
        let mut acks = Vec::new();
        for late in events.into_iter().filter(|l| l.source_seq > through) {
            let mut headers = headers_with_id(Some(&late.id()));
            headers.insert(subjects::LATE_MS_HEADER, late.late_ms.to_string().as_str());
            headers.insert(
                subjects::LATE_SOURCE_SEQ_HEADER,
                late.source_seq.to_string().as_str(),
            );
            let subject = subjects::late_subject(late.kind);
            let failed = move |subject: String, e: String| BusError::Publish {
                subject,
                message: e,
            };
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers, late.payload)
                .await
                .map_err(|e| failed(subject.clone(), e.to_string()))?;
            acks.push(async move {
                ack.await
                    .map(drop)
                    .map_err(|e| failed(subject, e.to_string()))
            });
        }
        // Published in order, acknowledged together: one round trip for the batch.
        try_join_all(acks).await.map(drop)
    }

    async fn drift_alerts(&self, alerts: Vec<DriftAlert>) -> Result<(), BusError> {
        // JetStream's de-duplication forgets ids after its window: a replay from an old
        // snapshot, or a new node, would announce every past alert again.
        let through = self.alerts_through().await?;
        let messages = alerts
            .iter()
            .filter(|alert| alert.window.end >= through)
            .map(|alert| Outbound {
                subject: subjects::DRIFT_ALERTS_SUBJECT.to_owned(),
                msg_id: Some(alert.msg_id()),
                payload: serde_json::to_vec(alert).unwrap_or_default().into(),
            })
            .collect();
        self.publish(messages).await
    }

    fn compares_state_digests(&self) -> bool {
        true
    }

    async fn check_state_digest(
        &self,
        seq: u64,
        digest: &BTreeMap<String, String>,
    ) -> Result<DigestCheck, BusError> {
        let (_, kv) = self.snapshot_buckets().await?;
        let key = format!("digest.{seq}");
        let mine = StateDigest {
            node: self.lease_holder.clone(),
            learners: digest.clone(),
        };
        let value: bytes::Bytes = serde_json::to_vec(&mine)
            .map_err(|e| BusError::jetstream("encode state digest", e))?
            .into();
        if kv.create(&key, value).await.is_ok() {
            return Ok(DigestCheck::First);
        }
        let reference = kv
            .get(&key)
            .await
            .map_err(|e| BusError::jetstream("read state digest", e))?
            .and_then(|bytes| serde_json::from_slice::<StateDigest>(&bytes).ok())
            .ok_or_else(|| BusError::jetstream("read state digest", "missing or unreadable"))?;
        let learners: Vec<String> = reference
            .learners
            .keys()
            .chain(digest.keys())
            .filter(|name| reference.learners.get(*name) != digest.get(*name))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if learners.is_empty() {
            return Ok(DigestCheck::Same);
        }
        let alert = DivergenceAlert {
            seq,
            node: mine.node,
            reference_node: reference.node,
            learners,
        };
        // Found either way: a refused publish leaves the count and the log to tell it.
        if let Err(error) = self
            .publish(vec![Outbound {
                subject: subjects::DIVERGENCE_ALERTS_SUBJECT.to_owned(),
                msg_id: Some(alert.msg_id()),
                payload: serde_json::to_vec(&alert).unwrap_or_default().into(),
            }])
            .await
        {
            tracing::warn!(%error, seq, "divergence alert not published");
        }
        Ok(DigestCheck::Differs(alert))
    }

    async fn readiness(&self) -> Readiness {
        let state = self.client.connection_state();
        if state != async_nats::connection::State::Connected {
            return Readiness {
                ready: false,
                detail: format!("NATS connection is {state:?}"),
                events_head: None,
            };
        }
        // A round trip with a deadline: a frozen server keeps its TCP connection open, so
        // the connection state alone says nothing.
        let probe = tokio::time::timeout(Duration::from_secs(1), async {
            let mut stream = self
                .js
                .get_stream(subjects::EVENTS_STREAM)
                .await
                .map_err(|e| e.to_string())?;
            let info = stream.info().await.map_err(|e| e.to_string())?;
            Ok::<u64, String>(info.state.last_sequence)
        })
        .await;
        match probe {
            Ok(Ok(head)) => Readiness {
                ready: true,
                detail: format!("connected; stream {} exists", subjects::EVENTS_STREAM),
                events_head: Some(head),
            },
            Ok(Err(e)) => Readiness {
                ready: false,
                detail: format!("stream {}: {e}", subjects::EVENTS_STREAM),
                events_head: None,
            },
            Err(_) => Readiness {
                ready: false,
                detail: "JetStream did not answer within 1 s".to_owned(),
                events_head: None,
            },
        }
    }

    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn store_snapshot(
        &self,
        dir: &std::path::Path,
        version: &str,
        files: &[String],
    ) -> Result<(), BusError> {
        let (objects, kv) = self.snapshot_buckets().await?;
        if !self.lease_held(&kv).await? {
            tracing::debug!(
                version,
                "another node writes the cluster's snapshots; kept on disk only"
            );
            return Ok(());
        }
        for file in files {
            let path = dir.join(file);
            let mut reader = tokio::fs::File::open(&path).await.map_err(|e| {
                BusError::jetstream("read snapshot file", format!("{}: {e}", path.display()))
            })?;
            objects
                .put(format!("{version}/{file}").as_str(), &mut reader)
                .await
                .map_err(|e| BusError::jetstream("put snapshot object", e))?;
        }
        // The upload may have outlasted the lease: renewed (compare-and-set) before the
        // current snapshot is named, or nothing is named.
        if !self.lease_held(&kv).await? {
            tracing::warn!(
                version,
                "lost the snapshot lease while uploading; not named current"
            );
            return Ok(());
        }
        self.name_current(&kv, version).await?;
        // Pruning is housekeeping: a failure leaves extra copies, never a missing one.
        if let Err(error) = self.prune_snapshots(&objects, version).await {
            tracing::warn!(%error, "old snapshots not pruned from the object store");
        }
        Ok(())
    }

    async fn fetch_snapshot(&self, root: &std::path::Path) -> Result<Option<String>, BusError> {
        use tokio::io::AsyncReadExt;
        let (objects, kv) = self.snapshot_buckets().await?;
        let Some(current) = kv
            .get(CURRENT_SNAPSHOT_KEY)
            .await
            .map_err(|e| BusError::jetstream("read current snapshot", e))?
        else {
            return Ok(None);
        };
        // Whoever can write the bucket chooses these names: parsed before they touch the disk.
        let version: streamrec_proto::SnapshotVersion =
            String::from_utf8_lossy(&current)
                .parse()
                .map_err(|e| BusError::jetstream("read current snapshot", e))?;
        let version = version.as_str().to_owned();
        let target = root.join(&version);
        if target.join("manifest.json").exists() {
            return Ok(Some(version));
        }
        let fetch = |e: String| BusError::jetstream("fetch snapshot", e);
        let mut manifest_bytes = Vec::new();
        objects
            .get(format!("{version}/manifest.json").as_str())
            .await
            .map_err(|e| fetch(e.to_string()))?
            .read_to_end(&mut manifest_bytes)
            .await
            .map_err(|e| fetch(e.to_string()))?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&manifest_bytes).map_err(|e| fetch(e.to_string()))?;
        let mut files: Vec<String> = manifest["learners"]
            .as_object()
            .map(|l| {
                l.values()
                    .filter_map(|f| f["file"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(bad) = files.iter().find(|f| !crate::snapshot::is_snapshot_file(f)) {
            return Err(fetch(format!(
                "manifest names a file {bad:?} no snapshot has"
            )));
        }
        files.push(crate::snapshot::MANIFEST.to_owned());
        // Into a temp folder first, then renamed: a partial download is never a snapshot.
        let tmp = root.join(format!(".tmp-fetch-{version}-{}", std::process::id()));
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| fetch(e.to_string()))?;
        for file in &files {
            let mut bytes = Vec::new();
            objects
                .get(format!("{version}/{file}").as_str())
                .await
                .map_err(|e| fetch(format!("{file}: {e}")))?
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| fetch(format!("{file}: {e}")))?;
            tokio::fs::write(tmp.join(file), bytes)
                .await
                .map_err(|e| fetch(e.to_string()))?;
        }
        tokio::fs::rename(&tmp, &target)
            .await
            .map_err(|e| fetch(e.to_string()))?;
        Ok(Some(version))
    }
}

struct NatsConsumer {
    bus: NatsBus,
    topic: Topic,
    /// `None` after an error: the next call opens a fresh pull stream on the same durable
    /// consumer, which redelivers whatever was not acknowledged.
    messages: Option<pull::Stream>,
}

impl NatsConsumer {
    /// The delivery, and how many messages JetStream says are still pending for the consumer
    /// after it (`num_pending`).
    fn to_delivery(message: jetstream::Message) -> Result<(Delivery, u64), BusError> {
        let (seq, delivered, published_ms, pending) = {
            let info = message
                .info()
                .map_err(|e| BusError::jetstream("message info", e))?;
            (
                info.stream_sequence,
                u64::try_from(info.delivered).unwrap_or(1),
                (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
                info.pending,
            )
        };
        let (message, acker) = message.split();
        let delivery = Delivery {
            seq,
            subject: message.subject.to_string(),
            payload: message.payload,
            delivered,
            published_ms,
            acker: Some(acker),
        };
        Ok((delivery, pending))
    }
}

#[async_trait]
impl Consumer for NatsConsumer {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let messages = match &mut self.messages {
            Some(m) => m,
            None => self
                .messages
                .insert(self.bus.open_messages(self.topic).await?),
        };
        let first = match tokio::time::timeout(wait, messages.next()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => {
                self.messages = None;
                return Err(BusError::jetstream("pull", "message stream ended"));
            }
            Ok(Some(Err(e))) => {
                self.messages = None;
                return Err(BusError::jetstream("pull", e));
            }
            Ok(Some(Ok(m))) => m,
        };
        let (first, mut pending) = Self::to_delivery(first)?;
        let mut batch = vec![first];
        // Take what is already buffered without waiting again.
        while batch.len() < max {
            match messages.next().now_or_never() {
                Some(Some(Ok(m))) => {
                    let (delivery, left) = Self::to_delivery(m)?;
                    batch.push(delivery);
                    pending = left;
                }
                Some(Some(Err(e))) => {
                    tracing::warn!(error = %e, "pull stream error after a partial batch");
                    self.messages = None;
                    break;
                }
                Some(None) => {
                    self.messages = None;
                    break;
                }
                None => break,
            }
        }
        metrics::gauge!(super::CONSUMER_PENDING, "topic" => self.topic.name()).set(pending as f64);
        Ok(batch)
    }

    async fn ack_through(&mut self, last: &Delivery) -> Result<(), BusError> {
        match &last.acker {
            Some(acker) => acker.ack().await.map_err(|e| BusError::jetstream("ack", e)),
            None => Ok(()),
        }
    }
}
