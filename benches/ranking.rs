//! Two-stage ranking under load, end to end over HTTP, on catalogs of synthetic items:
//! `cargo bench --bench ranking`.
//!
//! Per catalog size N (`RANK_CATALOGS`, default "10000,100000"): a snapshot is made of
//! learners that have seen synthetic sessions (co-visitation, popularity, a re-ranker trained
//! on them) with N item vectors from a 100-cluster Gaussian mixture; a server on a real
//! `nats-server` restores it and builds its intent index; then C clients (`RANK_CONCURRENCY`,
//! 32) ask for recommendations of known sessions for D seconds (`RANK_SECONDS`, 10): every
//! request merges co-visitation, ANN-by-intent and popular candidates into 200, re-ranks all
//! 200 with the burn model (micro-batched), runs the bandit, and publishes an impression.
//! Latency is reported as p50/p99/p99.9.
//!
//! Freshness, under the same load: a new session's first event is published on NATS, and
//! the session's recommendations are polled until they reflect it (an item from its
//! co-visitation or intent candidates); publish → first such answer, p50/p99.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use streamrec_actors::learner::Replayer;
use streamrec_actors::snapshot::write_snapshot;
use streamrec_actors::{ComputeDevice, EngineConfig, NatsBus, NatsBusConfig};
use streamrec_api::RunningServer;
use streamrec_learner::online::{OnlineConfig, OnlineModels};
use streamrec_proto::{Event, EventKind};
use support::nats::NatsServer;

const SESSIONS: usize = 5_000;
const SESSION_LEN: usize = 8;
const CLUSTERS: usize = 100;
const TS: i64 = 1_700_000_000_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn event(i: usize, session: &str, item: usize) -> Event {
    Event {
        event_id: format!("syn-{i}"),
        session_id: session.to_owned(),
        user_id: None,
        kind: EventKind::Click,
        item_id: format!("item-{item}"),
        ts: TS + i as i64,
        rec_id: None,
        position: None,
        value: None,
        context: None,
    }
}

/// Learners that have seen sessions within clusters of a catalog of `n` items, with the
/// catalog's vectors as embeddings; a re-ranker trained on those sessions.
fn learners(n: usize, seed: u64) -> anyhow::Result<(OnlineModels, Vec<Event>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dim = OnlineConfig::default().embeddings.dim;
    let centers: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let cluster_of = |item: usize| item % CLUSTERS;
    let mut replayer = Replayer::new(
        OnlineModels::new(OnlineConfig::default()),
        ComputeDevice::Cpu,
    )?;
    let mut seq = 0;
    let mut events = Vec::with_capacity(SESSIONS * SESSION_LEN);
    for s in 0..SESSIONS {
        let cluster = rng.random_range(0..CLUSTERS);
        for _ in 0..SESSION_LEN {
            // Items of the session's cluster, skewed to low ranks (popular ones).
            let rank = (rng.random_range(0.0f64..1.0).powi(3) * (n / CLUSTERS) as f64) as usize;
            let item = rank * CLUSTERS + cluster;
            seq += 1;
            let e = event(seq as usize, &format!("s{s}"), item.min(n - 1));
            replayer.apply_event(seq, &e)?;
            events.push(e);
        }
    }
    let mut models = replayer.into_models();
    for i in 0..n {
        models.embeddings.ensure(&format!("item-{i}"));
    }
    // The catalog's vectors, by the embeddings' own item order.
    let vectors: Vec<f32> = models
        .embeddings
        .ids()
        .to_vec()
        .iter()
        .flat_map(|id| {
            let i: usize = id.trim_start_matches("item-").parse().unwrap_or(0);
            let c = &centers[cluster_of(i)];
            c.iter()
                .map(|x| x + rng.random_range(-0.35..0.35))
                .collect::<Vec<f32>>()
        })
        .collect();
    let output = vec![0.0; vectors.len()];
    models
        .embeddings
        .set_matrices(vectors, output)
        .map_err(anyhow::Error::msg)?;
    Ok((models, events))
}

/// The events the snapshot has learned, as the first messages of the stream: the restored
/// engine resumes after them, as a node does after a restart.
async fn prefill(nats: &NatsServer, events: &[Event]) -> anyhow::Result<()> {
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    js.create_stream(jetstream::stream::Config {
        name: streamrec_proto::subjects::EVENTS_STREAM.to_owned(),
        storage: jetstream::stream::StorageType::File,
        subjects: vec![
            streamrec_proto::subjects::EVENTS_SUBJECTS.to_owned(),
            streamrec_proto::subjects::IMPRESSIONS_SUBJECT.to_owned(),
        ],
        ..Default::default()
    })
    .await?;
    // Acks awaited in a bounded window: the client stalls past its in-flight limit.
    let mut acks = std::collections::VecDeque::with_capacity(1_024);
    for e in events {
        acks.push_back(
            js.send_publish(
                streamrec_proto::subjects::event_subject(e.kind),
                PublishMessage::build().payload(e.to_json().into()),
            )
            .await?,
        );
        if acks.len() >= 1_024
            && let Some(oldest) = acks.pop_front()
        {
            oldest.await?;
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

async fn get_json(
    client: &reqwest::Client,
    url: &str,
    query: &[(&str, &str)],
) -> anyhow::Result<Value> {
    Ok(client.get(url).query(query).send().await?.json().await?)
}

/// C closed-loop clients on known sessions for `seconds`.
async fn load(
    url: String,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<(Histogram<u64>, u64, f64)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                let session = format!("s{}", (i * 7919) % SESSIONS);
                i += concurrency;
                let sent = Instant::now();
                let ok = client
                    .get(&url)
                    .query(&[("session_id", session.as_str()), ("k", "10")])
                    .send()
                    .await
                    .map(|r| r.status().is_success());
                match ok {
                    Ok(true) => h.saturating_record(sent.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
            }
            anyhow::Ok((h, errors))
        }));
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in tasks {
        let (part, e) = t.await??;
        h.add(part)?;
        errors += e;
    }
    Ok((h, errors, started.elapsed().as_secs_f64()))
}

/// Publish → first answer for that session built from the event, `probes` times.
async fn freshness(nats: &NatsServer, url: &str, probes: usize) -> anyhow::Result<Histogram<u64>> {
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let client = reqwest::Client::new();
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for p in 0..probes {
        let session = format!("fresh-{p}");
        let item = (p * 37) % 1_000;
        let e = json!({"event_id": format!("fresh-{p}"), "session_id": session, "kind": "click",
            "item_id": format!("item-{item}"), "ts": TS + 10_000_000 + p as i64});
        let sent = Instant::now();
        js.send_publish(
            "streamrec.events.click".to_owned(),
            PublishMessage::build().payload(e.to_string().into()),
        )
        .await?
        .await?;
        loop {
            let body = get_json(
                &client,
                url,
                &[("session_id", &session), ("k", "10"), ("explain", "true")],
            )
            .await?;
            let reflects = body["items"].as_array().is_some_and(|items| {
                items.iter().any(|i| {
                    matches!(
                        i["explain"]["source"].as_str(),
                        Some("knn" | "transition" | "intent")
                    )
                })
            });
            if reflects {
                h.saturating_record(sent.elapsed().as_micros() as u64);
                break;
            }
            anyhow::ensure!(
                sent.elapsed() < Duration::from_secs(10),
                "probe {p} never reflected"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    Ok(h)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let catalogs: Vec<usize> = std::env::var("RANK_CATALOGS")
        .unwrap_or_else(|_| "10000,100000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let concurrency = env("RANK_CONCURRENCY", 32) as usize;
    let seconds = env("RANK_SECONDS", 10);
    let probes = env("RANK_PROBES", 200) as usize;
    for n in catalogs {
        let built = Instant::now();
        let (models, events) = learners(n, 7)?;
        let data = tempfile::tempdir()?;
        let snapshots = data.path().join("snapshots");
        write_snapshot(&snapshots, &models, None)?;
        drop(models);
        let nats = NatsServer::start();
        prefill(&nats, &events).await?;
        let bus = NatsBus::connect(NatsBusConfig::new(nats.url())).await?;
        let config = EngineConfig {
            snapshot_dir: Some(snapshots),
            snapshot_interval: None,
            ..EngineConfig::default()
        };
        let server = RunningServer::start(Arc::new(bus), config, "127.0.0.1:0".parse()?).await?;
        let engine = &server.state.engine;
        while engine.shared().intent_index.len() < n {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "catalog {n}: learners, snapshot, restore and an HNSW index over {n} vectors in {:.1} s",
            built.elapsed().as_secs_f64()
        );
        let url = server.url("/v1/recommendations");
        let probe = get_json(
            &reqwest::Client::new(),
            &url,
            &[("session_id", "s1"), ("k", "200"), ("explain", "true")],
        )
        .await?;
        let listed = probe["items"].as_array().map_or(0, Vec::len);
        let reranked = probe["items"][0]["explain"]["rerank"].is_number();
        println!("  a request lists {listed} re-ranked candidates (re-ranker serving: {reranked})");
        let (h, errors, secs) = load(url.clone(), concurrency, seconds).await?;
        println!(
            "  {concurrency} clients, {secs:.1} s: {} requests ({:.0}/s), {errors} errors; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
            h.len(),
            h.len() as f64 / secs,
            ms(&h, 0.5),
            ms(&h, 0.99),
            ms(&h, 0.999)
        );
        let background = tokio::spawn(load(url.clone(), concurrency, seconds.max(5) * 3));
        let f = freshness(&nats, &url, probes).await?;
        let (hb, _, secs_b) = background.await??;
        println!(
            "  freshness under that load ({} probes): publish on NATS → first answer reflecting the event p50 {:.2} ms, p99 {:.2} ms (load meanwhile: {:.0} req/s, p99 {:.2} ms)",
            f.len(),
            ms(&f, 0.5),
            ms(&f, 0.99),
            hb.len() as f64 / secs_b,
            ms(&hb, 0.99)
        );
        server.shutdown().await?;
    }
    Ok(())
}
