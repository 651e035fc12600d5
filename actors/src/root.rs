//! The root of the supervision tree: starts the learner, the snapshot actor and one
//! ingest actor per topic, and restarts whichever of them fails. It hands each child the
//! typed refs it talks to in its arguments; the actors that talk to the learner are stopped
//! when it restarts and start again with the new one's ref.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor::{SupervisionEvent, concurrency::JoinHandle};

use crate::bus::{Bus, Topic};
use crate::counters::Counters;
use crate::engine_config::EngineConfig;
use crate::ingest::{IngestActor, IngestArgs};
use crate::learner::{LearnerActor, LearnerArgs, LearnerMsg};
use crate::serving::ServingState;
use crate::snapshot_actor::{SnapshotActor, SnapshotArgs, SnapshotMsg};

/// Why the root stops the learner's dependents.
const LEARNER_RESTARTED: &str = "learner restarted";

pub enum RootMsg {
    /// The snapshot actor running now, if any (it is replaced when it restarts).
    SnapshotActor(RpcReplyPort<Option<ActorRef<SnapshotMsg>>>),
}

#[derive(Clone)]
pub struct RootArgs {
    pub serving: Arc<ServingState>,
    pub counters: Arc<Counters>,
    pub bus: Arc<dyn Bus>,
    pub config: EngineConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    Learner,
    Ingest(Topic),
    Snapshots,
}

impl Child {
    /// Children that hold a ref to the learner.
    fn talks_to_learner(self) -> bool {
        matches!(self, Child::Ingest(_) | Child::Snapshots)
    }
}

pub struct RootState {
    args: RootArgs,
    children: HashMap<ActorId, (Child, ActorCell)>,
    learner: Option<ActorRef<LearnerMsg>>,
    snapshots: Option<ActorRef<SnapshotMsg>>,
}

impl RootState {
    fn learner(&self) -> Result<ActorRef<LearnerMsg>, ActorProcessingErr> {
        self.learner
            .clone()
            .ok_or_else(|| "the learner is not running".into())
    }

    async fn start(
        &mut self,
        child: Child,
        supervisor: ActorCell,
    ) -> Result<(), ActorProcessingErr> {
        let config = &self.args.config;
        let (id, cell) = match child {
            Child::Learner => {
                let args = LearnerArgs {
                    serving: Arc::clone(&self.args.serving),
                    counters: Arc::clone(&self.args.counters),
                    config: config.online.clone(),
                    view_size: config.popularity_view_size,
                    publish_interval: config.publish_interval,
                    device: config.rerank_device,
                    gate: config.learner_gate.clone(),
                    // Only where other nodes share the bus is there anything to compare.
                    digest_every: if self.args.bus.compares_state_digests() {
                        config.state_digest_every
                    } else {
                        0
                    },
                };
                let (actor, _) = spawn(LearnerActor, args, supervisor).await?;
                self.learner = Some(actor.clone());
                (actor.get_id(), actor.get_cell())
            }
            Child::Snapshots => {
                let args = SnapshotArgs {
                    learner: self.learner()?,
                    store: self.args.serving.snapshots.clone(),
                    counters: Arc::clone(&self.args.counters),
                    bus: Arc::clone(&self.args.bus),
                    interval: config.snapshot_interval,
                };
                let (actor, _) = spawn(SnapshotActor, args, supervisor).await?;
                self.snapshots = Some(actor.clone());
                (actor.get_id(), actor.get_cell())
            }
            Child::Ingest(topic) => {
                let args = IngestArgs {
                    topic,
                    learner: self.learner()?,
                    bus: Arc::clone(&self.args.bus),
                    counters: Arc::clone(&self.args.counters),
                    batch_size: config.batch_size,
                    poll_wait: config.poll_wait,
                    max_future_skew: config.max_future_skew,
                    max_catalog_items: config.online.max_catalog_items,
                    max_learned_items: config.online.max_learned_items,
                    digests: Arc::new(tokio::sync::Semaphore::new(1)),
                };
                let (actor, _) = spawn(IngestActor, args, supervisor).await?;
                (actor.get_id(), actor.get_cell())
            }
        };
        self.children.insert(id, (child, cell));
        Ok(())
    }
}

async fn spawn<A: Actor>(
    actor: A,
    args: A::Arguments,
    supervisor: ActorCell,
) -> Result<(ActorRef<A::Msg>, JoinHandle<()>), ActorProcessingErr> {
    Ok(Actor::spawn_linked(None, actor, args, supervisor).await?)
}

pub struct RootSupervisor;

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = RootState {
            args,
            children: HashMap::new(),
            learner: None,
            snapshots: None,
        };
        // The learner first: the others are handed its ref. Consumers last: their first
        // batch needs it running.
        for child in [
            Child::Learner,
            Child::Snapshots,
            Child::Ingest(Topic::Items),
            Child::Ingest(Topic::Events),
        ] {
            state.start(child, myself.get_cell()).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMsg::SnapshotActor(reply) => {
                let _ = reply.send(state.snapshots.clone());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".to_owned()))
            }
            _ => return Ok(()),
        };
        let Some((child, _)) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        if why == LEARNER_RESTARTED {
            tracing::info!(?child, "restarting it with the new learner");
        } else {
            tracing::error!(?child, why, "engine actor exited; restarting it");
        }
        match child {
            Child::Learner => state.learner = None,
            Child::Snapshots => state.snapshots = None,
            Child::Ingest(_) => {}
        }
        state.start(child, myself.get_cell()).await?;
        if child == Child::Learner {
            // The new learner restored the last snapshot, and the others hold the old one's
            // ref: they restart with the new one (each exit restarts it), and the consumers
            // replay from the positions the restore set.
            for (other, cell) in state.children.values() {
                if other.talks_to_learner() {
                    cell.stop(Some(LEARNER_RESTARTED.to_owned()));
                }
            }
            // Not handed out while it stops: a snapshot request waits for the new one.
            state.snapshots = None;
        }
        Ok(())
    }
}
