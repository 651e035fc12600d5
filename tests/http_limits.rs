//! The HTTP edge under hostile clients (issue 11): half-sent requests are cut at their
//! deadline, a flood of idle connections cannot starve `/healthz`, a stop does not wait for a
//! slow client, load past capacity is shed with 503 and `Retry-After`, and `/readyz` says
//! when the bus is frozen or the learner is far behind.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use streamrec_actors::{EngineConfig, InProcessBus, LearnerGate};
use streamrec_api::RunningServer;
use streamrec_api::server::HttpLimits;
use support::eventually;
use support::nats::NatsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);

fn tight() -> HttpLimits {
    HttpLimits {
        max_connections: 4,
        health_reserve: 2,
        header_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(500),
        drain_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    }
}

async fn start(limits: HttpLimits) -> RunningServer {
    RunningServer::start_with(
        Arc::new(InProcessBus::new()),
        EngineConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
        limits,
    )
    .await
    .expect("server starts")
}

/// Sends `request` bytes and reads until the server closes: what came back. The server must
/// close within `LIMIT` (an open, silent connection fails the test, it is not "no answer").
async fn exchange(server: &RunningServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    // A refused connection may be reset before the request is even written.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(LIMIT, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection");
    if let Err(error) = read {
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset,
            "read failed: {error}"
        );
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes()
}

fn status(answer: &str) -> Option<u16> {
    answer.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_cut_at_their_deadlines() {
    let server = start(tight()).await;
    // Headers that never finish: the connection is closed, nothing is answered.
    let answer = exchange(&server, b"GET /healthz HTTP/1.1\r\nHost: test\r\n").await;
    assert_eq!(
        answer, "",
        "no answer to half a request, and the connection closed"
    );
    // A body that never finishes: 408 with a JSON error.
    let answer = exchange(
        &server,
        b"POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"event",
    )
    .await;
    assert_eq!(status(&answer), Some(408), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, idle.read_to_end(&mut answer))
        .await
        .expect("the idle connection is closed")
        .expect("read");
    assert_eq!(status(&String::from_utf8_lossy(&answer)), Some(200));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_cap_cannot_starve_health_checks() {
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(60),
        ..tight()
    };
    let server = start(limits).await;
    // Every regular slot held by a client that sends nothing.
    let mut hogs = Vec::new();
    for _ in 0..limits.max_connections {
        hogs.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    // The server accepts asynchronously: wait until the hogs hold every slot.
    eventually("the hogs hold every slot", LIMIT, || async {
        status(&exchange(&server, &get("/v1/stats")).await) == Some(503)
    })
    .await;
    let answer = exchange(&server, &get("/healthz")).await;
    assert_eq!(status(&answer), Some(200), "{answer}");
    let answer = exchange(&server, &get("/readyz")).await;
    assert_eq!(status(&answer), Some(200), "{answer}");
    let answer = exchange(&server, &get("/v1/recommendations?session_id=s")).await;
    assert_eq!(status(&answer), Some(503), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("\"overloaded\""), "{answer}");
    // Past the reserve too: new connections are closed at once, unanswered.
    for _ in 0..limits.health_reserve {
        hogs.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    eventually(
        "past the reserve, connections are closed",
        LIMIT,
        || async { exchange(&server, &get("/healthz")).await.is_empty() },
    )
    .await;
    // Once the hogs go, the full API is back.
    drop(hogs);
    eventually("the API is back", LIMIT, || async {
        status(&exchange(&server, &get("/v1/stats")).await) == Some(200)
    })
    .await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_does_not_wait_for_a_slow_client() {
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_millis(300),
        ..tight()
    };
    let server = start(limits).await;
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server
        .shutdown_within(Duration::from_secs(60))
        .await
        .expect("clean shutdown");
    let took = started.elapsed();
    // Bounded by the drain deadline, not by the client's 60 s of patience.
    assert!(took < Duration::from_secs(30), "stop took {took:?}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(LIMIT, slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the slow client's connection was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_while_the_learner_lags_and_says_why() {
    let gate = LearnerGate::default();
    let config = EngineConfig {
        max_learner_lag: 10,
        learner_gate: Some(gate.clone()),
        ..EngineConfig::default()
    };
    let server = RunningServer::start(
        Arc::new(InProcessBus::new()),
        config,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("server starts");
    let ready = |server: &RunningServer| {
        let url = server.url("/readyz");
        async move {
            let response = reqwest::get(url).await.expect("readyz");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    assert_eq!(ready(&server).await.0, 200);
    gate.close();
    let events: Vec<Value> = (0..100)
        .map(|i| {
            serde_json::json!({"event_id": format!("e{i}"), "session_id": "s", "kind": "view",
                "item_id": format!("i{i}"), "ts": 1_700_000_000_000_i64})
        })
        .collect();
    let posted = reqwest::Client::new()
        .post(server.url("/v1/events"))
        .json(&events)
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), 202);
    let (status, body) = ready(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "learner_lagging", "{body}");
    assert!(
        body["learner_lag"].as_u64().is_some_and(|lag| lag > 10),
        "{body}"
    );
    gate.open();
    eventually("ready again once the learner caught up", LIMIT, || async {
        ready(&server).await.0 == 200
    })
    .await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_while_the_bus_is_frozen() {
    let nats = NatsServer::start();
    let server = support::nats_server(&nats).await;
    let ready = || async {
        let response = reqwest::get(server.url("/readyz")).await.expect("readyz");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("JSON"))
    };
    assert_eq!(ready().await.0, 200);
    nats.pause();
    let (status, body) = ready().await;
    nats.resume();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "bus_unavailable", "{body}");
    eventually("ready again once the bus answers", LIMIT, || async {
        ready().await.0 == 200
    })
    .await;
    server.shutdown().await.expect("clean shutdown");
}
