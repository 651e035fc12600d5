//! Crash recovery: MovieLens-100K events stream in while the engine (the real `streamrec`
//! binary) is stopped at random points and restarted. Over real NATS, with SIGKILL five
//! times; on the embedded bus with `--data-dir`, with SIGTERM and SIGKILL in turn. At the
//! end, every learner's state is byte-identical to an uninterrupted run's: no event lost,
//! none applied twice.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use streamrec_actors::learner::Replayer;
use streamrec_actors::snapshot::write_snapshot;
use streamrec_learner::online::{OnlineConfig, OnlineModels};
use streamrec_proto::{Event, subjects};
use streamrec_ranker::ComputeDevice;
use support::engine_process::EngineProcess;
use support::eventually;
use support::nats::NatsServer;

const KILLS: usize = 5;
const LIMIT: Duration = Duration::from_secs(120);

fn movielens() -> Vec<Event> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-100k");
    streamrec_api::movielens::load_events(&dir).expect(
        "MovieLens-100K in data/ml-100k (scripts/test fetches it with scripts/fetch-ml100k)",
    )
}

fn seq(stats: &Value, field: &str) -> u64 {
    stats[field].as_u64().unwrap_or(0)
}

/// Publishes every event, in order, retrying until each is stored (same ids: no doubles).
async fn publish_all(js: jetstream::Context, events: Vec<Event>) {
    for chunk in events.chunks(500) {
        loop {
            let mut acks = Vec::with_capacity(chunk.len());
            let mut failed = false;
            for e in chunk {
                let publish = PublishMessage::build()
                    .payload(e.to_json().into())
                    .message_id(&e.event_id);
                match js
                    .send_publish(subjects::event_subject(e.kind), publish)
                    .await
                {
                    Ok(ack) => acks.push(ack),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            for ack in acks {
                failed |= ack.await.is_err();
            }
            if !failed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // About 25k events/s: the stream outlives several crashes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_doubles_nothing() {
    let events = movielens();
    let total = events.len() as u64;
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("data dir");

    let expected = uninterrupted(&events);

    let mut engine = EngineProcess::start(Some(&nats.url()), data.path());
    let js = jetstream::new(
        async_nats::connect(nats.url())
            .await
            .expect("emitter connects"),
    );
    let publisher = tokio::spawn(publish_all(js, events));

    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut redelivered = 0;
    for kill in 1..=KILLS {
        let restored = engine.stats().await.map_or(0, |s| seq(&s, "restored_seq"));
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..1500))).await;
        let applied = engine.stats().await.map_or(0, |s| seq(&s, "applied_seq"));
        engine.kill();
        engine = EngineProcess::start(Some(&nats.url()), data.path());
        let next_restored = engine.stats().await.map_or(0, |s| seq(&s, "restored_seq"));
        redelivered += applied.saturating_sub(next_restored);
        println!(
            "kill {kill}: had restored seq {restored}, applied ≥ {applied} when killed; restarted from snapshot at seq {next_restored}"
        );
    }
    publisher.await.expect("publisher finished");
    eventually("every event applied", LIMIT, || async {
        engine
            .stats()
            .await
            .is_some_and(|s| seq(&s, "applied_seq") == total)
    })
    .await;

    let counters = assert_identical(&engine, data.path(), &expected, total).await;
    println!(
        "{KILLS} SIGKILLs; at least {redelivered} events were delivered again after a restart (learned by a killed process after its last snapshot, so learned afresh by the restored one); final counters {counters:?}"
    );
    engine.kill();
}

/// The uninterrupted run: the same events through the same learners and re-ranker
/// training, sequences 1..=N, as a snapshot manifest.
fn uninterrupted(events: &[Event]) -> streamrec_actors::snapshot::Manifest {
    let mut replayer = Replayer::new(
        OnlineModels::new(OnlineConfig::default()),
        ComputeDevice::Cpu,
    )
    .expect("cpu re-ranker");
    for (i, e) in events.iter().enumerate() {
        replayer
            .apply_event(i as u64 + 1, e)
            .expect("training step");
    }
    let reference = replayer.into_models();
    let reference_dir = tempfile::tempdir().expect("reference dir");
    write_snapshot(reference_dir.path(), &reference, None).expect("reference snapshot")
}

/// Takes a snapshot of `engine` and checks it against the uninterrupted run, learner by
/// learner; returns its counters.
async fn assert_identical(
    engine: &EngineProcess,
    data: &std::path::Path,
    expected: &streamrec_actors::snapshot::Manifest,
    total: u64,
) -> streamrec_learner::online::OnlineCounters {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/snapshots", engine.url))
        .send()
        .await
        .expect("snapshot request");
    let status = response.status();
    let body: Value = response.json().await.expect("snapshot body");
    assert_eq!(status, 201, "snapshot: {body}");
    let version: streamrec_proto::SnapshotVersion = body["version"]
        .as_str()
        .expect("a version")
        .parse()
        .expect("a valid version");
    let store = streamrec_actors::snapshot::SnapshotStore::new(data.join("snapshots"), usize::MAX);
    let (manifest, _) = store.load(&version).expect("the final snapshot verifies");
    assert_eq!(manifest.last_seq(), total);
    assert_eq!(
        manifest.counters.events, total,
        "each event learned once across all restarts"
    );
    for (learner, file) in &expected.learners {
        assert_eq!(
            manifest.learners.get(learner).map(|f| &f.sha256),
            Some(&file.sha256),
            "{learner} differs from the uninterrupted run"
        );
    }
    assert_eq!(manifest.version, expected.version);
    manifest.counters
}

/// Posts every event over HTTP, in order, retrying a chunk until it is answered 202 (same
/// ids: a chunk stored before a crash cut its answer is not stored twice).
async fn post_all(url: std::sync::Arc<std::sync::Mutex<String>>, events: Vec<Event>) -> u64 {
    let client = reqwest::Client::new();
    let mut retries = 0;
    for chunk in events.chunks(500) {
        let mut body = b"[".to_vec();
        for (i, e) in chunk.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&e.to_json());
        }
        body.push(b']');
        loop {
            let target = format!("{}/v1/events", url.lock().expect("url").clone());
            let answer = client
                .post(target)
                .header("content-type", "application/json")
                .body(body.clone())
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status() == 202) {
                break;
            }
            retries += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    retries
}

/// The embedded bus with `--data-dir`: events accepted over HTTP (202) survive SIGTERM and
/// SIGKILL alike; SIGTERM exits 0 within its bound after a final snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_bus_keeps_every_accepted_event_across_sigterm_and_sigkill() {
    const STOPS: usize = 6;
    let events: Vec<Event> = movielens().into_iter().take(30_000).collect();
    let total = events.len() as u64;
    let data = tempfile::tempdir().expect("data dir");
    let expected = uninterrupted(&events);

    let mut engine = EngineProcess::start(None, data.path());
    let url = std::sync::Arc::new(std::sync::Mutex::new(engine.url.clone()));
    let publisher = tokio::spawn(post_all(std::sync::Arc::clone(&url), events));
    let mut rng = ChaCha8Rng::seed_from_u64(2027);
    for stop in 1..=STOPS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
        let applied = engine.stats().await.map_or(0, |s| seq(&s, "applied_seq"));
        if stop % 2 == 1 {
            let (status, took) = engine
                .terminate(Duration::from_secs(15))
                .expect("SIGTERM ends the process");
            assert!(status.success(), "SIGTERM exits 0, not {status}");
            assert!(took < Duration::from_secs(12), "SIGTERM took {took:?}");
            println!("stop {stop}: SIGTERM at applied seq ≥ {applied}, exited 0 in {took:?}");
        } else {
            engine.kill();
            println!("stop {stop}: SIGKILL at applied seq ≥ {applied}");
        }
        engine = EngineProcess::start(None, data.path());
        *url.lock().expect("url") = engine.url.clone();
    }
    let retries = publisher.await.expect("publisher finished");
    eventually("every accepted event applied", LIMIT, || async {
        engine
            .stats()
            .await
            .is_some_and(|s| seq(&s, "applied_seq") == total)
    })
    .await;
    let counters = assert_identical(&engine, data.path(), &expected, total).await;
    println!("{STOPS} stops, {retries} chunk posts retried; final counters {counters:?}");
    engine.kill();
}
