//! The learner actor: applies events and impressions in stream order, exactly once, to every
//! online learner, and publishes immutable serving versions for the request path.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use streamrec_learner::online::{Bandit, OnlineConfig, OnlineCounters, OnlineModels, Outcome};
use streamrec_learner::{PopularityView, SessionHistory};
use streamrec_proto::{Event, Impression};

use crate::shared::Shared;

/// A message of the events stream, parsed.
pub enum StreamMessage {
    Event(Event),
    Impression(Impression),
}

/// What the request path reads: one consistent version of the global models.
#[derive(Debug, Clone, Default)]
pub struct ServingModels {
    pub version: u64,
    /// A snapshot's version, when these models were loaded from one.
    pub name: Option<String>,
    pub popularity: PopularityView,
    pub bandit: Option<Bandit>,
}

pub enum LearnerMsg {
    /// Learn these messages (with their stream sequences, in order); answers with the events
    /// that were new, so only those travel on to the sessions.
    Apply {
        batch: Vec<(u64, StreamMessage)>,
        reply: RpcReplyPort<Vec<Event>>,
    },
    /// Publish a new version if anything changed since the last one.
    Publish,
    Counters(RpcReplyPort<OnlineCounters>),
    /// A copy of the whole learner state, taken between two batches (for a snapshot).
    Export(RpcReplyPort<OnlineModels>),
    /// The sessions' histories as of the applied stream position, least recently active
    /// first: what a (re)starting session supervisor seeds its actors with.
    SessionHistories(RpcReplyPort<Vec<(String, SessionHistory)>>),
}

#[derive(Clone)]
pub struct LearnerArgs {
    pub shared: Arc<Shared>,
    pub config: OnlineConfig,
    /// Items kept in a published popularity ranking: enough for k = 500 after exclusions.
    pub view_size: usize,
    /// Upper bound on how stale the published version may be.
    pub publish_interval: Duration,
}

pub struct LearnerState {
    args: LearnerArgs,
    models: OnlineModels,
    dirty: bool,
    bandit_dirty: bool,
    last_publish: Instant,
    published: Arc<ServingModels>,
}

impl LearnerState {
    fn publish(&mut self) {
        let version = self
            .args
            .shared
            .model_version_number
            .fetch_add(1, Ordering::AcqRel)
            + 1;
        let bandit = if self.bandit_dirty || self.published.bandit.is_none() {
            Some(self.models.bandit.clone())
        } else {
            self.published.bandit.clone()
        };
        let serving = Arc::new(ServingModels {
            version,
            name: None,
            popularity: self.models.popularity_view(self.args.view_size),
            bandit,
        });
        self.args.shared.models.store(Arc::clone(&serving));
        self.published = serving;
        self.dirty = false;
        self.bandit_dirty = false;
        self.last_publish = Instant::now();
    }

    fn apply(&mut self, batch: Vec<(u64, StreamMessage)>) -> Vec<Event> {
        let before = self.models.counters();
        let mut fresh = Vec::with_capacity(batch.len());
        for (seq, message) in batch {
            match message {
                StreamMessage::Event(event) => {
                    if self.models.apply_event(seq, &event) == Outcome::Applied {
                        self.tell_shadow(&event);
                        fresh.push(event);
                    }
                }
                StreamMessage::Impression(impression) => {
                    self.models.apply_impression(seq, &impression);
                }
            }
        }
        let after = self.models.counters();
        self.args
            .shared
            .applied_seq
            .store(self.models.last_seq(), Ordering::Release);
        let stats = &self.args.shared.stats;
        stats.events_applied(after.events - before.events);
        stats.duplicates_skipped(
            (after.duplicates - before.duplicates) + (after.redeliveries - before.redeliveries),
        );
        stats.redeliveries(after.redeliveries - before.redeliveries);
        stats.impressions(after.impressions - before.impressions);
        stats.bandit_rewards(after.rewards - before.rewards);
        self.bandit_dirty |= after.rewards != before.rewards;
        self.dirty |= after.events != before.events || self.bandit_dirty;
        fresh
    }
}

/// The newest valid snapshot, or empty learners; corrupt snapshots are reported and skipped.
fn restore(args: &LearnerArgs) -> OnlineModels {
    let Some(store) = &args.shared.snapshots else {
        return OnlineModels::new(args.config.clone());
    };
    let (restored, skipped) = store.restore_latest();
    for error in &skipped {
        tracing::error!(%error, "skipping a corrupt snapshot");
    }
    args.shared.stats.snapshots_skipped(skipped.len() as u64);
    match restored {
        Some((manifest, models)) => {
            tracing::info!(
                version = manifest.version,
                seq = manifest.last_seq(),
                "restored learners from snapshot; replaying the stream after it"
            );
            args.shared
                .restored_seq
                .store(manifest.last_seq(), Ordering::Release);
            models
        }
        None => {
            tracing::info!("no snapshot to restore; learning from the start of the stream");
            OnlineModels::new(args.config.clone())
        }
    }
}

impl LearnerState {
    /// A click answering a decision also scores the shadow candidate, if one runs.
    fn tell_shadow(&self, event: &Event) {
        let positive = matches!(
            event.kind,
            streamrec_proto::EventKind::Click
                | streamrec_proto::EventKind::AddToCart
                | streamrec_proto::EventKind::Purchase
        );
        if let (true, Some(rec_id)) = (positive, &event.rec_id) {
            crate::shadow::with_run(&self.args.shared.shadow, |run| {
                run.observe_click(rec_id, &event.item_id);
            });
        }
    }
}

pub struct LearnerActor;

impl Actor for LearnerActor {
    type Msg = LearnerMsg;
    type State = LearnerState;
    type Arguments = LearnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.publish_interval, || LearnerMsg::Publish);
        let models = restore(&args);
        args.shared
            .applied_seq
            .store(models.last_seq(), Ordering::Release);
        let mut state = LearnerState {
            models,
            dirty: false,
            bandit_dirty: true,
            last_publish: Instant::now(),
            published: Arc::new(ServingModels::default()),
            args,
        };
        // Serve the restored models at once, before the replay catches up.
        state.publish();
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            LearnerMsg::Apply { batch, reply } => {
                let fresh = state.apply(batch);
                if state.dirty && state.last_publish.elapsed() >= state.args.publish_interval {
                    state.publish();
                }
                // The ingest actor may have given up waiting; it will see the batch again.
                let _ = reply.send(fresh);
            }
            LearnerMsg::Publish => {
                if state.dirty {
                    state.publish();
                }
            }
            LearnerMsg::Counters(reply) => {
                let _ = reply.send(state.models.counters());
            }
            LearnerMsg::Export(reply) => {
                let _ = reply.send(state.models.clone());
            }
            LearnerMsg::SessionHistories(reply) => {
                let histories = state
                    .models
                    .session_histories()
                    .map(|(id, h)| (id.to_owned(), h.clone()))
                    .collect();
                let _ = reply.send(histories);
            }
        }
        Ok(())
    }
}
