//! The engine: the supervision tree plus the handles the API reads through.

use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use streamrec_learner::online::OnlineCounters;
use streamrec_proto::{Event, Item, ItemDeletion, SnapshotVersion, UserErasure, subjects};
use tokio::task::JoinHandle;

use crate::bus::{Bus, Outbound, Readiness};
use crate::counters::{Counters, StatsSnapshot};
use crate::engine_config::EngineConfig;
use crate::error::{BusError, EngineError};
use crate::impressions::ImpressionPublisher;
use crate::rerank_batcher::RerankBatcher;
use crate::root::{RootArgs, RootMsg, RootSupervisor};
use crate::serving::ServingState;
use crate::snapshot::{Manifest, SnapshotStore};
use crate::snapshot_actor::SnapshotMsg;
use streamrec_pipeline::ServingModels;
use streamrec_ranker::ComputeDevice;

/// What `/readyz` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EngineReadiness {
    pub ready: bool,
    /// Why not: `bus_unavailable` or `learner_lagging`.
    pub reason: Option<&'static str>,
    /// What the bus said.
    pub bus: String,
    /// Events in the log the learner has not applied yet (when the bus said its head).
    pub learner_lag: Option<u64>,
    pub max_learner_lag: u64,
}

/// How long a snapshot request waits for a snapshot actor (one restarts with the learner,
/// after the learner's own restore).
const SNAPSHOT_ACTOR_WAIT: Duration = Duration::from_secs(30);

/// Snapshot versions kept loaded for pinned requests.
const PINNED_CACHE: usize = 4;

pub struct Engine {
    serving: Arc<ServingState>,
    counters: Arc<Counters>,
    /// Recently pinned snapshot versions, most recent last.
    pinned: std::sync::Mutex<Vec<(SnapshotVersion, Arc<ServingModels>)>>,
    view_size: usize,
    device: ComputeDevice,
    rerank: bool,
    max_future_skew: Duration,
    max_learner_lag: u64,
    batcher: RerankBatcher,
    refresher: JoinHandle<()>,
    impressions: ImpressionPublisher,
    bus: Arc<dyn Bus>,
    root: ActorRef<RootMsg>,
    root_task: JoinHandle<()>,
}

impl Engine {
    /// Starts the supervision tree on `bus`.
    pub async fn start(bus: Arc<dyn Bus>, config: EngineConfig) -> Result<Self, EngineError> {
        let store = config
            .snapshot_dir
            .as_ref()
            .map(|dir| SnapshotStore::new(dir.clone(), config.snapshot_retain));
        if let Some(store) = &store {
            // A node with an empty disk starts from the snapshot kept beside the bus.
            match bus.fetch_snapshot(store.root()).await {
                Ok(Some(version)) => tracing::info!(version, "current snapshot available locally"),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot fetch the bus's current snapshot"),
            }
        }
        let serving = Arc::new(ServingState::new(store));
        let counters = Arc::new(Counters::default());
        let args = RootArgs {
            serving: Arc::clone(&serving),
            counters: Arc::clone(&counters),
            bus: Arc::clone(&bus),
            config,
        };
        let view_size = args.config.popularity_view_size;
        let device = args.config.rerank_device;
        let rerank = args.config.rerank;
        let max_future_skew = args.config.max_future_skew;
        let max_learner_lag = args.config.max_learner_lag;
        let batcher = RerankBatcher::start(args.config.batcher);
        let refresher = crate::intent_refresher::spawn_refresher(
            Arc::clone(&serving),
            args.config.ann_refresh,
            args.config.ann_rebuild_every,
            args.config.ann,
        );
        let (root, root_task) = Actor::spawn(None, RootSupervisor, args)
            .await
            .map_err(|e| EngineError::Spawn {
                actor: "root",
                message: e.to_string(),
            })?;
        let impressions = ImpressionPublisher::start(Arc::clone(&bus), Arc::clone(&counters));
        Ok(Self {
            serving,
            counters,
            pinned: std::sync::Mutex::new(Vec::new()),
            view_size,
            device,
            rerank,
            max_future_skew,
            max_learner_lag,
            batcher,
            refresher,
            impressions,
            bus,
            root,
            root_task,
        })
    }

    /// What requests read: the published version, the intent index, snapshots, shadow.
    pub fn serving(&self) -> &Arc<ServingState> {
        &self.serving
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    #[cfg(test)]
    pub(crate) fn root(&self) -> &ActorRef<RootMsg> {
        &self.root
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// How far an event's time may run ahead of the clock it arrives by.
    pub fn max_future_skew(&self) -> Duration {
        self.max_future_skew
    }

    pub(crate) fn reranks(&self) -> bool {
        self.rerank
    }

    pub(crate) fn batcher(&self) -> &RerankBatcher {
        &self.batcher
    }

    pub(crate) fn impressions(&self) -> &ImpressionPublisher {
        &self.impressions
    }

    /// The latest published serving models.
    pub fn models(&self) -> Arc<ServingModels> {
        self.serving.models.load_full()
    }

    pub fn model_version(&self) -> String {
        self.serving.model_version()
    }

    pub fn is_unavailable(&self, item_id: &str) -> bool {
        self.models()
            .read
            .is_unavailable(item_id, streamrec_proto::now_millis())
    }

    /// Sessions the published version remembers (at most `online.max_sessions`).
    pub fn live_sessions(&self) -> usize {
        self.models().read.session_count()
    }

    /// The learner's own counters (attribution, expiry), asked of the learner actor.
    pub async fn learner_counters(&self) -> Option<OnlineCounters> {
        // As of the published version: a request never waits on the learner's mailbox.
        Some(self.models().counters)
    }

    /// Writes a snapshot now.
    pub async fn snapshot_now(&self) -> Result<Manifest, EngineError> {
        let unavailable = |message: String| EngineError::Unavailable {
            actor: "snapshot",
            message,
        };
        // The root knows which snapshot actor runs now. While the learner restarts (it
        // restores a snapshot first), there is none, or the one asked is stopping: ask again.
        let deadline = tokio::time::Instant::now() + SNAPSHOT_ACTOR_WAIT;
        loop {
            let asked = self
                .root
                .call(RootMsg::SnapshotActor, Some(SNAPSHOT_ACTOR_WAIT))
                .await;
            if let Ok(CallResult::Success(Some(actor))) = asked
                && let Ok(CallResult::Success(result)) = actor
                    .call(SnapshotMsg::Take, Some(Duration::from_secs(120)))
                    .await
            {
                return result.map_err(unavailable);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable(
                    "no snapshot actor answered (the engine is restarting one)".to_owned(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The serving models of snapshot `version`, loaded on first use and cached (bounded).
    pub async fn pinned_models(
        &self,
        version: &SnapshotVersion,
    ) -> Result<Arc<ServingModels>, EngineError> {
        let cached = |pinned: &mut Vec<(SnapshotVersion, Arc<ServingModels>)>| {
            let i = pinned.iter().position(|(v, _)| v == version)?;
            let entry = pinned.remove(i);
            let models = Arc::clone(&entry.1);
            pinned.push(entry);
            Some(models)
        };
        if let Some(models) = cached(&mut self.pinned.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(models);
        }
        let store = self
            .snapshots()
            .cloned()
            .ok_or_else(|| EngineError::UnknownVersion(version.to_string()))?;
        let owned = version.clone();
        let view_size = self.view_size;
        let device = self.device;
        let loaded = tokio::task::spawn_blocking(move || store.load(&owned))
            .await
            .map_err(|e| EngineError::BadVersion {
                version: version.to_string(),
                message: e.to_string(),
            })?;
        let loaded = loaded.map(|(manifest, models)| {
            let name = Some(manifest.version.to_string());
            let reranker = streamrec_pipeline::serving_reranker(&models, device)
                .inspect_err(|error| tracing::warn!(%error, "snapshot re-ranker not loaded"))
                .ok()
                .flatten();
            (
                manifest,
                ServingModels::loaded(name, &models, view_size, reranker),
            )
        });
        let (manifest, serving) = loaded.map_err(|e| match e {
            crate::snapshot::SnapshotError::NotFound(v) => EngineError::UnknownVersion(v),
            other => {
                tracing::warn!(error = %other, "pinned snapshot cannot be loaded");
                EngineError::BadVersion {
                    version: version.to_string(),
                    message: other.public_message(),
                }
            }
        })?;
        let serving = Arc::new(serving);
        let mut pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        pinned.push((manifest.version, Arc::clone(&serving)));
        if pinned.len() > PINNED_CACHE {
            pinned.remove(0);
        }
        Ok(serving)
    }

    pub fn snapshots(&self) -> Option<&SnapshotStore> {
        self.serving.snapshots.as_ref()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.counters.snapshot()
    }

    /// Bus append to learned, in milliseconds, of the newest event learned.
    pub fn freshness_ms(&self) -> u64 {
        self.counters.freshness_ms()
    }

    /// Ready when the bus answers within its deadline and the learner is at most
    /// `max_learner_lag` events behind the events log.
    pub async fn readiness(&self) -> EngineReadiness {
        // The bus adapters bound their own probes; this bounds a stuck adapter too.
        let bus = match tokio::time::timeout(Duration::from_secs(2), self.bus.readiness()).await {
            Ok(bus) => bus,
            Err(_) => Readiness {
                ready: false,
                detail: "the bus did not answer within 2 s".to_owned(),
                events_head: None,
            },
        };
        let applied = self
            .counters
            .applied_seq
            .load(std::sync::atomic::Ordering::Acquire);
        let learner_lag = bus.events_head.map(|head| head.saturating_sub(applied));
        let (ready, reason) = if !bus.ready {
            (false, Some("bus_unavailable"))
        } else if learner_lag.is_some_and(|lag| lag > self.max_learner_lag) {
            (false, Some("learner_lagging"))
        } else {
            (true, None)
        };
        EngineReadiness {
            ready,
            reason,
            bus: bus.detail,
            learner_lag,
            max_learner_lag: self.max_learner_lag,
        }
    }

    /// Publishes validated events to the bus; returns once the bus has stored them.
    pub async fn publish_events(&self, events: &[Event]) -> Result<(), BusError> {
        let messages = events
            .iter()
            .map(|e| Outbound {
                subject: subjects::event_subject(e.kind),
                msg_id: Some(e.event_id.clone()),
                payload: e.to_json().into(),
            })
            .collect();
        self.bus.publish(messages).await
    }

    /// Publishes validated catalog upserts to the bus.
    pub async fn publish_items(&self, items: &[Item]) -> Result<(), BusError> {
        let messages = items
            .iter()
            .map(|i| Outbound {
                subject: subjects::ITEMS_SUBJECT.to_owned(),
                msg_id: None,
                payload: i.to_json().into(),
            })
            .collect();
        self.bus.publish(messages).await
    }

    /// Publishes a catalog deletion; it applies in order with the upserts.
    pub async fn publish_item_deletion(&self, deletion: &ItemDeletion) -> Result<(), BusError> {
        self.bus
            .publish(vec![Outbound {
                subject: subjects::ITEM_DELETIONS_SUBJECT.to_owned(),
                msg_id: None,
                payload: deletion.to_json().into(),
            }])
            .await
    }

    /// Publishes a user erasure onto the events stream: it applies after every event
    /// published before it.
    pub async fn publish_user_erasure(&self, erasure: &UserErasure) -> Result<(), BusError> {
        self.bus
            .publish(vec![Outbound {
                subject: subjects::USER_ERASURES_SUBJECT.to_owned(),
                msg_id: None,
                payload: erasure.to_json().into(),
            }])
            .await
    }

    /// Stops the tree and waits for it, writing a final snapshot first (when snapshots are
    /// on), all within the default bound of 10 s.
    pub async fn shutdown(self) {
        self.shutdown_within(Duration::from_secs(10)).await;
    }

    /// Writes a final snapshot of what has been applied (the bus keeps the rest, replayed
    /// after it on the next start), then stops the tree; gives up on either once `limit` has
    /// passed, so a stop is bounded at any catalog size. Returns the final snapshot's
    /// manifest, if one was written.
    pub async fn shutdown_within(self, limit: Duration) -> Option<Manifest> {
        let started = std::time::Instant::now();
        let snapshot = if self.snapshots().is_some() {
            // Most of the bound: writing is the slow part; stopping the actors is quick.
            match tokio::time::timeout(limit.mul_f64(0.8), self.snapshot_now()).await {
                Ok(Ok(manifest)) => {
                    tracing::info!(version = %manifest.version, seq = manifest.last_seq(), "final snapshot written");
                    Some(manifest)
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "no final snapshot; the next start replays from the previous one");
                    None
                }
                Err(_) => {
                    tracing::warn!(
                        ?limit,
                        "final snapshot not done in time; the next start replays from the previous one"
                    );
                    None
                }
            }
        } else {
            None
        };
        self.refresher.abort();
        self.root.stop(Some("shutdown".to_owned()));
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, self.root_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "engine root task ended abnormally"),
            Err(_) => tracing::warn!("engine actors still stopping at the shutdown deadline"),
        }
        snapshot
    }
}
