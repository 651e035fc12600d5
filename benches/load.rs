//! End-to-end load generator over a real `nats-server`: `cargo bench --bench load`.
//!
//! For each workload (MovieLens-100K repeated; a synthetic log of 100k items and 1M sessions),
//! on a fresh server, with every learner on:
//!
//! 1. *raw*: N messages published to a plain JetStream stream while one pull consumer parses
//!    and acks them: the reference, in the same run, same payloads, same ack window.
//! 2. *backlog*: N events published as fast as NATS takes them; timed until the published
//!    version has learned all N. The learner's lag behind the bus is sampled meanwhile.
//! 3. *backlog while serving*: the next N events, with C clients asking
//!    `GET /v1/recommendations` back to back until all are learned.
//! 4. *idle*: the same clients for D seconds, nothing streaming.
//! 5. *steady*: the same clients while events stream in at R events/s, lag sampled.
//!
//! Settings from the environment: `LOAD_WORKLOADS` (`movielens,synthetic`),
//! `LOAD_EVENTS_MOVIELENS` (200000), `LOAD_EVENTS_SYNTHETIC` (1000000), `LOAD_SECONDS` (10),
//! `LOAD_COVISIT_EPOCH` (0: co-visitation lists read at once; see `learners.covisit.epoch`),
//! `LOAD_EMBEDDINGS_EPOCH` (0: item2vec trained at once; see `learners.embeddings.epoch`),
//! `LOAD_CONCURRENCY` (8), `LOAD_EVENT_RATE` (5000).

#[path = "common/closed_loop.rs"]
mod closed_loop;
#[path = "common/ingest_load.rs"]
mod ingest_load;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use closed_loop::{closed_loop, closed_loop_until, env};
use ingest_load::{LagSampler, LagSummary, Target, Workload, publish_all, raw_jetstream};
use streamrec_actors::{EngineConfig, NatsBus, NatsBusConfig};
use streamrec_api::RunningServer;
use support::nats::NatsServer;

/// Events the published version has learned.
fn learned(server: &RunningServer) -> u64 {
    server.engine().models().counters.events
}

async fn wait_learned(server: &RunningServer, target: u64) {
    while learned(server) < target {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Publishes `range` and waits until it is learned, sampling the lag meanwhile.
async fn backlog(
    js: &jetstream::Context,
    server: &RunningServer,
    workload: &Arc<Workload>,
    range: std::ops::Range<usize>,
) -> anyhow::Result<(Duration, LagSummary)> {
    let target = learned(server) + range.len() as u64;
    let lag = LagSampler::start(range.len(), {
        let engine = Arc::clone(server.engine());
        let base = learned(server);
        move || engine.models().counters.events - base
    });
    let started = Instant::now();
    publish_all(js, Target::Engine, workload, range, Some(&lag)).await?;
    wait_learned(server, target).await;
    let elapsed = started.elapsed();
    Ok((elapsed, lag.stop().await?))
}

async fn run(workload: Workload, n: usize) -> anyhow::Result<()> {
    let seconds = env("LOAD_SECONDS", 10);
    let concurrency = env("LOAD_CONCURRENCY", 8) as usize;
    let event_rate = env("LOAD_EVENT_RATE", 5_000) as usize;
    let workload = Arc::new(workload);

    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let bus = NatsBus::connect(NatsBusConfig::new(nats.url())).await?;
    let mut engine = EngineConfig::default();
    engine.online.covisit.epoch = env("LOAD_COVISIT_EPOCH", 0);
    engine.online.embeddings.epoch = env("LOAD_EMBEDDINGS_EPOCH", 0);
    println!(
        "\n## {}: {n} events per phase, ~{} B each (co-visitation epoch {}, item2vec epoch {})",
        workload.describe(),
        workload.payload(1).2.len(),
        engine.online.covisit.epoch,
        engine.online.embeddings.epoch,
    );
    let server = RunningServer::start(Arc::new(bus), engine, "127.0.0.1:0".parse()?).await?;

    let raw = raw_jetstream(&js, &workload, n).await?;
    let raw_rate = n as f64 / raw.as_secs_f64();
    println!(
        "raw JetStream publish+consume: {n} msgs in {:.2} s = {raw_rate:.0} msg/s",
        raw.as_secs_f64()
    );

    let (took, lag) = backlog(&js, &server, &workload, 0..n).await?;
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "backlog: {n} events published -> learned and published in {:.2} s = {rate:.0} events/s ({:.2}x raw); {}",
        took.as_secs_f64(),
        rate / raw_rate,
        lag.summary()
    );

    let url = server.url("/v1/recommendations");
    let session = {
        let workload = Arc::clone(&workload);
        move |i: usize| workload.request_session(i, n)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let clients = tokio::spawn(closed_loop_until(
        url.clone(),
        concurrency,
        Arc::clone(&stop),
        session.clone(),
    ));
    let (took, lag) = backlog(&js, &server, &workload, n..2 * n).await?;
    stop.store(true, Ordering::Relaxed);
    let during = clients.await??;
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "backlog while serving: {n} events in {:.2} s = {rate:.0} events/s ({:.2}x raw); {}",
        took.as_secs_f64(),
        rate / raw_rate,
        lag.summary()
    );
    println!(
        "  GET /v1/recommendations, {concurrency} clients, during the backlog: {}",
        during.summary()
    );

    let idle = closed_loop(url.clone(), concurrency, seconds, session.clone()).await?;
    println!(
        "  GET /v1/recommendations, {concurrency} clients, idle: {}",
        idle.summary()
    );
    println!(
        "  p99 during the backlog / idle p99: {:.2}x",
        during.ms(0.99) / idle.ms(0.99)
    );

    // Steady: events at a fixed rate while the clients ask.
    let streaming = Arc::new(AtomicBool::new(true));
    let first = 2 * n;
    let per_tick = (event_rate / 100).max(1);
    let lag = Arc::new(LagSampler::start(event_rate * (seconds as usize + 5), {
        let engine = Arc::clone(server.engine());
        let base = learned(&server);
        move || engine.models().counters.events - base
    }));
    let ingest = {
        let (streaming, js, workload, lag) = (
            Arc::clone(&streaming),
            js.clone(),
            Arc::clone(&workload),
            Arc::clone(&lag),
        );
        tokio::spawn(async move {
            let mut next = first;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while streaming.load(Ordering::Relaxed) && lag.has_room(per_tick) {
                tick.tick().await;
                publish_all(
                    &js,
                    Target::Engine,
                    &workload,
                    next..next + per_tick,
                    Some(&lag),
                )
                .await?;
                next += per_tick;
            }
            anyhow::Ok(next - first)
        })
    };
    let steady = closed_loop(url, concurrency, seconds, session).await?;
    streaming.store(false, Ordering::Relaxed);
    let streamed = ingest.await??;
    wait_learned(
        &server,
        learned(&server).max(2 * n as u64 + streamed as u64),
    )
    .await;
    let lag = Arc::into_inner(lag)
        .ok_or_else(|| anyhow::anyhow!("the lag sampler is still shared"))?
        .stop()
        .await?;
    println!(
        "steady {event_rate} events/s ({streamed} published): {}",
        lag.summary()
    );
    println!(
        "  GET /v1/recommendations, {concurrency} clients, while streaming: {}",
        steady.summary()
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let workloads =
        std::env::var("LOAD_WORKLOADS").unwrap_or_else(|_| "movielens,synthetic".into());
    for name in workloads.split(',').map(str::trim) {
        match name {
            "movielens" => {
                let n = env("LOAD_EVENTS_MOVIELENS", 200_000) as usize;
                match Workload::movielens(std::path::Path::new("data/ml-100k")) {
                    Ok(w) => run(w, n).await?,
                    Err(e) => {
                        println!("movielens skipped ({e}); fetch it with scripts/fetch-ml100k")
                    }
                }
            }
            "synthetic" => {
                let n = env("LOAD_EVENTS_SYNTHETIC", 1_000_000) as usize;
                run(Workload::synthetic(100_000, 1_000_000), n).await?;
            }
            other => anyhow::bail!("unknown workload {other:?}: movielens or synthetic"),
        }
    }
    Ok(())
}
