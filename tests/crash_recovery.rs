//! Crash recovery: MovieLens-100K events stream in while the engine (the real `streamrec`
//! binary) is stopped at random points and restarted. Over real NATS, with 20 SIGKILLs of the
//! engine and 5 of nats-server while requests are served; on the embedded bus with `--data-dir`, with SIGTERM and SIGKILL in turn. At the
//! end, every learner's state is byte-identical to an uninterrupted run's: no event lost,
//! none applied twice.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use streamrec_learner::online::{OnlineConfig, OnlineModels};
use streamrec_pipeline::{Replayer, StreamEntry};
use streamrec_proto::{Event, subjects};
use streamrec_ranker::ComputeDevice;
use streamrec_snapshot::write_snapshot;
use support::engine_process::EngineProcess;
use support::eventually;
use support::nats::NatsServer;
use support::stream::{movielens, read_events_stream};

const ENGINE_KILLS: usize = 20;
const BUS_KILLS: usize = 5;
const LIMIT: Duration = Duration::from_secs(120);
/// Events per co-visitation epoch and per item2vec epoch in the SIGKILL drill over NATS
/// (unequal, so the two learners' epochs end at different messages).
const COVISIT_EPOCH: u64 = 64;
const EMBEDDINGS_EPOCH: u64 = 48;
const EPOCH_ENV: [(&str, &str); 2] = [
    ("STREAMREC_LEARNERS__COVISIT__EPOCH", "64"),
    ("STREAMREC_LEARNERS__EMBEDDINGS__EPOCH", "48"),
];

fn seq(stats: &Value, field: &str) -> u64 {
    stats[field].as_u64().unwrap_or(0)
}

/// Publishes every event, in order, retrying until each is stored (same ids: no doubles).
async fn publish_all(url: String, events: Vec<Event>) {
    let connect =
        || async { jetstream::new(async_nats::connect(&url).await.expect("emitter connects")) };
    let mut js = connect().await;
    for chunk in events.chunks(500) {
        let mut attempts = 0;
        while !publish_chunk(&js, chunk).await {
            attempts += 1;
            // Twice here, after a nats-server restart, a chunk's publishes stopped
            // completing on a client whose connection was back (the server answered a fresh
            // client at once): an emitter with a retry policy connects again.
            if attempts % 3 == 0 {
                println!("emitter: a chunk failed {attempts} times; connecting again");
                js = connect().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // About 25k events/s: the stream outlives several crashes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `chunk` and waits for every ack, each step bounded: whether all were stored.
async fn publish_chunk(js: &jetstream::Context, chunk: &[Event]) -> bool {
    const WITHIN: Duration = Duration::from_secs(5);
    let mut acks = Vec::with_capacity(chunk.len());
    for e in chunk {
        let publish = PublishMessage::build()
            .payload(e.to_json().into())
            .message_id(&e.event_id);
        let sent = js.send_publish(subjects::event_subject(e.kind), publish);
        match tokio::time::timeout(WITHIN, sent).await {
            Ok(Ok(ack)) => acks.push(ack),
            _ => return false,
        }
    }
    for ack in acks {
        if !matches!(tokio::time::timeout(WITHIN, ack).await, Ok(Ok(_))) {
            return false;
        }
    }
    true
}

/// Asks for recommendations every few milliseconds from whichever engine is up: every
/// answer is a 200 or a JSON error, or no connection while the engine is down.
async fn request_loop(
    url: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
) -> (u64, u64, u64, Vec<String>) {
    let client = reqwest::Client::new();
    let (mut ok, mut refused, mut errors, mut wrong) = (0, 0, 0, Vec::new());
    let mut i = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let target = format!(
            "{}/v1/recommendations?session_id=u{}-s0&k=5",
            url.lock().expect("url").clone(),
            i % 900
        );
        match client
            .get(target)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => ok += 1,
            Ok(r) => {
                let status = r.status();
                match r.json::<Value>().await {
                    Ok(body) if body["error"]["code"].is_string() => errors += 1,
                    _ => wrong.push(format!("{status} without a JSON error")),
                }
            }
            Err(_) => refused += 1,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (ok, refused, errors, wrong)
}

/// The whole events stream as the engine consumed it (events and the engine's own
/// impressions, in stream order) through a fresh learner: the undisturbed run.
async fn replay_stream(js: &jetstream::Context) -> (streamrec_actors::snapshot::Manifest, u64) {
    let mut config = OnlineConfig::default();
    config.covisit.epoch = COVISIT_EPOCH;
    config.embeddings.epoch = EMBEDDINGS_EPOCH;
    let mut replayer =
        Replayer::new(OnlineModels::new(config), ComputeDevice::Cpu).expect("cpu re-ranker");
    let mut impressions = 0;
    for (seq, entry) in read_events_stream(js).await {
        match entry {
            StreamEntry::Impression(impression) => {
                replayer.apply_impression(seq, &impression);
                impressions += 1;
            }
            StreamEntry::Event(event) => {
                replayer.apply_event(seq, &event).expect("training step");
            }
            StreamEntry::UserErasure(user_id) => {
                replayer.apply_user_erasure(seq, &user_id);
            }
        }
    }
    let reference = replayer.into_models();
    let dir = tempfile::tempdir().expect("reference dir");
    let manifest = write_snapshot(dir.path(), &reference, None).expect("reference snapshot");
    (manifest, impressions)
}

/// The drill over real NATS: 20 SIGKILLs of the engine at random points and 5 of
/// nats-server (every fourth engine kill takes the server down with it), while MovieLens
/// streams in and requests are served. At the end, the learners are byte-identical to the
/// same stream replayed undisturbed: no event lost, none applied twice. Co-visitation lists
/// are read by epochs of [`COVISIT_EPOCH`] events and item2vec trained by epochs of
/// [`EMBEDDINGS_EPOCH`], so most kills and snapshots fall inside an epoch of each, with
/// meetings counted and vectors trained on other threads and not read yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_engine_and_bus_at_random_points_loses_and_doubles_nothing() {
    let events = movielens();
    let total = events.len() as u64;
    let mut nats = NatsServer::start();
    let data = tempfile::tempdir().expect("data dir");

    let mut engine = EngineProcess::start_with(Some(&nats.url()), data.path(), &[], &EPOCH_ENV);
    let emitter = jetstream::new(
        async_nats::connect(nats.url())
            .await
            .expect("emitter connects"),
    );
    let publisher = tokio::spawn(publish_all(nats.url(), events));
    let url = Arc::new(Mutex::new(engine.url.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let requests = tokio::spawn(request_loop(Arc::clone(&url), Arc::clone(&stop)));

    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut bus_kills = 0;
    for kill in 1..=ENGINE_KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..900))).await;
        let applied = engine.stats().await.map_or(0, |s| seq(&s, "applied_seq"));
        engine.kill();
        let with_bus = kill % (ENGINE_KILLS / BUS_KILLS) == 0;
        if with_bus {
            nats.restart();
            bus_kills += 1;
        }
        engine = EngineProcess::start_with(Some(&nats.url()), data.path(), &[], &EPOCH_ENV);
        *url.lock().expect("url") = engine.url.clone();
        let stats = engine.stats().await.unwrap_or(Value::Null);
        let restored = seq(&stats, "restored_seq");
        // Every snapshot loads, mid-epoch ones included: a refused one would only mean a
        // longer replay, and the end state would not show it.
        assert_eq!(
            seq(&stats["ingest"], "snapshots_skipped"),
            0,
            "kill {kill}: {stats}"
        );
        println!(
            "kill {kill}{}: applied ≥ {applied} when killed; restarted from the snapshot at seq {restored}",
            if with_bus { " (and nats-server)" } else { "" }
        );
    }
    publisher.await.expect("publisher finished");
    stop.store(true, Ordering::Relaxed);
    let (ok, refused, errors, wrong) = requests.await.expect("requests");
    assert!(
        wrong.is_empty(),
        "every answer a 200 or a JSON error: {wrong:?}"
    );
    assert!(ok > 0, "requests were served during the drill");

    // Impressions published after the requests stopped are still arriving: wait until the
    // engine has applied the whole stream, as it stands once it is quiet.
    let deadline = std::time::Instant::now() + LIMIT;
    let mut last = 0;
    loop {
        let head = emitter
            .get_stream(subjects::EVENTS_STREAM)
            .await
            .map(|s| s.cached_info().state.last_sequence)
            .unwrap_or(0);
        let applied = engine.stats().await.map_or(0, |s| seq(&s, "applied_seq"));
        if head == last && applied == head && head >= total {
            break;
        }
        last = head;
        assert!(
            std::time::Instant::now() < deadline,
            "the whole stream applied: head {head}, applied {applied}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (expected, impressions) = replay_stream(&emitter).await;
    let counters = assert_identical(&engine, data.path(), &expected, last, total).await;
    println!(
        "{ENGINE_KILLS} engine SIGKILLs, {bus_kills} nats-server SIGKILLs; requests: {ok} answered, {errors} JSON errors, {refused} without a connection (engine down); {impressions} impressions in the stream; final counters {counters:?}"
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
    last_seq: u64,
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
    assert_eq!(manifest.last_seq(), last_seq);
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
async fn post_all(url: Arc<Mutex<String>>, events: Vec<Event>) -> u64 {
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
    let url = Arc::new(Mutex::new(engine.url.clone()));
    let publisher = tokio::spawn(post_all(Arc::clone(&url), events));
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
    let counters = assert_identical(&engine, data.path(), &expected, total, total).await;
    println!("{STOPS} stops, {retries} chunk posts retried; final counters {counters:?}");
    engine.kill();
}
