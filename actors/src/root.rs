//! The root of the supervision tree: starts the learner, the snapshot actor and one
//! ingest actor per topic, and restarts whichever of them fails.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::bus::{Bus, Topic};
use crate::engine::EngineConfig;
use crate::ingest::{IngestActor, IngestArgs};
use crate::learner::{LearnerActor, LearnerArgs};
use crate::shared::Shared;
use crate::snapshot_actor::{SnapshotActor, SnapshotArgs};

/// The root takes no messages: it only supervises.
pub enum RootMsg {}

#[derive(Clone)]
pub struct RootArgs {
    pub shared: Arc<Shared>,
    pub bus: Arc<dyn Bus>,
    pub config: EngineConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    Learner,
    Ingest(Topic),
    Snapshots,
}

pub struct RootState {
    args: RootArgs,
    children: HashMap<ActorId, (Child, ActorCell)>,
}

impl RootState {
    async fn start(
        &mut self,
        child: Child,
        supervisor: ActorCell,
    ) -> Result<(), ActorProcessingErr> {
        let shared = &self.args.shared;
        let config = &self.args.config;
        let (id, cell) = match child {
            Child::Learner => {
                let args = LearnerArgs {
                    shared: Arc::clone(shared),
                    config: config.online.clone(),
                    view_size: config.popularity_view_size,
                    publish_interval: config.publish_interval,
                    device: config.rerank_device,
                    gate: config.learner_gate.clone(),
                };
                let (actor, _) = Actor::spawn_linked(None, LearnerActor, args, supervisor).await?;
                shared.learner.store(Some(Arc::new(actor.clone())));
                (actor.get_id(), actor.get_cell())
            }
            Child::Snapshots => {
                let args = SnapshotArgs {
                    shared: Arc::clone(shared),
                    bus: Arc::clone(&self.args.bus),
                    interval: config.snapshot_interval,
                };
                let (actor, _) = Actor::spawn_linked(None, SnapshotActor, args, supervisor).await?;
                shared.snapshot_actor.store(Some(Arc::new(actor.clone())));
                (actor.get_id(), actor.get_cell())
            }
            Child::Ingest(topic) => {
                let args = IngestArgs {
                    topic,
                    bus: Arc::clone(&self.args.bus),
                    shared: Arc::clone(shared),
                    batch_size: config.batch_size,
                    poll_wait: config.poll_wait,
                    max_future_skew: config.max_future_skew,
                    max_catalog_items: config.online.max_catalog_items,
                    max_learned_items: config.online.max_learned_items,
                };
                let (actor, _) = Actor::spawn_linked(None, IngestActor, args, supervisor).await?;
                (actor.get_id(), actor.get_cell())
            }
        };
        self.children.insert(id, (child, cell));
        Ok(())
    }
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
        };
        // Consumers last: their first batch needs the learner running.
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
        if let Some((child, _)) = state.children.remove(&cell.get_id()) {
            tracing::error!(?child, why, "engine actor exited; restarting it");
            state.start(child, myself.get_cell()).await?;
            if child == Child::Learner {
                // The new learner restored the last snapshot: the event consumer must
                // replay from its position, so it restarts too (its exit restarts it).
                for (other, cell) in state.children.values() {
                    if *other == Child::Ingest(Topic::Events) {
                        cell.stop(Some("learner restarted".to_owned()));
                    }
                }
            }
        }
        Ok(())
    }
}
