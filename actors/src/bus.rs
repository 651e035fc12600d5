//! The event bus: one trait, two implementations (NATS JetStream for production, in-process
//! for the embedded default and unit tests), with the same ordering and ack semantics.

mod in_process;
mod nats;
pub mod segment_log;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use streamrec_proto::{DivergenceAlert, DriftAlert, EventKind, subjects};

pub use in_process::{DurableRecovery, InProcessBus};
pub use nats::{NatsBus, NatsBusConfig, NatsSecurity, StreamLimits};
pub use segment_log::Retention;

use crate::error::BusError;

/// A server list fit to print: credentials in any of its URLs (`nats://user:pass@host`)
/// become `***`.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(redact_address)
        .collect::<Vec<_>>()
        .join(",")
}

/// One address fit to print (see [`redact_url`]).
pub fn redact_address(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => address.to_owned(),
    }
}

/// The durable logs the engine consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Clickstream events, `streamrec.events.<kind>`.
    Events,
    /// Catalog upserts, `streamrec.items`.
    Items,
}

/// Gauge: JetStream's `num_pending` of streamrec's consumer, per topic, as of its last batch.
pub const CONSUMER_PENDING: &str = "streamrec_consumer_pending_messages";

impl Topic {
    /// Its name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Events => "events",
            Topic::Items => "items",
        }
    }
}

/// A message to append to a log.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub subject: String,
    /// De-duplication id (`Nats-Msg-Id`): a second publish with the same id is dropped.
    pub msg_id: Option<String>,
    pub payload: Bytes,
}

/// A message that failed validation, on its way to `streamrec.dlq.<reason>`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub reason: String,
    pub error: String,
    pub source_subject: String,
    /// Sequence in the source log, so a redelivered message is dead-lettered once.
    pub source_seq: u64,
    /// The rejected payload, cut to [`subjects::DLQ_PAYLOAD_KEPT`] bytes.
    pub payload: Bytes,
    /// The payload's size before it was cut.
    pub payload_bytes: usize,
}

impl DeadLetter {
    /// A letter for `payload`, keeping at most [`subjects::DLQ_PAYLOAD_KEPT`] bytes of it.
    pub fn new(
        reason: impl Into<String>,
        error: impl Into<String>,
        source_subject: impl Into<String>,
        source_seq: u64,
        payload: &Bytes,
    ) -> Self {
        Self {
            reason: reason.into(),
            error: error.into(),
            source_subject: source_subject.into(),
            source_seq,
            payload: payload.slice(..payload.len().min(subjects::DLQ_PAYLOAD_KEPT)),
            payload_bytes: payload.len(),
        }
    }

    pub fn is_truncated(&self) -> bool {
        self.payload.len() < self.payload_bytes
    }

    /// Identity of the rejected message: a redelivered bad message is dead-lettered once.
    pub fn id(&self) -> String {
        format!("dlq:{}:{}", self.source_subject, self.source_seq)
    }
}

/// What comparing a state digest with the cluster's found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestCheck {
    /// No other node shares this bus.
    Alone,
    /// The first digest recorded at this sequence: the reference for the others.
    First,
    /// Equal to the reference.
    Same,
    /// Different from the reference (announced).
    Differs(DivergenceAlert),
}

/// An event the learners took behind the watermark, on its way to `streamrec.late.<kind>`.
#[derive(Debug, Clone, PartialEq)]
pub struct LateEvent {
    pub kind: EventKind,
    /// Its sequence in the events stream: republished at most once per sequence.
    pub source_seq: u64,
    /// How far behind the watermark it was stamped.
    pub late_ms: i64,
    /// The event as its emitter published it.
    pub payload: Bytes,
}

impl LateEvent {
    /// De-duplication id: every node of a cluster detects the same late events, and one
    /// copy of each is kept.
    pub fn id(&self) -> String {
        format!("late:{}", self.source_seq)
    }
}

/// One message handed to a consumer. It stays pending until acknowledged.
pub struct Delivery {
    /// Position in its log (JetStream stream sequence): strictly increasing on first delivery.
    pub seq: u64,
    pub subject: String,
    pub payload: Bytes,
    /// How many times this message has been delivered (1 on first delivery).
    pub delivered: u64,
    /// When the bus accepted it (ms since the Unix epoch): stored with the message, so a
    /// replay judges it by the same clock as its first delivery.
    pub published_ms: i64,
    pub(crate) acker: Option<async_nats::jetstream::message::Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("seq", &self.seq)
            .field("subject", &self.subject)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

/// Whether the bus can serve: connected, and its streams exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub detail: String,
    /// Sequence of the newest message in the events log, when the bus said.
    pub events_head: Option<u64>,
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Appends messages, returning once each is durably stored (or rejected).
    async fn publish(&self, messages: Vec<Outbound>) -> Result<(), BusError>;

    /// Opens the durable consumer of `topic`, delivering from stream sequence `from_seq`
    /// (the state being rebuilt has applied everything before it); every message not
    /// acknowledged later is delivered again.
    async fn consumer(&self, topic: Topic, from_seq: u64) -> Result<Box<dyn Consumer>, BusError>;

    /// Keeps a rejected message, with its reason, in the dead-letter log.
    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), BusError>;

    /// Republishes events that arrived behind the watermark (in stream order), each once:
    /// one at or below the newest source sequence already republished is skipped, so a
    /// replay after a restart, or a second node, adds no copy.
    async fn late_events(&self, events: Vec<LateEvent>) -> Result<(), BusError>;

    /// Publishes drift alerts to `streamrec.alerts.drift`, each once per feature and window
    /// ([`DriftAlert::msg_id`]): every node raises the same ones.
    async fn drift_alerts(&self, alerts: Vec<DriftAlert>) -> Result<(), BusError>;

    /// Records this node's state digest (learner name to SHA-256) at events-stream
    /// sequence `seq`, or compares it with the one another node recorded there first; a
    /// difference is announced on `streamrec.alerts.divergence`. A bus no other node shares
    /// has nothing to compare with.
    /// Whether [`Self::check_state_digest`] compares with other nodes (else the learner
    /// takes no digests at all).
    fn compares_state_digests(&self) -> bool {
        false
    }

    async fn check_state_digest(
        &self,
        _seq: u64,
        _digest: &BTreeMap<String, String>,
    ) -> Result<DigestCheck, BusError> {
        Ok(DigestCheck::Alone)
    }

    async fn readiness(&self) -> Readiness;

    /// Keeps a copy of the snapshot written in `dir` beside the bus, and records it as the
    /// current one. The in-process bus keeps none.
    async fn store_snapshot(
        &self,
        _dir: &std::path::Path,
        _version: &str,
        _files: &[String],
    ) -> Result<(), BusError> {
        Ok(())
    }

    /// Copies the bus's current snapshot into `root/<version>/` if it is not there; returns
    /// its version.
    async fn fetch_snapshot(&self, _root: &std::path::Path) -> Result<Option<String>, BusError> {
        Ok(None)
    }

    /// A short name for logs and `/readyz`.
    fn kind(&self) -> &'static str;
}

#[async_trait]
pub trait Consumer: Send {
    /// Up to `max` messages in log order; waits at most `wait` for the first one, and returns
    /// an empty batch if none came.
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;

    /// Acknowledges `last` and every message delivered before it.
    async fn ack_through(&mut self, last: &Delivery) -> Result<(), BusError>;
}
