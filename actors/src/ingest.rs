//! The ingest actor: pulls batches from one bus topic, validates each message, dead-letters
//! the bad ones, hands the good ones to their learners, and acknowledges the batch only
//! after it has been applied.

use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use streamrec_proto::{
    DriftAlert, Event, EventKind, Impression, Item, ItemDeletion, Reason, UserErasure,
    ValidationError, subjects,
};

use crate::bus::{Bus, Consumer, DeadLetter, Delivery, DigestCheck, LateEvent, Topic};
use crate::counters::Counters;
use crate::error::EngineError;
use crate::learner::{CatalogChange, LearnerMsg, StreamMessage};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Counter of dead letters, labelled by `reason` (a [`Reason::code`]).
pub const DEAD_LETTERS_BY_REASON: &str = "streamrec_dead_letters_total";

/// Longest wait for the learner to apply one batch before the batch is retried.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub enum IngestMsg {
    Poll,
}

#[derive(Clone)]
pub struct IngestArgs {
    /// State digests computed one at a time (see `check_digest`).
    pub digests: Arc<tokio::sync::Semaphore>,
    pub topic: Topic,
    pub bus: Arc<dyn Bus>,
    /// The learner this consumer feeds (it restarts with the learner).
    pub learner: ActorRef<LearnerMsg>,
    pub counters: Arc<Counters>,
    pub batch_size: usize,
    /// How long one poll waits for a first message.
    pub poll_wait: Duration,
    /// How far an event's time may run ahead of its arrival on the bus.
    pub max_future_skew: Duration,
    /// The catalog's bound, for the dead letters of what it refuses.
    pub max_catalog_items: usize,
    /// The learners' bound on distinct items, likewise.
    pub max_learned_items: usize,
}

pub struct IngestState {
    args: IngestArgs,
    consumer: Option<Box<dyn Consumer>>,
    backoff: Duration,
    /// Late events applied but not yet republished (the bus refused): retried each poll.
    late: Vec<LateEvent>,
    /// Drift alerts raised but not yet published, likewise.
    alerts: Vec<DriftAlert>,
    /// The events batch after the one being applied, fetched and parsed meanwhile.
    ready: Option<Parsed>,
}

/// A batch of the events stream, parsed (its bad messages already dead-lettered).
struct Parsed {
    batch: Vec<Delivery>,
    valid: Vec<(u64, StreamMessage)>,
}

/// Late events held for a bus that refuses them; beyond it the oldest are dropped.
const LATE_HELD: usize = 10_000;

pub struct IngestActor;

impl Actor for IngestActor {
    type Msg = IngestMsg;
    type State = IngestState;
    type Arguments = IngestArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(IngestState {
            args,
            consumer: None,
            backoff: MIN_BACKOFF,
            late: Vec::new(),
            alerts: Vec::new(),
            ready: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        myself.cast(IngestMsg::Poll)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        IngestMsg::Poll: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match poll_once(state).await {
            Ok(()) => state.backoff = MIN_BACKOFF,
            Err(error) => {
                // What this poll fetched and did not apply would otherwise be skipped: the
                // consumer has moved past it, and the ack of a later batch (AckPolicy::All)
                // acknowledges it too. A new consumer starts right after what the learner
                // has applied; what it had applied already comes again and is skipped.
                state.consumer = None;
                state.ready = None;
                tracing::warn!(topic = ?state.args.topic, %error, backoff = ?state.backoff, "ingest poll failed; retrying from the learner's position");
                tokio::time::sleep(state.backoff).await;
                state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
            }
        }
        // Polling is a message to itself, so stop signals and supervision get their turn.
        myself.cast(IngestMsg::Poll)?;
        Ok(())
    }
}

async fn poll_once(state: &mut IngestState) -> Result<(), EngineError> {
    // Late events a refused publish left behind go first, even while no event arrives.
    republish_late(&state.args, &mut state.late).await;
    publish_alerts(&state.args, &mut state.alerts).await;
    let args = &state.args;
    let consumer = match &mut state.consumer {
        Some(consumer) => consumer,
        None => {
            // Each stream resumes right after what the learner has applied (a restored
            // snapshot's position, after a restart).
            let applied = match args.topic {
                Topic::Events => &args.counters.applied_seq,
                Topic::Items => &args.counters.items_seq,
            };
            let from = applied.load(std::sync::atomic::Ordering::Acquire) + 1;
            state
                .consumer
                .insert(args.bus.consumer(args.topic, from).await?)
        }
    };
    if args.topic == Topic::Items {
        let batch = consumer.next_batch(args.batch_size, args.poll_wait).await?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        apply_items(args, &batch).await?;
        consumer.ack_through(last).await?;
        return Ok(());
    }
    let parsed = match state.ready.take() {
        Some(parsed) => parsed,
        None => {
            let batch = consumer.next_batch(args.batch_size, args.poll_wait).await?;
            parse_events(args, batch).await?
        }
    };
    let Parsed { batch, valid } = parsed;
    let Some(last) = batch.last() else {
        return Ok(());
    };
    // The next batch is fetched and parsed while the learner applies this one: done one
    // after the other, the learner waited on the parse and the parse on the learner, and a
    // third of both cores sat idle during a backlog (perf). It is acknowledged only once
    // applied, in its turn.
    // Nothing waiting: nothing is kept, and the next poll waits for events as it always did.
    let prefetch = async {
        let batch = consumer.next_batch(args.batch_size, Duration::ZERO).await?;
        if batch.is_empty() {
            return Ok(None);
        }
        parse_events(args, batch).await.map(Some)
    };
    let (applied, next) = tokio::join!(
        apply_events(args, &batch, valid, &mut state.late, &mut state.alerts),
        prefetch
    );
    let next = next.map(|ready| state.ready = ready);
    applied?;
    // A lost ack only means a redelivery, which the learner recognises and skips.
    consumer.ack_through(last).await?;
    republish_late(args, &mut state.late).await;
    publish_alerts(args, &mut state.alerts).await;
    next
}

/// Digests the learners as they stood at `seq` (off the ingest path) and compares the
/// digest with the cluster's; a node whose state differs is counted and logged (the bus
/// announces it on `streamrec.alerts.divergence`).
async fn check_digest(
    bus: Arc<dyn Bus>,
    counters: Arc<Counters>,
    digests: Arc<tokio::sync::Semaphore>,
    seq: u64,
    models: streamrec_learner::online::OnlineModels,
) {
    // One digest at a time: a replay passes checkpoints fast, and each digest is a core's
    // worth of encoding the learner should keep.
    let Ok(_slot) = digests.acquire().await else {
        return;
    };
    let digest =
        match tokio::task::spawn_blocking(move || crate::snapshot::state_digest(models)).await {
            Ok(Ok(digest)) => digest,
            Ok(Err(error)) => return tracing::warn!(%error, seq, "state digest not computed"),
            Err(error) => return tracing::warn!(%error, seq, "state digest not computed"),
        };
    match bus.check_state_digest(seq, &digest).await {
        Ok(DigestCheck::Alone) => {}
        Ok(DigestCheck::First | DigestCheck::Same) => counters.state_digests_checked(1),
        Ok(DigestCheck::Differs(alert)) => {
            counters.state_divergences(1);
            tracing::error!(
                seq,
                reference = %alert.reference_node,
                learners = ?alert.learners,
                "this node's learners differ from the cluster's at the same sequence"
            );
        }
        Err(error) => tracing::warn!(%error, seq, "state digest not compared"),
    }
}

/// Publishes the drift alerts held; on a failure they stay for the next poll.
async fn publish_alerts(args: &IngestArgs, alerts: &mut Vec<DriftAlert>) {
    if alerts.is_empty() {
        return;
    }
    match args.bus.drift_alerts(alerts.clone()).await {
        Ok(()) => alerts.clear(),
        Err(error) => {
            if alerts.len() > LATE_HELD {
                let dropped = alerts.len() - LATE_HELD;
                alerts.drain(..dropped);
                tracing::error!(
                    dropped,
                    "drift alerts dropped: the bus refused them too long"
                );
            }
            tracing::warn!(%error, held = alerts.len(), "drift alerts not published yet");
        }
    }
}

/// Republishes the late events held to `streamrec.late.<kind>`, as their emitters sent
/// them. The learner has applied them, so a redelivery would not name them again: on a
/// failure they stay held for the next poll (the bus skips what it already has).
async fn republish_late(args: &IngestArgs, late: &mut Vec<LateEvent>) {
    if late.is_empty() {
        return;
    }
    match args.bus.late_events(late.clone()).await {
        Ok(()) => late.clear(),
        Err(error) => {
            if late.len() > LATE_HELD {
                let dropped = late.len() - LATE_HELD;
                late.drain(..dropped);
                tracing::error!(
                    dropped,
                    "late events dropped: the bus refused them too long"
                );
            }
            tracing::warn!(%error, held = late.len(), "late events not republished yet");
        }
    }
}

async fn dead_letter(
    args: &IngestArgs,
    delivery: &Delivery,
    error: ValidationError,
) -> Result<(), EngineError> {
    tracing::debug!(subject = %delivery.subject, seq = delivery.seq, %error, "dead-lettering a message");
    args.bus
        .dead_letter(DeadLetter::new(
            error.reason.code(),
            error.to_string(),
            delivery.subject.clone(),
            delivery.seq,
            &delivery.payload,
        ))
        .await?;
    if delivery.delivered <= 1 {
        args.counters.dead_lettered(1);
        metrics::counter!(DEAD_LETTERS_BY_REASON, "reason" => error.reason.code()).increment(1);
    }
    Ok(())
}

/// Parses a message of the events stream: an event, or an impression the engine published.
/// An event must arrive on its kind's own subject (a consumer of `streamrec.events.click`
/// must be able to trust that it sees clicks), and its time may run at most
/// `max_future_skew` ahead of its arrival: one event stamped years ahead would otherwise
/// move every time-decayed model's clock there.
fn parse(delivery: &Delivery, max_future_skew: Duration) -> Result<StreamMessage, ValidationError> {
    if delivery.subject == subjects::IMPRESSIONS_SUBJECT {
        return Impression::from_json(&delivery.payload).map(StreamMessage::Impression);
    }
    if delivery.subject == subjects::USER_ERASURES_SUBJECT {
        return UserErasure::from_json(&delivery.payload)
            .map(|erasure| StreamMessage::UserErasure(erasure.user_id));
    }
    let event = Event::from_json(&delivery.payload)?;
    let expected = subjects::event_subject(event.kind);
    if delivery.subject != expected {
        return Err(ValidationError::payload(Reason::SubjectMismatch {
            subject: delivery.subject.clone(),
            expected,
        }));
    }
    let skew_ms = i64::try_from(max_future_skew.as_millis()).unwrap_or(i64::MAX);
    if event.ts > delivery.published_ms.saturating_add(skew_ms) {
        return Err(ValidationError::new(
            "ts",
            Reason::FutureTimestamp {
                ts: event.ts,
                arrival: delivery.published_ms,
                skew_ms,
            },
        ));
    }
    Ok(StreamMessage::Event(event))
}

/// Parses a batch of the events stream, dead-lettering what does not parse.
async fn parse_events(args: &IngestArgs, batch: Vec<Delivery>) -> Result<Parsed, EngineError> {
    let mut valid = Vec::with_capacity(batch.len());
    for delivery in &batch {
        match parse(delivery, args.max_future_skew) {
            Ok(message) => valid.push((delivery.seq, message)),
            Err(error) => dead_letter(args, delivery, error).await?,
        }
    }
    Ok(Parsed { batch, valid })
}

/// Hands a batch to the learner and waits (bounded) for its answer.
async fn ask_learner<T: Send + 'static>(
    args: &IngestArgs,
    message: impl FnOnce(ractor::RpcReplyPort<T>) -> LearnerMsg,
) -> Result<T, EngineError> {
    let unavailable = |message: String| EngineError::Unavailable {
        actor: "learner",
        message,
    };
    match args
        .learner
        .call(message, Some(APPLY_TIMEOUT))
        .await
        .map_err(|e| unavailable(e.to_string()))?
    {
        CallResult::Success(answer) => Ok(answer),
        CallResult::Timeout => Err(unavailable("timed out".to_owned())),
        CallResult::SenderError => Err(unavailable("dropped the reply".to_owned())),
    }
}

/// Applies a batch of the events stream; its late events join `late`, to republish (as soon
/// as the learner has applied them: a redelivery would not name them again).
async fn apply_events(
    args: &IngestArgs,
    batch: &[Delivery],
    valid: Vec<(u64, StreamMessage)>,
    late: &mut Vec<LateEvent>,
    alerts: &mut Vec<DriftAlert>,
) -> Result<(), EngineError> {
    if valid.is_empty() {
        return Ok(());
    }
    let newest_event_ts = valid.iter().rev().find_map(|(_, m)| match m {
        StreamMessage::Event(e) => Some(e.ts),
        _ => None,
    });
    let kinds: Vec<(u64, EventKind)> = valid
        .iter()
        .filter_map(|(seq, m)| match m {
            StreamMessage::Event(e) => Some((*seq, e.kind)),
            _ => None,
        })
        .collect();
    let applied = ask_learner(args, |reply| LearnerMsg::Apply {
        batch: valid,
        reply,
    })
    .await?;
    late.extend(late_events(batch, &kinds, &applied.late));
    for (seq, models) in applied.checkpoints {
        tokio::spawn(check_digest(
            Arc::clone(&args.bus),
            Arc::clone(&args.counters),
            Arc::clone(&args.digests),
            seq,
            models,
        ));
    }
    for alert in &applied.drift_alerts {
        tracing::warn!(
            feature = %alert.feature,
            psi = alert.psi,
            window_start = alert.window.start,
            window_end = alert.window.end,
            "feature drift turned major"
        );
    }
    alerts.extend(applied.drift_alerts);
    if let Some(newest) = batch.last() {
        args.counters.record_freshness(newest.published_ms);
    }
    if let Some(ts) = newest_event_ts {
        let age_ms = streamrec_proto::now_millis().saturating_sub(ts).max(0);
        metrics::gauge!("streamrec_event_freshness_seconds").set(age_ms as f64 / 1000.0);
    }
    let limit = || ValidationError::new("item_id", Reason::ItemLimit(args.max_learned_items));
    dead_letter_refused(args, batch, &applied.refused, limit).await
}

fn late_events(
    batch: &[Delivery],
    kinds: &[(u64, EventKind)],
    late: &[(u64, i64)],
) -> Vec<LateEvent> {
    late.iter()
        .filter_map(|&(seq, late_ms)| {
            let kind = kinds.iter().find(|(s, _)| *s == seq)?.1;
            let delivery = batch.iter().find(|d| d.seq == seq)?;
            Some(LateEvent {
                kind,
                source_seq: seq,
                late_ms,
                payload: delivery.payload.clone(),
            })
        })
        .collect()
}

/// Dead-letters the messages of `batch` at `refused` sequences, each with `why()`.
async fn dead_letter_refused(
    args: &IngestArgs,
    batch: &[Delivery],
    refused: &[u64],
    why: impl Fn() -> ValidationError,
) -> Result<(), EngineError> {
    for delivery in batch.iter().filter(|d| refused.contains(&d.seq)) {
        dead_letter(args, delivery, why()).await?;
    }
    Ok(())
}

async fn apply_items(args: &IngestArgs, batch: &[Delivery]) -> Result<(), EngineError> {
    let mut valid = Vec::with_capacity(batch.len());
    for delivery in batch {
        let change = if delivery.subject == subjects::ITEM_DELETIONS_SUBJECT {
            ItemDeletion::from_json(&delivery.payload).map(|d| CatalogChange::Delete(d.item_id))
        } else {
            Item::from_json(&delivery.payload).map(CatalogChange::Upsert)
        };
        match change {
            Ok(change) => valid.push((delivery.seq, change)),
            Err(error) => dead_letter(args, delivery, error).await?,
        }
    }
    if valid.is_empty() {
        return Ok(());
    }
    // The catalog is learner state: applied in the items stream's order, snapshotted.
    let applied = ask_learner(args, |reply| LearnerMsg::Items {
        batch: valid,
        reply,
    })
    .await?;
    args.counters.items_upserted(applied.fresh as u64);
    let full = || ValidationError::payload(Reason::CatalogFull(args.max_catalog_items));
    dead_letter_refused(args, batch, &applied.refused, full).await
}
