//! The holes found from outside (issue 11), each shown closed: poisoned events over a real
//! `nats-server` are dead-lettered with their reason and learn nothing; the HTTP edge refuses
//! what a browser's cross-site form could send, duplicate keys, future timestamps and ids
//! that are blank or hold invisible characters, and keeps ids in one (NFC) spelling.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use reqwest::StatusCode;
use serde_json::{Value, json};
use streamrec_actors::EngineConfig;
use streamrec_api::RunningServer;
use streamrec_proto::subjects;
use support::eventually;
use support::nats::NatsServer;

const LIMIT: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn event(id: &str, session: &str, kind: &str, item: &str, ts: i64) -> Value {
    json!({"event_id": id, "session_id": session, "kind": kind, "item_id": item, "ts": ts})
}

async fn publish_raw(js: &jetstream::Context, subject: &str, payload: String) {
    let ack = js
        .send_publish(
            subject.to_owned(),
            PublishMessage::build().payload(payload.into()),
        )
        .await
        .expect("publish");
    ack.await.expect("stored");
}

async fn stats(server: &RunningServer) -> Value {
    support::get(server, "/v1/stats").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_events_on_the_bus_are_dead_lettered_and_learn_nothing() {
    let nats = NatsServer::start();
    let server = support::nats_server(&nats).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("emitter"));
    let now = now_ms();
    let poisoned = [
        // A day ahead of the bus's clock: it would move popularity's clock there.
        (
            "streamrec.events.click",
            event("future", "s", "click", "ahead", now + 86_400_000).to_string(),
            "future_timestamp",
        ),
        // A view claiming to be a click.
        (
            "streamrec.events.click",
            event("liar", "s", "view", "lie", now).to_string(),
            "subject_mismatch",
        ),
        (
            "streamrec.events.hack",
            event("hack", "s", "click", "hack", now).to_string(),
            "subject_mismatch",
        ),
        (
            "streamrec.events.click.extra",
            event("extra", "s", "click", "extra", now).to_string(),
            "subject_mismatch",
        ),
        // Two item ids: which one is meant depends on the reader.
        (
            "streamrec.events.click",
            r#"{"event_id":"dup","session_id":"s","kind":"click","item_id":"a","item_id":"b","ts":1700000000000}"#.to_owned(),
            "duplicate_key",
        ),
        (
            "streamrec.events.click",
            event("nul", "s\u{0}x", "click", "nul", now).to_string(),
            "unprintable_id",
        ),
        (
            "streamrec.events.click",
            event("blank", "   ", "click", "blank", now).to_string(),
            "blank_id",
        ),
    ];
    for (subject, payload, _) in &poisoned {
        publish_raw(&js, subject, payload.clone()).await;
    }
    // A huge bad message: its dead letter keeps only the first 4 KiB, and says how big it was.
    let huge = format!("{{\"event_id\":\"{}", "x".repeat(100_000));
    publish_raw(&js, "streamrec.events.click", huge.clone()).await;
    publish_raw(
        &js,
        "streamrec.events.click",
        event("good", "s", "click", "real", now).to_string(),
    )
    .await;
    eventually("the good event is learned", LIMIT, || async {
        stats(&server).await["learner"]["events"] == 1
    })
    .await;
    let dlq = js
        .get_stream(subjects::DLQ_STREAM)
        .await
        .expect("DLQ stream exists");
    for (seq, (source, _, reason)) in poisoned.iter().enumerate() {
        let letter = dlq
            .get_raw_message(seq as u64 + 1)
            .await
            .expect("dead letter");
        assert_eq!(letter.subject.as_str(), format!("streamrec.dlq.{reason}"));
        let from = letter
            .headers
            .get(subjects::DLQ_SOURCE_HEADER)
            .map(|v| v.to_string());
        assert_eq!(from.as_deref(), Some(*source));
    }
    let cut = dlq
        .get_raw_message(poisoned.len() as u64 + 1)
        .await
        .expect("the huge message's dead letter");
    assert_eq!(cut.payload.len(), subjects::DLQ_PAYLOAD_KEPT);
    assert_eq!(
        cut.payload[..],
        huge.as_bytes()[..subjects::DLQ_PAYLOAD_KEPT]
    );
    let size = cut
        .headers
        .get(subjects::DLQ_PAYLOAD_BYTES_HEADER)
        .map(|v| v.to_string());
    assert_eq!(size, Some(huge.len().to_string()));
    assert_eq!(
        stats(&server).await["ingest"]["dead_lettered"],
        poisoned.len() + 1
    );
    // Every stream has retention limits: nothing grows without bound.
    for (name, limits) in [
        (
            subjects::EVENTS_STREAM,
            streamrec_actors::StreamLimits::STREAM,
        ),
        (
            subjects::ITEMS_STREAM,
            streamrec_actors::StreamLimits::STREAM,
        ),
        (subjects::DLQ_STREAM, streamrec_actors::StreamLimits::DLQ),
    ] {
        let mut stream = js.get_stream(name).await.expect("stream exists");
        let config = stream.info().await.expect("stream info").config.clone();
        assert_eq!(config.max_age, limits.max_age, "{name}");
        // As asked, or halved to fit a server with less storage (never unbounded).
        assert!(
            config.max_bytes > 0 && config.max_bytes <= limits.max_bytes,
            "{name}: max_bytes {}",
            config.max_bytes
        );
    }
    // Nothing poisoned is served; the real item is.
    let (_, answer) = support::get(&server, "/v1/recommendations?session_id=other&k=10").await;
    let items: Vec<&str> = answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["item_id"].as_str())
        .collect();
    assert_eq!(items, ["real"], "{answer}");
    server.shutdown().await.expect("clean shutdown");
}

async fn post(
    server: &RunningServer,
    content_type: Option<&str>,
    body: String,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(server.url("/v1/events"))
        .body(body);
    if let Some(t) = content_type {
        request = request.header("content-type", t);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.expect("every answer is JSON"))
}

#[tokio::test]
async fn the_http_edge_refuses_forms_duplicates_future_times_and_invisible_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = support::embedded_server(dir.path()).await;
    let now = now_ms();
    let good = event("ok", "s", "click", "x", now).to_string();

    // What a cross-site form can send, and a body without a type.
    for t in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let (status, body) = post(&server, t, good.clone()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{t:?}");
        assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
    }
    let (status, _) = post(&server, Some("Application/JSON; charset=utf-8"), good).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A bodiless POST needs no type.
    let snapshot = reqwest::Client::new()
        .post(server.url("/v1/snapshots"))
        .send()
        .await
        .expect("request");
    assert_ne!(snapshot.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let json = Some("application/json");
    let (status, body) = post(
        &server,
        json,
        r#"{"event_id":"d","session_id":"s","kind":"click","item_id":"a","item_id":"b","ts":1700000000000}"#
            .to_owned(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "duplicate_key", "{body}");

    let (status, body) = post(
        &server,
        json,
        event("f", "s", "click", "x", now + 3_600_000).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("ahead of its arrival"), "{body}");
    // Within the allowed skew (5 minutes) is fine: clocks differ.
    let (status, _) = post(
        &server,
        json,
        event("near", "s", "click", "x", now + 60_000).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    for bad in [
        "   ",
        "a\u{0}b",
        "a\u{202E}b",
        "a\u{200B}b",
        "a\nb",
        "\u{FEFF}",
    ] {
        let (status, body) = post(
            &server,
            json,
            event("i", bad, "click", "x", now).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(
            body.to_string().contains("blank") || body.to_string().contains("unprintable"),
            "{bad:?}: {body}"
        );
    }

    // One name, one spelling: a decomposed "café" is learned as the composed one.
    let (status, _) = post(
        &server,
        json,
        event("nfc", "nfc-session", "click", "cafe\u{301}", now).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("the NFC event is learned", LIMIT, || async {
        support::get(&server, "/v1/stats").await.1["learner"]["events"] == 3
    })
    .await;
    let (_, answer) = support::get(&server, "/v1/recommendations?session_id=someone&k=10").await;
    let items: Vec<&str> = answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["item_id"].as_str())
        .collect();
    assert!(items.contains(&"caf\u{e9}"), "{answer}");
    assert!(!items.contains(&"cafe\u{301}"), "{answer}");
    server.shutdown().await.expect("clean shutdown");
}

async fn post_json(server: &RunningServer, path: &str, body: &Value) -> StatusCode {
    reqwest::Client::new()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .expect("request")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reward_counts_only_from_the_session_it_was_served_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = support::embedded_server(dir.path()).await;
    let now = now_ms();
    let warm: Vec<Value> = (0..20)
        .map(|i| {
            event(
                &format!("w{i}"),
                &format!("w{i}"),
                "click",
                &format!("i{}", i % 5),
                now,
            )
        })
        .collect();
    assert_eq!(
        post_json(&server, "/v1/events", &json!(warm)).await,
        StatusCode::ACCEPTED
    );
    eventually("warm-up learned", LIMIT, || async {
        stats(&server).await["learner"]["events"] == 20
    })
    .await;
    let (_, answer) = support::get(
        &server,
        "/v1/recommendations?session_id=victim&user_id=alice&k=3",
    )
    .await;
    let rec_id = answer["rec_id"].as_str().expect("a rec_id").to_owned();
    let item = answer["items"][0]["item_id"]
        .as_str()
        .expect("an item")
        .to_owned();
    eventually("the impression is learned", LIMIT, || async {
        stats(&server).await["learner"]["impressions"] == 1
    })
    .await;
    let click = |id: &str, session: &str, user: Option<&str>| {
        let mut e = event(id, session, "purchase", &item, now);
        e["rec_id"] = json!(rec_id);
        if let Some(user) = user {
            e["user_id"] = json!(user);
        }
        e
    };
    // Another session, then the right session under another user: neither is credited.
    for forged in [
        click("f1", "attacker", None),
        click("f2", "victim", Some("mallory")),
    ] {
        assert_eq!(
            post_json(&server, "/v1/events", &forged).await,
            StatusCode::ACCEPTED
        );
    }
    eventually(
        "the forged rewards are counted, not learned",
        LIMIT,
        || async { stats(&server).await["learner"]["foreign_rec_id"] == 2 },
    )
    .await;
    let learner = stats(&server).await["learner"].clone();
    assert_eq!(
        (learner["attributed"].clone(), learner["rewards"].clone()),
        (json!(0), json!(0)),
        "{learner}"
    );
    // The session it was served to is credited.
    let own = click("own", "victim", Some("alice"));
    assert_eq!(
        post_json(&server, "/v1/events", &own).await,
        StatusCode::ACCEPTED
    );
    eventually("the real reward is learned", LIMIT, || async {
        stats(&server).await["learner"]["attributed"] == 1
    })
    .await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_catalog_dead_letters_new_items_and_keeps_updating_known_ones() {
    let bus = streamrec_actors::InProcessBus::new();
    let mut config = EngineConfig::default();
    config.online.max_catalog_items = 2;
    let server = support::server_on(Arc::new(bus.clone()), config).await;
    let items = json!([
        {"item_id": "a", "title": "A"},
        {"item_id": "b", "title": "B"},
        {"item_id": "c", "title": "C"},
        {"item_id": "a", "title": "A again", "available": false},
    ]);
    assert_eq!(
        post_json(&server, "/v1/items", &items).await,
        StatusCode::ACCEPTED
    );
    the_one_dead_letter(&bus, "catalog_full", "\"c\"").await;
    eventually("the update of a known item is applied", LIMIT, || async {
        server.engine().is_unavailable("a")
    })
    .await;
    let stats = stats(&server).await;
    assert_eq!(stats["catalog_items"], 2, "{stats}");
    assert_eq!(stats["learner"]["catalog_full"], 1, "{stats}");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_learned_items_cap_events_on_new_items_are_dead_lettered() {
    let bus = streamrec_actors::InProcessBus::new();
    let mut config = EngineConfig::default();
    config.online.max_learned_items = 2;
    let server = support::server_on(Arc::new(bus.clone()), config).await;
    let now = now_ms();
    let events = json!([
        event("1", "s", "view", "a", now),
        event("2", "s", "view", "b", now),
        event("3", "s", "view", "c", now),
        event("4", "t", "view", "a", now),
    ]);
    assert_eq!(
        post_json(&server, "/v1/events", &events).await,
        StatusCode::ACCEPTED
    );
    eventually("all four handled", LIMIT, || async {
        let s = stats(&server).await;
        s["learner"]["events"] == 3 && s["learner"]["items_refused"] == 1
    })
    .await;
    the_one_dead_letter(&bus, "item_limit", "\"c\"").await;
    server.shutdown().await.expect("clean shutdown");
}

/// Waits for the bus's first dead letter and checks it is the only one, with `reason` and a
/// payload holding `payload_part`.
async fn the_one_dead_letter(
    bus: &streamrec_actors::InProcessBus,
    reason: &str,
    payload_part: &str,
) {
    eventually("the refused message is dead-lettered", LIMIT, || async {
        !bus.dead_letters().is_empty()
    })
    .await;
    let letters = bus.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, reason);
    assert!(String::from_utf8_lossy(&letters[0].payload).contains(payload_part));
}

async fn connect_with_retention(url: String, max_bytes: i64) -> streamrec_actors::NatsBus {
    let limits = streamrec_actors::StreamLimits {
        max_age: streamrec_actors::StreamLimits::STREAM.max_age,
        max_bytes,
    };
    let mut config = streamrec_actors::NatsBusConfig::new(url);
    config.retention = limits;
    config.dlq_retention = limits;
    streamrec_actors::NatsBus::connect(config)
        .await
        .expect("engine connects")
}

/// A server restarted on a fuller disk may grant less storage than its streams already hold.
/// The engine still starts, and no stream is shrunk: shrinking discards the oldest messages,
/// which may not be learned yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_with_less_storage_keeps_every_stream_and_message() {
    const MIB: i64 = 1024 * 1024;
    let mut nats = NatsServer::start_with_max_file_store(1024 * MIB as u64);
    // Three streams of 192 MiB: 576 of 1024 MiB reserved.
    drop(connect_with_retention(nats.url(), 192 * MIB).await);
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("emitter"));
    for i in 0..100 {
        publish_raw(&js, "streamrec.events.view", format!("{{\"n\":{i}}}")).await;
    }
    drop(js);
    // Now only 512 MiB, less than the 576 the streams hold; the engine asks for 1 GiB each.
    nats.set_max_file_store(512 * MIB as u64);
    nats.restart();
    let bus = connect_with_retention(nats.url(), 1024 * MIB).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("reader"));
    for name in [
        subjects::EVENTS_STREAM,
        subjects::ITEMS_STREAM,
        subjects::DLQ_STREAM,
    ] {
        let mut stream = js.get_stream(name).await.expect("stream exists");
        let info = stream.info().await.expect("stream info");
        assert_eq!(info.config.max_bytes, 192 * MIB, "{name} kept its size");
    }
    let mut events = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .expect("events stream");
    let held = events.info().await.expect("stream info").state.messages;
    assert_eq!(held, 100, "every message is still there");
    drop(bus);
}
