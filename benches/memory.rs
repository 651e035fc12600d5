//! What sessions and items cost in memory: `cargo bench --bench memory`.
//!
//! The engine (every learner on, the read side, the intent index) consumes a real
//! `nats-server`; the figure is this process's resident set (`/proc/self/statm`), so it
//! counts every copy a session or an item leaves anywhere in the engine. Three steps:
//!
//! 1. a warm-up over `MEMORY_ITEMS` items, so the fixed costs (de-duplication window,
//!    buffers, the first graph) are paid before the first reading;
//! 2. `MEMORY_SESSIONS` events, each from a new anonymous session: bytes per idle session;
//! 3. `MEMORY_NEW_ITEMS` events, each a new item from a new session: bytes per item, the
//!    session's cost (step 2) taken off. No item co-occurs with another here, so this is an
//!    item's own cost; co-visitation counts come on top, per co-occurring pair.
//! 4. `MEMORY_HUB_EVENTS` events in 100 long-lived sessions that alternate between 1,000
//!    popular "hub" items and new items, so every hub co-occurs with ever more items: read
//!    after each half, it shows whether co-visitation's rows stay bounded (with
//!    `MEMORY_ROW_CAPACITY=0`, unbounded, beside it).
//!
//! Settings from the environment: `MEMORY_SESSIONS` (1000000), `MEMORY_NEW_ITEMS` (1000000),
//! `MEMORY_ITEMS` (1000), `MEMORY_HUB_EVENTS` (400000),
//! `MEMORY_ROW_CAPACITY` (co-visitation's default; 0: unbounded).

#[path = "common/closed_loop.rs"]
mod closed_loop;
#[path = "common/ingest_load.rs"]
mod ingest_load;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use closed_loop::env;
use ingest_load::{Target, Workload, publish_all};
use streamrec_actors::{EngineConfig, NatsBus, NatsBusConfig};
use streamrec_api::RunningServer;
use streamrec_learner::online::OnlineConfig;
use support::nats::NatsServer;

/// Events of the warm-up, each from a new session.
const WARM_UP: usize = 200_000;

/// Resident set of this process, in bytes.
fn rss() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("/proc/self/statm: {statm:?}"))?
        .parse()?;
    Ok(pages * 4096)
}

/// Publishes `n` events of `workload` and waits until the published version has them.
async fn load(
    js: &jetstream::Context,
    server: &RunningServer,
    workload: &Workload,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Duration> {
    let target = server.engine().models().counters.events + range.len() as u64;
    let started = Instant::now();
    publish_all(js, Target::Engine, workload, range, None).await?;
    while server.engine().models().counters.events < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A few publishes and index refreshes later, so what the last batch left is counted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let sessions = env("MEMORY_SESSIONS", 1_000_000) as usize;
    let new_items = env("MEMORY_NEW_ITEMS", 1_000_000) as usize;
    let items = env("MEMORY_ITEMS", 1_000) as usize;
    let hub_events = env("MEMORY_HUB_EVENTS", 400_000) as usize;
    let mut online = OnlineConfig {
        // Room for every session, so none is forgotten before it is counted.
        max_sessions: WARM_UP + sessions + new_items + 10_000,
        ..OnlineConfig::default()
    };
    if let Ok(capacity) = std::env::var("MEMORY_ROW_CAPACITY") {
        online.covisit.row_capacity = capacity.parse()?;
    }

    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let bus = NatsBus::connect(NatsBusConfig::new(nats.url())).await?;
    let config = EngineConfig {
        online,
        ..EngineConfig::default()
    };
    let row_capacity = config.online.covisit.row_capacity;
    let server = RunningServer::start(Arc::new(bus), config, "127.0.0.1:0".parse()?).await?;

    let new_sessions = Workload::NewSessions { items };
    load(&js, &server, &new_sessions, 0..WARM_UP).await?;
    let before = rss()?;
    let live_before = server.engine().live_sessions();
    println!(
        "after a warm-up of {WARM_UP} events over {items} items: RSS {:.1} MiB, {live_before} sessions",
        before as f64 / 1_048_576.0
    );

    // Sessions are named by event number: the second pass starts past the warm-up's.
    let took = load(&js, &server, &new_sessions, WARM_UP..WARM_UP + sessions).await?;
    let with_sessions = rss()?;
    let live = server.engine().live_sessions();
    let added = live - live_before;
    println!(
        "{added} new sessions (one event each) in {:.1} s: RSS {:.1} MiB; {:.0} bytes per idle session",
        took.as_secs_f64(),
        with_sessions as f64 / 1_048_576.0,
        (with_sessions.saturating_sub(before)) as f64 / added.max(1) as f64
    );

    let per_session = (with_sessions.saturating_sub(before)) as f64 / added.max(1) as f64;
    let items_before = server.engine().models().read.vector_rows();
    let took = load(&js, &server, &Workload::NewItems, 0..new_items).await?;
    let with_items = rss()?;
    let items_added = server.engine().models().read.vector_rows() - items_before;
    let per_event = (with_items.saturating_sub(with_sessions)) as f64 / new_items.max(1) as f64;
    println!(
        "{new_items} events, each a new item from a new session, in {:.1} s ({items_added} items gained vectors; intent index {} items): RSS {:.1} MiB; {per_event:.0} bytes per event, {:.0} bytes per item beside its session",
        took.as_secs_f64(),
        server.engine().serving().intent_index.len(),
        with_items as f64 / 1_048_576.0,
        per_event - per_session,
    );

    let hubs = Workload::HubsAndNewItems {
        hubs: 1_000,
        sessions: 100,
    };
    let mut before_half = with_items;
    for half in [0..hub_events / 2, hub_events / 2..hub_events] {
        let (events, last) = (half.len(), half.end);
        let took = load(&js, &server, &hubs, half).await?;
        let after = rss()?;
        println!(
            "{events} events of {} (to {last}) in {:.1} s: RSS {:.1} MiB, +{:.1} MiB (row capacity {row_capacity})",
            hubs.describe(),
            took.as_secs_f64(),
            after as f64 / 1_048_576.0,
            after.saturating_sub(before_half) as f64 / 1_048_576.0,
        );
        before_half = after;
    }
    server.shutdown().await?;
    Ok(())
}
