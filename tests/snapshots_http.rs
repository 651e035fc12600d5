//! Snapshots through the HTTP API on the embedded bus: take and inspect them, answer from a
//! pinned version, restore at start, and skip a corrupt newest snapshot.

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use streamrec_api::RunningServer;
use support::{eventually, get};

const LIMIT: Duration = Duration::from_secs(20);

async fn server(dir: &Path) -> RunningServer {
    support::embedded_server(dir).await
}

async fn post(server: &RunningServer, path: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    (r.status(), r.json().await.expect("JSON"))
}

/// Views: `counts` of each item, ids prefixed so batches never collide.
async fn views(server: &RunningServer, prefix: &str, counts: &[(&str, usize)]) {
    let mut events = Vec::new();
    for (item, n) in counts {
        for i in 0..*n {
            events.push(json!({"event_id": format!("{prefix}-{item}-{i}"), "session_id": format!("crowd{i}"),
                "kind": "view", "item_id": item, "ts": 1_700_000_000_000_i64}));
        }
    }
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let before = get(server, "/v1/stats").await.1["applied_seq"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        post(server, "/v1/events", Value::Array(events)).await.0,
        StatusCode::ACCEPTED
    );
    eventually("events applied", LIMIT, || async {
        get(server, "/v1/stats").await.1["applied_seq"]
            .as_u64()
            .unwrap_or(0)
            >= before + total as u64
    })
    .await;
}

fn items(answer: &Value) -> Vec<String> {
    answer["items"].as_array().map_or(Vec::new(), |a| {
        a.iter()
            .map(|i| i["item_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_pin_answers_restore_and_survive_corruption() {
    let dir = tempfile::tempdir().expect("dir");
    let s = server(dir.path()).await;
    views(&s, "a", &[("a", 3), ("b", 2), ("c", 1)]).await;
    eventually("ranking published", LIMIT, || async {
        items(&get(&s, "/v1/recommendations?session_id=viewer").await.1) == ["a", "b", "c"]
    })
    .await;
    let (_, before) = get(&s, "/v1/recommendations?session_id=viewer&rec_id=fixed").await;

    let (status, taken) = post(&s, "/v1/snapshots", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{taken}");
    let v1 = taken["version"].as_str().expect("version").to_owned();
    assert!(
        taken.get("path").is_none(),
        "no server path in answers: {taken}"
    );
    assert!(dir.path().join(&v1).join("manifest.json").exists());

    // The live model moves on...
    views(&s, "b", &[("c", 10)]).await;
    eventually("c leads live", LIMIT, || async {
        items(&get(&s, "/v1/recommendations?session_id=viewer").await.1)
            .first()
            .map(String::as_str)
            == Some("c")
    })
    .await;
    // ...while the pinned version answers as it did.
    let (status, pinned) = get(
        &s,
        &format!("/v1/recommendations?session_id=viewer&rec_id=fixed&model_version={v1}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{pinned}");
    assert_eq!(pinned["model_version"], json!(v1));
    assert_eq!(
        pinned["items"], before["items"],
        "the same snapshot and session give the same list"
    );

    // Inspection.
    let (_, list) = get(&s, "/v1/snapshots").await;
    assert!(
        list["snapshots"]
            .as_array()
            .expect("list")
            .iter()
            .any(|i| i["version"] == json!(v1))
    );
    let (status, manifest) = get(&s, &format!("/v1/snapshots/{v1}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(manifest["learners"].as_object().map(|l| l.len()), Some(7));
    let (_, popularity) = get(&s, &format!("/v1/snapshots/{v1}/learners/popularity")).await;
    assert_eq!(popularity["top"][0]["item_id"], "a");
    let (_, embeddings) = get(
        &s,
        &format!("/v1/snapshots/{v1}/learners/embeddings?item=a"),
    )
    .await;
    assert_eq!(embeddings["items"], 3);
    assert!(
        embeddings["nearest"]
            .as_array()
            .is_some_and(|n| n.len() == 2)
    );
    assert_eq!(
        get(&s, &format!("/v1/snapshots/{v1}/learners/nope"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, missing) = get(
        &s,
        "/v1/recommendations?session_id=viewer&model_version=000000000000-000000000000",
    )
    .await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_model_version"))
    );
    let (status, invalid) = get(
        &s,
        "/v1/recommendations?session_id=viewer&model_version=000-nope",
    )
    .await;
    assert_eq!(
        (status, invalid["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_version"))
    );

    // crowd0 has seen a, b and c: nothing is left to recommend to it.
    assert!(items(&get(&s, "/v1/recommendations?session_id=crowd0").await.1).is_empty());

    // A second snapshot, then a restart: the newest restores.
    let (_, taken) = post(&s, "/v1/snapshots", json!({})).await;
    let v2 = taken["version"].as_str().expect("version").to_owned();
    s.shutdown().await.expect("shutdown");
    let s = server(dir.path()).await;
    let (_, stats) = get(&s, "/v1/stats").await;
    assert_eq!(
        stats["restored_seq"],
        json!(v2[..12].parse::<u64>().expect("seq prefix"))
    );
    eventually("restored ranking served", LIMIT, || async {
        items(&get(&s, "/v1/recommendations?session_id=viewer").await.1)
            .first()
            .map(String::as_str)
            == Some("c")
    })
    .await;
    s.shutdown().await.expect("shutdown");

    // Corrupt the newest: it is reported and skipped, the previous one restores.
    let victim = dir.path().join(&v2).join("stream.json");
    std::fs::write(&victim, b"{\"truncated\":").expect("corrupt");
    let s = server(dir.path()).await;
    let (_, stats) = get(&s, "/v1/stats").await;
    assert_eq!(stats["ingest"]["snapshots_skipped"], 1, "{stats}");
    assert_eq!(
        stats["restored_seq"],
        json!(v1[..12].parse::<u64>().expect("seq prefix"))
    );
    eventually("the older ranking served", LIMIT, || async {
        items(&get(&s, "/v1/recommendations?session_id=viewer").await.1) == ["a", "b", "c"]
    })
    .await;
    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_candidate_is_compared_on_live_traffic_without_being_served() {
    let dir = tempfile::tempdir().expect("dir");
    let s = server(dir.path()).await;
    views(&s, "a", &[("a", 3), ("b", 2), ("c", 1)]).await;
    let (_, taken) = post(&s, "/v1/snapshots", json!({})).await;
    let old = taken["version"].as_str().expect("version").to_owned();
    // Live moves on: c leads now; the old snapshot still ranks a, b, c.
    views(&s, "b", &[("c", 10)]).await;
    eventually("c leads live", LIMIT, || async {
        items(&get(&s, "/v1/recommendations?session_id=x").await.1)
            .first()
            .map(String::as_str)
            == Some("c")
    })
    .await;
    assert_eq!(get(&s, "/v1/shadow").await.0, StatusCode::NOT_FOUND);
    let (status, started) = post(&s, "/v1/shadow", json!({"version": old})).await;
    assert_eq!(status, StatusCode::OK, "{started}");

    let mut clicks = Vec::new();
    for i in 0..4 {
        let (_, answer) = get(&s, &format!("/v1/recommendations?session_id=u{i}&k=2")).await;
        // What users see is still the live list.
        assert_eq!(items(&answer), ["c", "a"]);
        if i % 2 == 0 {
            // A click on the live top item, c: the old model put a in that slot.
            clicks.push(json!({"event_id": format!("click{i}"), "session_id": format!("u{i}"), "kind": "click",
                "item_id": "c", "rec_id": answer["rec_id"], "position": 0, "ts": 1_700_000_000_001_i64}));
        }
    }
    assert_eq!(
        post(&s, "/v1/events", Value::Array(clicks)).await.0,
        StatusCode::ACCEPTED
    );
    eventually("clicks scored", LIMIT, || async {
        get(&s, "/v1/shadow").await.1["clicks"] == 2
    })
    .await;
    let (_, report) = get(&s, "/v1/shadow").await;
    assert_eq!(report["version"], json!(old));
    assert_eq!(report["requests"], 4);
    // Live [c, a] vs candidate [a, b]: one of two items shared.
    assert_eq!(report["agreement"], 0.5);
    assert_eq!(report["live_value"], 0.5);
    assert_eq!(
        report["shadow_value"], 0.0,
        "the candidate would not have shown c in slot 0"
    );
    let stopped = reqwest::Client::new()
        .delete(s.url("/v1/shadow"))
        .send()
        .await
        .expect("delete");
    assert_eq!(stopped.status(), StatusCode::OK);
    let final_report: Value = stopped.json().await.expect("final report");
    assert_eq!(final_report["requests"], 4);
    assert_eq!(get(&s, "/v1/shadow").await.0, StatusCode::NOT_FOUND);
    s.shutdown().await.expect("shutdown");
}

/// The catalog is learner state: on the embedded bus (whose stream does not outlive the
/// process) a restart from a snapshot keeps every item, its attributes and availability.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_survives_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let s = server(dir.path()).await;
    let catalog = json!([
        {"item_id": "a", "title": "A", "attributes": {"genre": "drama"}},
        {"item_id": "b", "title": "B", "attributes": {"genre": "comedy"}},
        {"item_id": "c", "title": "C", "attributes": {"genre": "drama"}, "available": false},
    ]);
    assert_eq!(post(&s, "/v1/items", catalog).await.0, StatusCode::ACCEPTED);
    eventually("catalog published", LIMIT, || async {
        get(&s, "/v1/stats").await.1["catalog_items"] == json!(3)
    })
    .await;
    views(&s, "x", &[("a", 1), ("b", 2), ("c", 3)]).await;
    let (status, taken) = post(&s, "/v1/snapshots", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{taken}");
    s.shutdown().await.expect("shutdown");

    let s = server(dir.path()).await;
    eventually("restored", LIMIT, || async {
        get(&s, "/v1/stats").await.1["restored_seq"]
            .as_u64()
            .unwrap_or(0)
            > 0
    })
    .await;
    assert_eq!(get(&s, "/v1/stats").await.1["catalog_items"], json!(3));
    let (status, drama) = get(&s, "/v1/recommendations?session_id=new&filter=genre:drama").await;
    assert_eq!(status, StatusCode::OK, "{drama}");
    assert_eq!(
        items(&drama),
        ["a"],
        "the filter still sees attributes, and c stays unavailable"
    );
    let (_, all) = get(&s, "/v1/recommendations?session_id=new").await;
    assert!(!items(&all).contains(&"c".to_owned()), "{all}");
    s.shutdown().await.expect("shutdown");
}
