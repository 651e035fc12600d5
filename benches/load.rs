//! End-to-end load generator: `cargo bench --bench load`.
//!
//! 1. Ingest: N events published to a real `nats-server` until the popularity learner has
//!    applied them all, beside raw JetStream publish + consume (same publisher, same payload
//!    size, same ack policy) of N messages on the same server, in the same run.
//! 2. Serving: `GET /v1/recommendations` from C concurrent keep-alive clients for D seconds,
//!    latency as a distribution (p50/p99/p99.9), first alone, then while events stream in.
//!
//! Settings from the environment: `LOAD_EVENTS` (default 200000), `LOAD_SECONDS` (10),
//! `LOAD_CONCURRENCY` (32), `LOAD_EVENT_RATE` (events/s during the mixed phase, 5000).

#[path = "common/closed_loop.rs"]
mod closed_loop;
#[path = "../tests/support/mod.rs"]
mod support;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, message::PublishMessage, stream};
use closed_loop::{LoadResult, closed_loop, env};
use futures::StreamExt;
use serde_json::json;
use streamrec_actors::{EngineConfig, NatsBus, NatsBusConfig};
use streamrec_api::RunningServer;
use support::nats::NatsServer;

/// Publishes in flight before waiting for the oldest ack.
const PUBLISH_WINDOW: usize = 4_096;
const ITEMS: usize = 10_000;
const SESSIONS: usize = 20_000;
const EVENT_SUBJECT: &str = "streamrec.events.click";

/// A realistic event: ~200 bytes of JSON, and its id.
fn event_payload(i: usize) -> (String, bytes::Bytes) {
    let id = format!("load-{i}");
    let body = json!({
        "event_id": id,
        "session_id": format!("session-{}", i % SESSIONS),
        "user_id": format!("user-{}", i % SESSIONS),
        "kind": "click",
        // Skewed towards low ids, like real popularity.
        "item_id": format!("item-{}", (i * i) % ITEMS),
        "ts": 1_700_000_000_000_i64 + i as i64,
        "context": {"device": "web", "page": "home", "referrer": "search", "ab": "b"}
    });
    (id, body.to_string().into())
}

/// Publishes events `range` to `subject`, with acks pipelined `PUBLISH_WINDOW` deep.
async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    range: Range<usize>,
) -> anyhow::Result<()> {
    let mut pending = std::collections::VecDeque::with_capacity(PUBLISH_WINDOW);
    for i in range {
        let (id, payload) = event_payload(i);
        let ack = js
            .send_publish(
                subject.to_owned(),
                PublishMessage::build().payload(payload).message_id(id),
            )
            .await?;
        pending.push_back(ack);
        if pending.len() >= PUBLISH_WINDOW
            && let Some(oldest) = pending.pop_front()
        {
            oldest.await?;
        }
    }
    for ack in pending {
        ack.await?;
    }
    Ok(())
}

/// Raw JetStream: publish n messages while one pull consumer reads and acks them.
async fn raw_jetstream(js: &jetstream::Context, n: usize) -> anyhow::Result<Duration> {
    let stream = js
        .create_stream(stream::Config {
            name: "RAW_BASELINE".into(),
            subjects: vec!["raw.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .create_consumer(pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: jetstream::consumer::AckPolicy::All,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let consume = tokio::spawn(async move {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(512)
            .messages()
            .await?;
        let mut seen = 0;
        while seen < n {
            let Some(message) = messages.next().await else {
                break;
            };
            let message = message.map_err(|e| anyhow::anyhow!(e))?;
            // A consumer must at least parse what it reads.
            let _: serde_json::Value = serde_json::from_slice(&message.payload)?;
            seen += 1;
            if seen % 512 == 0 || seen == n {
                message.ack().await.map_err(|e| anyhow::anyhow!(e))?;
            }
        }
        anyhow::Ok(())
    });
    publish_all(js, "raw.click", 0..n).await?;
    consume.await??;
    Ok(started.elapsed())
}

async fn streamrec_ingest(
    js: &jetstream::Context,
    server: &RunningServer,
    n: usize,
) -> anyhow::Result<Duration> {
    let engine = Arc::clone(server.engine());
    let before = engine.stats().events_applied;
    let started = Instant::now();
    publish_all(js, EVENT_SUBJECT, 0..n).await?;
    while engine.stats().events_applied < before + n as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(started.elapsed())
}

fn report_latency(label: &str, r: &LoadResult) {
    println!("{label}: {}", r.summary());
}

fn load_session(i: usize) -> String {
    format!("session-{}", (i * 7919) % SESSIONS)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n = env("LOAD_EVENTS", 200_000) as usize;
    let seconds = env("LOAD_SECONDS", 10);
    let concurrency = env("LOAD_CONCURRENCY", 32) as usize;
    let event_rate = env("LOAD_EVENT_RATE", 5_000);

    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let bus = NatsBus::connect(NatsBusConfig::new(nats.url())).await?;
    let server = RunningServer::start(
        Arc::new(bus),
        EngineConfig::default(),
        "127.0.0.1:0".parse()?,
    )
    .await?;
    println!(
        "load: {n} events of ~{} B, {ITEMS} items, {SESSIONS} sessions",
        event_payload(1).1.len()
    );

    let raw = raw_jetstream(&js, n).await?;
    let ours = streamrec_ingest(&js, &server, n).await?;
    let raw_rate = n as f64 / raw.as_secs_f64();
    let our_rate = n as f64 / ours.as_secs_f64();
    println!(
        "raw JetStream publish+consume: {n} msgs in {:.2} s = {raw_rate:.0} msg/s",
        raw.as_secs_f64()
    );
    println!(
        "streamrec NATS publish -> popularity applied: {n} events in {:.2} s = {our_rate:.0} events/s ({:.2}x raw)",
        ours.as_secs_f64(),
        our_rate / raw_rate
    );

    let url = server.url("/v1/recommendations");
    let idle = closed_loop(url.clone(), concurrency, seconds, load_session).await?;
    report_latency(
        &format!("GET /v1/recommendations, {concurrency} clients, no ingest"),
        &idle,
    );

    // Serving while learning: events stream in at a steady rate during the load.
    let streaming = Arc::new(AtomicBool::new(true));
    let ingest = {
        let streaming = Arc::clone(&streaming);
        let js = js.clone();
        tokio::spawn(async move {
            let per_tick = (event_rate / 100).max(1) as usize;
            let mut next = n;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while streaming.load(Ordering::Relaxed) {
                tick.tick().await;
                publish_all(&js, EVENT_SUBJECT, next..next + per_tick).await?;
                next += per_tick;
            }
            anyhow::Ok(next - n)
        })
    };
    let applied_before = server.engine().stats().events_applied;
    let mixed = closed_loop(url, concurrency, seconds, load_session).await?;
    streaming.store(false, Ordering::Relaxed);
    let streamed = ingest.await??;
    report_latency(
        &format!(
            "GET /v1/recommendations, {concurrency} clients, while ingesting {event_rate} events/s"
        ),
        &mixed,
    );
    println!(
        "  events published during the mixed phase: {streamed}; applied: {}",
        server.engine().stats().events_applied - applied_before
    );
    server.shutdown().await?;
    Ok(())
}
