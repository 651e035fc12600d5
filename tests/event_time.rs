//! Event time over a real `nats-server`: the watermark, late events republished once to
//! `STREAMREC_LATE`, out-of-order events inside the lateness applied, an item's window
//! counts over HTTP; drift of the item mix in `GET /v1/drift` and on `streamrec.alerts.drift`;
//! and the features logged with each impression, equal bit for bit to a replay's.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};
use streamrec_learner::online::OnlineModels;
use streamrec_pipeline::{StreamEntry, replay_logged_features};
use streamrec_proto::{DriftAlert, Event, Impression, subjects};
use streamrec_ranker::ComputeDevice;
use support::nats::NatsServer;
use support::stream::{movielens, publish_stored, read_events_stream};
use support::{eventually, get, nats_server, server_on};

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

/// `n` events over `[start, start + 1h)` on 40 items named `{prefix}0..`, in a fixed skewed
/// mix (item i's share falls with i), drawn afresh for each `draw`.
fn hour_of_events(prefix: &str, start: i64, n: usize, draw: u64) -> Vec<Value> {
    (0..n)
        .map(|k| {
            let pick = (k as u64 + draw * 1_000_003).wrapping_mul(2_654_435_761) % 10_007;
            let u = pick as f64 / 10_007.0;
            let item = format!("{prefix}{}", (40.0 * u * u) as u32);
            let ts = start + (k as i64 * 60 * MINUTE) / n as i64;
            let kind = if k % 3 == 0 { "click" } else { "view" };
            event(&format!("{prefix}-{draw}-{k}"), &item, kind, ts)
        })
        .collect()
}

fn drift_of<'a>(drift: &'a Value, name: &str) -> &'a Value {
    drift["features"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or(&Value::Null)
}

/// One hour on one item mix, the next on a disjoint one: the item mix's PSI is major in
/// `GET /v1/drift` and on `/metrics`, and one alert reaches `streamrec.alerts.drift`. The
/// hour after, on the second mix again at the same volume, stays below 0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_change_of_item_mix_is_major_drift_with_one_alert_and_no_change_is_stable() {
    let nats = NatsServer::start();
    let server = nats_server(&nats).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("emitter"));
    let hour =
        (streamrec_proto::now_millis() - 4 * 60 * MINUTE).div_euclid(60 * MINUTE) * (60 * MINUTE);
    let (_, before) = get(&server, "/v1/drift").await;
    assert_eq!(before["window"], Value::Null, "{before}");
    assert_eq!(drift_of(&before, "item")["status"], "no_data");

    let mut events = hour_of_events("a", hour, 600, 1);
    events.extend(hour_of_events("b", hour + 60 * MINUTE, 600, 2));
    // Past the next hour and the lateness: the second hour closes.
    events.push(event("closer-1", "b1", "view", hour + 126 * MINUTE));
    for e in &events {
        publish(&js, e).await;
    }
    eventually("the second hour reported", LIMIT, || async {
        get(&server, "/v1/drift").await.1["window"]["start"] == hour + 60 * MINUTE
    })
    .await;
    let (status, drift) = get(&server, "/v1/drift").await;
    assert_eq!(status, 200);
    assert_eq!(drift["window"]["end"], hour + 120 * MINUTE, "{drift}");
    assert_eq!(drift["window"]["size_ms"], 60 * MINUTE);
    let item = drift_of(&drift, "item");
    assert!(item["psi"].as_f64().is_some_and(|p| p >= 0.25), "{drift}");
    assert_eq!(item["status"], "major");
    println!("item mix PSI, total change: {}", item["psi"]);
    assert_eq!(item["reference"]["start"], hour);
    assert_eq!(drift_of(&drift, "kind")["status"], "stable", "{drift}");
    assert_eq!(drift["thresholds"]["major"], 0.25);

    eventually("the alert published", LIMIT, || async {
        match js.get_stream(subjects::ALERTS_STREAM).await {
            Ok(mut stream) => stream.info().await.is_ok_and(|i| i.state.messages == 1),
            Err(_) => false,
        }
    })
    .await;
    let alerts = js
        .get_stream(subjects::ALERTS_STREAM)
        .await
        .expect("alerts stream");
    let kept = alerts.get_raw_message(1).await.expect("the alert");
    assert_eq!(kept.subject.as_str(), subjects::DRIFT_ALERTS_SUBJECT);
    let alert: DriftAlert = serde_json::from_slice(&kept.payload).expect("an alert");
    assert_eq!(alert.feature, "item");
    assert!(alert.psi >= 0.25);
    assert_eq!(alert.window.start, hour + 60 * MINUTE);
    assert_eq!(alert.reference.start, hour);

    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let gauge = metrics
        .lines()
        .find(|l| l.starts_with("streamrec_drift_psi{feature=\"item\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(gauge.is_some_and(|p| p >= 0.25), "{metrics}");

    // The same mix, the same volume, another sample of it.
    let mut same = hour_of_events("b", hour + 120 * MINUTE, 600, 3);
    same.push(event("closer-2", "b1", "view", hour + 186 * MINUTE));
    for e in &same {
        publish(&js, e).await;
    }
    eventually("the third hour reported", LIMIT, || async {
        get(&server, "/v1/drift").await.1["window"]["start"] == hour + 120 * MINUTE
    })
    .await;
    let (_, drift) = get(&server, "/v1/drift").await;
    for name in ["item", "kind"] {
        let f = drift_of(&drift, name);
        println!("{name} PSI, same mix: {}", f["psi"]);
        assert!(f["psi"].as_f64().is_some_and(|p| p < 0.1), "{drift}");
        assert_eq!(f["status"], "stable");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut alerts = js
        .get_stream(subjects::ALERTS_STREAM)
        .await
        .expect("alerts stream");
    assert_eq!(alerts.info().await.expect("info").state.messages, 1);
    server.shutdown().await.expect("clean shutdown");
}

/// MovieLens events published in chunks of 100, `published` counting them.
async fn publish_events(js: jetstream::Context, events: Vec<Event>, published: Arc<AtomicUsize>) {
    let mut sent = 0;
    for chunk in events.chunks(100) {
        publish_stored(&js, chunk).await;
        sent += chunk.len();
        published.store(sent, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Point-in-time logging on MovieLens-100K: the engine answers requests while it learns,
/// and every impression carries the re-ranker input vector of each item it showed. A fresh
/// replay of the stream, stopped at each served version's position, recomputes every one of
/// them bit for bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_logged_where_served_equal_a_replay_of_the_stream_bit_for_bit() {
    let events: Vec<Event> = movielens().into_iter().take(8_000).collect();
    let nats = NatsServer::start();
    let mut config = streamrec_actors::EngineConfig::default();
    // Every input live, the windowed ones included.
    config.online.candidates.window_features = true;
    let online = config.online.clone();
    let bus = streamrec_actors::NatsBus::connect(streamrec_actors::NatsBusConfig::new(nats.url()))
        .await
        .expect("engine connects");
    let server = server_on(Arc::new(bus), config).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("emitter"));

    let published = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sessions: Arc<Vec<(String, Option<String>)>> = Arc::new(
        events
            .iter()
            .map(|e| (e.session_id.clone(), e.user_id.clone()))
            .collect(),
    );
    let requests = {
        let (url, published, stop, sessions) = (
            server.url("/v1/recommendations"),
            Arc::clone(&published),
            Arc::clone(&stop),
            Arc::clone(&sessions),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut served = 0;
            let mut n = 0usize;
            // Until the whole log is published and enough answers logged.
            while !(stop.load(Ordering::Relaxed) && served >= 300) {
                let at = published.load(Ordering::Relaxed);
                if at == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                // A session active around what has been published so far.
                let (session, user) = &sessions[at - 1 - (n * 37) % at.min(500)];
                n += 1;
                let mut query = vec![("session_id", session.clone()), ("k", "10".into())];
                if n.is_multiple_of(2)
                    && let Some(user) = user
                {
                    query.push(("user_id", user.clone()));
                }
                // Only an answer that shows items is logged as an impression (the first
                // requests, before anything is learned, can come back empty).
                let Ok(answer) = client.get(&url).query(&query).send().await else {
                    continue;
                };
                if !answer.status().is_success() {
                    continue;
                }
                let body: Value = answer.json().await.unwrap_or_default();
                if body["items"]
                    .as_array()
                    .is_some_and(|items| !items.is_empty())
                {
                    served += 1;
                }
            }
            served
        })
    };
    publish_events(js.clone(), events, Arc::clone(&published)).await;
    // Let the last events be learned and answered from.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let served = requests.await.expect("requests");
    assert!(served >= 300, "{served} answers showed items");
    // Impressions are published after their answers: wait until the engine has applied
    // everything the stream holds, and nothing more arrives.
    eventually("the whole stream applied", LIMIT, || async {
        let mut stream = js
            .get_stream(subjects::EVENTS_STREAM)
            .await
            .expect("stream");
        let last = stream.info().await.expect("info").state.last_sequence;
        let (_, stats) = get(&server, "/v1/stats").await;
        stats["applied_seq"].as_u64() == Some(last)
    })
    .await;
    server.shutdown().await.expect("clean shutdown");

    let stream = read_events_stream(&js).await;
    let logged: Vec<&Impression> = stream
        .iter()
        .filter_map(|(_, e)| match e {
            StreamEntry::Impression(i) => Some(i),
            _ => None,
        })
        .collect();
    let impressions = logged.len();
    // What the log costs on the wire: each impression as published, and without its logged
    // vectors, scores and positions (p50 over the run).
    let p50 = |mut sizes: Vec<usize>| {
        sizes.sort_unstable();
        sizes.get(sizes.len() / 2).copied().unwrap_or(0)
    };
    let with_log = p50(logged.iter().map(|i| i.to_json().len()).collect());
    let without_log = p50(logged
        .iter()
        .map(|i| {
            let mut bare = (*i).clone();
            bare.logged = None;
            for item in &mut bare.items {
                item.candidate_features = None;
                item.rerank_score = None;
            }
            bare.to_json().len()
        })
        .collect());
    println!("impression bytes, p50: {with_log} logged, {without_log} without the log");
    // The re-ranker trained and scored, and the windowed inputs moved: the whole vector is
    // live, not zeros.
    let items = || logged.iter().flat_map(|i| &i.items);
    assert!(items().any(|i| i.rerank_score.is_some()));
    assert!(items().any(|i| {
        i.candidate_features
            .as_ref()
            .is_some_and(|f| f.0.get(8).is_some_and(|v| *v != 0.0))
    }));
    let report = tokio::task::spawn_blocking(move || {
        replay_logged_features(OnlineModels::new(online), ComputeDevice::Cpu, &stream, &[])
    })
    .await
    .expect("replay thread")
    .expect("replays");
    println!(
        "{} impressions, {} vectors compared, {} mismatches, {} skipped",
        report.impressions,
        report.vectors,
        report.mismatches.len(),
        report.skipped
    );
    assert!(impressions >= 300, "{impressions} impressions");
    assert_eq!(report.impressions, impressions, "{report:?}");
    assert_eq!(report.skipped, 0);
    assert!(report.vectors >= 5 * impressions, "{report:?}");
    assert!(
        report.mismatches.is_empty(),
        "{} of {} vectors differ, first: {:?}",
        report.mismatches.len(),
        report.vectors,
        report.mismatches.first()
    );
}
