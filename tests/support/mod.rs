//! Fixtures shared by the integration tests and the load generator.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod engine_process;
pub mod nats;
pub mod stream;

use std::time::Duration;

/// Polls `check` until it holds; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET` on a test server: the status and the JSON body (every answer of the API is JSON).
pub async fn get(
    server: &streamrec_api::RunningServer,
    path_and_query: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = reqwest::get(server.url(path_and_query))
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.expect("every answer is JSON"))
}

/// Events the server has applied (`/v1/stats`); 0 while it does not answer.
pub async fn applied(server: &streamrec_api::RunningServer) -> u64 {
    let stats: serde_json::Value = match reqwest::get(server.url("/v1/stats")).await {
        Ok(answer) => answer.json().await.unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    };
    stats["ingest"]["events_applied"].as_u64().unwrap_or(0)
}

/// A server on the embedded bus keeping snapshots (on demand only) in `dir`.
pub async fn embedded_server(dir: &std::path::Path) -> streamrec_api::RunningServer {
    let config = streamrec_actors::EngineConfig {
        snapshot_dir: Some(dir.to_owned()),
        snapshot_interval: None,
        ..streamrec_actors::EngineConfig::default()
    };
    streamrec_api::RunningServer::start(
        std::sync::Arc::new(streamrec_actors::InProcessBus::new()),
        config,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("server starts")
}

/// An engine on `bus` with `config`, serving on a free port.
pub async fn server_on(
    bus: std::sync::Arc<dyn streamrec_actors::Bus>,
    config: streamrec_actors::EngineConfig,
) -> streamrec_api::RunningServer {
    streamrec_api::RunningServer::start(bus, config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("server starts")
}

/// An engine with the default configuration on `nats`.
pub async fn nats_server(nats: &nats::NatsServer) -> streamrec_api::RunningServer {
    let bus = streamrec_actors::NatsBus::connect(streamrec_actors::NatsBusConfig::new(nats.url()))
        .await
        .expect("engine connects");
    server_on(
        std::sync::Arc::new(bus),
        streamrec_actors::EngineConfig::default(),
    )
    .await
}

/// This process's resident memory, in KiB (0 where /proc is not there).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Asks `url` (a health check) every 50 ms until `stop`: each answer's status (`None`: no
/// answer within 5 s) and how long it took.
pub fn probe_health(
    client: reqwest::Client,
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(Option<u16>, std::time::Duration)>> {
    tokio::spawn(async move {
        let mut checks = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let started = std::time::Instant::now();
            let answer = client
                .get(&url)
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await;
            checks.push((answer.map(|r| r.status().as_u16()).ok(), started.elapsed()));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        checks
    })
}
