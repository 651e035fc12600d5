//! NATS subjects and stream names: the bus layout shared by emitters and the server.

use crate::EventKind;

/// Stream capturing every event subject.
pub const EVENTS_STREAM: &str = "STREAMREC_EVENTS";
/// Subjects of clickstream events.
pub const EVENTS_SUBJECTS: &str = "streamrec.events.>";
/// Subject of the impressions the engine itself publishes: on the events stream too, so
/// impressions and the clicks they lead to share one order.
pub const IMPRESSIONS_SUBJECT: &str = "streamrec.impressions";
/// Subject of user erasures (`DELETE /v1/users/{id}`): on the events stream, so an erasure
/// applies after exactly the events published before it, on every node and every replay.
pub const USER_ERASURES_SUBJECT: &str = "streamrec.users.erase";
/// Stream capturing the item catalog updates.
pub const ITEMS_STREAM: &str = "STREAMREC_ITEMS";
/// Subject on which catalog updates arrive.
pub const ITEMS_SUBJECT: &str = "streamrec.items";
/// Subject of item deletions: on the items stream, in order with the upserts.
pub const ITEM_DELETIONS_SUBJECT: &str = "streamrec.items.delete";
/// Stream keeping every dead-lettered message.
pub const DLQ_STREAM: &str = "STREAMREC_DLQ";
/// Subjects captured by [`DLQ_STREAM`].
pub const DLQ_SUBJECTS: &str = "streamrec.dlq.>";
/// Stream keeping every event that arrived behind the watermark, republished.
pub const LATE_STREAM: &str = "STREAMREC_LATE";
/// Subjects captured by [`LATE_STREAM`]: `streamrec.late.<kind>`.
pub const LATE_SUBJECTS: &str = "streamrec.late.>";
/// Stream keeping the engine's alerts.
pub const ALERTS_STREAM: &str = "STREAMREC_ALERTS";
/// Subjects captured by [`ALERTS_STREAM`].
pub const ALERTS_SUBJECTS: &str = "streamrec.alerts.>";
/// Subject of a drift alert: a feature whose PSI turned major.
pub const DRIFT_ALERTS_SUBJECT: &str = "streamrec.alerts.drift";
/// Subject of a divergence alert: a node whose learners differ from the cluster's.
pub const DIVERGENCE_ALERTS_SUBJECT: &str = "streamrec.alerts.divergence";
/// Header of a late event: how far behind the watermark it was stamped, in ms.
pub const LATE_MS_HEADER: &str = "Streamrec-Late-Ms";
/// Header of a late event: its sequence in the events stream.
pub const LATE_SOURCE_SEQ_HEADER: &str = "Streamrec-Late-Source-Seq";
/// Header carrying the de-duplication id of a JetStream publish.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// Header of a dead-lettered message: the machine-readable reason.
pub const DLQ_REASON_HEADER: &str = "Streamrec-Dlq-Reason";
/// Header of a dead-lettered message: the human-readable error.
pub const DLQ_ERROR_HEADER: &str = "Streamrec-Dlq-Error";
/// Header of a dead-lettered message: the subject it was first published on.
pub const DLQ_SOURCE_HEADER: &str = "Streamrec-Dlq-Source";

/// Header of a dead-lettered message whose payload was cut: the payload's full size in
/// bytes (what is kept is its first [`DLQ_PAYLOAD_KEPT`] bytes).
pub const DLQ_PAYLOAD_BYTES_HEADER: &str = "Streamrec-Dlq-Payload-Bytes";
/// Most payload bytes a dead letter keeps: enough to see what was wrong, not enough for a
/// flood of huge bad messages to fill the dead-letter stream.
pub const DLQ_PAYLOAD_KEPT: usize = 4 * 1024;

/// Subject an emitter publishes an event of `kind` to.
pub fn event_subject(kind: EventKind) -> String {
    format!("streamrec.events.{}", kind.as_str())
}

/// Subject a late event of `kind` is republished to.
pub fn late_subject(kind: EventKind) -> String {
    format!("streamrec.late.{}", kind.as_str())
}

/// Subject a message rejected for `reason` (a [`crate::Reason::code`]) is dead-lettered to.
pub fn dlq_subject(reason: &str) -> String {
    format!("streamrec.dlq.{reason}")
}
