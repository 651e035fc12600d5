//! The in-process bus: an append-only log per topic, with one consumer each. Same ordering,
//! de-duplication and ack semantics as JetStream. In memory by default; opened on a folder
//! (`serve --data-dir`), every publish is written to that topic's [`SegmentLog`] and fsynced
//! before it is answered, and a restart replays from any kept sequence.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use streamrec_learner::RecentIds;
use streamrec_proto::{DriftAlert, subjects};
use tokio::sync::watch;

use super::segment_log::{LogError, LogRecord, MAX_FIELD, Recovery, Retention, SegmentLog};
use super::{Bus, Consumer, DeadLetter, Delivery, LateEvent, Outbound, Readiness, Topic};
use crate::error::BusError;

/// Publishes remembered for de-duplication, like JetStream's duplicate window.
const DEDUP_WINDOW: usize = 100_000;
/// Dead letters kept in memory (newest); older ones go.
const DEAD_LETTERS_KEPT: usize = 10_000;
/// Newest messages a durable log also keeps in memory; older ones are read back from disk.
const TAIL_KEPT: usize = 50_000;

#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

struct Inner {
    events: TopicLog,
    items: TopicLog,
    dead_letters: Mutex<DeadLetters>,
    /// Late events republished, oldest first (the newest [`DEAD_LETTERS_KEPT`]).
    late: Mutex<LateEvents>,
    /// Drift alerts published, oldest first, one per feature and window.
    alerts: Mutex<VecDeque<DriftAlert>>,
}

#[derive(Default)]
struct LateEvents {
    events: VecDeque<LateEvent>,
    /// The newest source sequence republished.
    through: u64,
}

struct DeadLetters {
    letters: VecDeque<DeadLetter>,
    ids: RecentIds,
}

struct TopicLog {
    state: Mutex<LogState>,
    /// Sequence of the newest message: consumers wait on it.
    head: watch::Sender<u64>,
    /// The log on disk, when the bus is durable. Held across a whole append, so sequences
    /// reach the file in order; taken before `state`, never the other way round.
    disk: Option<Mutex<SegmentLog>>,
}

struct LogState {
    /// Retained messages: everything after the ack floor (in memory), or its newest part
    /// (durable: the rest is on disk).
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
    /// A bus in memory only: what it accepted is gone when the process ends.
    pub fn new() -> Self {
        Self::with_logs(TopicLog::new(), TopicLog::new())
    }

    /// A bus whose topics are logs in `dir` (`events/`, `items/`): a publish is answered
    /// once it is on disk, and a restart finds everything the retention kept.
    pub fn open(dir: &Path, retention: Retention) -> Result<(Self, DurableRecovery), LogError> {
        let (events, events_recovery) = TopicLog::open(&dir.join("events"), retention)?;
        let (items, items_recovery) = TopicLog::open(&dir.join("items"), retention)?;
        let recovery = DurableRecovery {
            events: events_recovery,
            items: items_recovery,
        };
        Ok((Self::with_logs(events, items), recovery))
    }

    fn with_logs(events: TopicLog, items: TopicLog) -> Self {
        Self {
            inner: Arc::new(Inner {
                events,
                items,
                dead_letters: Mutex::new(DeadLetters {
                    letters: VecDeque::new(),
                    ids: RecentIds::new(DEAD_LETTERS_KEPT),
                }),
                late: Mutex::new(LateEvents::default()),
                alerts: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Whether what it accepts survives the process.
    pub fn is_durable(&self) -> bool {
        self.inner.events.disk.is_some()
    }

    /// Everything dead-lettered so far, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.inner.dead_letters)
            .letters
            .iter()
            .cloned()
            .collect()
    }

    /// Every drift alert published so far, oldest first.
    pub fn drift_alerts(&self) -> Vec<DriftAlert> {
        lock(&self.inner.alerts).iter().cloned().collect()
    }

    /// Every late event republished so far, oldest first.
    pub fn late_events(&self) -> Vec<LateEvent> {
        lock(&self.inner.late).events.iter().cloned().collect()
    }

    fn log(&self, topic: Topic) -> &TopicLog {
        match topic {
            Topic::Events => &self.inner.events,
            Topic::Items => &self.inner.items,
        }
    }

    fn topic_of(subject: &str) -> Option<Topic> {
        if subject == subjects::ITEMS_SUBJECT || subject == subjects::ITEM_DELETIONS_SUBJECT {
            Some(Topic::Items)
        } else if subject.starts_with("streamrec.events.")
            || subject == subjects::IMPRESSIONS_SUBJECT
            || subject == subjects::USER_ERASURES_SUBJECT
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

/// What opening a durable bus found, per topic.
#[derive(Debug, Clone)]
pub struct DurableRecovery {
    pub events: Recovery,
    pub items: Recovery,
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
            disk: None,
        }
    }

    fn open(dir: &Path, retention: Retention) -> Result<(Self, Recovery), LogError> {
        let (disk, recovery) = SegmentLog::open(dir, retention, DEDUP_WINDOW)?;
        let mut recent_ids = RecentIds::new(DEDUP_WINDOW);
        for id in &recovery.recent_ids {
            recent_ids.insert(id);
        }
        let log = Self {
            state: Mutex::new(LogState {
                entries: VecDeque::new(),
                last_seq: recovery.last_seq,
                cursor: disk.first_seq(),
                recent_ids,
            }),
            head: watch::channel(recovery.last_seq).0,
            disk: Some(Mutex::new(disk)),
        };
        Ok((log, recovery))
    }

    /// Durable append: the batch is on disk before it is visible, and before the publisher
    /// hears back. A failed write leaves no trace (ids stay unseen, so a retry is stored).
    fn append_durable(
        &self,
        disk: &Mutex<SegmentLog>,
        messages: Vec<Outbound>,
    ) -> Result<(), BusError> {
        let mut disk = lock(disk);
        let published_ms = streamrec_proto::now_millis();
        let records: Vec<LogRecord> = {
            let state = lock(&self.state);
            let mut batch_ids = HashSet::new();
            let mut seq = state.last_seq;
            messages
                .into_iter()
                .filter(|m| {
                    m.msg_id.as_ref().is_none_or(|id| {
                        !state.recent_ids.contains(id) && batch_ids.insert(id.clone())
                    })
                })
                .map(|m| {
                    seq += 1;
                    LogRecord {
                        seq,
                        published_ms,
                        subject: m.subject,
                        msg_id: m.msg_id,
                        payload: m.payload,
                    }
                })
                .collect()
        };
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(());
        };
        disk.append(&records, published_ms).map_err(|e| {
            tracing::error!(error = %e, "bus log append failed");
            BusError::Log("written")
        })?;
        {
            let mut state = lock(&self.state);
            for record in records {
                if let Some(id) = &record.msg_id {
                    state.recent_ids.insert(id);
                }
                state.entries.push_back(Stored {
                    seq: record.seq,
                    subject: record.subject,
                    payload: record.payload,
                    delivered: 0,
                    published_ms: record.published_ms,
                });
            }
            state.last_seq = last;
            while state.entries.len() > TAIL_KEPT {
                state.entries.pop_front();
            }
        }
        self.head.send_replace(last);
        Ok(())
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
                published_ms: streamrec_proto::now_millis(),
            });
            seq
        };
        self.head.send_replace(seq);
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, messages: Vec<Outbound>) -> Result<(), BusError> {
        let mut by_topic: Vec<(Topic, Vec<Outbound>)> = Vec::new();
        for message in messages {
            let topic = Self::topic_of(&message.subject).ok_or_else(|| BusError::Publish {
                subject: message.subject.clone(),
                message: "no stream captures this subject".to_owned(),
            })?;
            if message.subject.len() > MAX_FIELD
                || message
                    .msg_id
                    .as_ref()
                    .is_some_and(|id| id.len() > MAX_FIELD)
            {
                return Err(BusError::Publish {
                    subject: message.subject.chars().take(64).collect(),
                    message: "subject or message id too long".to_owned(),
                });
            }
            match by_topic.last_mut() {
                Some((t, batch)) if *t == topic => batch.push(message),
                _ => by_topic.push((topic, vec![message])),
            }
        }
        for (topic, batch) in by_topic {
            if self.log(topic).disk.is_none() {
                for message in batch {
                    self.log(topic).append(message);
                }
                continue;
            }
            // fsync blocks: off the async workers.
            let bus = self.clone();
            tokio::task::spawn_blocking(move || {
                let log = bus.log(topic);
                log.disk
                    .as_ref()
                    .map_or(Ok(()), |disk| log.append_durable(disk, batch))
            })
            .await
            .map_err(|_| BusError::Closed)??;
        }
        Ok(())
    }

    async fn consumer(&self, topic: Topic, from_seq: u64) -> Result<Box<dyn Consumer>, BusError> {
        let log = self.log(topic);
        {
            // A new consumer starts over from the ack floor (unacked messages are delivered
            // again), or later if asked; acknowledged messages are gone from memory.
            let mut state = lock(&log.state);
            match &log.disk {
                // Everything the retention kept is on disk: deliver from where asked.
                Some(disk) => state.cursor = from_seq.max(lock(disk).first_seq()),
                None => {
                    let floor = state.entries.front().map_or(state.last_seq + 1, |e| e.seq);
                    state.cursor = floor.max(from_seq);
                }
            }
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

    async fn late_events(&self, events: Vec<LateEvent>) -> Result<(), BusError> {
        let mut kept = lock(&self.inner.late);
        for late in events {
            if late.source_seq <= kept.through {
                continue;
            }
            kept.through = late.source_seq;
            if kept.events.len() == DEAD_LETTERS_KEPT {
                kept.events.pop_front();
            }
            kept.events.push_back(late);
        }
        Ok(())
    }

    async fn drift_alerts(&self, alerts: Vec<DriftAlert>) -> Result<(), BusError> {
        let mut kept = lock(&self.inner.alerts);
        for alert in alerts {
            if kept.iter().any(|a| a.msg_id() == alert.msg_id()) {
                continue;
            }
            if kept.len() == DEAD_LETTERS_KEPT {
                kept.pop_front();
            }
            kept.push_back(alert);
        }
        Ok(())
    }

    async fn readiness(&self) -> Readiness {
        Readiness {
            ready: true,
            detail: "in-process bus".to_owned(),
            events_head: Some(lock(&self.inner.events.state).last_seq),
        }
    }

    fn kind(&self) -> &'static str {
        if self.is_durable() {
            "in-process (durable)"
        } else {
            "in-process"
        }
    }
}

struct InProcessConsumer {
    bus: InProcessBus,
    topic: Topic,
    head: watch::Receiver<u64>,
}

impl InProcessConsumer {
    fn take(&self, max: usize) -> Result<Vec<Delivery>, BusError> {
        if let Some(from_disk) = self.take_from_disk(max)? {
            return Ok(from_disk);
        }
        Ok(self.take_from_memory(max))
    }

    /// Messages older than the in-memory tail, read back from the durable log; `None` when
    /// the cursor is inside the tail (or the bus is in memory).
    fn take_from_disk(&self, max: usize) -> Result<Option<Vec<Delivery>>, BusError> {
        let log = self.bus.log(self.topic);
        let Some(disk) = &log.disk else {
            return Ok(None);
        };
        let (cursor, tail_start) = {
            let state = lock(&log.state);
            let tail_start = state.entries.front().map_or(state.last_seq + 1, |e| e.seq);
            (state.cursor, tail_start)
        };
        if cursor >= tail_start {
            return Ok(None);
        }
        let wanted = max.min(usize::try_from(tail_start - cursor).unwrap_or(max));
        let records = lock(disk).read(cursor, wanted).map_err(|e| {
            tracing::error!(error = %e, "bus log read failed");
            BusError::Log("read")
        })?;
        let out: Vec<Delivery> = records
            .into_iter()
            .map(|r| Delivery {
                seq: r.seq,
                subject: r.subject,
                payload: r.payload,
                delivered: 1,
                published_ms: r.published_ms,
                acker: None,
            })
            .collect();
        let mut state = lock(&log.state);
        // A consumer reset meanwhile moved the cursor: this read is stale.
        if state.cursor != cursor {
            return Ok(Some(Vec::new()));
        }
        match out.last() {
            Some(last) => state.cursor = last.seq + 1,
            // Past retention or a gap: continue with the tail.
            None => state.cursor = tail_start,
        }
        Ok(Some(out))
    }

    fn take_from_memory(&self, max: usize) -> Vec<Delivery> {
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
        let batch = self.take(max)?;
        if !batch.is_empty() {
            return Ok(batch);
        }
        let wanted = lock(&self.bus.log(self.topic).state).cursor;
        let woke = tokio::time::timeout(wait, self.head.wait_for(|head| *head >= wanted))
            .await
            .map(|r| r.map(drop));
        match woke {
            Ok(Ok(())) => self.take(max),
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
        let letter = |seq| {
            DeadLetter::new(
                "invalid_json",
                "payload is not valid JSON",
                "streamrec.events.click",
                seq,
                &Bytes::from_static(b"{"),
            )
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

    #[tokio::test]
    async fn a_durable_bus_keeps_what_it_accepted_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = TAIL_KEPT + 1_000;
        {
            let (bus, recovery) =
                InProcessBus::open(dir.path(), Retention::default()).expect("open");
            assert_eq!(recovery.events.last_seq, 0);
            assert!(bus.is_durable());
            bus.publish(
                (0..count)
                    .map(|i| msg("streamrec.events.view", &format!("e{i}")))
                    .collect(),
            )
            .await
            .expect("publish");
            bus.publish(vec![msg(subjects::ITEMS_SUBJECT, "i0")])
                .await
                .expect("publish item");
            // Consumed and acknowledged before the "crash": still replayable from disk.
            let mut consumer = bus.consumer(Topic::Events, 1).await.expect("consumer");
            let batch = consumer.next_batch(10, WAIT).await.expect("batch");
            consumer.ack_through(&batch[9]).await.expect("ack");
        }
        let (bus, recovery) = InProcessBus::open(dir.path(), Retention::default()).expect("reopen");
        assert_eq!(recovery.events.last_seq, count as u64);
        assert_eq!(recovery.items.last_seq, 1);
        // A client retrying a publish it never heard back about is recognised.
        bus.publish(vec![
            msg("streamrec.events.view", "e5"),
            msg("streamrec.events.view", "new"),
        ])
        .await
        .expect("publish");
        // A restored snapshot at sequence 100 asks for what follows it: the disk part
        // (before the in-memory tail) and the tail, in order, without a gap.
        let mut consumer = bus.consumer(Topic::Events, 101).await.expect("consumer");
        let mut seqs = Vec::new();
        loop {
            let batch = consumer.next_batch(4096, WAIT).await.expect("batch");
            let Some(last) = batch.last() else { break };
            consumer.ack_through(last).await.expect("ack");
            seqs.extend(batch.iter().map(|d| d.seq));
        }
        let expected: Vec<u64> = (101..=count as u64 + 1).collect();
        assert_eq!(seqs, expected);
        let mut items = bus.consumer(Topic::Items, 1).await.expect("consumer");
        let batch = items.next_batch(10, WAIT).await.expect("batch");
        assert_eq!(
            batch.iter().map(|d| d.payload.clone()).collect::<Vec<_>>(),
            [Bytes::from("i0")]
        );
    }
}
