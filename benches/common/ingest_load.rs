//! What the ingest benches publish and how they time it: the workloads (MovieLens repeated, a
//! large synthetic log), a pipelined JetStream publisher, the raw-JetStream reference, and a
//! sampler of the learner's lag behind the bus.

#![allow(dead_code, reason = "each bench uses a different subset")]

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, message::PublishMessage, stream};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use streamrec_proto::{Event, EventKind, subjects};

/// Publishes in flight before waiting for the oldest ack.
const PUBLISH_WINDOW: usize = 4_096;
/// How often the lag sampler looks.
const LAG_EVERY: Duration = Duration::from_millis(5);
/// Subject of the raw reference stream.
const RAW_SUBJECT: &str = "raw.events";

pub enum Workload {
    /// MovieLens-100K in time order, repeated: round r renames sessions and users and moves
    /// time forward, so every round is new traffic over the same items.
    MovieLens { events: Vec<Event>, span_ms: i64 },
    /// Items with a skewed popularity; consecutive pairs of events share a session, so
    /// 2 × `sessions` events visit every session once; users span several sessions.
    Synthetic { items: usize, sessions: usize },
    /// Every event a new anonymous session, over a few items: what sessions cost.
    NewSessions { items: usize },
    /// Every event a new item from a new session (so no item co-occurs with another): what
    /// an item costs apart from its co-visitation counts.
    NewItems,
    /// Long-lived sessions alternating between a few popular "hub" items and new items,
    /// so each hub co-occurs with ever more items: the rows co-visitation's capacity bounds.
    HubsAndNewItems { hubs: usize, sessions: usize },
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Sessions are visited in a scattered order: 7919 is prime, so `i ↦ i·7919 mod n` is a
/// permutation whenever n has no factor 7919.
const SCATTER: usize = 7_919;

impl Workload {
    pub fn movielens(dir: &Path) -> anyhow::Result<Self> {
        let mut events = streamrec_api::movielens::load_events(dir)?;
        events.sort_by_key(|e| e.ts);
        let first = events.first().map_or(0, |e| e.ts);
        let last = events.last().map_or(0, |e| e.ts);
        Ok(Self::MovieLens {
            events,
            span_ms: last - first + 86_400_000,
        })
    }

    pub fn synthetic(items: usize, sessions: usize) -> Self {
        Self::Synthetic { items, sessions }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::MovieLens { events, .. } => {
                format!("MovieLens-100K repeated ({} ratings a round)", events.len())
            }
            Self::Synthetic { items, sessions } => {
                format!("synthetic: {items} items (skewed), {sessions} sessions")
            }
            Self::NewSessions { items } => format!("a new session per event, {items} items"),
            Self::NewItems => "a new item from a new session per event".to_owned(),
            Self::HubsAndNewItems { hubs, sessions } => {
                format!("{sessions} sessions alternating between {hubs} hubs and new items")
            }
        }
    }

    fn event(&self, i: usize) -> Event {
        match self {
            Self::MovieLens { events, span_ms } => {
                let (round, at) = (i / events.len(), i % events.len());
                let e = &events[at];
                Event {
                    event_id: format!("load-{i}"),
                    session_id: format!("r{round}-{}", e.session_id),
                    user_id: e.user_id.as_ref().map(|u| format!("r{round}-{u}")),
                    ts: e.ts + round as i64 * span_ms,
                    ..e.clone()
                }
            }
            Self::Synthetic { items, sessions } => {
                let session = (i / 2 * SCATTER) % sessions;
                let u = (splitmix(i as u64) >> 11) as f64 / (1u64 << 53) as f64;
                // Cubed: a few items take most of the traffic, like real popularity.
                let item = ((*items as f64) * u * u * u) as usize;
                Event {
                    event_id: format!("load-{i}"),
                    session_id: format!("session-{session}"),
                    user_id: Some(format!("user-{}", session % (sessions / 5).max(1))),
                    kind: EventKind::Click,
                    item_id: format!("item-{}", item.min(items - 1)),
                    ts: 1_700_000_000_000 + i as i64,
                    rec_id: None,
                    position: None,
                    value: None,
                    context: None,
                    details: Default::default(),
                }
            }
            Self::NewSessions { items } => Self::plain(
                i,
                format!("new-session-{i}"),
                format!("item-{}", (i * SCATTER) % items),
            ),
            Self::NewItems => Self::plain(i, format!("lone-{i}"), format!("new-item-{i}")),
            Self::HubsAndNewItems { hubs, sessions } => {
                let session = format!("hubs-{}", (i / 2) % (*sessions).max(1));
                let item = if i.is_multiple_of(2) {
                    format!("hub-{}", splitmix(i as u64) % (*hubs).max(1) as u64)
                } else {
                    format!("new-{i}")
                };
                Self::plain(i, session, item)
            }
        }
    }

    /// An anonymous click.
    fn plain(i: usize, session_id: String, item_id: String) -> Event {
        Event {
            event_id: format!("{session_id}-{item_id}-{i}"),
            session_id,
            user_id: None,
            kind: EventKind::Click,
            item_id,
            ts: 1_700_000_000_000 + i as i64,
            rec_id: None,
            position: None,
            value: None,
            context: None,
            details: Default::default(),
        }
    }

    /// Event `i`: its id, kind and JSON (~200 bytes, with a request context).
    pub fn payload(&self, i: usize) -> (String, EventKind, bytes::Bytes) {
        let e = self.event(i);
        let mut body = serde_json::to_value(&e).unwrap_or_default();
        body["context"] = json!({"device": "web", "page": "home", "referrer": "search"});
        (e.event_id, e.kind, body.to_string().into())
    }

    /// The session request `i` asks for: one the first `n` events visited.
    pub fn request_session(&self, i: usize, n: usize) -> String {
        self.event((i * SCATTER) % n.max(1)).session_id
    }
}

/// Where events go: the engine's stream (by kind) or the raw reference stream.
#[derive(Clone, Copy)]
pub enum Target {
    Engine,
    Raw,
}

/// Publishes events `range` of `workload`, acks pipelined `PUBLISH_WINDOW` deep; each send is
/// noted in `lag`, when given.
pub async fn publish_all(
    js: &jetstream::Context,
    target: Target,
    workload: &Workload,
    range: Range<usize>,
    lag: Option<&LagSampler>,
) -> anyhow::Result<()> {
    let mut pending = std::collections::VecDeque::with_capacity(PUBLISH_WINDOW);
    for i in range {
        let (id, kind, payload) = workload.payload(i);
        let subject = match target {
            Target::Engine => subjects::event_subject(kind),
            Target::Raw => RAW_SUBJECT.to_owned(),
        };
        if let Some(lag) = lag {
            lag.sent();
        }
        let ack = js
            .send_publish(
                subject,
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

/// Raw JetStream: publish n messages while one pull consumer reads, parses and acks them
/// (`AckPolicy::All`, batches of 512, as the engine's consumer).
pub async fn raw_jetstream(
    js: &jetstream::Context,
    workload: &Workload,
    n: usize,
) -> anyhow::Result<Duration> {
    raw_jetstream_replicated(js, workload, n, 1).await
}

/// [`raw_jetstream`] on a stream kept on `replicas` servers of a cluster.
pub async fn raw_jetstream_replicated(
    js: &jetstream::Context,
    workload: &Workload,
    n: usize,
    replicas: usize,
) -> anyhow::Result<Duration> {
    let stream = js
        .create_stream(stream::Config {
            name: "RAW_BASELINE".into(),
            subjects: vec!["raw.>".into()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
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
    publish_all(js, Target::Raw, workload, 0..n, None).await?;
    consume.await??;
    js.delete_stream("RAW_BASELINE").await?;
    Ok(started.elapsed())
}

/// Samples, every few milliseconds, how far the published version trails what was sent:
/// in events, and as the age of the oldest event sent but not yet learned.
pub struct LagSampler {
    shared: Arc<LagShared>,
    task: tokio::task::JoinHandle<anyhow::Result<LagSummary>>,
}

struct LagShared {
    started: Instant,
    /// Microseconds after `started` at which the k-th event of the phase was sent.
    sent_at: Vec<AtomicU64>,
    sent: AtomicU64,
    stop: AtomicBool,
}

pub struct LagSummary {
    pub events: Histogram<u64>,
    pub age_us: Histogram<u64>,
}

impl LagSummary {
    pub fn summary(&self) -> String {
        let q = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q);
        format!(
            "learner lag ({} samples every {} ms): p50 {} / p99 {} / max {} events; oldest unlearned event p50 {:.1} / p99 {:.1} / max {:.1} ms",
            self.events.len(),
            LAG_EVERY.as_millis(),
            q(&self.events, 0.5),
            q(&self.events, 0.99),
            self.events.max(),
            q(&self.age_us, 0.5) as f64 / 1000.0,
            q(&self.age_us, 0.99) as f64 / 1000.0,
            self.age_us.max() as f64 / 1000.0,
        )
    }
}

impl LagSampler {
    /// Room for `capacity` sends; `learned` counts the events of this phase learned so far.
    pub fn start(capacity: usize, learned: impl Fn() -> u64 + Send + 'static) -> Self {
        let shared = Arc::new(LagShared {
            started: Instant::now(),
            sent_at: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            sent: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let task = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                let mut events = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3)?;
                let mut age_us = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
                let mut tick = tokio::time::interval(LAG_EVERY);
                while !shared.stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let sent = shared.sent.load(Ordering::Acquire);
                    let done = learned();
                    let behind = sent.saturating_sub(done);
                    events.saturating_record(behind);
                    let age = match shared.sent_at.get(done as usize) {
                        Some(at) if behind > 0 => {
                            let now = shared.started.elapsed().as_micros() as u64;
                            now.saturating_sub(at.load(Ordering::Acquire))
                        }
                        _ => 0,
                    };
                    age_us.saturating_record(age);
                }
                anyhow::Ok(LagSummary { events, age_us })
            }
        });
        Self { shared, task }
    }

    fn sent(&self) {
        let k = self.shared.sent.load(Ordering::Relaxed) as usize;
        if let Some(at) = self.shared.sent_at.get(k) {
            at.store(
                self.shared.started.elapsed().as_micros() as u64,
                Ordering::Release,
            );
        }
        self.shared.sent.store(k as u64 + 1, Ordering::Release);
    }

    /// Whether `n` more sends fit.
    pub fn has_room(&self, n: usize) -> bool {
        self.shared.sent.load(Ordering::Relaxed) as usize + n <= self.shared.sent_at.len()
    }

    pub async fn stop(self) -> anyhow::Result<LagSummary> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}
