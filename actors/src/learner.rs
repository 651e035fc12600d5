//! The learner actor: applies events and impressions in stream order, exactly once, to every
//! online learner, and publishes immutable serving versions for the request path.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use streamrec_learner::ReadSide;
use streamrec_learner::online::{OnlineConfig, OnlineModels, Outcome};
use streamrec_pipeline::{RerankerProgress, ServingModels, position_of};
use streamrec_proto::{Event, Impression, Item};
use streamrec_ranker::ComputeDevice;

use crate::background::BackgroundThread;
use crate::counters::Counters;
use crate::rerank_trainer::{Trained, TrainerHandle};
use crate::serving::ServingState;

/// A message of the events stream, parsed.
pub enum StreamMessage {
    Event(Event),
    Impression(Impression),
    /// `DELETE /v1/users/{id}`: applied at its place in the stream.
    UserErasure(String),
}

/// A message of the items stream, parsed.
pub enum CatalogChange {
    Upsert(Item),
    Delete(String),
}

pub enum LearnerMsg {
    /// Learn these messages (with their stream sequences, in order); answers the sequences
    /// of the events a bound refused (to dead-letter).
    Apply {
        batch: Vec<(u64, StreamMessage)>,
        reply: RpcReplyPort<EventsApplied>,
    },
    /// Publish a new version if anything changed since the last one.
    Publish,
    /// Catalog upserts and deletions (with their items-stream sequences, in order); answers
    /// how many applied.
    Items {
        batch: Vec<(u64, CatalogChange)>,
        reply: RpcReplyPort<ItemsApplied>,
    },
    /// A copy of the whole learner state, taken between two batches (for a snapshot).
    Export(RpcReplyPort<OnlineModels>),
}

/// What a batch of events did that the ingest acts on.
#[derive(Debug, Default)]
pub struct EventsApplied {
    /// Sequences of the events a bound refused: to dead-letter.
    pub refused: Vec<u64>,
    /// `(sequence, ms behind the watermark)` of the late events: to republish.
    pub late: Vec<(u64, i64)>,
    /// Features whose drift turned major in a window the batch closed: to publish.
    pub drift_alerts: Vec<streamrec_proto::DriftAlert>,
    /// The learners as they stood at each digest checkpoint the batch passed (every
    /// message up to that sequence learned, none after): to compare with the cluster's.
    pub checkpoints: Vec<(u64, OnlineModels)>,
}

/// What a batch of catalog upserts did.
#[derive(Debug, Default)]
pub struct ItemsApplied {
    pub fresh: usize,
    /// Sequences of the upserts a bound refused (a full catalog): to dead-letter.
    pub refused: Vec<u64>,
}

#[derive(Clone)]
pub struct LearnerArgs {
    /// Where versions are published.
    pub serving: Arc<ServingState>,
    pub counters: Arc<Counters>,
    pub config: OnlineConfig,
    /// Items kept in a published popularity ranking: enough for k = 500 after exclusions.
    pub view_size: usize,
    /// How often what arrives between batches (re-ranker steps) is published; every
    /// batch is published when it is done.
    pub publish_interval: Duration,
    /// Where the re-ranker trains and serves.
    pub device: ComputeDevice,
    /// Test hook (see [`LearnerGate`]).
    pub gate: Option<LearnerGate>,
    /// Events-stream sequences between two state digests (0: none).
    pub digest_every: u64,
}

/// A test hook: while closed, the learner stops inside its next batch (holding the write side), as a very
/// long batch would; what it shows is that requests do not wait for it.
#[derive(Debug, Clone, Default)]
pub struct LearnerGate(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl LearnerGate {
    pub fn close(&self) {
        *self.0.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    pub fn open(&self) {
        *self.0.0.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.1.notify_all();
    }

    fn pass(&self) {
        let mut closed = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        while *closed {
            closed = self.0.1.wait(closed).unwrap_or_else(|p| p.into_inner());
        }
    }
}

pub struct LearnerState {
    args: LearnerArgs,
    /// The write side: only this actor ever touches it.
    models: OnlineModels,
    /// The read side as of the last publish; a clone of it is what requests read.
    read_side: ReadSide,
    /// Steps the re-ranker beside the learner; `None` when it cannot train here.
    trainer: Option<TrainerHandle>,
    dirty: bool,
    bandit_dirty: bool,
    last_publish: Instant,
    published: Arc<ServingModels>,
    /// This learner's generation ([`Counters::new_learner`]).
    generation: u64,
    /// The next digest checkpoint (a multiple of `digest_every`).
    next_digest: u64,
    /// Re-ranker batches cut during the current `apply`, for the trainer.
    to_train: Vec<Vec<f32>>,
}

impl LearnerState {
    /// Hands the batches the last `apply` cut to the trainer, in order.
    fn train(&mut self) {
        let batches = std::mem::take(&mut self.to_train);
        if let Some(trainer) = &self.trainer {
            for batch in batches {
                trainer.train(batch);
            }
        }
    }

    /// The trainer's latest serving copy, when it differs from the published one.
    fn reranker_changed(&self) -> bool {
        let latest = self.trainer.as_ref().and_then(TrainerHandle::serving);
        match (&latest, &self.published.reranker) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (None, None) => false,
            _ => true,
        }
    }

    /// A copy of the whole learner state, with the re-ranker's weights as of its batches.
    async fn export(&self) -> OnlineModels {
        let mut models = self.models.clone();
        if let Some(trainer) = &self.trainer {
            match trainer.sync().await {
                Some(trained) => {
                    if trained.steps != models.reranker.steps {
                        tracing::error!(
                            trained = trained.steps,
                            handed_out = models.reranker.steps,
                            "re-ranker trainer is not at the learner's batch count"
                        );
                    }
                    models.reranker.trained(trained.weights, trained.loss);
                }
                None => tracing::error!(
                    "re-ranker trainer did not answer; snapshot keeps older weights"
                ),
            }
        }
        models
    }

    fn publish(&mut self) {
        let version = self
            .args
            .serving
            .model_version_number
            .fetch_add(1, Ordering::AcqRel)
            + 1;
        let moved_rows = self.read_side.catch_up(&mut self.models, self.bandit_dirty);
        let popularity = self.models.popularity_view(self.args.view_size);
        let reranker = self.trainer.as_ref().and_then(TrainerHandle::serving);
        // The steps the serving copy has trained, not the batches handed to the trainer.
        let training = RerankerProgress {
            steps: reranker.as_ref().map_or(0, |r| r.steps()),
            last_loss: self.trainer.as_ref().and_then(TrainerHandle::last_loss),
        };
        let serving = Arc::new(ServingModels {
            version,
            name: None,
            popularity,
            read: self.read_side.clone(),
            reranker,
            counters: self.models.counters(),
            training,
            as_of: position_of(&self.models),
        });
        let serving_state = &self.args.serving;
        let stored = self.args.counters.if_current_learner(self.generation, || {
            serving_state.intent_index.note_changed(moved_rows);
            serving_state.models.store(Arc::clone(&serving));
        });
        if stored.is_none() {
            tracing::info!("a replaced learner's batch ended; its version is not published");
        }
        self.published = serving;
        self.dirty = false;
        self.bandit_dirty = false;
        self.last_publish = Instant::now();
    }

    fn apply(&mut self, batch: Vec<(u64, StreamMessage)>) -> EventsApplied {
        let mut fresh = Vec::with_capacity(batch.len());
        let mut outcome = EventsApplied::default();
        let models = &mut self.models;
        let before = models.counters();
        let every = self.args.digest_every;
        for (n, (seq, message)) in batch.into_iter().enumerate() {
            if n == 0
                && let Some(gate) = &self.args.gate
            {
                gate.pass();
            }
            // The first message past a checkpoint: the state is the checkpoint's (what lay
            // between was dead-lettered, never learned).
            if seq > self.next_digest && seq > models.last_seq() {
                let at = (seq - 1) / every * every;
                outcome.checkpoints.push((at, models.clone()));
                self.next_digest = at.saturating_add(every);
            }
            match message {
                StreamMessage::Event(event) => match models.apply_event(seq, &event) {
                    Outcome::Applied => fresh.push(event),
                    Outcome::AppliedLate { late_ms } => {
                        outcome.late.push((seq, late_ms));
                        fresh.push(event);
                    }
                    Outcome::Refused => outcome.refused.push(seq),
                    Outcome::Duplicate | Outcome::Redelivered => {}
                },
                StreamMessage::Impression(impression) => {
                    models.apply_impression(seq, &impression);
                }
                StreamMessage::UserErasure(user_id) => {
                    if models.apply_user_erasure(seq, &user_id) == Outcome::Applied {
                        tracing::info!(seq, "user erased from the learners");
                    }
                }
            }
            // Batches are cut after every message, as an offline replay cuts them: the
            // re-ranker's step count is then a function of the stream, not of where the
            // bus happened to end a delivery batch (nodes compare it at checkpoints).
            while let Some(batch) = models.reranker.next_batch() {
                self.to_train.push(batch);
            }
            if seq == self.next_digest && models.last_seq() == seq {
                outcome.checkpoints.push((seq, models.clone()));
                self.next_digest = seq.saturating_add(every);
            }
        }
        outcome.drift_alerts = models.take_drift_alerts();
        let after = models.counters();
        let last_seq = models.last_seq();
        for event in &fresh {
            self.tell_shadow(event);
        }
        let stats = &self.args.counters;
        stats.if_current_learner(self.generation, || {
            stats.applied_seq.store(last_seq, Ordering::Release);
        });
        stats.events_applied(after.events - before.events);
        stats.duplicates_skipped(
            (after.duplicates - before.duplicates) + (after.redeliveries - before.redeliveries),
        );
        stats.redeliveries(after.redeliveries - before.redeliveries);
        stats.impressions(after.impressions - before.impressions);
        stats.bandit_rewards(after.rewards - before.rewards);
        stats.late_events(after.late_events - before.late_events);
        self.bandit_dirty |= after.rewards != before.rewards;
        self.dirty |= after != before || self.bandit_dirty;
        outcome
    }
}

/// The newest valid snapshot, or empty learners; corrupt snapshots are reported and skipped.
fn restore(args: &LearnerArgs) -> OnlineModels {
    let Some(store) = &args.serving.snapshots else {
        return OnlineModels::new(args.config.clone());
    };
    let (restored, skipped) = store.restore_latest();
    for error in &skipped {
        tracing::error!(%error, "skipping a corrupt snapshot");
    }
    args.counters.snapshots_skipped(skipped.len() as u64);
    match restored {
        Some((manifest, models)) => {
            tracing::info!(
                version = %manifest.version,
                seq = manifest.last_seq(),
                "restored learners from snapshot; replaying the stream after it"
            );
            args.counters
                .restored_seq
                .store(manifest.last_seq(), Ordering::Release);
            let differ = config_differences(models.config(), &args.config);
            if !differ.is_empty() {
                tracing::warn!(
                    keys = %differ.join(", "),
                    "the restored snapshot's learner settings differ from the configuration: the snapshot's apply, since a restore continues the learners it holds (start without the snapshot to change them)"
                );
            }
            models
        }
        None => {
            tracing::info!("no snapshot to restore; learning from the start of the stream");
            OnlineModels::new(args.config.clone())
        }
    }
}

/// The dotted keys at which two learner configurations differ.
fn config_differences(restored: &OnlineConfig, configured: &OnlineConfig) -> Vec<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for key in keys {
                    let null = serde_json::Value::Null;
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(
                        &child,
                        a.get(key).unwrap_or(&null),
                        b.get(key).unwrap_or(&null),
                        out,
                    );
                }
            }
            (a, b) if a != b => out.push(path.to_owned()),
            _ => {}
        }
    }
    let (Ok(a), Ok(b)) = (
        serde_json::to_value(restored),
        serde_json::to_value(configured),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    out
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
            crate::shadow::with_run(&self.args.serving.shadow, |run| {
                run.observe_click(rec_id, &event.item_id);
            });
        }
    }
}

pub struct LearnerActor;

/// The learner's state, lent to the learner's own background thread for each batch: its
/// CPU-bound work never runs on an async worker, so a long batch (or a stopped one) cannot
/// starve the request tasks scheduled there, nor the runtime's timers; and at its lower
/// priority it takes only the CPU that requests leave.
pub struct LearnerSlot {
    state: Option<LearnerState>,
    thread: BackgroundThread,
}

impl LearnerSlot {
    fn get(&mut self) -> Result<&mut LearnerState, ActorProcessingErr> {
        self.state
            .as_mut()
            .ok_or_else(|| "the learner's state was lost with a failed batch".into())
    }
}

impl Actor for LearnerActor {
    type Msg = LearnerMsg;
    type State = LearnerSlot;
    type Arguments = LearnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.publish_interval, || LearnerMsg::Publish);
        // Before the restore: from here on, a predecessor's batch still running writes nothing.
        let generation = args.counters.new_learner();
        let models = restore(&args);
        args.counters
            .applied_seq
            .store(models.last_seq(), Ordering::Release);
        args.counters
            .items_seq
            .store(models.catalog.last_seq(), Ordering::Release);
        let start = Trained {
            steps: models.reranker.steps,
            weights: models.reranker.weights.clone(),
            loss: models.reranker.last_loss,
        };
        let trainer = TrainerHandle::start(start, models.config().replay.group_len(), args.device)
            .inspect_err(
                |error| tracing::error!(%error, "re-ranker cannot train; serving stage-one order"),
            )
            .ok();
        let every = args.digest_every;
        // The first checkpoint past the restored position; none when digests are off.
        let next_digest = models
            .last_seq()
            .checked_div(every)
            .map_or(u64::MAX, |n| n.saturating_add(1).saturating_mul(every));
        let mut state = LearnerState {
            generation,
            next_digest,
            to_train: Vec::new(),
            read_side: ReadSide::of(&models),
            models,
            trainer,
            dirty: false,
            bandit_dirty: true,
            last_publish: Instant::now(),
            published: Arc::new(ServingModels::default()),
            args,
        };
        // Serve the restored models at once, before the replay catches up.
        state.publish();
        Ok(LearnerSlot {
            state: Some(state),
            thread: BackgroundThread::spawn("streamrec-learner")?,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        slot: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let LearnerMsg::Apply { batch, reply } = message else {
            return handle_other(slot.get()?, message).await;
        };
        let Some(mut inner) = slot.state.take() else {
            return Err("the learner's state was lost with a failed batch".into());
        };
        // A panic here fails the actor; its supervisor restarts it from a snapshot.
        let (inner, fresh) = slot
            .thread
            .run(move || {
                let fresh = inner.apply(batch);
                inner.train();
                // Every batch is published when it is done (O(what it changed)): the next
                // batch may be long, and what is learned must not wait behind it.
                if inner.dirty {
                    inner.publish();
                }
                (inner, fresh)
            })
            .await
            .ok_or("the learner's batch panicked")?;
        slot.state = Some(inner);
        // The ingest actor may have given up waiting; it will see the batch again.
        let _ = reply.send(fresh);
        Ok(())
    }
}

/// Every message but a batch: quick, and on the actor's own task.
async fn handle_other(
    state: &mut LearnerState,
    message: LearnerMsg,
) -> Result<(), ActorProcessingErr> {
    match message {
        LearnerMsg::Items { batch, reply } => {
            let mut applied = ItemsApplied::default();
            for (seq, change) in batch {
                let outcome = match change {
                    CatalogChange::Upsert(item) => state.models.apply_item(seq, item),
                    CatalogChange::Delete(item_id) => {
                        state.models.apply_item_deletion(seq, &item_id)
                    }
                };
                match outcome {
                    Outcome::Applied | Outcome::AppliedLate { .. } => applied.fresh += 1,
                    Outcome::Refused => applied.refused.push(seq),
                    Outcome::Duplicate | Outcome::Redelivered => {}
                }
            }
            state.dirty |= applied.fresh > 0;
            state
                .args
                .counters
                .items_seq
                .store(state.models.catalog.last_seq(), Ordering::Release);
            let _ = reply.send(applied);
        }
        LearnerMsg::Publish => {
            if state.dirty || state.reranker_changed() {
                state.publish();
            }
        }
        LearnerMsg::Export(reply) => {
            let _ = reply.send(state.export().await);
        }
        LearnerMsg::Apply { .. } => {}
    }
    Ok(())
}
