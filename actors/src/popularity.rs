//! The popularity learner actor: applies events in stream order, exactly once, and publishes
//! immutable rankings for the request path.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use streamrec_learner::{Popularity, PopularityConfig, RecentIds};
use streamrec_proto::Event;

use crate::shared::Shared;

pub enum PopularityMsg {
    /// Learn these events (with their stream sequences, in order); answers with the events
    /// that were new, so only those travel on to the sessions.
    Apply {
        events: Vec<(u64, Event)>,
        reply: RpcReplyPort<Vec<Event>>,
    },
    /// Publish a new ranking if anything changed since the last one.
    Publish,
}

#[derive(Clone)]
pub struct PopularityArgs {
    pub shared: Arc<Shared>,
    pub config: PopularityConfig,
    /// Items kept in a published ranking: enough for k = 500 after exclusions.
    pub view_size: usize,
    /// Event ids remembered for de-duplication.
    pub dedup_window: usize,
    /// Upper bound on how stale the published ranking may be.
    pub publish_interval: Duration,
}

pub struct PopularityState {
    args: PopularityArgs,
    learner: Popularity,
    recent_ids: RecentIds,
    /// Highest stream sequence applied: a redelivery at or below it was applied already.
    last_seq: u64,
    dirty: bool,
    last_publish: Instant,
}

impl PopularityState {
    fn publish(&mut self) {
        let view = self.learner.view(self.args.view_size);
        self.args.shared.popularity.store(Arc::new(view));
        self.args
            .shared
            .popularity_version
            .fetch_add(1, Ordering::AcqRel);
        self.dirty = false;
        self.last_publish = Instant::now();
    }

    fn apply(&mut self, events: Vec<(u64, Event)>) -> Vec<Event> {
        let mut fresh = Vec::with_capacity(events.len());
        let (mut redelivered, mut duplicates) = (0, 0);
        for (seq, event) in events {
            if seq <= self.last_seq {
                redelivered += 1;
                continue;
            }
            self.last_seq = seq;
            if !self.recent_ids.insert(&event.event_id) {
                duplicates += 1;
                continue;
            }
            self.learner.apply(&event);
            fresh.push(event);
        }
        let stats = &self.args.shared.stats;
        stats.events_applied(fresh.len() as u64);
        stats.duplicates_skipped(duplicates + redelivered);
        stats.redeliveries(redelivered);
        self.dirty |= !fresh.is_empty();
        fresh
    }
}

pub struct PopularityActor;

impl Actor for PopularityActor {
    type Msg = PopularityMsg;
    type State = PopularityState;
    type Arguments = PopularityArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.publish_interval, || PopularityMsg::Publish);
        Ok(PopularityState {
            learner: Popularity::new(args.config.clone()),
            recent_ids: RecentIds::new(args.dedup_window),
            last_seq: 0,
            dirty: false,
            last_publish: Instant::now(),
            args,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PopularityMsg::Apply { events, reply } => {
                let fresh = state.apply(events);
                if state.dirty && state.last_publish.elapsed() >= state.args.publish_interval {
                    state.publish();
                }
                // The ingest actor may have given up waiting; it will see the events again.
                let _ = reply.send(fresh);
            }
            PopularityMsg::Publish => {
                if state.dirty {
                    state.publish();
                }
            }
        }
        Ok(())
    }
}
