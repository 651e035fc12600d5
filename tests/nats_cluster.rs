//! A 3-server JetStream cluster on loopback: the engine, given every server, creates its
//! streams and buckets with 3 replicas, and keeps learning when the server it is
//! connected to is SIGKILLed and stays down.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use serde_json::{Value, json};
use streamrec_actors::{EngineConfig, NatsBus, NatsBusConfig};
use streamrec_api::RunningServer;
use streamrec_proto::subjects;
use support::eventually;
use support::nats::NatsCluster;

const LIMIT: Duration = Duration::from_secs(60);
const TS: i64 = 1_700_000_000_000;

use support::applied;

/// The service protocol's error code of an answer (the HTTP status), if it is an error.
fn error_code(answer: &async_nats::Message) -> Option<String> {
    answer
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.as_str().to_owned())
}

/// Publishes events `from..to` (two sessions over ten items), retrying each until the
/// cluster acks it: the emitter too may be on the server that was killed.
async fn publish(js: &jetstream::Context, from: usize, to: usize) {
    for i in from..to {
        let event = json!({
            "event_id": format!("e{i}"),
            "session_id": format!("s{}", i % 2),
            "kind": "click",
            "item_id": format!("i{}", i % 10),
            "ts": TS + i as i64,
        });
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let sent = js
                .send_publish(
                    "streamrec.events.click",
                    PublishMessage::build()
                        .payload(event.to_string().into())
                        .message_id(format!("e{i}")),
                )
                .await;
            let acked = match sent {
                Ok(ack) => matches!(
                    tokio::time::timeout(Duration::from_secs(3), ack).await,
                    Ok(Ok(_))
                ),
                Err(_) => false,
            };
            if acked {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "event {i} never acked"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn replicas(js: &jetstream::Context, stream: &str) -> usize {
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    stream
        .info()
        .await
        .expect("stream info")
        .config
        .num_replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_server_cluster_keeps_three_replicas_and_survives_a_lost_server() {
    let mut cluster = NatsCluster::start(3);
    let mut config = NatsBusConfig::new(cluster.urls_from(0));
    config.ack_wait = Duration::from_secs(2);
    let bus = NatsBus::connect(config)
        .await
        .expect("engine connects to the cluster");
    assert_eq!(bus.replicas(), 3, "three servers announce themselves");
    let disk = tempfile::tempdir().expect("temp dir");
    let engine = EngineConfig {
        snapshot_dir: Some(disk.path().to_owned()),
        snapshot_interval: None,
        ..EngineConfig::default()
    };
    let server = RunningServer::start(
        Arc::new(bus.clone()),
        engine,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("engine starts");
    let client = async_nats::connect(
        cluster
            .urls_from(1)
            .split(',')
            .map(|u| u.parse().expect("a server address"))
            .collect::<Vec<async_nats::ServerAddr>>(),
    )
    .await
    .expect("emitter connects");
    let js = jetstream::new(client);
    for stream in [
        subjects::EVENTS_STREAM,
        subjects::ITEMS_STREAM,
        subjects::DLQ_STREAM,
    ] {
        assert_eq!(replicas(&js, stream).await, 3, "{stream}");
    }

    // A node connecting to the running cluster (as after a restart) keeps the streams at R3:
    // it waits for the server's INFO before it counts the cluster.
    let second = NatsBus::connect(NatsBusConfig::new(cluster.urls_from(2)))
        .await
        .expect("a second node connects");
    assert_eq!(second.replicas(), 3);
    drop(second);
    assert_eq!(replicas(&js, subjects::EVENTS_STREAM).await, 3);

    publish(&js, 0, 100).await;
    eventually("100 learned", LIMIT, || async {
        applied(&server).await == 100
    })
    .await;
    // A snapshot creates the object store and the KV bucket, replicated alike.
    let taken = reqwest::Client::new()
        .post(server.url("/v1/snapshots"))
        .send()
        .await
        .expect("snapshot");
    let status = taken.status();
    let body = taken.text().await.unwrap_or_default();
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(replicas(&js, "OBJ_STREAMREC_SNAPSHOTS").await, 3);
    assert_eq!(replicas(&js, "KV_STREAMREC_STATE").await, 3);

    // SIGKILL the server the engine is connected to, and leave it down.
    let connected = bus.connected_server();
    let victim = cluster
        .servers
        .iter()
        .position(|s| s.url().ends_with(&connected))
        .expect("the engine is on one of the three");
    cluster.servers[victim].kill();
    publish(&js, 100, 200).await;
    eventually("200 learned after the loss", LIMIT, || async {
        applied(&server).await == 200
    })
    .await;
    assert_ne!(bus.connected_server(), connected, "the engine failed over");
    let answer = reqwest::get(server.url("/v1/recommendations?session_id=s0&k=5"))
        .await
        .expect("recommendations");
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    assert!(status.is_success(), "{status}: {body}");
    server.shutdown().await.expect("shutdown");
}

/// A plain NATS client asks `streamrec.rpc.recommendations` (request/reply) and gets the
/// JSON answer of `POST /v1/recommendations`; bad input gets the service protocol's error
/// headers with the HTTP status; `$SRV.PING.streamrec` finds the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_service_answers_recommendations() {
    let nats = support::nats::NatsServer::start();
    let bus = NatsBus::connect(NatsBusConfig::new(nats.url()))
        .await
        .expect("engine connects");
    let client = bus.client();
    let server = RunningServer::start(
        Arc::new(bus),
        EngineConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("engine starts");
    // With API keys, as over HTTP: a request carries one with the `read` scope.
    let mut state = server.state.clone();
    state.access =
        streamrec_api::auth::Access::new(Some("rpc-7f3a9c1e5b2d4f6a8c0e2b4d6f8a1c3e:read"), &[])
            .expect("keys");
    let _rpc = streamrec_api::nats_rpc::start(client, state)
        .await
        .expect("service starts");
    let plain = async_nats::connect(nats.url())
        .await
        .expect("client connects");
    let js = jetstream::new(plain.clone());
    publish(&js, 0, 50).await;
    eventually("50 learned", LIMIT, || async {
        applied(&server).await == 50
    })
    .await;

    let ask_with = |body: Value, key: Option<&'static str>| {
        let plain = plain.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(key) = key {
                headers.insert("Authorization", format!("Bearer {key}").as_str());
            }
            plain
                .request_with_headers(
                    "streamrec.rpc.recommendations",
                    headers,
                    body.to_string().into(),
                )
                .await
                .expect("an answer")
        }
    };
    let ask = |body: Value| ask_with(body, Some("rpc-7f3a9c1e5b2d4f6a8c0e2b4d6f8a1c3e"));
    let keyless = ask_with(json!({"session_id": "s0"}), None).await;
    let code = error_code(&keyless);
    assert_eq!(code.as_deref(), Some("401"), "no key, no answer");
    let mut keyed = async_nats::HeaderMap::new();
    keyed.insert("X-API-Key", "rpc-7f3a9c1e5b2d4f6a8c0e2b4d6f8a1c3e");
    let duplicated = plain
        .request_with_headers(
            "streamrec.rpc.recommendations",
            keyed,
            r#"{"session_id": "s0", "k": 2, "k": 3}"#.into(),
        )
        .await
        .expect("an answer");
    let code = error_code(&duplicated);
    assert_eq!(
        code.as_deref(),
        Some("400"),
        "a key named twice is refused, as over HTTP"
    );
    let answer = ask(json!({"session_id": "s0", "k": 3, "explain": true})).await;
    assert!(
        answer.headers.is_none(),
        "no error headers: {:?}",
        answer.headers
    );
    let body: Value = serde_json::from_slice(&answer.payload).expect("JSON");
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{body}");
    assert!(body["rec_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(items[0]["explain"].is_object(), "{body}");

    let refused = ask(json!({"session_id": "s0", "k": 0})).await;
    assert_eq!(error_code(&refused).as_deref(), Some("400"));
    assert!(refused.payload.is_empty());
    let unknown = ask(json!({"session_id": "s0", "colour": "red"})).await;
    assert!(unknown.headers.is_some(), "an unknown field is refused");

    let ping = plain
        .request("$SRV.PING.streamrec", "".into())
        .await
        .expect("ping answered");
    let ping: Value = serde_json::from_slice(&ping.payload).expect("JSON");
    assert_eq!(ping["name"], "streamrec", "{ping}");
    server.shutdown().await.expect("shutdown");
}

/// Two nodes share one object store: only the holder of the lease in KV writes it (and
/// names the current snapshot); the other keeps its snapshots on its own disk, and takes
/// over once the holder is gone and its lease has run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_at_a_time_writes_the_cluster_snapshot() {
    const LEASE: Duration = Duration::from_secs(4);
    let nats = support::nats::NatsServer::start();
    let node = |name: &'static str| {
        let url = nats.url();
        async move {
            let mut config = NatsBusConfig::new(url);
            config.consumer_prefix = name.to_owned();
            config.snapshot_lease = LEASE;
            let bus = NatsBus::connect(config).await.expect("node connects");
            let disk = tempfile::tempdir().expect("temp dir");
            let engine = EngineConfig {
                snapshot_dir: Some(disk.path().to_owned()),
                snapshot_interval: None,
                ..EngineConfig::default()
            };
            let server =
                RunningServer::start(Arc::new(bus), engine, "127.0.0.1:0".parse().expect("addr"))
                    .await
                    .expect("node starts");
            (server, disk)
        }
    };
    let (a, _a_disk) = node("node-a").await;
    let (b, _b_disk) = node("node-b").await;
    let plain = async_nats::connect(nats.url()).await.expect("client");
    let js = jetstream::new(plain);
    let snapshot = |server: &RunningServer| {
        let url = server.url("/v1/snapshots");
        async move {
            let taken: Value = reqwest::Client::new()
                .post(url)
                .send()
                .await
                .expect("snapshot")
                .json()
                .await
                .expect("JSON");
            taken["version"].as_str().expect("a version").to_owned()
        }
    };
    let kv = || async {
        js.get_key_value("STREAMREC_STATE")
            .await
            .expect("state bucket")
    };
    let read = |key: &'static str| async move {
        let value = kv().await.get(key).await.expect("read").expect("set");
        String::from_utf8_lossy(&value).into_owned()
    };

    publish(&js, 0, 10).await;
    eventually("both learned 10", LIMIT, || async {
        applied(&a).await == 10 && applied(&b).await == 10
    })
    .await;
    let first = snapshot(&a).await;
    assert_eq!(read("current_snapshot").await, first);
    assert!(read("snapshot-writer").await.contains("\"node-a@"));

    publish(&js, 10, 15).await;
    eventually("both learned 15", LIMIT, || async {
        applied(&a).await == 15 && applied(&b).await == 15
    })
    .await;
    let kept = snapshot(&b).await;
    assert_ne!(kept, first);
    assert_eq!(
        read("current_snapshot").await,
        first,
        "node-b does not hold the lease: the cluster's snapshot is still node-a's"
    );

    a.shutdown().await.expect("node-a stops");
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    let taken_over = snapshot(&b).await;
    assert_eq!(read("current_snapshot").await, taken_over);
    assert!(read("snapshot-writer").await.contains("\"node-b@"));
    b.shutdown().await.expect("node-b stops");
}

/// A node behind the stream answers NATS requests 503 `not_ready` (so the queue group's
/// other nodes serve them), and answers again once it has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_stream_leaves_nats_requests_to_others() {
    let nats = support::nats::NatsServer::start();
    let bus = NatsBus::connect(NatsBusConfig::new(nats.url()))
        .await
        .expect("engine connects");
    let client = bus.client();
    let gate = streamrec_actors::LearnerGate::default();
    let engine = EngineConfig {
        max_learner_lag: 5,
        learner_gate: Some(gate.clone()),
        ..EngineConfig::default()
    };
    let server = RunningServer::start(Arc::new(bus), engine, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("engine starts");
    let _rpc = streamrec_api::nats_rpc::start(client, server.state.clone())
        .await
        .expect("service starts");
    let plain = async_nats::connect(nats.url())
        .await
        .expect("client connects");
    let js = jetstream::new(plain.clone());
    let asked_code = || {
        let plain = plain.clone();
        async move {
            let answer = plain
                .request(
                    "streamrec.rpc.recommendations",
                    json!({"session_id": "s0", "k": 3}).to_string().into(),
                )
                .await
                .expect("an answer");
            error_code(&answer)
        }
    };
    eventually("ready and answering", LIMIT, || async {
        asked_code().await.is_none()
    })
    .await;

    gate.close();
    publish(&js, 0, 30).await;
    eventually("503 while 30 events behind", LIMIT, || async {
        asked_code().await.as_deref() == Some("503")
    })
    .await;
    gate.open();
    eventually("answering once caught up", LIMIT, || async {
        asked_code().await.is_none()
    })
    .await;
    assert_eq!(applied(&server).await, 30);
    server.shutdown().await.expect("shutdown");
}

/// Publishes `n` events: 20-event sessions walking 60 items, so the re-ranker's training
/// groups form (their count and step are in the digest).
async fn publish_walks(js: &jetstream::Context, n: usize) {
    for i in 0..n {
        let session = i / 20;
        let event = json!({
            "event_id": format!("w{i}"),
            "session_id": format!("walk{session}"),
            "kind": "click",
            "item_id": format!("i{}", (session * 7 + (i % 20) * 13) % 60),
            "ts": TS + i as i64,
        });
        js.send_publish(
            "streamrec.events.click",
            PublishMessage::build()
                .payload(event.to_string().into())
                .message_id(format!("w{i}")),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    }
}

/// Nodes compare digests of their learners at the same sequence (every 100 here): a node
/// that learned the stream as it arrived and one that replayed it later in other batches
/// agree at every checkpoint, re-ranker groups and steps included; a third whose
/// popularity decays differently is found out at each, counted, and announced on
/// `streamrec.alerts.divergence` naming the learner that differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_learners_diverge_is_announced_and_equal_nodes_agree() {
    let nats = support::nats::NatsServer::start();
    let node = |name: &'static str, half_life_ms: Option<f64>| {
        let url = nats.url();
        async move {
            let mut config = NatsBusConfig::new(url);
            config.consumer_prefix = name.to_owned();
            let bus = NatsBus::connect(config).await.expect("node connects");
            let mut engine = EngineConfig {
                state_digest_every: 100,
                ..EngineConfig::default()
            };
            // Short groups, small batches: training steps within a few hundred events.
            engine.online.replay.negatives = 7;
            engine.online.replay.batch = 4;
            if let Some(h) = half_life_ms {
                engine.online.popularity.half_life_ms = h;
            }
            RunningServer::start(Arc::new(bus), engine, "127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("node starts")
        }
    };
    let stats = |server: &RunningServer| {
        let url = server.url("/v1/stats");
        async move {
            let stats: Value = reqwest::get(url)
                .await
                .expect("stats")
                .json()
                .await
                .expect("JSON");
            stats
        }
    };
    let counted = |server: &RunningServer| {
        let stats = stats(server);
        async move {
            let stats = stats.await;
            (
                stats["ingest"]["state_digests_checked"]
                    .as_u64()
                    .unwrap_or(0),
                stats["ingest"]["state_divergences"].as_u64().unwrap_or(0),
            )
        }
    };
    let a = node("node-a", None).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("client"));
    // Node a learns the events one small delivery at a time; node b replays them later.
    publish_walks(&js, 300).await;
    eventually("node a compared three checkpoints", LIMIT, || async {
        counted(&a).await.0 == 3
    })
    .await;
    let b = node("node-b", None).await;
    eventually("node b compared three checkpoints", LIMIT, || async {
        counted(&b).await.0 == 3
    })
    .await;
    assert_eq!(
        counted(&a).await.1 + counted(&b).await.1,
        0,
        "equal nodes agree"
    );
    let learner = stats(&a).await["learner"].clone();
    assert!(learner["events"].as_u64() == Some(300), "{learner}");
    let steps = stats(&a).await["reranker"]["steps"].as_u64().unwrap_or(0);
    assert!(steps > 0, "the re-ranker stepped: its groups were compared");

    // A node on another configuration replays the same stream.
    let c = node("node-c", Some(1_000.0)).await;
    eventually("the third node found out", LIMIT, || async {
        counted(&c).await.1 == 3
    })
    .await;
    let mut alerts = js
        .get_stream(subjects::ALERTS_STREAM)
        .await
        .expect("alerts stream");
    assert_eq!(alerts.info().await.expect("info").state.messages, 3);
    let mut announced = Vec::new();
    for n in 1..=3 {
        let kept = alerts.get_raw_message(n).await.expect("an alert");
        assert_eq!(kept.subject.as_str(), subjects::DIVERGENCE_ALERTS_SUBJECT);
        let alert: streamrec_proto::DivergenceAlert =
            serde_json::from_slice(&kept.payload).expect("a divergence alert");
        assert!(alert.node.starts_with("node-c@"), "{alert:?}");
        assert!(alert.reference_node.starts_with("node-a@"), "{alert:?}");
        assert!(
            alert.learners.contains(&"popularity".to_owned()),
            "{alert:?}"
        );
        assert!(
            !alert.learners.contains(&"covisitation".to_owned()),
            "{alert:?}"
        );
        announced.push(alert.seq);
    }
    // Digests are computed off the ingest path, so they may finish in any order.
    announced.sort_unstable();
    assert_eq!(announced, [100, 200, 300]);
    for server in [a, b, c] {
        server.shutdown().await.expect("stops");
    }
}

/// Three `streamrec serve` processes (the real binary) on the 3-server cluster, each its own
/// `--node-id`, while MovieLens-100K's first 30,000 events stream in: node 2 is SIGKILLed
/// partway and restarted on its disk, node 3 joins late with an empty disk (it restores the
/// cluster's snapshot from the object store). At the end every node has learned the whole
/// stream, and at every checkpoint each compared (every 5,000 sequences) its learners'
/// digests equal the others': none diverged, the last checkpoint being the stream's end.
/// Publishes `events` with their ids, again until every one is acked: a server of the
/// cluster may be down and its streams electing another leader.
async fn publish_until_stored(js: &jetstream::Context, events: &[streamrec_proto::Event]) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let message = PublishMessage::build()
                .payload(event.to_json().into())
                .message_id(&event.event_id);
            acks.push(
                js.send_publish(subjects::event_subject(event.kind), message)
                    .await,
            );
        }
        let mut stored = true;
        for ack in acks {
            let acked = match ack {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            stored &= acked;
        }
        if stored {
            return;
        }
        // The message ids make a second publish of the stored ones a no-op.
        assert!(
            tokio::time::Instant::now() < deadline,
            "events never stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Requests spread over the nodes while they learn: each node's answers counted while it
/// is up (started and `/readyz` 200), a down node skipped.
#[derive(Default)]
struct Answers {
    /// Each node's URL while it is up.
    up: Vec<Option<String>>,
    ok: Vec<u64>,
    failed: Vec<u64>,
}

impl Answers {
    fn share(nodes: usize) -> Arc<std::sync::Mutex<Self>> {
        Arc::new(std::sync::Mutex::new(Self {
            up: vec![None; nodes],
            ok: vec![0; nodes],
            failed: vec![0; nodes],
        }))
    }
}

fn lock(answers: &std::sync::Mutex<Answers>) -> std::sync::MutexGuard<'_, Answers> {
    answers.lock().unwrap_or_else(|p| p.into_inner())
}

/// Asks the nodes in turn for a session of `sessions` until `stop`.
fn ask_until(
    answers: Arc<std::sync::Mutex<Answers>>,
    sessions: Vec<String>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let mut i = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let node = i % 3;
            let url = lock(&answers).up[node].clone();
            if let Some(url) = url {
                let session = &sessions[i % sessions.len()];
                let ok = client
                    .get(format!("{url}/v1/recommendations?session_id={session}&k=5"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                let mut answers = lock(&answers);
                // Counted only if the node was still up when it answered.
                if answers.up[node].as_ref() == Some(&url) {
                    if ok {
                        answers.ok[node] += 1;
                    } else {
                        answers.failed[node] += 1;
                    }
                }
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

async fn wait_ready(node: &support::engine_process::EngineProcess) {
    eventually("the node ready", LIMIT * 3, || async {
        reqwest::get(format!("{}/readyz", node.url))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

/// The issue's drill: three nodes, each preferring another server of a 3-server cluster,
/// learn MovieLens' first 30,000 events from an ordinary NATS client while requests go to
/// all three; node 1 is SIGKILLed mid-stream and restarted on its disk, a nats-server is
/// SIGKILLed and left down, and a fourth node joins with an empty disk (restored from the
/// object store's snapshot). Every node learns the whole stream exactly once and agrees with
/// the others at every checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serving_one_killed_one_server_lost_one_joining_empty_agree() {
    use support::engine_process::EngineProcess;
    const EVENTS: usize = 30_000;
    let events: Vec<streamrec_proto::Event> = support::stream::movielens()
        .into_iter()
        .take(EVENTS)
        .collect();
    let mut cluster = NatsCluster::start(3);
    let disks: Vec<tempfile::TempDir> =
        (0..4).map(|_| tempfile::tempdir().expect("disk")).collect();
    // Node n prefers server n (the joiner, server 0); each fails over to the others.
    let preferring: Vec<String> = (0..4).map(|n| cluster.urls_from(n % 3)).collect();
    let start = |n: usize| {
        let id = format!("n{n}");
        EngineProcess::start_with(
            Some(&preferring[n]),
            disks[n].path(),
            &["--node-id", &id],
            &[("STREAMREC_BUS__STATE_DIGEST_EVERY", "5000")],
        )
    };
    let mut nodes: Vec<Option<EngineProcess>> = (0..3).map(|n| Some(start(n))).collect();
    let answers = Answers::share(3);
    for (n, node) in nodes.iter().enumerate() {
        if let Some(node) = node {
            wait_ready(node).await;
            lock(&answers).up[n] = Some(node.url.clone());
        }
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sessions: Vec<String> = events
        .iter()
        .map(|e| e.session_id.clone())
        .take(2_000)
        .collect();
    let asking = ask_until(Arc::clone(&answers), sessions, Arc::clone(&stop));
    // The emitter prefers server 0, which stays up.
    let js = jetstream::new(
        async_nats::connect(
            cluster
                .urls_from(0)
                .split(',')
                .map(|u| u.parse().expect("a server address"))
                .collect::<Vec<async_nats::ServerAddr>>(),
        )
        .await
        .expect("client"),
    );
    let mut answered_before_restart = 0;
    for (k, chunk) in events.chunks(1_000).enumerate() {
        publish_until_stored(&js, chunk).await;
        if k == 10 {
            // Node 1 dies mid-stream and comes back on its own disk.
            lock(&answers).up[1] = None;
            answered_before_restart = lock(&answers).ok[1];
            if let Some(node) = nodes[1].take() {
                node.kill();
            }
            let restarted = start(1);
            wait_ready(&restarted).await;
            lock(&answers).up[1] = Some(restarted.url.clone());
            nodes[1] = Some(restarted);
        }
        if k == 15 {
            // The server node 2 prefers dies and stays down.
            cluster.servers[2].kill();
        }
        if k == 20 {
            nodes.push(Some(start(3)));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    asking.await.expect("the requests ran");

    let nodes: Vec<EngineProcess> = nodes.into_iter().flatten().collect();
    let mut stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .expect("events stream");
    let info = stream.info().await.expect("stream info");
    let last = info.state.last_sequence;
    assert_eq!(
        info.config.num_replicas, 3,
        "the events stream has 3 replicas"
    );
    for name in [
        subjects::ITEMS_STREAM,
        "KV_STREAMREC_STATE",
        "OBJ_STREAMREC_SNAPSHOTS",
    ] {
        assert_eq!(replicas(&js, name).await, 3, "{name} has 3 replicas");
    }
    let seq_of =
        |stats: &Value, field: &str| stats["ingest"][field].as_u64().or(stats[field].as_u64());
    for (n, node) in nodes.iter().enumerate() {
        eventually(
            &format!("node {n} learned the whole stream"),
            LIMIT * 3,
            || async { node.stats().await.and_then(|s| seq_of(&s, "applied_seq")) == Some(last) },
        )
        .await;
    }
    // Exactly once: every event and every impression counted once, on every node alike.
    let learned: Vec<Value> = {
        let mut learned = Vec::new();
        for node in &nodes {
            let mut counters = node.stats().await.expect("stats")["learner"].clone();
            // Messages already applied that the bus delivered again: a node's own history.
            counters.as_object_mut().map(|c| c.remove("redeliveries"));
            learned.push(counters);
        }
        learned
    };
    let impressions = last - EVENTS as u64;
    assert!(
        impressions > 0,
        "the answers' impressions are on the stream"
    );
    for (n, counters) in learned.iter().enumerate() {
        assert_eq!(
            counters["events"].as_u64(),
            Some(EVENTS as u64),
            "node {n}: {counters}"
        );
        assert_eq!(
            counters["impressions"].as_u64(),
            Some(impressions),
            "node {n}: {counters}"
        );
        assert_eq!(counters, &learned[0], "node {n} counted what node 0 did");
    }
    // The digest of the last checkpoint is computed off the ingest path.
    let checkpoints = last / 5_000;
    for (n, node) in nodes.iter().enumerate() {
        eventually(
            &format!("node {n} compared its last checkpoint"),
            LIMIT,
            || async {
                let stats = node.stats().await.unwrap_or(Value::Null);
                let checked = seq_of(&stats, "state_digests_checked").unwrap_or(0);
                let diverged = seq_of(&stats, "state_divergences").unwrap_or(0);
                assert_eq!(diverged, 0, "node {n} diverged");
                // Node 0 passed all; the others at least those after their restore.
                checked >= if n == 0 { checkpoints } else { 1 }
            },
        )
        .await;
    }
    let joined = nodes[3].stats().await.unwrap_or(Value::Null);
    assert!(
        joined["restored_seq"].as_u64().is_some_and(|s| s > 0),
        "the empty node started from the cluster's snapshot: {joined}"
    );
    let mut alerts = js
        .get_stream(subjects::ALERTS_STREAM)
        .await
        .expect("alerts");
    let raised = alerts.info().await.expect("info").state.messages;
    let mut said = Vec::new();
    for seq in 1..=raised.min(5) {
        if let Ok(alert) = alerts.get_raw_message(seq).await {
            said.push(format!(
                "{}: {}",
                alert.subject,
                String::from_utf8_lossy(&alert.payload)
            ));
        }
    }
    assert_eq!(raised, 0, "no alert: {said:#?}");
    let kv = js
        .get_key_value("STREAMREC_STATE")
        .await
        .expect("state bucket");
    for seq in (1..=checkpoints).map(|c| c * 5_000) {
        assert!(
            kv.get(format!("digest.{seq}"))
                .await
                .expect("read")
                .is_some(),
            "checkpoint {seq} recorded"
        );
    }
    let answers = lock(&answers);
    println!(
        "stream {last} messages ({impressions} impressions); answered while up: {:?} of {:?}",
        answers.ok,
        (0..3)
            .map(|n| answers.ok[n] + answers.failed[n])
            .collect::<Vec<_>>()
    );
    for n in 0..3 {
        let (ok, failed) = (answers.ok[n], answers.failed[n]);
        assert!(ok > 0, "node {n} answered");
        assert!(
            failed * 100 <= ok + failed,
            "node {n} answered {ok} of {} requests while up",
            ok + failed
        );
    }
    assert!(
        answers.ok[1] > answered_before_restart,
        "the restarted node served again"
    );
}
