//! Engine tests on the in-process bus: learning, de-duplication, dead letters, supervision,
//! session eviction.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use streamrec_learner::candidates::CandidateReads;
use streamrec_learner::online::OnlineConfig;
use streamrec_proto::{Event, EventKind, Item, subjects};

use crate::bus::{Bus, InProcessBus, Outbound};
use crate::engine::Engine;
use crate::engine_config::EngineConfig;

const T0: i64 = 1_700_000_000_000;

fn event(id: &str, session: &str, item: &str, i: i64) -> Event {
    Event {
        event_id: id.to_owned(),
        session_id: session.to_owned(),
        user_id: None,
        kind: EventKind::Click,
        item_id: item.to_owned(),
        ts: T0 + i,
        rec_id: None,
        position: None,
        value: None,
        context: None,
        details: Default::default(),
    }
}

async fn engine(config: EngineConfig) -> (Engine, InProcessBus) {
    let bus = InProcessBus::new();
    let engine = Engine::start(Arc::new(bus.clone()), config)
        .await
        .expect("engine starts");
    (engine, bus)
}

/// Polls `check` until it holds, failing the test after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn events_are_learned_once_and_ranked() {
    let (engine, _bus) = engine(EngineConfig::default()).await;
    let mut events = Vec::new();
    for i in 0..30 {
        let item = if i % 3 == 0 { "b" } else { "a" };
        events.push(event(&format!("e{i}"), &format!("s{}", i % 5), item, i));
    }
    events.push(event("c0", "s9", "c", 40));
    engine.publish_events(&events).await.expect("publish");
    // The same events again: de-duplicated by id on the bus.
    engine.publish_events(&events).await.expect("publish");
    eventually("31 events applied", LIMIT, || async {
        engine.stats().events_applied == 31
    })
    .await;
    eventually("ranking published", LIMIT, || async {
        engine.models().popularity.events_applied == 31
    })
    .await;
    let ranked: Vec<String> = engine
        .models()
        .popularity
        .ranked
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    assert_eq!(ranked, ["a", "b", "c"]);
    let models = engine.models();
    let history = models.read.session("s9").expect("remembered session");
    let c = models.read.item_index("c").expect("known item");
    assert!(history.contains(c));
    assert_eq!(engine.live_sessions(), 6);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_event_id_under_a_new_sequence_is_skipped() {
    let (engine, bus) = engine(EngineConfig::default()).await;
    let e = event("same", "s", "a", 0);
    // Published without a bus-level id, so only the learner's window can catch it.
    let raw = |e: &Event| Outbound {
        subject: subjects::event_subject(e.kind),
        msg_id: None,
        payload: e.to_json().into(),
    };
    bus.publish(vec![raw(&e), raw(&e)]).await.expect("publish");
    eventually("both seen", LIMIT, || async {
        let s = engine.stats();
        s.events_applied + s.duplicates_skipped == 2
    })
    .await;
    assert_eq!(engine.stats().events_applied, 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn malformed_messages_are_dead_lettered_and_ingest_moves_on() {
    let (engine, bus) = engine(EngineConfig::default()).await;
    bus.publish(vec![
        Outbound {
            subject: "streamrec.events.click".into(),
            msg_id: None,
            payload: Bytes::from_static(b"{\"event_id\": \"x\""),
        },
        Outbound {
            subject: "streamrec.events.click".into(),
            msg_id: None,
            payload: Bytes::from(
                serde_json::json!({"event_id": "y", "session_id": "s", "kind": "poke", "item_id": "i", "ts": T0})
                    .to_string(),
            ),
        },
    ])
    .await
    .expect("publish");
    engine
        .publish_events(&[event("ok", "s", "a", 0)])
        .await
        .expect("publish");
    eventually("good event applied", LIMIT, || async {
        engine.stats().events_applied == 1
    })
    .await;
    let letters = bus.dead_letters();
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(reasons, ["invalid_json", "unknown_kind"]);
    assert!(
        letters[1].error.contains("kind"),
        "error names the field: {}",
        letters[1].error
    );
    assert_eq!(engine.stats().dead_lettered, 2);
    engine.shutdown().await;
}

#[tokio::test]
async fn items_update_the_catalog() {
    let (engine, _bus) = engine(EngineConfig::default()).await;
    let item = Item {
        item_id: "gone".into(),
        title: None,
        attributes: None,
        available: false,
        expires_at: None,
        details: Default::default(),
    };
    engine.publish_items(&[item]).await.expect("publish");
    eventually("catalog updated", LIMIT, || async {
        engine.is_unavailable("gone")
    })
    .await;
    assert!(!engine.is_unavailable("never-heard-of"));
    engine.shutdown().await;
}

#[tokio::test]
async fn sessions_over_the_cap_are_forgotten_least_recent_first() {
    let config = EngineConfig {
        online: OnlineConfig {
            max_sessions: 3,
            ..OnlineConfig::default()
        },
        ..EngineConfig::default()
    };
    let (engine, _bus) = engine(config).await;
    for (i, s) in ["s1", "s2", "s3"].into_iter().enumerate() {
        engine
            .publish_events(&[event(&format!("a{i}"), s, "x", i as i64)])
            .await
            .expect("publish");
    }
    eventually("three applied", LIMIT, || async {
        engine.models().counters.events == 3
    })
    .await;
    // s1 becomes the most recent; s2 is now the least recent.
    engine
        .publish_events(&[event("b", "s1", "y", 10), event("c", "s4", "z", 11)])
        .await
        .expect("publish");
    eventually("s2 forgotten", LIMIT, || async {
        engine.models().counters.sessions_evicted == 1
    })
    .await;
    let read = &engine.models().read;
    assert!(read.session("s2").is_none());
    for s in ["s1", "s3", "s4"] {
        assert!(read.session(s).is_some(), "{s} kept");
    }
    assert_eq!(engine.live_sessions(), 3);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_learner_that_fails_is_restarted_and_fed_and_snapshotted_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EngineConfig {
        snapshot_dir: Some(dir.path().to_path_buf()),
        snapshot_interval: None,
        ..EngineConfig::default()
    };
    let (engine, _bus) = engine(config).await;
    let batch = |from: i64, to: i64| -> Vec<Event> {
        (from..to)
            .map(|i| event(&format!("e{i}"), &format!("s{}", i % 3), "a", i))
            .collect()
    };
    engine.publish_events(&batch(0, 10)).await.expect("publish");
    eventually("10 learned", LIMIT, || async {
        engine.models().counters.events == 10
    })
    .await;
    let first = engine.snapshot_now().await.expect("snapshot");
    let learner_of = |engine: &Engine| {
        engine
            .root()
            .get_children()
            .into_iter()
            .find(|c| c.is_message_type_of::<crate::learner::LearnerMsg>() == Some(true))
    };
    let old = learner_of(&engine).expect("a learner runs");
    old.kill();
    // Asked at once, while the learner restarts: it waits for the new snapshot actor.
    let during = engine
        .snapshot_now()
        .await
        .expect("snapshot across the restart");
    assert_eq!(during.last_seq(), 10);
    eventually("a new learner", LIMIT, || async {
        learner_of(&engine).is_some_and(|new| new.get_id() != old.get_id())
    })
    .await;
    // The consumers and the snapshot actor hold the new learner: events after the
    // restart are learned once, on top of the restored state, and a snapshot has them.
    engine
        .publish_events(&batch(10, 20))
        .await
        .expect("publish");
    eventually("20 learned", LIMIT, || async {
        engine.models().counters.events == 20
    })
    .await;
    let second = engine
        .snapshot_now()
        .await
        .expect("snapshot after the restart");
    assert_eq!(first.last_seq(), 10);
    assert_eq!(second.last_seq(), 20);
    engine.shutdown().await;
}
