//! Crash recovery over real NATS: MovieLens-100K events stream in while the engine (the real
//! `streamrec` binary) is killed with SIGKILL at random points and restarted, five times. At
//! the end, every learner's state is byte-identical to an uninterrupted run's: no event lost,
//! none applied twice.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// The real binary, serving on a free port, snapshotting often.
struct Engine {
    child: Child,
    url: String,
}

impl Engine {
    fn start(nats: &NatsServer, data_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamrec"))
            .args([
                "serve",
                "--nats",
                &nats.url(),
                "--listen",
                "127.0.0.1:0",
                "--snapshot-every",
                "0.25",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("streamrec starts");
        // It prints "streamrec listening on http://ADDR …" once serving.
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("a line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Self { child, url }
    }

    async fn stats(&self) -> Option<Value> {
        reqwest::get(format!("{}/v1/stats", self.url))
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

    // The uninterrupted run: the same events through the same learners and re-ranker
    // training, sequences 1..=N.
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
    let expected =
        write_snapshot(reference_dir.path(), &reference, None).expect("reference snapshot");

    let mut engine = Engine::start(&nats, data.path());
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
        engine = Engine::start(&nats, data.path());
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
    let store =
        streamrec_actors::snapshot::SnapshotStore::new(data.path().join("snapshots"), usize::MAX);
    let (manifest, _) = store.load(&version).expect("the final snapshot verifies");
    println!(
        "{KILLS} SIGKILLs; at least {redelivered} events were delivered again after a restart (learned by a killed process after its last snapshot, so learned afresh by the restored one); final counters {:?}",
        manifest.counters
    );
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
    engine.kill();
}
