//! End to end over a real `nats-server`: events published by a plain NATS client (not by
//! streamrec's code) flow through JetStream into the engine and out over HTTP.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use serde_json::{Value, json};
use streamrec_actors::{EngineConfig, NatsBus, NatsBusConfig};
use streamrec_api::RunningServer;
use streamrec_proto::{RecommendationResponse, subjects};
use support::eventually;
use support::nats::NatsServer;

const LIMIT: Duration = Duration::from_secs(60);
const TS: i64 = 1_700_000_000_000;

fn event(id: &str, session: &str, kind: &str, item: &str) -> Value {
    json!({"event_id": id, "session_id": session, "kind": kind, "item_id": item, "ts": TS})
}

fn counter(stats: &Value, group: &str, name: &str) -> u64 {
    stats[group][name].as_u64().unwrap_or(0)
}

async fn start_engine(nats: &NatsServer) -> RunningServer {
    start_engine_with(nats, EngineConfig::default()).await
}

async fn start_engine_with(nats: &NatsServer, engine: EngineConfig) -> RunningServer {
    let mut config = NatsBusConfig::new(nats.url());
    // Short, so a delivery lost in a crash comes back quickly in the test.
    config.ack_wait = Duration::from_secs(2);
    let bus = NatsBus::connect(config)
        .await
        .expect("engine connects to NATS");
    RunningServer::start(Arc::new(bus), engine, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("engine starts")
}

/// `POST /v1/snapshots`; the version written.
async fn take_snapshot(server: &RunningServer) -> String {
    let taken: Value = reqwest::Client::new()
        .post(server.url("/v1/snapshots"))
        .send()
        .await
        .expect("snapshot")
        .json()
        .await
        .expect("body");
    taken["version"].as_str().expect("version").to_owned()
}

/// An ordinary JetStream client, as an emitter would use.
async fn emitter(nats: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(nats.url())
        .await
        .expect("emitter connects");
    jetstream::new(client)
}

/// Publishes with `Nats-Msg-Id` = `event_id` and waits for the stream's ack.
async fn publish(js: &jetstream::Context, event: &Value) -> Result<(), String> {
    let kind = event["kind"].as_str().unwrap_or("view");
    let id = event["event_id"].as_str().unwrap_or_default();
    let ack = js
        .send_publish(
            format!("streamrec.events.{kind}"),
            PublishMessage::build()
                .payload(event.to_string().into())
                .message_id(id),
        )
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(3), ack)
        .await
        .map_err(|_| "ack timed out".to_owned())?
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn stats(server: &RunningServer) -> Value {
    reqwest::get(server.url("/v1/stats"))
        .await
        .expect("stats request")
        .json()
        .await
        .expect("stats body")
}

async fn applied(server: &RunningServer) -> u64 {
    stats(server).await["ingest"]["events_applied"]
        .as_u64()
        .unwrap_or(0)
}

async fn recommend(server: &RunningServer, session: &str) -> RecommendationResponse {
    let response = reqwest::Client::new()
        .get(server.url("/v1/recommendations"))
        .query(&[("session_id", session), ("k", "10"), ("explain", "true")])
        .send()
        .await
        .expect("recommendation request");
    assert_eq!(response.status(), 200);
    response.json().await.expect("recommendation body")
}

fn ids(response: &RecommendationResponse) -> Vec<&str> {
    response.items.iter().map(|i| i.item_id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_on_nats_drive_recommendations_over_http() {
    let nats = NatsServer::start();
    let server = start_engine(&nats).await;
    let js = emitter(&nats).await;
    // Popularity: hit (6 views) > warm (3) > cold (1); alice has clicked hit.
    let mut events = Vec::new();
    for i in 0..6 {
        events.push(event(&format!("h{i}"), &format!("crowd{i}"), "view", "hit"));
    }
    for i in 0..3 {
        events.push(event(
            &format!("w{i}"),
            &format!("crowd{i}"),
            "view",
            "warm",
        ));
    }
    events.push(event("c0", "crowd0", "view", "cold"));
    events.push(event("a0", "alice", "click", "hit"));
    for e in &events {
        publish(&js, e).await.expect("publish");
    }
    eventually("all events applied", LIMIT, || async {
        applied(&server).await == events.len() as u64
    })
    .await;
    eventually("ranking published", LIMIT, || async {
        ids(&recommend(&server, "nobody").await) == ["hit", "warm", "cold"]
    })
    .await;
    let alice = recommend(&server, "alice").await;
    assert_eq!(
        ids(&alice),
        ["warm", "cold"],
        "alice's own item is excluded"
    );
    assert!(alice.items.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(!alice.rec_id.is_empty() && alice.model_version.starts_with("online-"));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_land_in_the_dlq_with_their_reason() {
    let nats = NatsServer::start();
    let server = start_engine(&nats).await;
    let js = emitter(&nats).await;
    let garbage = js
        .publish("streamrec.events.click", "{not json".into())
        .await
        .expect("publish");
    garbage.await.expect("stored");
    let mut no_session = event("bad1", "s", "click", "x");
    no_session.as_object_mut().map(|m| m.remove("session_id"));
    publish(&js, &no_session).await.expect("publish");
    publish(&js, &event("good", "s", "click", "x"))
        .await
        .expect("publish");
    // The consumer moved past both bad messages to the good one.
    eventually("good event applied", LIMIT, || async {
        applied(&server).await == 1
    })
    .await;

    let dlq = js
        .get_stream(subjects::DLQ_STREAM)
        .await
        .expect("DLQ stream exists");
    let first = dlq.get_raw_message(1).await.expect("first dead letter");
    let second = dlq.get_raw_message(2).await.expect("second dead letter");
    assert_eq!(first.subject.as_str(), "streamrec.dlq.invalid_json");
    assert_eq!(first.payload.as_ref(), b"{not json");
    assert_eq!(second.subject.as_str(), "streamrec.dlq.missing_field");
    let error = second
        .headers
        .get(subjects::DLQ_ERROR_HEADER)
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("session_id"),
        "error names the field: {error}"
    );
    assert_eq!(
        second
            .headers
            .get(subjects::DLQ_SOURCE_HEADER)
            .map(|v| v.to_string())
            .as_deref(),
        Some("streamrec.events.click")
    );
    assert_eq!(stats(&server).await["ingest"]["dead_lettered"], 2);
    server.shutdown().await.expect("clean shutdown");
}

/// A dead letter that cannot be published fails its poll: the batch it was in is fetched
/// again, not skipped (the ack of a later batch would have acknowledged it unapplied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dead_letter_loses_no_event_of_its_batch() {
    let nats = NatsServer::start();
    let server = start_engine(&nats).await;
    let js = emitter(&nats).await;
    let dlq_config = js
        .get_stream(subjects::DLQ_STREAM)
        .await
        .expect("DLQ stream exists")
        .cached_info()
        .config
        .clone();
    js.delete_stream(subjects::DLQ_STREAM)
        .await
        .expect("DLQ stream deleted");
    let garbage = js
        .publish("streamrec.events.click", "{not json".into())
        .await
        .expect("publish");
    garbage.await.expect("stored");
    let good = 20;
    for n in 0..good {
        publish(
            &js,
            &event(&format!("good{n}"), "s", "click", &format!("i{n}")),
        )
        .await
        .expect("publish");
    }
    // Nothing past the bad message is learned while its dead letter has nowhere to go.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(applied(&server).await, 0);
    js.create_stream(dlq_config).await.expect("DLQ stream back");
    eventually("every good event applied", LIMIT, || async {
        applied(&server).await == good
    })
    .await;
    let dlq = js
        .get_stream(subjects::DLQ_STREAM)
        .await
        .expect("DLQ stream exists");
    let letter = dlq.get_raw_message(1).await.expect("the dead letter");
    assert_eq!(letter.subject.as_str(), "streamrec.dlq.invalid_json");
    assert_eq!(letter.payload.as_ref(), b"{not json");
    let stats = stats(&server).await;
    assert_eq!(stats["ingest"]["dead_lettered"], 1);
    assert_eq!(counter(&stats, "ingest", "redeliveries"), 0);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_nats_mid_stream_loses_and_doubles_nothing() {
    const EVENTS: usize = 3_000;
    const ITEMS: usize = 10;
    const CHUNK: usize = 100;
    let mut nats = NatsServer::start();
    let server = start_engine(&nats).await;
    let js = emitter(&nats).await;
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| {
            event(
                &format!("e{i}"),
                &format!("s{}", i % 37),
                "view",
                &format!("i{}", i % ITEMS),
            )
        })
        .collect();

    let mut restarts = 0;
    for (n, chunk) in events.chunks(CHUNK).enumerate() {
        if n == 12 {
            // SIGKILL mid-stream: published-but-unacked and delivered-but-unacked work in flight.
            nats.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            nats.restart();
            restarts += 1;
        }
        // An emitter retries until every event of the chunk is acked; the same ids make the
        // retries harmless.
        let mut attempts = 0;
        loop {
            let results = futures::future::join_all(chunk.iter().map(|e| publish(&js, e))).await;
            if results.iter().all(Result::is_ok) {
                break;
            }
            attempts += 1;
            assert!(
                attempts < 60,
                "publishing never recovered: {:?}",
                results.into_iter().find(Result::is_err)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    eventually("every event applied", LIMIT, || async {
        applied(&server).await >= EVENTS as u64
    })
    .await;
    // Past the ack wait, any redelivery has happened: the count must not move.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = stats(&server).await;
    assert_eq!(stats["ingest"]["events_applied"], EVENTS as u64, "{stats}");
    // Same event time for all, so each item's popularity is exactly its count of events;
    // the explanation carries it (as ln(1 + count) / 10, the re-ranker's input).
    let popular = recommend(&server, "nobody").await;
    assert_eq!(popular.items.len(), ITEMS);
    for item in &popular.items {
        let feature = item.explain.as_ref().and_then(|e| {
            e["features"]
                .as_array()?
                .iter()
                .find(|f| f[0] == "popularity")?[1]
                .as_f64()
        });
        let count = feature.map_or(f64::NAN, |f| (10.0 * f).exp_m1());
        assert!(
            (count - (EVENTS / ITEMS) as f64).abs() < 0.05,
            "{}: {count}",
            item.item_id
        );
    }
    println!(
        "nats restarts: {restarts}; redeliveries skipped: {}; duplicates skipped: {}",
        stats["ingest"]["redeliveries"], stats["ingest"]["duplicates_skipped"]
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_carrying_rec_id_teaches_the_bandit_and_moves_the_next_answer() {
    let nats = NatsServer::start();
    let server = start_engine(&nats).await;
    let js = emitter(&nats).await;
    let mut events = Vec::new();
    for (item, views) in [("hit", 6), ("warm", 3), ("cold", 1)] {
        for i in 0..views {
            events.push(event(
                &format!("{item}{i}"),
                &format!("crowd{i}"),
                "view",
                item,
            ));
        }
    }
    for e in &events {
        publish(&js, e).await.expect("publish");
    }
    eventually("ranking published", LIMIT, || async {
        ids(&recommend(&server, "nobody").await) == ["hit", "warm", "cold"]
    })
    .await;
    let shown = recommend(&server, "bob").await;
    assert_eq!(ids(&shown), ["hit", "warm", "cold"]);
    assert!(
        shown.items.iter().all(|i| i.propensity == 1.0),
        "LinUCB is deterministic"
    );
    // The impression reaches the learner through the stream before the click does.
    eventually("impressions learned", LIMIT, || async {
        counter(&stats(&server).await, "ingest", "impressions") >= 2
    })
    .await;
    let mut click = event("bob-click", "bob", "click", "cold");
    click["rec_id"] = json!(shown.rec_id);
    click["position"] = json!(2);
    publish(&js, &click).await.expect("publish");
    // cold is rewarded 1; hit and warm, passed over above it, 0.
    eventually("click attributed", LIMIT, || async {
        let s = stats(&server).await;
        counter(&s, "learner", "attributed") == 1 && counter(&s, "ingest", "bandit_rewards") == 3
    })
    .await;
    eventually("the clicked item leads", LIMIT, || async {
        recommend(&server, "carol")
            .await
            .items
            .first()
            .map(|i| i.item_id.as_str())
            == Some("cold")
    })
    .await;
    // Popularity alone would still rank hit first: the move is the bandit's.
    let after = recommend(&server, "dave").await;
    let scores: Vec<f64> = after.items.iter().map(|i| i.score).collect();
    assert!(
        scores[0] < scores.iter().copied().fold(0.0, f64::max),
        "{after:?}"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_empty_disk_starts_from_the_snapshot_kept_on_nats() {
    let nats = NatsServer::start();
    let with_dir = |dir: &std::path::Path| EngineConfig {
        snapshot_dir: Some(dir.to_owned()),
        snapshot_interval: None,
        ..EngineConfig::default()
    };
    let first_disk = tempfile::tempdir().expect("dir");
    let server = start_engine_with(&nats, with_dir(first_disk.path())).await;
    let js = emitter(&nats).await;
    for (i, item) in ["x", "x", "y"].iter().enumerate() {
        publish(&js, &event(&format!("e{i}"), "s", "view", item))
            .await
            .expect("publish");
    }
    eventually("applied", LIMIT, || async { applied(&server).await == 3 }).await;
    let version = take_snapshot(&server).await;
    server.shutdown().await.expect("shutdown");

    // What an operator sees on NATS: the current version and its files.
    let kv = js
        .get_key_value("STREAMREC_STATE")
        .await
        .expect("kv bucket");
    let current = kv
        .get("current_snapshot")
        .await
        .expect("read")
        .expect("set");
    assert_eq!(String::from_utf8_lossy(&current), version);
    let objects = js
        .get_object_store("STREAMREC_SNAPSHOTS")
        .await
        .expect("object store");
    objects
        .info(format!("{version}/manifest.json"))
        .await
        .expect("manifest stored");

    let empty_disk = tempfile::tempdir().expect("dir");
    let server = start_engine_with(&nats, with_dir(empty_disk.path())).await;
    assert!(
        empty_disk
            .path()
            .join(&version)
            .join("manifest.json")
            .exists()
    );
    assert_eq!(stats(&server).await["restored_seq"], 3);
    assert_eq!(ids(&recommend(&server, "new").await), ["x", "y"]);
    server.shutdown().await.expect("shutdown");
}

/// The object store keeps the newest `snapshots_kept` snapshots, the current one among
/// them: unpruned, a snapshot every few seconds filled the server's disk (and JetStream then
/// refused the engine's streams at the next start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_object_store_keeps_only_the_newest_snapshots() {
    use futures::TryStreamExt;
    let nats = NatsServer::start();
    let disk = tempfile::tempdir().expect("dir");
    let mut config = NatsBusConfig::new(nats.url());
    config.snapshots_kept = 2;
    let bus = NatsBus::connect(config).await.expect("engine connects");
    let engine = EngineConfig {
        snapshot_dir: Some(disk.path().to_owned()),
        snapshot_interval: None,
        ..EngineConfig::default()
    };
    let server = RunningServer::start(Arc::new(bus), engine, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("engine starts");
    let js = emitter(&nats).await;
    let mut taken = Vec::new();
    for i in 0..4 {
        publish(&js, &event(&format!("e{i}"), "s", "view", &format!("i{i}")))
            .await
            .expect("publish");
        eventually("applied", LIMIT, || async {
            applied(&server).await == i + 1
        })
        .await;
        taken.push(take_snapshot(&server).await);
    }
    let objects = js
        .get_object_store("STREAMREC_SNAPSHOTS")
        .await
        .expect("object store");
    let names: Vec<String> = objects
        .list()
        .await
        .expect("list")
        .map_ok(|info| info.name)
        .try_collect()
        .await
        .expect("listed");
    let versions: std::collections::BTreeSet<&str> = names
        .iter()
        .filter_map(|n| Some(n.split_once('/')?.0))
        .collect();
    let newest: std::collections::BTreeSet<&str> = taken[2..].iter().map(String::as_str).collect();
    assert_eq!(versions, newest, "{names:?}");
    // The newest are whole: their manifests are there.
    for version in &taken[2..] {
        objects
            .info(format!("{version}/manifest.json"))
            .await
            .expect("manifest kept");
    }
    server.shutdown().await.expect("shutdown");
}
