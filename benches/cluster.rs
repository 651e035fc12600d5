//! The cluster's ceiling and what it costs, over a real 3-server nats-server cluster
//! (JetStream, R3) with `streamrec serve` processes (the release binary) as its nodes:
//! `cargo bench --bench cluster`.
//!
//! 1. *Apply rate per node*, with 1 and with 3 nodes (each its own `--node-id`, each
//!    preferring another server): N MovieLens events published to the cluster as fast as it
//!    takes them, timed until each node has learned all N; once with no requests, once with
//!    C clients asking `GET /v1/recommendations` spread over the nodes. Beside it, raw
//!    JetStream publish + consume on an R3 stream of the same cluster, same payloads.
//! 2. *Requests through the NATS service beside HTTP*, the nodes idle: C clients for D
//!    seconds on `GET /v1/recommendations` spread over the nodes, then C clients for D
//!    seconds on `streamrec.rpc.recommendations`, spread over the servers (the queue group
//!    picks the node). Each phase starts with every node at lag 0, and prints how many
//!    requests each node answered.
//! 3. *Time to ready for a new node*: one node learns S events, writes the cluster's
//!    snapshot and is SIGKILLed; then, for each tail length L (events published after the
//!    snapshot), a node with an empty disk starts. Seconds until it listens, until `/readyz`
//!    answers 200 (within `server.max_learner_lag` = 1,000 here) and until it has learned
//!    the whole stream.
//!
//! Settings from the environment: `CLUSTER_EVENTS` (100000), `CLUSTER_NODES` (`1,3`),
//! `CLUSTER_CONCURRENCY` (8), `CLUSTER_SECONDS` (10), `CLUSTER_SNAPSHOT_AT` (20000),
//! `CLUSTER_TAILS` (`0,25000,50000,100000`, cumulative).

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
use closed_loop::{env, nats_closed_loop, spread_until};
use ingest_load::{Target, Workload, publish_all, raw_jetstream_replicated};
use support::engine_process::EngineProcess;
use support::nats::NatsCluster;

/// How long a node may take for anything this bench waits on.
const LIMIT: Duration = Duration::from_secs(900);
/// How often a node's counters are read while it learns.
const POLL: Duration = Duration::from_millis(50);

fn list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// Node `k` of the cluster: its own id and disk, preferring server `k`, no periodic
/// snapshot (this bench takes the one it needs), ready within 1,000 events of the head.
fn start_node(cluster: &NatsCluster, k: usize, disk: &std::path::Path) -> EngineProcess {
    let id = format!("bench{k}");
    EngineProcess::start_with(
        Some(&cluster.urls_from(k % cluster.servers.len())),
        disk,
        &["--node-id", &id, "--snapshot-every", "86400"],
        &[("STREAMREC_SERVER__MAX_LEARNER_LAG", "1000")],
    )
}

/// Events the node's published version has learned (impressions aside).
async fn learned(node: &EngineProcess) -> Option<u64> {
    node.stats().await?["learner"]["events"].as_u64()
}

async fn ready(node: &EngineProcess) -> bool {
    reqwest::get(format!("{}/readyz", node.url))
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Waits until every node has learned `target` events; returns when each got there,
/// measured from `started`.
async fn wait_all_learned(
    nodes: &[EngineProcess],
    target: u64,
    started: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut done: Vec<Option<Duration>> = vec![None; nodes.len()];
    while done.iter().any(Option::is_none) {
        anyhow::ensure!(
            started.elapsed() < LIMIT,
            "the nodes did not learn {target} events"
        );
        for (k, node) in nodes.iter().enumerate() {
            if done[k].is_none() && learned(node).await.is_some_and(|n| n >= target) {
                done[k] = Some(started.elapsed());
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(done.into_iter().flatten().collect())
}

async fn wait_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        anyhow::ensure!(started.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until every node has learned everything on the stream (lag 0); how long that
/// took. Then a little over a second more: the NATS service re-reads readiness each second.
async fn all_caught_up(nodes: &[EngineProcess]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for node in nodes {
        wait_until("a node caught up", || async {
            node.stats().await.and_then(|s| s["learner_lag"].as_u64()) == Some(0)
        })
        .await?;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    Ok(took)
}

/// Recommendations each node has answered so far (HTTP and NATS).
async fn served(nodes: &[EngineProcess]) -> Vec<u64> {
    let mut out = Vec::new();
    for node in nodes {
        let count = node
            .stats()
            .await
            .and_then(|s| s["recommendations"]["count"].as_u64());
        out.push(count.unwrap_or(0));
    }
    out
}

/// What each node answered between two [`served`] readings.
fn shares(before: &[u64], after: &[u64]) -> String {
    before
        .iter()
        .zip(after)
        .enumerate()
        .map(|(k, (b, a))| format!("node {k} {}", a.saturating_sub(*b)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each node's learner lag (stream messages, impressions included, not yet learned).
async fn lags(nodes: &[EngineProcess]) -> String {
    let mut out = Vec::new();
    for (k, node) in nodes.iter().enumerate() {
        let lag = node.stats().await.and_then(|s| s["learner_lag"].as_u64());
        out.push(format!(
            "node {k} lag {}",
            lag.map_or("?".to_owned(), |l| l.to_string())
        ));
    }
    out.join(", ")
}

fn rates(n: usize, times: &[Duration]) -> String {
    times
        .iter()
        .enumerate()
        .map(|(k, t)| {
            format!(
                "node {k} {:.2} s = {:.0} events/s",
                t.as_secs_f64(),
                n as f64 / t.as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Phases 1 and 2 with `count` nodes on a fresh cluster.
async fn apply_and_serve(workload: &Arc<Workload>, count: usize, n: usize) -> anyhow::Result<()> {
    let concurrency = env("CLUSTER_CONCURRENCY", 8) as usize;
    let seconds = env("CLUSTER_SECONDS", 10);
    let cluster = NatsCluster::start(3);
    let client = async_nats::connect(cluster.servers[0].url()).await?;
    let js = jetstream::new(client.clone());
    println!("\n## {count} node(s) on a 3-server cluster, {n} events a phase");
    // The servers listen before they have elected JetStream's meta leader.
    wait_until("JetStream on the cluster", || async {
        js.query_account().await.is_ok()
    })
    .await?;

    let raw = raw_jetstream_replicated(&js, workload, n, 3).await?;
    let raw_rate = n as f64 / raw.as_secs_f64();
    println!(
        "raw JetStream (R3) publish+consume: {n} msgs in {:.2} s = {raw_rate:.0} msg/s",
        raw.as_secs_f64()
    );

    let disks: Vec<tempfile::TempDir> = (0..count)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let nodes: Vec<EngineProcess> = (0..count)
        .map(|k| start_node(&cluster, k, disks[k].path()))
        .collect();
    for node in &nodes {
        wait_until("a node ready", || ready(node)).await?;
    }

    let started = Instant::now();
    publish_all(&js, Target::Engine, workload, 0..n, None).await?;
    let published = started.elapsed();
    let times = wait_all_learned(&nodes, n as u64, started).await?;
    let slowest = times.iter().max().copied().unwrap_or_default();
    println!(
        "backlog, no requests: published in {:.2} s; learned: {}; slowest {:.2}x raw",
        published.as_secs_f64(),
        rates(n, &times),
        n as f64 / slowest.as_secs_f64() / raw_rate
    );

    let urls: Vec<String> = nodes
        .iter()
        .map(|node| format!("{}/v1/recommendations", node.url))
        .collect();
    let session = {
        let workload = Arc::clone(workload);
        move |i: usize| workload.request_session(i, n)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let clients = tokio::spawn(spread_until(
        urls.clone(),
        concurrency,
        Arc::clone(&stop),
        session.clone(),
    ));
    let started = Instant::now();
    publish_all(&js, Target::Engine, workload, n..2 * n, None).await?;
    let times = wait_all_learned(&nodes, 2 * n as u64, started).await?;
    stop.store(true, Ordering::Relaxed);
    let during = clients.await??;
    let slowest = times.iter().max().copied().unwrap_or_default();
    println!(
        "backlog while {concurrency} clients ask (spread over the nodes): learned: {}; slowest {:.2}x raw",
        rates(n, &times),
        n as f64 / slowest.as_secs_f64() / raw_rate
    );
    println!("  GET /v1/recommendations meanwhile: {}", during.summary());

    // Each answer is an impression on the stream, which every node learns: the requests
    // above left each node a backlog. Both phases below start with every node caught up.
    println!("  after: {}", lags(&nodes).await);
    let caught_up = all_caught_up(&nodes).await?;
    println!(
        "  every node caught up (lag 0) after {:.2} s",
        caught_up.as_secs_f64()
    );
    let before = served(&nodes).await;
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let http = spread_until(urls, concurrency, stop, session.clone()).await?;
    timer.await?;
    println!(
        "idle, HTTP GET /v1/recommendations, {concurrency} clients: {}",
        http.summary()
    );
    println!("  answered: {}", shares(&before, &served(&nodes).await));
    println!("  after: {}", lags(&nodes).await);
    let caught_up = all_caught_up(&nodes).await?;
    println!(
        "  every node caught up (lag 0) after {:.2} s",
        caught_up.as_secs_f64()
    );
    // One connection per server, as clients spread over a cluster would be.
    let mut connections = Vec::new();
    for server in &cluster.servers {
        connections.push(async_nats::connect(server.url()).await?);
    }
    let before = served(&nodes).await;
    let nats = nats_closed_loop(connections, concurrency, seconds, session).await?;
    println!(
        "idle, NATS streamrec.rpc.recommendations, {concurrency} clients: {}",
        nats.summary()
    );
    println!("  answered: {}", shares(&before, &served(&nodes).await));
    println!("  after: {}", lags(&nodes).await);
    println!(
        "  NATS / HTTP: {:.2}x the requests/s, p99 {:.2}x",
        nats.per_second() / http.per_second(),
        nats.ms(0.99) / http.ms(0.99)
    );
    for node in nodes {
        node.kill();
    }
    Ok(())
}

/// Phase 3: a new node's time to ready, per tail length after the cluster's snapshot.
async fn time_to_ready(workload: &Arc<Workload>) -> anyhow::Result<()> {
    let snapshot_at = env("CLUSTER_SNAPSHOT_AT", 20_000) as usize;
    let tails = list("CLUSTER_TAILS", "0,25000,50000,100000");
    let cluster = NatsCluster::start(3);
    let js = jetstream::new(async_nats::connect(cluster.servers[0].url()).await?);
    println!("\n## a new node with an empty disk: snapshot at {snapshot_at} events");

    let writer_disk = tempfile::tempdir()?;
    let writer = start_node(&cluster, 0, writer_disk.path());
    publish_all(&js, Target::Engine, workload, 0..snapshot_at, None).await?;
    wait_all_learned(
        std::slice::from_ref(&writer),
        snapshot_at as u64,
        Instant::now(),
    )
    .await?;
    let taken = reqwest::Client::new()
        .post(format!("{}/v1/snapshots", writer.url))
        .send()
        .await?;
    anyhow::ensure!(
        taken.status().is_success(),
        "snapshot: {}",
        taken.text().await?
    );
    // Killed, so the cluster's snapshot stays the one at `snapshot_at`.
    writer.kill();

    let mut published = snapshot_at;
    for (k, tail) in tails.into_iter().enumerate() {
        let head = snapshot_at + tail;
        if head > published {
            publish_all(&js, Target::Engine, workload, published..head, None).await?;
            published = head;
        }
        let disk = tempfile::tempdir()?;
        let started = Instant::now();
        let node = start_node(&cluster, k + 1, disk.path());
        let listening = started.elapsed();
        wait_until("the new node ready", || ready(&node)).await?;
        let is_ready = started.elapsed();
        let learned_all =
            wait_all_learned(std::slice::from_ref(&node), head as u64, started).await?[0];
        let restored = node.stats().await.and_then(|s| s["restored_seq"].as_u64());
        println!(
            "tail {tail} events after the snapshot: listening {:.2} s, ready {:.2} s, whole stream learned {:.2} s (restored seq {})",
            listening.as_secs_f64(),
            is_ready.as_secs_f64(),
            learned_all.as_secs_f64(),
            restored.map_or("none".to_owned(), |s| s.to_string())
        );
        node.kill();
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n = env("CLUSTER_EVENTS", 100_000) as usize;
    let workload = match Workload::movielens(std::path::Path::new("data/ml-100k")) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            println!("cluster bench skipped ({e}); fetch MovieLens with scripts/fetch-ml100k");
            return Ok(());
        }
    };
    println!("{}", workload.describe());
    for count in list("CLUSTER_NODES", "1,3") {
        apply_and_serve(&workload, count, n).await?;
    }
    time_to_ready(&workload).await?;
    Ok(())
}
