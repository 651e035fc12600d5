//! Overload at 4x capacity: `cargo bench --bench overload`.
//!
//! On the embedded bus, with the production HTTP limits (in-flight bounds and the
//! scheduling-lag budget) and MovieLens-100K events learned first:
//!
//! 1. *capacity*: C closed-loop clients for D seconds; capacity is their answered req/s.
//! 2. *overload*: an open loop sending 4x capacity req/s for D seconds (each request on its
//!    own task, whether or not earlier ones answered), while `/healthz` is asked every 50 ms.
//!
//! Printed: the answers by status (anything but 200 and 503-with-`Retry-After` is counted as
//! wrong), p50/p99 of the 200s, the slowest health check, and RSS before and after.
//! Settings: `OVERLOAD_SECONDS` (10), `OVERLOAD_CONCURRENCY` (8), `OVERLOAD_FACTOR` (4).

#[path = "common/closed_loop.rs"]
mod closed_loop;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use closed_loop::{closed_loop, env, ms};
use hdrhistogram::Histogram;
use streamrec_actors::{EngineConfig, InProcessBus};
use streamrec_api::RunningServer;
use streamrec_api::server::HttpLimits;
use tokio::sync::Mutex;

fn rss_mib() -> f64 {
    support::rss_kib() as f64 / 1024.0
}

#[derive(Default)]
struct Tally {
    ok: u64,
    shed: u64,
    wrong: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = env("OVERLOAD_SECONDS", 10);
    let concurrency = env("OVERLOAD_CONCURRENCY", 8) as usize;
    let factor = env("OVERLOAD_FACTOR", 4) as f64;
    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-100k");
    let events = streamrec_api::movielens::load_events(&data)?;
    let sessions: Arc<Vec<String>> = Arc::new(
        events
            .iter()
            .map(|e| e.session_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    );
    let server = RunningServer::start_with(
        Arc::new(InProcessBus::new()),
        EngineConfig::default(),
        "127.0.0.1:0".parse()?,
        HttpLimits::default(),
    )
    .await?;
    for chunk in events.chunks(1_000) {
        server.engine().publish_events(chunk).await?;
    }
    while server.engine().models().counters.events < events.len() as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "machine: {} cores; {} MovieLens events learned",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        events.len()
    );
    let url = server.url("/v1/recommendations");
    let session = {
        let sessions = Arc::clone(&sessions);
        move |i: usize| sessions[i % sessions.len()].clone()
    };
    let capacity = closed_loop(url.clone(), concurrency, seconds, session).await?;
    println!(
        "capacity ({concurrency} closed-loop clients): {}",
        capacity.summary()
    );
    let rate = capacity.per_second() * factor;

    let rss_before = rss_mib();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4_096)
        .build()?;
    let tally = Arc::new(Mutex::new((Tally::default(), Histogram::<u64>::new(3)?)));
    let stop_health = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = support::probe_health(
        client.clone(),
        server.url("/healthz"),
        Arc::clone(&stop_health),
    );
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut sent = 0_usize;
    let mut requests = tokio::task::JoinSet::new();
    let mut rss_peak = rss_before;
    while Instant::now() < deadline {
        tick.tick().await;
        let target = format!("{url}?session_id={}&k=10", sessions[sent % sessions.len()]);
        sent += 1;
        let (client, tally) = (client.clone(), Arc::clone(&tally));
        requests.spawn(async move {
            let started = Instant::now();
            let answer = client.get(&target).send().await;
            let took = started.elapsed();
            let mut tally = tally.lock().await;
            match answer {
                Ok(r) if r.status() == 200 => {
                    tally.0.ok += 1;
                    let _ = tally.1.record(took.as_micros() as u64);
                }
                Ok(r) if r.status() == 503 && r.headers().contains_key("retry-after") => {
                    tally.0.shed += 1;
                }
                _ => tally.0.wrong += 1,
            }
        });
        if sent.is_multiple_of(1_000) {
            rss_peak = rss_peak.max(rss_mib());
            while requests.try_join_next().is_some() {}
        }
    }
    while requests.join_next().await.is_some() {}
    stop_health.store(true, std::sync::atomic::Ordering::Relaxed);
    let checks = health.await?;
    let slowest_health = checks.iter().map(|(_, d)| *d).max().unwrap_or_default();
    let health_failed = checks.iter().filter(|(s, _)| *s != Some(200)).count();
    let (tally, histogram) = &*tally.lock().await;
    println!(
        "overload ({factor}x capacity = {rate:.0} req/s offered, {sent} sent in {seconds} s): {} answered 200 (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms), {} shed 503 with Retry-After, {} other; /healthz slowest {:.1} ms, {} failed; RSS {:.0} MiB before, {:.0} MiB peak",
        tally.ok,
        ms(histogram, 0.5),
        ms(histogram, 0.99),
        histogram.max() as f64 / 1000.0,
        tally.shed,
        tally.wrong,
        slowest_health.as_secs_f64() * 1000.0,
        health_failed,
        rss_before,
        rss_peak.max(rss_mib())
    );
    server.shutdown().await
}
