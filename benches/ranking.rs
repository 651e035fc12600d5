//! Two-stage ranking under load, end to end over HTTP, on catalogs of synthetic items:
//! `cargo bench --bench ranking`.
//!
//! Per catalog size N (`RANK_CATALOGS`, default "10000,100000"): a snapshot is made of
//! learners that have seen synthetic sessions (co-visitation, popularity, a re-ranker trained
//! on them) with N item vectors from the reference ANN benchmark's 100-cluster mixture; a
//! server on a real `nats-server` restores it and builds its intent index (hnsw_rs, or FAISS
//! with `RANK_ANN=faiss` and `--features faiss`); then, for each level C of
//! `RANK_CONCURRENCY` (default "8,32"), C clients ask for recommendations of known sessions
//! for D seconds (`RANK_SECONDS`, 10): every request merges co-visitation, ANN-by-intent and
//! popular candidates into 200, re-ranks all 200 with the burn model (micro-batched), runs
//! the bandit, and publishes an impression.
//! Latency is reported as p50/p99/p99.9.
//!
//! Freshness, under the same load: a new session's first event is published on NATS, and
//! the session's recommendations are polled until they reflect it (re-ranked candidates whose
//! features carry the session's history and its intent from the clicked item's vector);
//! publish → first such answer, p50/p99.

#[path = "common/closed_loop.rs"]
mod closed_loop;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use closed_loop::{closed_loop, env, ms};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use streamrec_actors::{
    AnnBackend, ComputeDevice, EngineConfig, HnswParams, NatsBus, NatsBusConfig,
};
use streamrec_api::RunningServer;
use streamrec_learner::online::{OnlineConfig, OnlineModels};
use streamrec_pipeline::Replayer;
use streamrec_proto::{Event, EventKind};
use streamrec_ranker::synthetic::ClusteredMixture;
use streamrec_snapshot::write_snapshot;
use support::nats::NatsServer;

const SESSIONS: usize = 5_000;
const SESSION_LEN: usize = 8;
const CLUSTERS: usize = 100;
const TS: i64 = 1_700_000_000_000;

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
        details: Default::default(),
    }
}

/// Learners that have seen sessions within clusters of a catalog of `n` items, with the
/// catalog's vectors (the reference ANN benchmark's mixture) as embeddings; a re-ranker
/// trained on those sessions.
fn learners(n: usize, seed: u64) -> anyhow::Result<(OnlineModels, Vec<Event>)> {
    let dim = OnlineConfig::default().embeddings.dim;
    let (clusters, vectors) =
        ClusteredMixture::new(dim, CLUSTERS, seed).sample_with_clusters(n, seed + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); CLUSTERS];
    for (item, &c) in clusters.iter().enumerate() {
        members[c].push(item);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut replayer = Replayer::new(
        OnlineModels::new(OnlineConfig::default()),
        ComputeDevice::Cpu,
    )?;
    let mut seq = 0;
    let mut events = Vec::with_capacity(SESSIONS * SESSION_LEN);
    for s in 0..SESSIONS {
        // A cluster as likely as its share of the catalog; its items skewed to low ranks.
        let cluster = &members[clusters[rng.random_range(0..n)]];
        for _ in 0..SESSION_LEN {
            let rank = (rng.random_range(0.0f64..1.0).powi(3) * cluster.len() as f64) as usize;
            let item = cluster[rank.min(cluster.len() - 1)];
            seq += 1;
            let e = event(seq as usize, &format!("s{s}"), item);
            replayer.apply_event(seq, &e)?;
            events.push(e);
        }
    }
    let mut models = replayer.into_models();
    for i in 0..n {
        models.embeddings.ensure(&format!("item-{i}"));
    }
    // The catalog's vectors, in the embeddings' own item order.
    let matrix: Vec<f32> = models
        .embeddings
        .ids()
        .iter()
        .flat_map(|id| {
            let i: usize = id.trim_start_matches("item-").parse().unwrap_or(0);
            vectors[i].iter().copied()
        })
        .collect();
    let output = vec![0.0; matrix.len()];
    models
        .embeddings
        .set_matrices(matrix, output)
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

fn known_session(i: usize) -> String {
    format!("s{}", (i * 7919) % SESSIONS)
}

/// Publish → first answer for that session built from the event, `probes` times.
/// Publish → first answer for that session built from the event, `probes` times; `round`
/// keeps the sessions and event ids of repeated measurements apart.
async fn freshness(
    nats: &NatsServer,
    url: &str,
    probes: usize,
    round: usize,
) -> anyhow::Result<Histogram<u64>> {
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let client = reqwest::Client::new();
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for p in 0..probes {
        let session = format!("fresh-{round}-{p}");
        let item = (p * 37) % 1_000;
        let e = json!({"event_id": format!("fresh-{round}-{p}"), "session_id": session, "kind": "click",
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
            // Built from the event: the re-ranked candidates carry the session's history (its
            // one click) and an intent taken from that item's vector. (Which items reach the
            // top 10 is the bandit's call: under a load that only ever shows and never clicks,
            // it explores away from whatever was shown most.)
            let feature = |item: &Value, name: &str| {
                item["explain"]["features"]
                    .as_array()
                    .and_then(|fs| fs.iter().find(|f| f[0] == name).and_then(|f| f[1].as_f64()))
            };
            let reflects = body["items"].as_array().is_some_and(|items| {
                items.iter().any(|i| {
                    feature(i, "history_len").is_some_and(|h| h > 0.0)
                        && feature(i, "intent").is_some_and(|x| x != 0.0)
                        && i["explain"]["rerank"].is_number()
                })
            });
            if reflects {
                h.saturating_record(sent.elapsed().as_micros() as u64);
                break;
            }
            if sent.elapsed() >= Duration::from_secs(10) {
                let stats = get_json(
                    &client,
                    &url.replace("/v1/recommendations", "/v1/stats"),
                    &[],
                )
                .await?;
                anyhow::bail!("probe {p} never reflected; last answer {body}; engine {stats}");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    Ok(h)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let catalogs: Vec<usize> = std::env::var("RANK_CATALOGS")
        .unwrap_or_else(|_| "10000,100000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let levels: Vec<usize> = std::env::var("RANK_CONCURRENCY")
        .unwrap_or_else(|_| "8,32".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let seconds = env("RANK_SECONDS", 10);
    let probes = env("RANK_PROBES", 200) as usize;
    let backend = AnnBackend::parse(&std::env::var("RANK_ANN").unwrap_or_else(|_| "hnsw".into()))?;
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
            ann: HnswParams {
                backend,
                ..HnswParams::default()
            },
            ..EngineConfig::default()
        };
        let server = RunningServer::start(Arc::new(bus), config, "127.0.0.1:0".parse()?).await?;
        let engine = &server.state.engine;
        while engine.serving().intent_index.len() < n {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "catalog {n}: learners, snapshot, restore and a {} index over {n} vectors in {:.1} s",
            backend.name(),
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
        for (round, &concurrency) in levels.iter().enumerate() {
            let r = closed_loop(url.clone(), concurrency, seconds, known_session).await?;
            println!("  {concurrency} clients: {}", r.summary());
            let background = tokio::spawn(closed_loop(
                url.clone(),
                concurrency,
                seconds.max(5) * 3,
                known_session,
            ));
            let f = freshness(&nats, &url, probes, round).await?;
            let b = background.await??;
            println!(
                "  freshness under that load ({} probes): publish on NATS → first answer reflecting the event p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (load meanwhile: {:.0} req/s, p99 {:.2} ms)",
                f.len(),
                ms(&f, 0.5),
                ms(&f, 0.99),
                f.max() as f64 / 1000.0,
                b.per_second(),
                b.ms(0.99)
            );
        }
        server.shutdown().await?;
    }
    Ok(())
}
