//! Publishes impressions in batches from one background task: a request only enqueues its
//! impression, and never waits on the bus. If the queue is full the impression is dropped and
//! counted; its clicks then go unattributed, but serving is never held up.

use std::sync::Arc;

use streamrec_proto::{Impression, subjects};
use tokio::sync::mpsc;

use crate::bus::{Bus, Outbound};
use crate::counters::Counters;

/// Impressions waiting to be published.
const QUEUE: usize = 16_384;
/// Most impressions per bus call.
const BATCH: usize = 512;

#[derive(Clone)]
pub struct ImpressionPublisher {
    queue: mpsc::Sender<Impression>,
    counters: Arc<Counters>,
}

impl ImpressionPublisher {
    /// Starts the publishing task; it ends when every publisher handle is dropped.
    pub fn start(bus: Arc<dyn Bus>, counters: Arc<Counters>) -> Self {
        let (queue, mut receiver) = mpsc::channel::<Impression>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while receiver.recv_many(&mut batch, BATCH).await > 0 {
                let messages = batch
                    .drain(..)
                    .map(|impression| Outbound {
                        subject: subjects::IMPRESSIONS_SUBJECT.to_owned(),
                        msg_id: Some(format!("impression:{}", impression.rec_id)),
                        payload: impression.to_json().into(),
                    })
                    .collect();
                if let Err(error) = bus.publish(messages).await {
                    tracing::warn!(%error, "impressions not published; their clicks will go unattributed");
                }
            }
        });
        Self { queue, counters }
    }

    pub fn enqueue(&self, impression: Impression) {
        if self.queue.try_send(impression).is_err() {
            self.counters.impressions_dropped(1);
        }
    }
}
