//! The events stream from outside: MovieLens-100K to publish, publishing with message ids,
//! and reading the stream back as the engine consumed it.

use std::path::PathBuf;

use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use streamrec_pipeline::StreamEntry;
use streamrec_proto::{Event, Impression, UserErasure, subjects};

/// MovieLens-100K's events in time order (`data/ml-100k`).
pub fn movielens() -> Vec<Event> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-100k");
    streamrec_api::movielens::load_events(&dir).expect(
        "MovieLens-100K in data/ml-100k (scripts/test fetches it with scripts/fetch-ml100k)",
    )
}

/// Publishes `events` in order, each once (its id as the message id), and waits until the
/// stream has stored them all.
pub async fn publish_stored(js: &jetstream::Context, events: &[Event]) {
    let mut acks = Vec::with_capacity(events.len());
    for event in events {
        let message = PublishMessage::build()
            .payload(event.to_json().into())
            .message_id(&event.event_id);
        acks.push(
            js.send_publish(subjects::event_subject(event.kind), message)
                .await
                .expect("publish"),
        );
    }
    for ack in acks {
        ack.await.expect("stored");
    }
}

/// The whole events stream as the engine consumed it (events, its own impressions, user
/// erasures), in order, with each message's sequence.
pub async fn read_events_stream(js: &jetstream::Context) -> Vec<(u64, StreamEntry)> {
    let stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .expect("events stream");
    let last = stream.cached_info().state.last_sequence;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("reader");
    let mut messages = consumer.messages().await.expect("messages");
    let mut entries = Vec::new();
    let mut seq = 0;
    while seq < last {
        let message = messages.next().await.expect("a message").expect("readable");
        seq = message.info().expect("info").stream_sequence;
        let entry = match message.subject.as_str() {
            subjects::IMPRESSIONS_SUBJECT => StreamEntry::Impression(
                Impression::from_json(&message.payload).expect("an impression"),
            ),
            subjects::USER_ERASURES_SUBJECT => StreamEntry::UserErasure(
                UserErasure::from_json(&message.payload)
                    .expect("an erasure")
                    .user_id,
            ),
            _ => StreamEntry::Event(Event::from_json(&message.payload).expect("an event")),
        };
        entries.push((seq, entry));
    }
    entries
}
