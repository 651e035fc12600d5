//! The in-process bus: an append-only log per topic in memory, with one durable consumer
//! each. Same ordering, de-duplication and ack semantics as JetStream, minus durability
//! across process restarts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use streamrec_learner::RecentIds;
use streamrec_proto::subjects;
use tokio::sync::watch;

use super::{Bus, Consumer, DeadLetter, Delivery, Outbound, Readiness, Topic};
use crate::error::BusError;

/// Publishes remembered for de-duplication, like JetStream's duplicate window.
const DEDUP_WINDOW: usize = 100_000;
/// Dead letters kept in memory (newest); this bus is not durable, so older ones go.
const DEAD_LETTERS_KEPT: usize = 10_000;

#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

struct Inner {
    events: TopicLog,
    items: TopicLog,
    dead_letters: Mutex<DeadLetters>,
}

struct DeadLetters {
    letters: VecDeque<DeadLetter>,
    ids: RecentIds,
}

struct TopicLog {
    state: Mutex<LogState>,
    /// Sequence of the newest message: consumers wait on it.
    head: watch::Sender<u64>,
}

struct LogState {
    /// Retained messages: everything after the ack floor.
    entries: VecDeque<Stored>,
    last_seq: u64,
    /// Next sequence to hand to the consumer.
    cursor: u64,
    recent_ids: RecentIds,
}

struct Stored {
    seq: u64,
    subject: String,
    payload: Bytes,
    delivered: u64,
    published_ms: i64,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessBus {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                events: TopicLog::new(),
                items: TopicLog::new(),
                dead_letters: Mutex::new(DeadLetters {
                    letters: VecDeque::new(),
                    ids: RecentIds::new(DEAD_LETTERS_KEPT),
                }),
            }),
        }
    }

    /// Everything dead-lettered so far, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.inner.dead_letters)
            .letters
            .iter()
            .cloned()
            .collect()
    }

    fn log(&self, topic: Topic) -> &TopicLog {
        match topic {
            Topic::Events => &self.inner.events,
            Topic::Items => &self.inner.items,
        }
    }

    fn topic_of(subject: &str) -> Option<Topic> {
        if subject == subjects::ITEMS_SUBJECT {
            Some(Topic::Items)
        } else if subject.starts_with("streamrec.events.")
            || subject == subjects::IMPRESSIONS_SUBJECT
        {
            Some(Topic::Events)
        } else {
            None
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain data; the log
/// itself is still consistent (every update is a single push or pop), so keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TopicLog {
    fn new() -> Self {
        Self {
            state: Mutex::new(LogState {
                entries: VecDeque::new(),
                last_seq: 0,
                cursor: 1,
                recent_ids: RecentIds::new(DEDUP_WINDOW),
            }),
            head: watch::channel(0).0,
        }
    }

    fn append(&self, message: Outbound) {
        let seq = {
            let mut state = lock(&self.state);
            if let Some(id) = &message.msg_id
                && !state.recent_ids.insert(id)
            {
                return;
            }
            state.last_seq += 1;
            let seq = state.last_seq;
            state.entries.push_back(Stored {
                seq,
                subject: message.subject,
                payload: message.payload,
                delivered: 0,
                published_ms: chrono::Utc::now().timestamp_millis(),
            });
            seq
        };
        self.head.send_replace(seq);
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, messages: Vec<Outbound>) -> Result<(), BusError> {
        for message in messages {
            let topic = Self::topic_of(&message.subject).ok_or_else(|| BusError::Publish {
                subject: message.subject.clone(),
                message: "no stream captures this subject".to_owned(),
            })?;
            self.log(topic).append(message);
        }
        Ok(())
    }

    async fn consumer(&self, topic: Topic, from_seq: u64) -> Result<Box<dyn Consumer>, BusError> {
        let log = self.log(topic);
        {
            // A new consumer starts over from the ack floor (unacked messages are delivered
            // again), or later if asked; acknowledged messages are gone from memory.
            let mut state = lock(&log.state);
            let floor = state.entries.front().map_or(state.last_seq + 1, |e| e.seq);
            state.cursor = floor.max(from_seq);
        }
        Ok(Box::new(InProcessConsumer {
            bus: self.clone(),
            topic,
            head: log.head.subscribe(),
        }))
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), BusError> {
        let mut kept = lock(&self.inner.dead_letters);
        if kept.ids.insert(&letter.id()) {
            if kept.letters.len() == DEAD_LETTERS_KEPT {
                kept.letters.pop_front();
            }
            kept.letters.push_back(letter);
        }
        Ok(())
    }

    async fn readiness(&self) -> Readiness {
        Readiness {
            ready: true,
            detail: "in-process bus".to_owned(),
        }
    }

    fn kind(&self) -> &'static str {
        "in-process"
    }
}

struct InProcessConsumer {
    bus: InProcessBus,
    topic: Topic,
    head: watch::Receiver<u64>,
}

impl InProcessConsumer {
    fn take(&self, max: usize) -> Vec<Delivery> {
        let mut state = lock(&self.bus.log(self.topic).state);
        let cursor = state.cursor;
        let mut out = Vec::new();
        for stored in state
            .entries
            .iter_mut()
            .filter(|e| e.seq >= cursor)
            .take(max)
        {
            stored.delivered += 1;
            out.push(Delivery {
                seq: stored.seq,
                subject: stored.subject.clone(),
                payload: stored.payload.clone(),
                delivered: stored.delivered,
                published_ms: stored.published_ms,
                acker: None,
            });
        }
        if let Some(last) = out.last() {
            state.cursor = last.seq + 1;
        }
        out
    }
}

#[async_trait]
impl Consumer for InProcessConsumer {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let batch = self.take(max);
        if !batch.is_empty() {
            return Ok(batch);
        }
        let wanted = lock(&self.bus.log(self.topic).state).cursor;
        let woke = tokio::time::timeout(wait, self.head.wait_for(|head| *head >= wanted))
            .await
            .map(|r| r.map(drop));
        match woke {
            Ok(Ok(())) => Ok(self.take(max)),
            Ok(Err(_)) => Err(BusError::Closed),
            Err(_) => Ok(Vec::new()),
        }
    }

    async fn ack_through(&mut self, last: &Delivery) -> Result<(), BusError> {
        let mut state = lock(&self.bus.log(self.topic).state);
        while state.entries.front().is_some_and(|e| e.seq <= last.seq) {
            state.entries.pop_front();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(subject: &str, id: &str) -> Outbound {
        Outbound {
            subject: subject.to_owned(),
            msg_id: Some(id.to_owned()),
            payload: Bytes::from(id.to_owned()),
        }
    }

    const WAIT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn delivers_in_order_and_drops_duplicate_ids() {
        let bus = InProcessBus::new();
        bus.publish(vec![
            msg("streamrec.events.view", "a"),
            msg("streamrec.events.click", "b"),
            msg("streamrec.events.view", "a"),
        ])
        .await
        .expect("publish");
        let mut consumer = bus.consumer(Topic::Events, 1).await.expect("consumer");
        let batch = consumer.next_batch(10, WAIT).await.expect("batch");
        let ids: Vec<_> = batch.iter().map(|d| d.payload.clone()).collect();
        assert_eq!(ids, [Bytes::from("a"), Bytes::from("b")]);
        assert_eq!(batch.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 2]);
    }

    #[tokio::test]
    async fn unacked_messages_are_redelivered_to_a_new_consumer() {
        let bus = InProcessBus::new();
        bus.publish(
            (0..4)
                .map(|i| msg("streamrec.events.view", &i.to_string()))
                .collect(),
        )
        .await
        .expect("publish");
        let mut first = bus.consumer(Topic::Events, 1).await.expect("consumer");
        let batch = first.next_batch(4, WAIT).await.expect("batch");
        first.ack_through(&batch[1]).await.expect("ack");
        drop(first);
        let mut second = bus.consumer(Topic::Events, 1).await.expect("consumer");
        let again = second.next_batch(10, WAIT).await.expect("batch");
        assert_eq!(again.iter().map(|d| d.seq).collect::<Vec<_>>(), [3, 4]);
        assert!(again.iter().all(|d| d.delivered == 2));
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_on_publish() {
        let bus = InProcessBus::new();
        let mut consumer = bus.consumer(Topic::Items, 1).await.expect("consumer");
        let publisher = bus.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            publisher
                .publish(vec![msg(subjects::ITEMS_SUBJECT, "x")])
                .await
                .expect("publish");
        });
        let batch = consumer
            .next_batch(10, Duration::from_secs(5))
            .await
            .expect("batch");
        assert_eq!(batch.len(), 1);
    }

    #[tokio::test]
    async fn a_redelivered_bad_message_is_dead_lettered_once() {
        let bus = InProcessBus::new();
        let letter = |seq| DeadLetter {
            reason: "invalid_json".into(),
            error: "payload is not valid JSON".into(),
            source_subject: "streamrec.events.click".into(),
            source_seq: seq,
            payload: Bytes::from_static(b"{"),
        };
        for seq in [7, 7, 8] {
            bus.dead_letter(letter(seq)).await.expect("kept");
        }
        let seqs: Vec<u64> = bus.dead_letters().iter().map(|l| l.source_seq).collect();
        assert_eq!(seqs, [7, 8]);
    }

    #[tokio::test]
    async fn unknown_subjects_are_refused() {
        let bus = InProcessBus::new();
        assert!(bus.publish(vec![msg("elsewhere", "a")]).await.is_err());
    }
}
