//! Overload (issue 11): far more concurrent clients than the engine has slots for. Every
//! answer is a 200 or a 503 with `Retry-After` (none waits in a queue), `/healthz` answers
//! throughout, and memory stays bounded. The figures (p99 of the 200s, the slowest health
//! check) are printed; the timed figures come from `cargo bench --bench overload` (release).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use streamrec_actors::{EngineConfig, InProcessBus};
use streamrec_api::RunningServer;
use streamrec_api::server::HttpLimits;
use support::eventually;

const CLIENTS: usize = 128;
const SLOTS: usize = 16;
const RUN: Duration = Duration::from_secs(5);

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_capacity_requests_are_answered_or_shed_never_queued() {
    // The production limits: both the in-flight bound and the scheduling-lag budget.
    let limits = HttpLimits {
        max_in_flight_recommendations: SLOTS,
        ..HttpLimits::default()
    };
    let server = RunningServer::start_with(
        Arc::new(InProcessBus::new()),
        EngineConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
        limits,
    )
    .await
    .expect("server starts");
    let events: Vec<_> = (0..2_000)
        .map(|i| {
            json!({"event_id": format!("e{i}"), "session_id": format!("s{}", i % 200),
                "kind": "view", "item_id": format!("i{}", (i * 7) % 500), "ts": 1_700_000_000_000_i64 + i})
        })
        .collect();
    let client = reqwest::Client::new();
    for chunk in events.chunks(500) {
        let posted = client
            .post(server.url("/v1/events"))
            .json(chunk)
            .send()
            .await
            .expect("post");
        assert_eq!(posted.status(), 202);
    }
    eventually("learned", Duration::from_secs(60), || async {
        support::get(&server, "/v1/stats").await.1["applied_seq"] == 2_000
    })
    .await;
    let rss_before = support::rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        let url = server.url(&format!("/v1/recommendations?session_id=s{}&k=10", c % 200));
        clients.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            let mut shed = 0_u64;
            let mut other = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => answered.push(started.elapsed()),
                    Ok(r) if r.status() == 503 => {
                        let retry = r.headers().get("retry-after").cloned();
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        if retry.is_some() && body["error"]["code"] == "overloaded" {
                            shed += 1;
                        } else {
                            other.push(format!("503 without Retry-After: {body}"));
                        }
                    }
                    Ok(r) => other.push(format!("status {}", r.status())),
                    Err(e) => other.push(format!("transport error: {e}")),
                }
            }
            (answered, shed, other)
        }));
    }
    let prober = support::probe_health(client.clone(), server.url("/healthz"), Arc::clone(&stop));
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    let mut answered = Vec::new();
    let mut shed = 0;
    let mut other = Vec::new();
    for c in clients {
        let (a, s, o) = c.await.expect("client");
        answered.extend(a);
        shed += s;
        other.extend(o);
    }
    let checks = prober.await.expect("prober");
    let rss_after = support::rss_kib();
    answered.sort();
    let slowest_check = checks.iter().map(|(_, d)| *d).max().unwrap_or_default();
    println!(
        "{CLIENTS} clients, {SLOTS} slots, {RUN:?}: {} answered (p50 {:?}, p99 {:?}), {shed} shed; {} health checks, slowest {slowest_check:?}; RSS {rss_before} -> {rss_after} KiB",
        answered.len(),
        percentile(&answered, 0.5),
        percentile(&answered, 0.99),
        checks.len()
    );
    assert!(
        other.is_empty(),
        "only 200s and 503s with Retry-After: {:?}",
        &other[..other.len().min(5)]
    );
    assert!(!answered.is_empty(), "capacity is served");
    assert!(shed > 0, "the excess is shed");
    assert!(
        checks.iter().all(|(status, _)| *status == Some(200)),
        "/healthz answered every check: {checks:?}"
    );
    // Shedding instead of queueing keeps memory flat: no backlog of waiting requests.
    assert!(
        rss_after < rss_before + 256 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    server.shutdown().await.expect("clean shutdown");
}
