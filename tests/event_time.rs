//! Event time over a real `nats-server`: the watermark, late events republished once to
//! `STREAMREC_LATE`, out-of-order events inside the lateness applied, and an item's window
//! counts over HTTP.

mod support;

use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};
use streamrec_proto::subjects;
use support::nats::NatsServer;
use support::{eventually, get, nats_server};

const LIMIT: Duration = Duration::from_secs(60);
const MINUTE: i64 = 60_000;

fn event(id: &str, item: &str, kind: &str, ts: i64) -> Value {
    json!({"event_id": id, "session_id": format!("s-{id}"), "kind": kind, "item_id": item, "ts": ts})
}

/// Publishes without a message id, as a careless emitter would: a second publish of the
/// same event is a second message on the stream.
async fn publish(js: &jetstream::Context, event: &Value) {
    let kind = event["kind"].as_str().unwrap_or("view");
    js.publish(format!("streamrec.events.{kind}"), event.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
}

async fn late_stream_messages(js: &jetstream::Context) -> u64 {
    let mut stream = js
        .get_stream(subjects::LATE_STREAM)
        .await
        .expect("the late stream exists");
    stream.info().await.expect("stream info").state.messages
}

async fn stats(server: &streamrec_api::RunningServer) -> Value {
    get(server, "/v1/stats").await.1
}

fn window<'a>(item: &'a Value, label: &str) -> &'a Value {
    item["features"]["windows"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["window"] == label))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_are_republished_once_and_in_lateness_events_counted() {
    let nats = NatsServer::start();
    let server = nats_server(&nats).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("emitter"));
    // An hour boundary three hours back: every window below is closed well within the
    // skew the ingest allows.
    let hour =
        (streamrec_proto::now_millis() - 3 * 60 * MINUTE).div_euclid(60 * MINUTE) * (60 * MINUTE);
    let at = |minutes: f64| hour + (minutes * MINUTE as f64) as i64;

    for (id, minutes) in [("a1", 1.0), ("a2", 2.0), ("a3", 2.5)] {
        publish(&js, &event(id, "a", "view", at(minutes))).await;
    }
    // Moves the watermark to H+61m (lateness: 5 minutes).
    publish(&js, &event("b1", "b", "view", at(66.0))).await;
    // Stamped H+50m: 11 minutes behind the watermark. Its emitter sends it twice.
    let late = event("late", "a", "click", at(50.0));
    publish(&js, &late).await;
    publish(&js, &late).await;
    // Out of order (behind H+66m) but inside the lateness: applied.
    publish(&js, &event("a4", "a", "view", at(62.0))).await;
    // Moves the watermark to H+67m, closing the windows that hold H+62m.
    publish(&js, &event("c1", "c", "view", at(72.0))).await;

    eventually("every event applied", LIMIT, || async {
        stats(&server).await["ingest"]["events_applied"] == 7
    })
    .await;
    eventually("the late event republished", LIMIT, || async {
        late_stream_messages(&js).await == 1
    })
    .await;
    let stats = stats(&server).await;
    assert_eq!(stats["ingest"]["late_events"], 1, "{stats}");
    assert_eq!(stats["ingest"]["duplicates_skipped"], 1, "{stats}");
    assert_eq!(stats["watermark"]["watermark"], at(67.0), "{stats}");
    assert_eq!(stats["watermark"]["allowed_lateness_ms"], 5 * MINUTE);

    let stream = js.get_stream(subjects::LATE_STREAM).await.expect("stream");
    let kept = stream.get_raw_message(1).await.expect("the late event");
    assert_eq!(kept.subject.as_str(), "streamrec.late.click");
    let header = |name: &str| kept.headers.get(name).map(|v| v.to_string());
    assert_eq!(
        header(subjects::LATE_MS_HEADER).as_deref(),
        Some("660000"),
        "11 minutes behind the watermark"
    );
    let payload: Value = serde_json::from_slice(&kept.payload).expect("the event as sent");
    assert_eq!(payload, late);

    // Windows as of the watermark (H+67m): the 5-minute window [H+62m, H+67m) holds the
    // out-of-order event; the hour [H+5m, H+65m) holds it alone (the late event at H+50m
    // is in no window); the day ending at H+60m holds the first three.
    let (status, item) = get(&server, "/v1/items/a").await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["item_id"], "a");
    assert_eq!(item["features"]["watermark"], at(67.0));
    let counts = |label: &str| window(&item, label)["events"].as_u64();
    assert_eq!(counts("1m"), Some(0), "{item}");
    assert_eq!(counts("5m"), Some(1), "{item}");
    assert_eq!(counts("1h"), Some(1), "{item}");
    assert_eq!(counts("24h"), Some(3), "{item}");
    assert_eq!(window(&item, "5m")["start"], at(62.0));
    assert_eq!(window(&item, "24h")["end"], at(60.0));
    assert_eq!(
        window(&item, "1h")["clicks"],
        0,
        "the late click counts nowhere"
    );
    let (status, _) = get(&server, "/v1/items/never-seen").await;
    assert_eq!(status, 404);
    server.shutdown().await.expect("clean shutdown");

    // A second engine replays the whole stream from the start: it finds the same late
    // event, and the late stream still holds one copy.
    let replayed = nats_server(&nats).await;
    eventually("the stream replayed", LIMIT, || async {
        get(&replayed, "/v1/stats").await.1["ingest"]["late_events"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(late_stream_messages(&js).await, 1, "republished once");
    let (_, again) = get(&replayed, "/v1/items/a").await;
    assert_eq!(
        again["features"], item["features"],
        "a replay computes the same windows"
    );
    replayed.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_shows_its_features_and_recent_items() {
    let nats = NatsServer::start();
    let server = nats_server(&nats).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("emitter"));
    let now = streamrec_proto::now_millis() - 10 * MINUTE;
    for (n, (kind, item)) in [("view", "x"), ("view", "y"), ("click", "y")]
        .into_iter()
        .enumerate()
    {
        let mut e = event(&format!("e{n}"), item, kind, now + n as i64 * 1_000);
        e["session_id"] = json!("visitor");
        publish(&js, &e).await;
    }
    eventually("every event applied", LIMIT, || async {
        stats(&server).await["ingest"]["events_applied"] == 3
    })
    .await;
    let (status, session) = get(&server, "/v1/sessions/visitor").await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["recent"], json!(["y", "x"]));
    let features = &session["features"];
    assert_eq!(features["events"], 3, "{session}");
    assert_eq!(features["started_at"], now);
    assert_eq!(features["last_event_at"], now + 2_000);
    assert_eq!(features["since_last_event_ms"], 0);
    let share = |kind: &str| features["kinds"][kind].as_f64().unwrap_or(0.0);
    assert!((share("view") - 2.0 / 3.0).abs() < 1e-9, "{session}");
    assert!((share("click") - 1.0 / 3.0).abs() < 1e-9, "{session}");
    let (status, body) = get(&server, "/v1/sessions/nobody").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_2_list_views_count_impressions_and_a_future_version_is_dead_lettered() {
    let nats = NatsServer::start();
    let server = nats_server(&nats).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("emitter"));
    let hour =
        (streamrec_proto::now_millis() - 3 * 60 * MINUTE).div_euclid(60 * MINUTE) * (60 * MINUTE);
    // A version 1 emitter, unchanged.
    publish(&js, &event("a", "a", "view", hour)).await;
    publish(&js, &event("b", "b", "view", hour)).await;
    // A version 2 list view showing both, then a click on one of them.
    let mut list = event("list", "page", "view", hour + MINUTE);
    list["schema_version"] = json!(2);
    list["items"] = json!(["a", "b"]);
    list["dwell_ms"] = json!(2_500);
    publish(&js, &list).await;
    let mut click = event("click", "a", "click", hour + 2 * MINUTE);
    click["schema_version"] = json!(2);
    click["price"] = json!(12.5);
    click["currency"] = json!("EUR");
    publish(&js, &click).await;
    let mut future = event("future", "a", "view", hour + 2 * MINUTE);
    future["schema_version"] = json!(3);
    publish(&js, &future).await;
    // Closes the hour [H, H+1h).
    publish(&js, &event("later", "c", "view", hour + 66 * MINUTE)).await;
    eventually("every valid event applied", LIMIT, || async {
        stats(&server).await["ingest"]["events_applied"] == 5
    })
    .await;

    let dlq = js
        .get_stream(subjects::DLQ_STREAM)
        .await
        .expect("the DLQ stream");
    let letter = dlq.get_raw_message(1).await.expect("one dead letter");
    assert_eq!(letter.subject.as_str(), "streamrec.dlq.unsupported_schema");

    let (_, a) = get(&server, "/v1/items/a").await;
    let hour_window = window(&a, "1h");
    assert_eq!(hour_window["impressions"], 1, "{a}");
    assert_eq!(hour_window["clicks"], 1, "{a}");
    assert_eq!(hour_window["events"], 2, "{a}");
    // The stream's CTR in that hour: 1 click in 2 impressions; a's own, smoothed toward it.
    let ctr = hour_window["ctr"].as_f64().unwrap_or(0.0);
    assert!(
        (ctr - (1.0 + 20.0 * 0.5) / (1.0 + 20.0)).abs() < 1e-9,
        "{a}"
    );
    let (_, b) = get(&server, "/v1/items/b").await;
    assert_eq!(window(&b, "1h")["impressions"], 1, "{b}");
    server.shutdown().await.expect("clean shutdown");
}
